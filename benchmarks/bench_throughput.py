"""pytest-benchmark suite: papy next to its stdlib peer, in the same session.

Run: ``pytest benchmarks/bench_throughput.py --benchmark-group-by=group``.
Each group holds papy's and the peer's row of one line of the performance
table; ``benchmarks/report.py`` prints the table with the ratios.
Smoke-run (no timing): ``pytest benchmarks --benchmark-disable``.
"""

from __future__ import annotations

import pytest

import workloads as w

pytestmark = pytest.mark.timeout(600)

N = w.n_items(20_000)


@pytest.fixture(scope="module")
def thread_pool():
    with w.make_pool("thread") as pool:
        yield pool


@pytest.fixture(scope="module")
def process_pool():
    with w.make_pool("process") as pool:
        pool.map(w.square, range(10))  # started
        yield pool


ROWS = [
    # (group, worker_type, papy options, peer chunksize)
    ("thread-chunk1-buffer64", "thread", {"buffer": 64}, 1),
    ("process-chunk1-buffer64", "process", {"buffer": 64}, 1),
    ("process-chunk64-buffer512", "process", {"buffer": 512, "chunksize": 64}, 64),
    ("thread-seed-defaults", "thread", {"stride": 2, "buffer": 2}, 1),
    ("process-seed-defaults", "process", {"stride": 2, "buffer": 2}, 1),
]


@pytest.mark.parametrize("group, worker_type, options, _", ROWS, ids=[r[0] for r in ROWS])
def test_papy(benchmark, group, worker_type, options, _):
    benchmark.group = group
    n = N * (4 if options.get("chunksize", 1) > 1 else 1)
    benchmark.extra_info["items"] = n
    rate = benchmark.pedantic(
        w.papy_rate, args=(worker_type, n), kwargs=options, rounds=3, iterations=1
    )
    assert rate > 0


@pytest.mark.parametrize("group, worker_type, _, chunksize", ROWS, ids=[r[0] for r in ROWS])
def test_peer(benchmark, group, worker_type, _, chunksize, thread_pool, process_pool):
    benchmark.group = group
    pool = thread_pool if worker_type == "thread" else process_pool
    n = N * (4 if chunksize > 1 else 1)
    benchmark.extra_info["items"] = n
    rate = benchmark.pedantic(
        w.pool_rate, args=(worker_type, n, pool, chunksize), rounds=3, iterations=1
    )
    assert rate > 0


def test_chain_papy(benchmark):
    benchmark.group = "chain-3x5ms-200"
    first, total = benchmark.pedantic(w.papy_chain, args=(w.n_items(200),), rounds=2, iterations=1)
    benchmark.extra_info.update(first=first, total=total)


def test_chain_peer(benchmark):
    benchmark.group = "chain-3x5ms-200"
    first, total = benchmark.pedantic(w.pool_chain, args=(w.n_items(200),), rounds=2, iterations=1)
    benchmark.extra_info.update(first=first, total=total)


def test_memory_papy(benchmark):
    benchmark.group = "memory-100kB-results"
    growth = benchmark.pedantic(w.papy_memory, args=(w.n_items(20_000),), rounds=1, iterations=1)
    benchmark.extra_info["rss_growth_mb"] = growth
    assert growth < 50


def test_memory_peer(benchmark):
    benchmark.group = "memory-100kB-results"
    growth = benchmark.pedantic(w.pool_memory, args=(w.n_items(20_000),), rounds=1, iterations=1)
    benchmark.extra_info["rss_growth_mb"] = growth


@pytest.mark.parametrize("module", ["papy", "multiprocessing.pool"])
def test_import_time(benchmark, module):
    benchmark.group = "import"
    seconds = benchmark.pedantic(w.import_time, args=(module, 5), rounds=1, iterations=1)
    benchmark.extra_info["seconds"] = seconds
