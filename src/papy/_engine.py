"""The engine of one started IMap: feeding, driving and the helper thread.

There is no feeder thread and no reader thread per worker. Whoever waits for a
result *drives* the map::

    consumer: next(task) ─► the result is there? ─ yes ─► return it (no lock, no wake-up)
                              │ no
                              ▼
                  drive (one thread at a time; the drive lock):
                    ┌► top up: read inputs in weave order (stride), take buffer slots,
                    │          submit_range() batches to the pool
                    │  the result is there? ─► return it
                    └─ pool.pump(): send queued work, wait for replies (or a wake-up),
                                    deliver them to the scheduler

* The consumer does the feeding and the pool's I/O while it would wait anyway,
  so a result crosses no thread in the parent (process workers), and one
  thread both writes to and reads from every worker: full pipes cannot deadlock.
* A **helper thread** drives only when no consumer does: after ``HELPER_DELAY``
  without one, while tasklets are in flight or the buffer has room (a slow
  consumer, a consumer that polls with timeouts, nobody reading yet). A
  consumer that comes back takes the drive over (``handover``).
* Inputs that are plain containers (list, tuple, range, ...) and chained tasks
  (another task of the same map) are read by the driving thread. Any other
  iterable may block or run arbitrary code, so a small **input thread** reads
  it ahead (at most one batch ahead): a blocked input never holds up results,
  timeouts or ``stop()``.

Nothing here holds a reference to the IMap, so an abandoned IMap is
garbage-collected and shuts its workers down.
"""

from __future__ import annotations

import threading
from collections import deque
from itertools import islice
from time import monotonic

from . import _scheduler
from ._errors import InputError, SchedulerClosed
from ._log import logger

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["Run", "Failed", "SourceInput", "ThreadedInput", "ChainedInput", "reads_inline"]

#: a consumer that has not driven for this long (s) leaves the driving to the helper
HELPER_DELAY = 0.005
#: longest sleep of an idle helper (s)
HELPER_IDLE = 0.1
#: longest single wait of a driving thread (s): it re-checks close, deadlock and signals
WAIT_SLICE = 0.05
#: most tasklets one step of the feeding reads at once (whole batches, at least one)
MAX_SPAN = 1024
#: with chunksize='auto', a batch is about this many seconds of a worker's time ...
TARGET_BATCH = 0.002
#: ... and at most this many bytes of pickled arguments
MAX_BATCH_BYTES = 1 << 20
#: no more tasklets are submitted while those in flight hold this many bytes of
#: pickled arguments (as measured by the pool): the buffer bounds the count of
#: results, this the memory of work on its way
MAX_IN_FLIGHT_BYTES = 8 << 20


class Failed:
    """Marks an input position whose reading (or upstream task) failed."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _input_error(exc: BaseException) -> Failed:
    if isinstance(exc, SchedulerClosed):  # an upstream map was stopped
        return Failed(exc)
    err = InputError(f"the input iterable raised {exc!r}")
    err.__cause__ = exc
    return Failed(err)


_PLAIN: tuple[Any, ...] = (
    iter([]),
    iter(()),
    iter(range(0)),
    iter(range(2**64)),
    iter(""),
    iter("\u20ac"),
    iter(b""),
    iter(bytearray()),
    iter({}),
    iter({}.values()),
    iter({}.items()),
    iter(set()),
    reversed([]),
    reversed(range(0)),
    reversed(()),
)
_INLINE_TYPES: frozenset[type] = frozenset(type(it) for it in _PLAIN)
del _PLAIN


def reads_inline(iterator: Any) -> bool:
    """True for iterators over plain containers: reading them runs no user code and
    never blocks, so the driving thread reads them itself."""
    return type(iterator) in _INLINE_TYPES


class SourceInput:
    """An input read by the driving thread (a plain container)."""

    __slots__ = ("_it",)
    chained = False
    read_ahead = False

    def __init__(self, it: Iterator[Any]) -> None:
        self._it = it

    def read(self, n: int, stopping: bool) -> tuple[list[Any], bool]:
        """Up to ``n`` items and whether the input ended; a failure ends a batch."""
        if stopping:
            return [], True
        items: list[Any] = []
        try:
            items.extend(islice(self._it, n))
        except BaseException as exc:  # noqa: BLE001 - that item's error; reading goes on after it
            items.append(_input_error(exc))
            return items, False
        return items, len(items) < n

    def deadline(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class ThreadedInput:
    """An input read ahead by its own thread: any iterable that may block or run user code.

    At most ``limit`` items are held (the batch size), so the input is read at
    most one batch ahead of the buffer. The thread ends at the end of the
    input, or when the map stops (unless it is blocked inside the iterable:
    then it ends when the iterable returns).
    """

    chained = False
    read_ahead = True

    def __init__(self, it: Iterator[Any], limit: int, wake: Any, name: str) -> None:
        self._it = it
        self._limit = max(1, limit)
        self._wake = wake
        self._items: deque[Any] = deque()
        self._ended = False
        self._stop = False
        self._wanted = 0  # items the driving thread waits for (0: none)
        self._room = threading.Condition(threading.Lock())  # notified when items are taken
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        items, room, limit = self._items, self._room, self._limit
        it = self._it
        try:
            while True:
                with room:
                    while len(items) >= limit and not self._stop:
                        room.wait()
                    if self._stop:
                        return
                    free = limit - len(items)
                wanted_at = monotonic()
                for _ in range(free):
                    try:
                        item = next(it)
                    except StopIteration:
                        self._ended = True
                        return
                    except BaseException as exc:  # noqa: BLE001 - that item's error;
                        item = _input_error(exc)  # reading goes on after it
                    items.append(item)
                    wanted = self._wanted
                    if wanted and (len(items) >= wanted or monotonic() - wanted_at > 0.002):
                        self._wanted = 0
                        self._wake()
                    if self._stop:
                        return
        finally:
            self._it = None  # type: ignore[assignment]
            if self._wanted or self._ended:
                self._wanted = 0
                self._wake()

    def read(self, n: int, stopping: bool) -> tuple[list[Any], bool]:
        items = self._items
        if stopping:  # what was read is evaluated; nothing more is read
            self.close()
            out = self._take(len(items))
            return out, not items  # after a failure, the rest comes with the next batch
        was_full = len(items) >= self._limit
        out = self._take(n)
        if was_full and out:
            with self._room:
                self._room.notify()
        if not out and not self._ended and n > 0:
            self._wanted = n
            if items:  # arrived meanwhile
                self._wanted = 0
                return self.read(n, stopping)
        return out, self._ended and not items

    def _take(self, n: int) -> list[Any]:
        """Up to ``n`` items read ahead; a failure ends a batch."""
        items = self._items
        out: list[Any] = []
        while items and len(out) < n:
            item = items.popleft()
            out.append(item)
            if type(item) is Failed:
                break
        return out

    def deadline(self) -> float | None:
        return None

    def close(self) -> None:
        with self._room:
            self._stop = True
            self._room.notify()


class ChainedInput:
    """An input that is another task of the same map: its results, read from the core.

    ``timeout`` is the upstream iterator's: when its next result takes longer,
    the position is skipped (``skip=True``, it becomes a ``TimeoutError`` at the
    same position downstream) or waited for further.
    """

    __slots__ = ("_sched", "upstream", "_timeout", "_tracked", "_since")
    chained = True
    read_ahead = False

    def __init__(
        self, sched: Any, upstream: int, timeout: float | None, tracked: dict[int, Any] | None
    ) -> None:
        self._sched = sched
        self.upstream = upstream
        self._timeout = timeout
        self._tracked = tracked
        self._since = -1.0  # since when a read found nothing (for the timeout)

    def read(self, n: int, stopping: bool) -> tuple[list[Any], bool]:
        RESULT, FINISHED = _scheduler.RESULT, _scheduler.FINISHED
        take, tracked = self._sched.try_result, self._tracked
        out: list[Any] = []
        while len(out) < n:
            got = take(self.upstream)
            if got is None:
                break
            status, index, value = got
            if status == FINISHED:
                self._since = -1.0
                return out, True
            if tracked is not None:
                tracked[index] = value
            if status == RESULT:
                out.append(value)
            else:
                out.append(Failed(value))
                break
        if out:
            self._since = -1.0
        elif self._timeout is not None:
            now = monotonic()
            if self._since < 0:
                self._since = now
            elif now - self._since >= self._timeout:
                self._since = now
                err = self._sched.timed_out(self.upstream, self._timeout)
                if getattr(err, "index", None) is not None:  # that position is gone
                    out.append(Failed(err))
        return out, False

    def deadline(self) -> float | None:
        if self._timeout is None or self._since < 0:
            return None
        return self._since + self._timeout

    def close(self) -> None:
        pass


class Run:
    """State of one started run, shared by the IMap, its consumers and its helper."""

    def __init__(
        self,
        sched: Any,
        pool: Any,
        waker: Any,
        inputs: list[Any],
        chunk: int,
        grace: float | None,
        name: str,
        auto: bool = False,
        workers: int = 1,
    ) -> None:
        self.sched = sched
        self.pool = pool
        self.waker = waker
        self.inputs = inputs
        # chunksize='auto': ``chunk`` follows the measured cost of an item, up to
        # ``chunk_cap``; until the pool has measured one, few tasklets go out (a probe).
        self.auto = auto
        self.chunk_cap = chunk
        self.measures = getattr(pool, "cost", None) is not None
        self.chunk = chunk if not auto else (1 if self.measures else min(chunk, 16))
        self.probing = auto and self.measures
        self.probe_limit = 4 * workers
        self.item_bytes = 0.0  # measured bytes of pickled arguments per tasklet
        self.grace = grace
        self.name = name
        self.single = len(inputs) == 1
        self.kept: list[list[Any]] = [[] for _ in inputs]  # read, not yet submitted
        self.ended = [False] * len(inputs)
        self.stopping = False  # stop(ends=...): end the inputs, finish what was read
        self.feeder_waiting = False
        self.failure: BaseException | None = None  # why the helper failed, if it did
        self.shut = False
        self.lock = threading.Lock()  # guards shut
        self.started = monotonic()
        # Driving: one thread at a time holds drive_lock.
        self.drive_lock = threading.Lock()
        self.driver = 0  # ident of the driving thread (0: none)
        self.helper_driving = False
        self.handover = False  # a consumer wants the helper to stop driving
        self.last_drive = monotonic()
        self.waiting = 0  # consumers waiting while another thread drives
        self.consumer_wait = 0.0  # seconds consumers spent waiting for results
        # A consumer that takes ready results (not driving) tops the buffer up once a
        # batch (and a quarter of the buffer) is free; -1: off until the next drive.
        self._refill_level = self.refill_level = 0
        self._set_refill_level()
        self._helper_stop = threading.Event()
        self._helper: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Start the input threads and the helper; feed the first batches now."""
        for inp in {id(inp): inp for inp in self.inputs}.values():
            if isinstance(inp, ThreadedInput):
                inp.start()
        self._kick()
        self._helper = threading.Thread(target=_help, args=(self,), name=f"{self.name}-helper")
        self._helper.daemon = True
        self._helper.start()

    def _kick(self) -> None:
        with self.drive_lock:
            self.driver = threading.get_ident()
            try:
                self.top_up()
                self.pool.pump(0)
            except SchedulerClosed:
                pass
            finally:
                self.driver = 0
                self.last_drive = monotonic()

    def shutdown(self, timeout: float = 1.0) -> None:
        """Close the scheduler (waking every waiter) and stop the workers. Idempotent."""
        with self.lock:
            if self.shut:
                return
            self.shut = True
        self._helper_stop.set()
        self.sched.close()
        self.waker.arm()
        self.waker.wake()
        for inp in self.inputs:
            inp.close()
        mine = self.driver == threading.get_ident()
        locked = mine or self.drive_lock.acquire(timeout=timeout + 1.0)
        try:
            self.pool.shutdown(timeout)
        finally:
            if locked:  # nobody polls it: a closed map is never driven again
                self.waker.close()
                if not mine:
                    self.drive_lock.release()
        helper = self._helper
        if helper is not None and helper is not threading.current_thread():
            helper.join(timeout)

    def _set_refill_level(self) -> None:
        buffer = self.sched.buffer
        self._refill_level = self.refill_level = buffer - max(self.chunk, buffer // 4)

    def _retune(self) -> None:
        """Take the pool's measurements: the bytes of an item (the in-flight limit)
        and, with chunksize='auto', batches of about TARGET_BATCH seconds of work
        and at most MAX_BATCH_BYTES of arguments."""
        cost = self.pool.cost() if self.measures else None
        if cost is None:
            return
        self.probing = False
        seconds, nbytes = cost
        self.item_bytes = nbytes
        if not self.auto:
            return
        chunk = float(self.chunk_cap)
        if seconds > 0:
            chunk = min(chunk, TARGET_BATCH / seconds)
        if nbytes > 0:
            chunk = min(chunk, MAX_BATCH_BYTES / nbytes)
        new = max(1, int(chunk))
        if new != self.chunk:
            self.chunk = new
            self._set_refill_level()

    # -- feeding ----------------------------------------------------------------
    def top_up(self) -> None:
        """Read inputs in weave order and submit tasklets while buffer slots are free.

        Per turn of the weave it reads up to ``min(chunk, turn_left)`` items of
        the task, *then* takes slots (reading first lets a chained task free the
        slots of the upstream results it reads), submits as many as it got slots
        for as one batch, and keeps the rest for the next time. The input is
        read at most ``buffer + chunk`` items ahead of the consumer. Stops, and
        the weave waits, where a task's input has nothing ready.
        """
        sched = self.sched
        next_task, turn_left = sched.next_task, sched.turn_left
        acquire, submit_many, put_result = sched.acquire_slots, sched.submit_many, sched.put_result
        submit_range = self.pool.submit_range
        chunk, single, stopping = self.chunk, self.single, self.stopping
        while True:
            if self.probing and sched.in_flight >= self.probe_limit:
                return  # chunksize='auto' before the first measurement
            if self.item_bytes and sched.in_flight * self.item_bytes >= MAX_IN_FLIGHT_BYTES:
                return  # enough work on its way; more goes out as it comes back
            task = next_task()
            if task < 0:
                return
            inp = self.inputs[task]
            items = self.kept[task]
            # As many whole batches as there are free slots (at least one batch: it
            # waits in `kept` if it finds no slot); one task's consecutive turns are
            # its own, so they may span turns.
            free = sched.buffer - sched.buffer_used
            want = chunk if free <= chunk else min(free - free % chunk, max(chunk, MAX_SPAN))
            if not single:
                want = min(want, turn_left())
            ended = self.ended[task]
            if not ended and len(items) < want and not (items and type(items[-1]) is Failed):
                n = want - len(items)
                if inp.read_ahead and not stopping:  # it reads ahead itself: take no more
                    n = min(n, free)  # than there is room for
                got, ended = inp.read(n, stopping and not inp.chained)
                if got:
                    items.extend(got)
                self.ended[task] = ended
            if not items:
                if ended:
                    sched.input_done(task)
                    continue
                return  # the weave waits for this task's input
            need = len(items)
            got_slots = acquire(need, 0)
            if not got_slots:
                self.kept[task] = items
                if not self.feeder_waiting:
                    self.feeder_waiting = True
                    sched.set_feeder_waiting(True)
                return
            if self.feeder_waiting:
                self.feeder_waiting = False
                sched.set_feeder_waiting(False)
            k = min(got_slots, turn_left())
            first = submit_many(task, k)
            left = got_slots - k
            while left:  # (one task only) the rest of the batch, turn by turn
                k = min(left, turn_left())
                submit_many(task, k)
                left -= k
            # Reading stops at a failed item, so only the last one can have failed.
            last = items[got_slots - 1]
            n_ok = got_slots - 1 if type(last) is Failed else got_slots
            if n_ok:
                if n_ok <= chunk:
                    submit_range(task, first, items if n_ok == need else items[:n_ok])
                else:  # one range per batch: the unit of work, of failure and of retry
                    for k in range(0, n_ok, chunk):
                        submit_range(task, first + k, items[k : min(k + chunk, n_ok)])
            if n_ok < got_slots:
                put_result(task, first + n_ok, False, last.exc)
            self.kept[task] = [] if got_slots == need else items[got_slots:]
            if ended and not self.kept[task]:
                sched.input_done(task)
            if got_slots < need:
                return

    def _input_deadline(self) -> float | None:
        deadline = None
        for inp in self.inputs:
            d = inp.deadline()
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        return deadline

    # -- driving ----------------------------------------------------------------
    def refill(self) -> None:
        """(a consumer that took ready results) Submit more work now, without waiting."""
        if self.drive_lock.acquire(False):
            self.driver = threading.get_ident()
            try:
                if self.sched.closed:
                    return
                self._retune()
                submitted = self.sched.in_flight
                self.top_up()
                if self.sched.in_flight == submitted:
                    self.refill_level = -1  # nothing to submit: not again before a drive
                self.pool.pump(0)
            finally:
                self.driver = 0
                self.last_drive = monotonic()
                self.drive_lock.release()
        elif self.helper_driving:
            self.waker.wake()  # the helper tops up

    def wait_for(self, task: int, n: int, timeout: float | None) -> tuple[int, int, Any]:
        """The next result of ``task`` (``n`` = 0) or up to ``n`` of its results
        (``try_values``), driving the map while waiting; like ``get_result``
        otherwise: papy's ``TimeoutError``, ``DeadlockError``, ``SchedulerClosed``."""
        started = monotonic()
        try:
            return self._wait_for(task, n, timeout, started)
        finally:
            self.consumer_wait += monotonic() - started

    def _wait_for(
        self, task: int, n: int, timeout: float | None, started: float
    ) -> tuple[int, int, Any]:
        sched = self.sched
        deadline = None if timeout is None else started + timeout
        me = threading.get_ident()
        while True:
            if self.drive_lock.acquire(False):
                self.driver = me
                try:
                    return self._drive(task, n, deadline, timeout)
                finally:
                    self.driver = 0
                    self.last_drive = monotonic()
                    self.refill_level = self._refill_level
                    self.drive_lock.release()
                    if self.waiting:
                        sched.poke()  # a waiting consumer may take the drive now
            if self.driver == me:
                raise RuntimeError("next() was called on an IMap from inside its own driving")
            # Another thread drives: the helper hands over, another consumer delivers.
            if self.helper_driving:
                self.handover = True
                self.waker.wake()
            seen = sched.changes
            got = sched.try_result(task) if n == 0 else sched.try_values(task, n)
            if got is not None:
                return got  # type: ignore[no-any-return]
            wait = WAIT_SLICE
            if deadline is not None:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    raise sched.timed_out(task, timeout)
                wait = min(wait, remaining)
            self.waiting += 1
            try:
                sched.wait_change(seen, wait)
            finally:
                self.waiting -= 1

    def _drive(
        self, task: int, n: int, deadline: float | None, timeout: float | None
    ) -> tuple[int, int, Any]:
        sched, pool, waker = self.sched, self.pool, self.waker
        take = sched.try_result if n == 0 else sched.try_values
        args = (task,) if n == 0 else (task, n)
        grace = self.grace
        self._retune()
        stuck_since = -1.0
        while True:
            waker.arm()
            try:
                got = take(*args)
                if got is not None:
                    return got  # type: ignore[no-any-return]
                self.top_up()
                got = take(*args)
                if got is not None:
                    return got  # type: ignore[no-any-return]
                now = monotonic()
                wait = WAIT_SLICE
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        pool.pump(0)  # what was submitted goes out, what arrived comes in
                        got = take(*args)
                        if got is not None:
                            return got  # type: ignore[no-any-return]
                        raise sched.timed_out(task, timeout)
                    wait = min(wait, remaining)
                if grace is not None and sched.stuck():
                    if stuck_since < 0:
                        stuck_since = now
                    if now - stuck_since >= grace:
                        raise sched.deadlock_error(task)
                    wait = min(wait, stuck_since + grace - now)
                else:
                    stuck_since = -1.0
                inputs_due = self._input_deadline()
                if inputs_due is not None:
                    wait = min(wait, max(0.0, inputs_due - now))
                pool.pump(wait)
            finally:
                waker.disarm()

    def drive_as_helper(self) -> bool:
        """(helper thread, drive lock held) Drive until a consumer wants to, or nothing
        is left to do. Returns whether there was anything to do."""
        sched, pool, waker = self.sched, self.pool, self.waker
        worked = False
        while not self.handover and not sched.closed:
            waker.arm()
            try:
                self._retune()
                self.top_up()
                if sched.in_flight == 0:
                    return worked
                worked = True
                wait = WAIT_SLICE
                inputs_due = self._input_deadline()
                if inputs_due is not None:
                    wait = min(wait, max(0.0, inputs_due - monotonic()))
                pool.pump(wait)
            finally:
                waker.disarm()
        return worked


def _help(run: Run) -> None:
    """The helper thread: drives the map while no consumer does."""
    stop = run._helper_stop
    sleep = HELPER_DELAY
    try:
        while not stop.wait(sleep):
            sleep = HELPER_DELAY
            since = monotonic() - run.last_drive
            if run.driver or since < HELPER_DELAY:
                sleep = max(0.0005, HELPER_DELAY - since)
                continue
            if not run.drive_lock.acquire(False):
                continue
            run.driver = threading.get_ident()
            run.helper_driving = True
            run.handover = False
            try:
                if not run.drive_as_helper():
                    sleep = HELPER_IDLE  # nothing to do: look again a little later
            finally:
                run.helper_driving = False
                run.handover = False
                run.driver = 0
                run.refill_level = run._refill_level
                run.drive_lock.release()
                if run.waiting:
                    run.sched.poke()
    except SchedulerClosed:
        return
    except BaseException as exc:  # noqa: BLE001 - a bug or a dead pool: end the map loudly
        if run.sched.closed:
            return
        run.failure = exc
        logger().error("%s: the helper thread failed: %r", run.name, exc)
        run.sched.close()
