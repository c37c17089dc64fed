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
import papy._pools.process  # noqa: F401 - imported on a map's first start: not timed, as
import papy._pools.thread  # noqa: F401 - multiprocessing.pool is imported above for the peer

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


def papy_sum_rate(worker_type: str, n: int, **options: Any) -> float:
    """items/s of ``sum(papy.imap(square, range(n), ...))`` (no per-item Python code
    in the consumer, as the raw floor)."""
    expected = sum(x * x for x in range(n))

    def run() -> int:
        got = sum(
            papy.imap(square, range(n), worker_type=worker_type, worker_num=WORKERS, **options)
        )
        assert got == expected
        return n

    return _rate(n, run)


def papy_task_rate(worker_type: str, n: int, **options: Any) -> float:
    """items/s of the IMap object API: ``m.add_task(f, it)``, ``start()``, iterate the task."""

    def run() -> int:
        count = 0
        with papy.IMap(worker_type=worker_type, worker_num=WORKERS, **options) as m:
            task = m.add_task(square, range(n))
            m.start()
            for _ in task:
                count += 1
        return count

    return _rate(n, run)


def pool_started_rate(worker_type: str, n: int, chunksize: int) -> float:
    """items/s of ``Pool(2).imap(f, it, chunksize)``, the pool's start-up included."""

    def run() -> int:
        count = 0
        with make_pool(worker_type) as pool:
            for _ in pool.imap(square, range(n), chunksize=chunksize):
                count += 1
        return count

    return _rate(n, run)


def first_result(kind: str) -> float:
    """Seconds from ``import papy`` (or ``multiprocessing``) to the first result of a
    10-item map, in a fresh interpreter (bytecode caches warm), as a script runs it."""
    if kind == "papy":
        body = (
            "import papy\n"
            "def sq(x): return x * x\n"
            "if __name__ == '__main__':\n"
            "    it = papy.imap(sq, range(10)); next(it)\n"
        )
    else:
        body = (
            "import multiprocessing\n"
            "def sq(x): return x * x\n"
            "if __name__ == '__main__':\n"
            "    p = multiprocessing.Pool(2); it = p.imap(sq, range(10)); next(it)\n"
        )
    code = (
        "import time; _t0 = time.perf_counter()\n" + body + "    print(time.perf_counter() - _t0)\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "first.py")
        with open(path, "w") as f:
            f.write(code)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        out = subprocess.run(
            [sys.executable, path], capture_output=True, text=True, check=True, env=env
        ).stdout
    return float(out.split()[-1])


def burn1(x: Any) -> Any:
    return burn(x, 1.0)


def speedup_1ms(n: int = 3000) -> float:
    """Serial time over ``papy.imap`` time (defaults) for ``n`` items of 1 ms of CPU."""
    t0 = time.perf_counter()
    for x in range(n):
        burn1(x)
    serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    count = sum(1 for _ in papy.imap(burn1, range(n), worker_num=WORKERS))
    assert count == n
    return serial / (time.perf_counter() - t0)


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


# -- the floor: a raw echo of chunks over two pipes per worker ------------------------
def _echo_worker(rfd: int, wfd: int) -> None:
    import pickle
    import struct

    def read_exact(n: int) -> bytes:
        out = b""
        while len(out) < n:
            part = os.read(rfd, n - len(out))
            if not part:
                raise EOFError
            out += part
        return out

    while True:
        try:
            (size,) = struct.unpack("<I", read_exact(4))
        except EOFError:
            return
        items = pickle.loads(read_exact(size))
        reply = pickle.dumps(list(map(square, items)), 5)
        os.write(wfd, struct.pack("<I", len(reply)) + reply)


def pipe_echo_rate(n: int, chunksize: int = 64) -> float:
    """items/s of the simplest correct design: one parent thread sends pickled chunks to
    two forked workers over pipes (two chunks in flight each) and reads their replies,
    summing each chunk with ``sum``. No scheduling, no buffer, no error handling, no
    per-item Python code: the floor papy is measured against."""
    import pickle
    import select
    import struct

    ctx = multiprocessing.get_context("fork")
    workers = []
    for _ in range(WORKERS):
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        proc = ctx.Process(target=_echo_worker, args=(req_r, rep_w), daemon=True)
        proc.start()
        os.close(req_r)
        os.close(rep_w)
        workers.append((proc, req_w, rep_r))

    def run() -> int:
        chunks = (list(range(i, min(i + chunksize, n))) for i in range(0, n, chunksize))
        inflight = {rep_r: 0 for _, _, rep_r in workers}
        bufs = {rep_r: b"" for _, _, rep_r in workers}
        count = total = 0
        exhausted = False

        def send(req_w: int, rep_r: int) -> bool:
            chunk = next(chunks, None)
            if chunk is None:
                return False
            data = pickle.dumps(chunk, 5)
            os.write(req_w, struct.pack("<I", len(data)) + data)
            inflight[rep_r] += 1
            return True

        for _, req_w, rep_r in workers:
            for _ in range(2):
                exhausted = not send(req_w, rep_r) or exhausted
        by_rep = {rep_r: req_w for _, req_w, rep_r in workers}
        while any(inflight.values()):
            ready, _, _ = select.select([r for r, k in inflight.items() if k], [], [])
            for rep_r in ready:
                bufs[rep_r] += os.read(rep_r, 1 << 20)
                buf = bufs[rep_r]
                while len(buf) >= 4:
                    (size,) = struct.unpack_from("<I", buf)
                    if len(buf) < 4 + size:
                        break
                    values = pickle.loads(buf[4 : 4 + size])
                    total += sum(values)
                    count += len(values)
                    buf = buf[4 + size :]
                    inflight[rep_r] -= 1
                    if not exhausted:
                        exhausted = not send(by_rep[rep_r], rep_r)
                bufs[rep_r] = buf
        return count

    try:
        return _rate(n, run)
    finally:
        for proc, req_w, rep_r in workers:
            os.close(req_w)
            os.close(rep_r)
            proc.join(5)


# -- defaults, and Pool's own chunksize rule -------------------------------------------
def pool_rule_chunksize(n: int) -> int:
    """``Pool.map``'s choice: the input in about four chunks per worker."""
    return max(1, -(-n // (4 * WORKERS)))


def papy_defaults_rate(worker_type: str, n: int) -> float:
    """``papy.imap(f, it)`` with nothing but the worker type and count."""
    return papy_rate(worker_type, n)


# -- K chained tasks with the defaults --------------------------------------------------
def inc(x: int) -> int:
    return x + 1


def papy_chain_k(k: int, n: int) -> tuple[float, float]:
    """(first result, total) of ``k`` chained ``x + 1`` tasks on one IMap, defaults."""
    t0 = time.perf_counter()
    with papy.IMap(worker_num=WORKERS) as m:
        out: Any = range(n)
        for _ in range(k):
            out = m.add_task(inc, out)
        m.start()
        first_value = next(out)
        first = time.perf_counter() - t0
        count = 1 + sum(1 for _ in out)
    assert count == n and first_value == k
    return first, time.perf_counter() - t0


def pool_chain_k(k: int, n: int) -> tuple[float, float]:
    """The same with ``k`` nested ``Pool.imap`` on one pool, its defaults."""
    t0 = time.perf_counter()
    with multiprocessing.Pool(WORKERS) as pool:
        out: Any = range(n)
        for _ in range(k):
            out = pool.imap(inc, out)
        first_value = next(out)
        first = time.perf_counter() - t0
        count = 1 + sum(1 for _ in out)
    assert count == n and first_value == k
    return first, time.perf_counter() - t0


def chain_in_fresh_interpreter(kind: str, k: int, n: int) -> tuple[float, float]:
    """``papy_chain_k`` or ``pool_chain_k`` in a new interpreter, as a script would run
    it (a parent that earlier rows made large forks its workers more slowly)."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import workloads as w; "
        f"print(*w.{kind}_chain_k({k}, {n}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


# -- 10 kB in and out ----------------------------------------------------------------------
def rot(b: bytes) -> bytes:
    return b[1:] + b[:1]


def payloads(n: int, size: int = 10_000) -> list[bytes]:
    return [bytes((i & 255,)) * size for i in range(n)]


def papy_bytes_rate(worker_type: str, items: list[bytes], **options: Any) -> float:
    def run() -> int:
        count = 0
        for _ in papy.imap(rot, items, worker_type=worker_type, worker_num=WORKERS, **options):
            count += 1
        return count

    return _rate(len(items), run)


def pool_bytes_rate(items: list[bytes], pool: Any, chunksize: int = 1) -> float:
    def run() -> int:
        count = 0
        for _ in pool.imap(rot, items, chunksize=chunksize):
            count += 1
        return count

    return _rate(len(items), run)


# -- threads in the parent while a process map is consumed ------------------------------
def threads_while_consuming(kind: str, n: int = 20_000) -> int:
    """Threads alive in this process in the middle of consuming a 2-worker process map."""
    seen = 0
    if kind == "papy":
        it = papy.imap(square, range(n), worker_num=WORKERS)
        for i, _ in enumerate(it):
            if i == n // 2:
                seen = threading.active_count()
        return seen - 1  # the consuming thread itself
    with multiprocessing.Pool(WORKERS) as pool:
        for i, _ in enumerate(pool.imap(square, range(n), chunksize=64)):
            if i == n // 2:
                seen = threading.active_count()
    return seen - 1


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
