"""The workloads of papy's performance table, each for papy and for its peer.

Every function runs one complete measurement and returns a number (items/s,
seconds, or MB), so the same code serves the pytest-benchmark suite
(``bench_throughput.py``) and the table printer (``report.py``).
``PAPY_BENCH_SCALE`` (default 1.0) scales the item counts.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.pool
import os
import subprocess
import sys
import threading
import time
from typing import Any

import papy

SCALE = float(os.environ.get("PAPY_BENCH_SCALE", "1"))
WORKERS = 2


def n_items(n: int) -> int:
    return max(100, int(n * SCALE))


def square(x: int) -> int:
    return x * x


def burn(x: Any, ms: float = 5.0) -> Any:
    """Spend ``ms`` milliseconds of CPU, return ``x``."""
    end = time.process_time() + ms / 1000
    while time.process_time() < end:
        pass
    return x


def big(x: int) -> bytes:
    return bytes(100_000)


def _rate(n: int, run: Any) -> float:
    t0 = time.perf_counter()
    count = run()
    elapsed = time.perf_counter() - t0
    assert count == n, (count, n)
    return n / elapsed


# -- throughput of a trivial function -----------------------------------------------
def papy_rate(worker_type: str, n: int, **options: Any) -> float:
    def run() -> int:
        count = 0
        for _ in papy.imap(
            square, range(n), worker_type=worker_type, worker_num=WORKERS, **options
        ):
            count += 1
        return count

    return _rate(n, run)


def pool_rate(worker_type: str, n: int, pool: Any, chunksize: int = 1) -> float:
    def run() -> int:
        count = 0
        for _ in pool.imap(square, range(n), chunksize=chunksize):
            count += 1
        return count

    return _rate(n, run)


def make_pool(worker_type: str) -> Any:
    if worker_type == "thread":
        return multiprocessing.pool.ThreadPool(WORKERS)
    return multiprocessing.Pool(WORKERS)


# -- three chained tasks of 5 ms each: latency of the first result ---------------------
def papy_chain(n: int = 200, ms: float = 5.0) -> tuple[float, float]:
    """(time to first result, total time) of 3 chained tasks on one IMap."""
    t0 = time.perf_counter()
    with papy.IMap(worker_type="process", worker_num=WORKERS) as m:
        a = m.add_task(burn, range(n), args=(ms,))
        b = m.add_task(burn, a, args=(ms,))
        c = m.add_task(burn, b, args=(ms,))
        m.start()
        next(c)
        first = time.perf_counter() - t0
        count = 1 + sum(1 for _ in c)
    assert count == n
    return first, time.perf_counter() - t0


def pool_chain(n: int = 200, ms: float = 5.0) -> tuple[float, float]:
    """The same with nested ``Pool.imap`` on one pool (the seed's counter-example)."""
    t0 = time.perf_counter()
    with multiprocessing.Pool(WORKERS) as pool:
        a = pool.imap(_burn_ms, ((x, ms) for x in range(n)))
        b = pool.imap(_burn_ms, ((x, ms) for x in a))
        c = pool.imap(_burn_ms, ((x, ms) for x in b))
        next(c)
        first = time.perf_counter() - t0
        count = 1 + sum(1 for _ in c)
    assert count == n
    return first, time.perf_counter() - t0


def _burn_ms(pair: tuple[Any, float]) -> Any:
    return burn(pair[0], pair[1])


# -- memory: big results, slow consumer ----------------------------------------------------
class PeakRSS:
    """Samples this process's RSS in a thread; ``growth_mb`` after ``stop()``."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        gc.collect()
        self.base = self._proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return (self.peak - self.base) / 2**20


def _slow_consume(results: Any, pause: float = 0.0005) -> int:
    count = 0
    for _ in results:
        end = time.perf_counter() + pause
        while time.perf_counter() < end:
            pass
        count += 1
    return count


def papy_memory(n: int) -> float:
    """Peak RSS growth (MB) of papy with stride 2, buffer 8."""
    rss = PeakRSS()
    gen = (x for x in range(n))
    count = _slow_consume(papy.imap(big, gen, worker_num=WORKERS, stride=2, buffer=8))
    assert count == n
    return rss.stop()


def pool_memory(n: int) -> float:
    """Peak RSS growth (MB) of ``Pool.imap`` (its results pile up)."""
    with multiprocessing.Pool(WORKERS) as pool:
        rss = PeakRSS()
        count = _slow_consume(pool.imap(big, (x for x in range(n))))
        assert count == n
        return rss.stop()


# -- import time -------------------------------------------------------------------------
def import_time(module: str, repeats: int = 7) -> float:
    """Median wall time (s) of ``import module`` in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = sorted(
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(repeats)
    )
    return times[len(times) // 2]
