"""pytest-benchmark suite: papy next to its stdlib peer, in the same session.

Run: ``pytest benchmarks/bench_throughput.py --benchmark-group-by=group``.
Each group holds papy's and the peer's row of one line of the performance
table (``docs/performance.md``); ``benchmarks/report.py`` prints the table
with the ratios (medians of alternating runs).
Smoke-run (no timing): ``pytest benchmarks --benchmark-disable``.
"""

from __future__ import annotations

import pytest

import workloads as w

pytestmark = pytest.mark.timeout(600)

N = w.n_items(100_000)


@pytest.fixture(scope="module")
def thread_pool():
    with w.make_pool("thread") as pool:
        yield pool


@pytest.fixture(scope="module")
def process_pool():
    with w.make_pool("process") as pool:
        pool.map(w.square, range(10))  # started
        yield pool


def _pool(worker_type, thread_pool, process_pool):
    return thread_pool if worker_type == "thread" else process_pool


ROWS = [
    # (group, worker_type, papy options, peer chunksize: int, "rule" or "default")
    ("process-chunk64", "process", {"chunksize": 64}, 64),
    ("thread-chunk64", "thread", {"chunksize": 64}, 64),
    ("process-auto-vs-pool-rule", "process", {}, "rule"),
    ("thread-auto-vs-pool-rule", "thread", {}, "rule"),
    ("process-defaults", "process", {}, "default"),
    ("thread-defaults", "thread", {}, "default"),
    ("process-chunk1-buffer64", "process", {"chunksize": 1, "buffer": 64}, 1),
    ("thread-chunk1-buffer64", "thread", {"chunksize": 1, "buffer": 64}, 1),
]
IDS = [r[0] for r in ROWS]


def _n(peer_chunk) -> int:
    return N if peer_chunk in (1, "default") else 10 * N


@pytest.mark.parametrize("group, worker_type, options, peer_chunk", ROWS, ids=IDS)
def test_papy(benchmark, group, worker_type, options, peer_chunk):
    benchmark.group = group
    n = _n(peer_chunk)
    benchmark.extra_info["items"] = n
    rate = benchmark.pedantic(
        w.papy_rate, args=(worker_type, n), kwargs=options, rounds=3, iterations=1
    )
    assert rate > 0


@pytest.mark.parametrize("group, worker_type, options, peer_chunk", ROWS, ids=IDS)
def test_peer(benchmark, group, worker_type, options, peer_chunk, thread_pool, process_pool):
    benchmark.group = group
    pool = _pool(worker_type, thread_pool, process_pool)
    n = _n(peer_chunk)
    chunk = {"rule": w.pool_rule_chunksize(n), "default": 1}.get(peer_chunk, peer_chunk)
    benchmark.extra_info["items"] = n
    rate = benchmark.pedantic(
        w.pool_rate, args=(worker_type, n, pool, chunk), rounds=3, iterations=1
    )
    assert rate > 0


def test_raw_pipe_echo(benchmark):
    """The floor for process-chunk64: one thread, two pipes per worker, no scheduling."""
    benchmark.group = "process-chunk64"
    rate = benchmark.pedantic(w.pipe_echo_rate, args=(10 * N, 64), rounds=3, iterations=1)
    assert rate > 0


@pytest.mark.parametrize("k", [2, 4, 8])
def test_chain_papy(benchmark, k):
    benchmark.group = f"chain-{k}-tasks"
    first, total = benchmark.pedantic(
        w.papy_chain_k, args=(k, w.n_items(10_000)), rounds=3, iterations=1
    )
    benchmark.extra_info.update(first=first, total=total)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_chain_peer(benchmark, k):
    benchmark.group = f"chain-{k}-tasks"
    first, total = benchmark.pedantic(
        w.pool_chain_k, args=(k, w.n_items(10_000)), rounds=3, iterations=1
    )
    benchmark.extra_info.update(first=first, total=total)


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_10kB_papy(benchmark, worker_type):
    benchmark.group = f"{worker_type}-10kB"
    items = w.payloads(w.n_items(4_000))
    rate = benchmark.pedantic(w.papy_bytes_rate, args=(worker_type, items), rounds=3, iterations=1)
    assert rate > 0


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_10kB_peer(benchmark, worker_type, thread_pool, process_pool):
    benchmark.group = f"{worker_type}-10kB"
    items = w.payloads(w.n_items(4_000))
    pool = _pool(worker_type, thread_pool, process_pool)
    rate = benchmark.pedantic(w.pool_bytes_rate, args=(items, pool, 8), rounds=3, iterations=1)
    assert rate > 0


def test_memory_papy(benchmark):
    benchmark.group = "memory-100kB-results"
    growth = benchmark.pedantic(w.papy_memory, args=(w.n_items(20_000),), rounds=1, iterations=1)
    benchmark.extra_info["rss_growth_mb"] = growth
    assert growth < 50


def test_memory_peer(benchmark):
    benchmark.group = "memory-100kB-results"
    growth = benchmark.pedantic(w.pool_memory, args=(w.n_items(20_000),), rounds=1, iterations=1)
    benchmark.extra_info["rss_growth_mb"] = growth


@pytest.mark.parametrize("kind", ["papy", "pool"])
def test_parent_threads(benchmark, kind):
    benchmark.group = "parent-threads"
    threads = benchmark.pedantic(w.threads_while_consuming, args=(kind,), rounds=1, iterations=1)
    benchmark.extra_info["threads"] = threads


@pytest.mark.parametrize("module", ["papy", "multiprocessing.pool"])
def test_import_time(benchmark, module):
    benchmark.group = "import"
    seconds = benchmark.pedantic(w.import_time, args=(module, 5), rounds=1, iterations=1)
    benchmark.extra_info["seconds"] = seconds


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_task_api(benchmark, worker_type):
    """The IMap object API (iterate the task) next to papy.imap, chunksize 64."""
    benchmark.group = f"{worker_type}-task-api"
    rate = benchmark.pedantic(
        w.papy_task_rate, args=(worker_type, 10 * N), kwargs={"chunksize": 64}, rounds=3
    )
    assert rate > 0


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_defaults_vs_tuned_pool_with_startup(benchmark, worker_type):
    benchmark.group = f"{worker_type}-defaults-vs-pool-1000"
    rate = benchmark.pedantic(w.pool_started_rate, args=(worker_type, N, 1000), rounds=3)
    assert rate > 0


def test_sum_papy(benchmark):
    benchmark.group = "process-chunk64-sum"
    rate = benchmark.pedantic(
        w.papy_sum_rate, args=("process", 10 * N), kwargs={"chunksize": 64}, rounds=3
    )
    assert rate > 0


def test_sum_floor(benchmark):
    benchmark.group = "process-chunk64-sum"
    rate = benchmark.pedantic(w.pipe_echo_rate, args=(10 * N, 64), rounds=3)
    assert rate > 0


@pytest.mark.parametrize("kind", ["papy", "pool"])
def test_import_to_first_result(benchmark, kind):
    benchmark.group = "first-result"
    seconds = benchmark.pedantic(w.first_result, args=(kind,), rounds=3)
    benchmark.extra_info["seconds"] = seconds


def test_speedup_1ms_items(benchmark):
    benchmark.group = "1ms-items"
    speedup = benchmark.pedantic(w.speedup_1ms, args=(w.n_items(3000),), rounds=3)
    benchmark.extra_info["speedup"] = speedup
