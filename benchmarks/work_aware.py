"""Workloads of the work-aware defaults (the rows of issue 19 in docs/performance.md).

Each function runs one complete measurement with papy's defaults (or the
peer's) and returns numbers; ``bench_work_aware.py`` runs them under
pytest-benchmark and ``report.py --work`` prints the table, interleaving papy
and its peer, medians with the spread of the runs.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
from typing import Any

import papy
from workloads import WORKERS, PeakRSS, n_items, square

MB = 1 << 20


# -- a chained task under an upstream input that blocks --------------------------------
def inc(x: int) -> int:
    return x + 1


def papy_blocked_input_first(worker_type: str, k: int = 2) -> float:
    """Seconds to the chained task's first result when the upstream input gives ``k``
    items and then blocks (a socket, a queue), defaults."""
    release = threading.Event()

    def source() -> Any:
        yield from range(k)
        release.wait(30)

    t0 = time.perf_counter()
    m = papy.IMap(worker_type=worker_type, worker_num=WORKERS)
    try:
        a = m.add_task(inc, source())
        b = m.add_task(inc, a)
        m.start()
        b.next(timeout=10)
        return time.perf_counter() - t0
    finally:
        release.set()
        m.stop()


def pool_blocked_input_first(k: int = 2, give_up: float = 2.0) -> float:
    """The same with nested ``Pool.imap``: it waits for the whole inner input (never,
    here): the seconds it waited until giving up, as a lower bound."""
    release = threading.Event()

    def source() -> Any:
        yield from range(k)
        release.wait(give_up + 5)

    with multiprocessing.Pool(WORKERS) as pool:
        t0 = time.perf_counter()
        outer = pool.imap(inc, pool.imap(inc, source()))
        try:
            outer.next(timeout=give_up)
        except multiprocessing.TimeoutError:
            pass
        waited = time.perf_counter() - t0
        release.set()
        return waited


# -- memory: 1 MB results with a paused consumer, 1 MB inputs -------------------------
def megabyte(i: int) -> bytes:
    return b"r" * MB


def length(b: bytes) -> int:
    return len(b)


def papy_paused_results_mb(worker_type: str, n: int = 2000) -> float:
    """Peak RSS growth (MB) while 1 MB results wait for a consumer that took 5 and
    paused for 2 s (then reads on to the end)."""
    rss = PeakRSS()
    it = papy.imap(megabyte, range(n), worker_type=worker_type, worker_num=WORKERS)
    for _ in range(5):
        next(it)
    time.sleep(2.0)
    growth = rss.stop()
    assert sum(1 for _ in it) == n - 5
    return growth


def papy_big_inputs_mb(worker_type: str, n: int = 400) -> float:
    """Peak RSS growth (MB) with 1 MB inputs from a generator: one result read, a
    2 s pause, then the rest."""
    rss = PeakRSS()
    gen = (b"i" * MB for _ in range(n))
    it = papy.imap(length, gen, worker_type=worker_type, worker_num=WORKERS)
    next(it)
    time.sleep(2.0)
    growth = rss.stop()
    assert sum(1 for _ in it) == n - 1
    return growth


# -- numpy arrays: memory and throughput next to Pool.imap ------------------------------
def double(a: Any) -> Any:
    return a * 2.0


def _arrays(n: int, nbytes: int) -> Any:
    import numpy as np

    for i in range(n):
        yield np.full(nbytes // 8, float(i))


def _consume_arrays(results: Any) -> int:
    count = 0
    for r in results:
        count += 1 if r[0] >= 0 else 0
    return count


def papy_arrays(nbytes: int, n: int) -> tuple[float, float]:
    """(peak RSS growth MB, arrays/s) of ``papy.imap`` over arrays from a generator."""
    gc.collect()
    rss = PeakRSS()
    t0 = time.perf_counter()
    count = _consume_arrays(papy.imap(double, _arrays(n, nbytes), worker_num=WORKERS))
    elapsed = time.perf_counter() - t0
    assert count == n
    return rss.stop(), n / elapsed


def pool_arrays(nbytes: int, n: int, pool: Any) -> tuple[float, float]:
    """The same with ``Pool.imap`` (its defaults, a pool started beforehand)."""
    gc.collect()
    rss = PeakRSS()
    t0 = time.perf_counter()
    count = _consume_arrays(pool.imap(double, _arrays(n, nbytes)))
    elapsed = time.perf_counter() - t0
    assert count == n
    return rss.stop(), n / elapsed


# -- timeouts on chains, every form ------------------------------------------------------
def stuck(x: int) -> int:
    if x:
        time.sleep(3.0)  # longer than every wait below together
    return x


def papy_timeout_lateness(worker_type: str, timeout: float = 0.1) -> float:
    """The largest lateness (s) of a ``TimeoutError`` past ``timeout`` over the ways to
    wait on a chain: a task iterator, ``IMap.next(task=i)``, a task iterator's own
    timeout, the chained task, and ``imap(timeout=)``."""
    worst = 0.0
    with papy.IMap(worker_type=worker_type, worker_num=4) as m:
        a = m.add_task(stuck, [0, 1, 2], timeout=timeout)
        b = m.add_task(inc, m.get_task(0, timeout=10))
        m.start()
        next(b)
        for call in (
            lambda: a.next(timeout),
            lambda: next(a),
            lambda: m.next(timeout, task=0),
            lambda: m.next(timeout, task=1),
            lambda: b.next(timeout),
        ):
            t0 = time.perf_counter()
            try:
                call()
            except papy.TimeoutError:
                worst = max(worst, time.perf_counter() - t0 - timeout)
    it = papy.imap(stuck, [1], worker_type=worker_type, worker_num=WORKERS, timeout=timeout)
    t0 = time.perf_counter()
    try:
        next(it)
    except papy.TimeoutError:
        worst = max(worst, time.perf_counter() - t0 - timeout)
    it.close()
    return worst


__all__ = [
    "n_items",
    "square",
    "papy_blocked_input_first",
    "pool_blocked_input_first",
    "papy_paused_results_mb",
    "papy_big_inputs_mb",
    "papy_arrays",
    "pool_arrays",
    "papy_timeout_lateness",
]
