"""pytest-benchmark suite of the work-aware defaults (issue 19's rows): streaming
chains, blocked inputs, memory by bytes, numpy arrays next to ``Pool.imap``,
timeouts on time.

Run: ``pytest benchmarks/bench_work_aware.py --benchmark-group-by=group``;
``python benchmarks/report.py --work`` prints the table (medians, spread).
Smoke-run (no timing): ``pytest benchmarks --benchmark-disable``.
"""

from __future__ import annotations

import multiprocessing

import pytest

import work_aware as wa
import workloads as w

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_blocked_input_first_result_papy(benchmark, worker_type):
    benchmark.group = f"blocked-input-{worker_type}"
    seconds = benchmark.pedantic(
        wa.papy_blocked_input_first, args=(worker_type,), rounds=3, iterations=1
    )
    assert seconds < 10


def test_blocked_input_first_result_peer(benchmark):
    benchmark.group = "blocked-input-process"
    benchmark.pedantic(wa.pool_blocked_input_first, kwargs={"give_up": 0.5}, rounds=1)


def test_chain3_papy(benchmark):
    benchmark.group = "chain-3x5ms"
    first, total = benchmark.pedantic(w.papy_chain, args=(w.n_items(200),), rounds=3)
    benchmark.extra_info.update(first=first, total=total)


def test_chain3_peer(benchmark):
    benchmark.group = "chain-3x5ms"
    first, total = benchmark.pedantic(w.pool_chain, args=(w.n_items(200),), rounds=3)
    benchmark.extra_info.update(first=first, total=total)


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_paused_1mb_results(benchmark, worker_type):
    benchmark.group = f"memory-1MB-{worker_type}"
    growth = benchmark.pedantic(
        wa.papy_paused_results_mb, args=(worker_type, w.n_items(2000)), rounds=1
    )
    benchmark.extra_info["rss_growth_mb"] = growth
    assert growth < 256


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_1mb_inputs(benchmark, worker_type):
    benchmark.group = f"memory-1MB-{worker_type}"
    growth = benchmark.pedantic(wa.papy_big_inputs_mb, args=(worker_type, w.n_items(400)), rounds=1)
    benchmark.extra_info["rss_growth_mb"] = growth
    assert growth < 256


@pytest.mark.parametrize("mb, n", [(1, 200), (16, 20)])
def test_arrays_papy(benchmark, mb, n):
    pytest.importorskip("numpy")
    benchmark.group = f"arrays-{mb}MB"
    growth, rate = benchmark.pedantic(
        wa.papy_arrays, args=(mb * wa.MB, max(4, w.n_items(n))), rounds=1
    )
    benchmark.extra_info.update(rss_growth_mb=growth, arrays_per_s=rate)


@pytest.mark.parametrize("mb, n", [(1, 200), (16, 20)])
def test_arrays_peer(benchmark, mb, n):
    pytest.importorskip("numpy")
    benchmark.group = f"arrays-{mb}MB"
    with multiprocessing.Pool(w.WORKERS) as pool:
        pool.map(w.square, range(4))
        growth, rate = benchmark.pedantic(
            wa.pool_arrays, args=(mb * wa.MB, max(4, w.n_items(n)), pool), rounds=1
        )
    benchmark.extra_info.update(rss_growth_mb=growth, arrays_per_s=rate)


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_timeout_lateness(benchmark, worker_type):
    benchmark.group = "timeouts"
    late = benchmark.pedantic(wa.papy_timeout_lateness, args=(worker_type,), rounds=1)
    benchmark.extra_info["worst_lateness_s"] = late
