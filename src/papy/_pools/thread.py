"""Thread workers: jobs (lists of ranges of tasklets) travel through one
``queue.SimpleQueue``.

What one step of the feeding submits is handed out at the next ``pump`` as
one job per thread (a fair share each), so a queue operation and a wake-up
cost per job, not per range. Worker threads evaluate a range with ``map`` (as
process workers do), deliver its results to the scheduler as one batch and
wake the driving thread once a job; the driving thread only waits (``pump``)
while they work.
"""

from __future__ import annotations

import os
import queue
import threading
from sys import getsizeof
from time import monotonic

from .._serialize import located_tb, revive, where, wrap_base_exception
from . import INIT, TaskDef, TaskDefs, WorkerStats, _child
from ._child import _evaluate_range

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

    from . import Fallback, Sink
    from ._io import Waker

_STOP = None


def _in_thread(exc: BaseException, where: str) -> tuple[BaseException, str]:
    """An exception of a thread worker: the object itself (nothing is pickled)."""
    tb = located_tb(exc, where)
    return wrap_base_exception(exc, where), tb


def _size(obj: Any) -> float:
    """``sys.getsizeof``: shallow, enough for bytes, str and arrays (0 if it fails)."""
    try:
        return float(getsizeof(obj))
    except Exception:  # noqa: BLE001 - a __sizeof__ of user code
        return 0.0


#: small ranges are timed one in this many (timing costs as much as a tiny item)
MEASURE_EVERY = 16
#: ranges are packed into jobs of about this many tasklets (at least one job per thread)
JOB_ITEMS = 32
#: ranges are packed only while a tasklet is measured to take less than this (seconds)
PACK_BELOW = 20e-6


def _evaluate(
    pool: ThreadPool, d: Any, task: int, first: int, items: list[Any]
) -> tuple[list[Any], dict[int, BaseException] | None]:
    """Evaluate one range in this thread (nothing is pickled)."""
    measure = pool._measure_every <= 1 or len(items) > 8
    if measure:
        t0 = monotonic()
    if len(items) == 1 and not d.args and not d.kwargs:  # the common small case
        try:
            values, errors = [d.func(items[0])], None
        except BaseException as exc:  # noqa: BLE001 - reported at its position
            _child._exit_if_forked(exc, pool._pid)
            values, errors = [None], {0: _in_thread(exc, where(task, first, items[0]))}
        _child._exit_if_forked(None, pool._pid)
    else:
        values, errors = _evaluate_range(
            d.func, d.args, d.kwargs, items, task, first, _in_thread, pool._pid
        )
    if measure:
        pool.measured((monotonic() - t0) / max(1, len(items)), items, values)
    else:
        pool._measure_every -= 1
    if errors:
        return values, {k: revive(exc, tb) for k, (exc, tb) in errors.items()}
    return values, None


def _run(pool: ThreadPool, tasks: TaskDefs, sink: Sink, stats: WorkerStats) -> None:
    """Worker thread loop: evaluate jobs (lists of ranges) until the stop sentinel;
    each range is delivered (and a waiting driver woken) as soon as it is done."""
    get = pool._inbox.get
    put_range, wake = sink.sched.put_range, sink.waker.wake
    if INIT in tasks:  # the map's initializer, once in this thread
        mine = {task: (d.func, d.args, d.kwargs) for task, d in tasks.items()}
        _child.run_initializer(mine)
        tasks = {task: TaskDef(*mine[task], None) for task in mine}
    while True:
        job = get()
        if job is _STOP or pool._closing:
            return
        # the job is timed as a whole: a clock read per range would cost as much
        # as a tiny item (ranges are packed into one job only when they are tiny)
        done = ranges = largest = 0
        started = monotonic()
        try:
            for task, first, items in job:
                if pool._closing:
                    return
                values, errors = _evaluate(pool, tasks[task], task, first, items)
                put_range(task, first, values, errors)
                wake()  # a driver that waits for these wakes now (cheap if none does)
                n = len(items)
                done += n
                ranges += 1
                if n > largest:
                    largest = n
        except BaseException:  # noqa: BLE001 - the map was stopped meanwhile
            return
        finally:
            with pool._done_lock:
                pool._done += done
            if ranges:
                stats.add(done, monotonic() - started, ranges, largest)
            wake()


class ThreadPool:
    """``size`` daemon threads evaluating ranges of tasklets in submission order."""

    kind = "thread"
    measures = True

    def __init__(self, size: int) -> None:
        self.size = size
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._waker: Waker | None = None
        self._item_time = -1.0  # seconds a tasklet takes (moving average, workers write it)
        self._item_bytes = -1.0  # size of an item (moving average of sys.getsizeof)
        self._result_bytes = 0.0  # size of a result (likewise)
        self._measure_every = 0  # small ranges until the next one is timed
        self._batch: list[tuple[int, int, list[Any]]] = []  # submitted, not yet queued
        self._pid = os.getpid()  # the process whose threads these are
        self._submitted = 0  # tasklets submitted (the driving thread counts)
        self._done = 0  # tasklets evaluated (the workers count, under _done_lock)
        self._done_lock = threading.Lock()
        self._closing = False
        self.fallback: Fallback | None = None  # threads are never lost
        self._stats: list[WorkerStats] = []  # one per thread, written by it

    def start(self, tasks: TaskDefs, sink: Sink, waker: Waker, name: str = "papy") -> None:
        # a process forked by a task's function leaves where this loop would go on
        _child.watch_forks()
        self._pid = os.getpid()
        self._waker = waker
        for i in range(self.size):
            stats = WorkerStats(f"thread {i}")
            self._stats.append(stats)
            t = threading.Thread(
                target=_run, args=(self, tasks, sink, stats), name=f"{name}-thread-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def submit_range(self, task: int, first: int, items: list[Any]) -> None:
        """Queued here; handed to the threads by the next ``flush`` (``pump``)."""
        self._submitted += len(items)
        self._batch.append((task, first, items))

    def flush(self) -> None:
        """Hand what was submitted to the threads: a fair share each, as one job
        (one queue operation and one wake-up per thread, not per range)."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        n = len(batch)
        if not 0 <= self._item_time < PACK_BELOW:
            # items of unknown or measurable cost: one job per range, so an idle
            # thread takes the next range instead of it waiting behind a slow one
            jobs = n
        else:
            # tiny items: ranges of about JOB_ITEMS tasklets go on their own,
            # smaller ones are packed (a queue operation costs more than they do)
            items = sum(len(r[2]) for r in batch)
            jobs = max(min(n, self.size), min(n, items // JOB_ITEMS))
        for k in range(jobs):
            self._inbox.put(batch[k * n // jobs : (k + 1) * n // jobs])

    def load(self) -> int:
        """Tasklets queued or being evaluated (as well as the threads' count tells)."""
        return max(0, self._submitted - self._done)

    def pump(self, timeout: float) -> None:
        """Hand out what was submitted; wait until a worker thread delivers (it wakes
        us) or ``timeout`` passes."""
        self.flush()
        assert self._waker is not None
        self._waker.wait(timeout)

    def shutdown(self, timeout: float = 1.0) -> None:
        """Ask every thread to stop; wait up to ``timeout`` for idle ones.

        A thread stuck inside a user function cannot be killed; it is a daemon
        thread, so it never keeps the interpreter from exiting.
        """
        self._closing = True
        try:  # what waits is dropped: its results would be discarded anyway
            while True:
                self._inbox.get_nowait()
        except queue.Empty:
            pass
        for _ in self._threads:
            self._inbox.put(_STOP)
        current = threading.current_thread()
        deadline = monotonic() + timeout
        for t in self._threads:
            if t is not current:
                t.join(max(0.0, deadline - monotonic()))
        self._threads = []

    def measured(self, per_item: float, items: list[Any], values: list[Any]) -> None:
        """(a worker thread) Fold one range's seconds per item, argument and result
        size into the averages (a race between threads only blurs them). Sizes rise
        at once and fall slowly: they bound memory."""
        self._measure_every = MEASURE_EVERY
        t = self._item_time
        self._item_time = per_item if t < 0 else 0.8 * t + 0.2 * per_item
        if items:
            size = _size(items[0])
            b = self._item_bytes
            self._item_bytes = size if size >= b else 0.9 * b + 0.1 * size
        if values:
            size = _size(values[0])
            b = self._result_bytes
            self._result_bytes = size if size >= b else 0.9 * b + 0.1 * size

    def worker_stats(self) -> list[dict[str, Any]]:
        now = monotonic()
        return [stats.snapshot(now) for stats in self._stats]

    def depth(self) -> int:
        """Batches worth holding: one being evaluated and one waiting per thread."""
        return 2 * self.size

    def cost(self) -> tuple[float, float, float] | None:
        """``(seconds, argument bytes, result bytes)`` per tasklet as measured so far
        (None: not yet); sizes as ``sys.getsizeof`` tells."""
        if self._item_time < 0:
            return None
        return self._item_time, max(0.0, self._item_bytes), self._result_bytes

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads)
