"""The engine of one started IMap (a :class:`Run`): the consumers' front door,
driving, feeding, measuring, and the helper thread.

There is no feeder thread and no reader thread per worker. Whoever waits for a
result *drives* the map::

    the front door (Run.next / outcome; imap's iterator and Run.drain use take):
      a result of the task's last batch is ready? ─ yes ─► return it (a deque pop)
        │ no
      take(task, n, timeout): n results ready in the core? ─ yes ─► hand them out
        │ no                                                 (a batch; refill)
        ▼
      with run.drive(): (one thread at a time; a consumer, or the helper)
        ┌► retune: the pool's measurements -> batch size, weave, buffer by bytes
        │  top up: read inputs in weave order, take buffer slots, submit_range()
        │          batches to the pool (Run._feed is one step of a turn)
        │  the result is there? ─► return it
        └─ pool.pump(): send queued work, wait for replies (or a wake-up),
                        deliver them to the scheduler

* The consumer does the feeding and the pool's I/O while it would wait anyway,
  so a result crosses no thread in the parent (process workers), and one
  thread both writes to and reads from every worker: full pipes cannot deadlock.
* Every consumer path takes results a batch at a time (``IMap.next``, task
  iterators, ``papy.imap``, Pipers through ``TaskIterator.outcome``), and one
  drain serves ``stop(ends=...)``.
* The defaults follow the work (``Run._retune``): batch sizes from the time a
  worker says it spent, the stride as one batch per worker, the default buffer
  lowered to ``MAX_PENDING_BYTES`` of results, and the work in flight and read
  ahead bounded by bytes (``MAX_IN_FLIGHT_BYTES``, ``READ_AHEAD_BYTES``).
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
from operator import length_hint
from sys import getsizeof
from time import monotonic

from . import _scheduler
from ._errors import InputError, SchedulerClosed
from ._log import logger

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from ._pools import Pool

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
#: ... and at most this many bytes of arguments (or results); it grows by at most this
#: factor per measurement (a batch too large for a slow item would idle the others)
MAX_BATCH_BYTES = 1 << 20
GROWTH = 8
#: no more tasklets are submitted while those in flight hold this many bytes of
#: arguments (as measured by the pool) ...
MAX_IN_FLIGHT_BYTES = 4 << 20
#: ... unless fewer than this many tasklets per worker are in flight (huge items)
MIN_IN_FLIGHT_PER_WORKER = 2
#: besides the batches a pool holds (``depth``), up to this many seconds of work per
#: worker may be in flight: quick items need many in flight to cover a round trip,
#: and a chained task's batch waits behind at most about this much upstream work
IN_FLIGHT_SECONDS = 0.005
#: with the default buffer, the slots (results pending or on their way) hold at
#: most about this many bytes, as measured: the count of the default buffer is
#: lowered to fit, never below tasks x stride
MAX_PENDING_BYTES = 64 << 20
#: a consumer takes up to this many of a task's arrived results from the core at
#: once (at least a batch; with the default stride): results of batches of one come
#: out a run at a time ...
HAND_OUT = 64
#: ... while they weigh at most this many bytes (as measured; unmeasured: a batch)
HAND_OUT_BYTES = 1 << 20
#: an input read ahead by its own thread holds at most this many bytes of items
#: (sys.getsizeof, at least one item) besides at most one batch
READ_AHEAD_BYTES = 8 << 20


#: what one step of a task's turn did (Run._feed): fed it, fed it and took the
#: last free slot, found nothing ready, found no free slot
_FED, _FULL, _NOTHING, _NO_SLOT = 0, 1, 2, 3


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
            # a stopped map read as an input would raise for ever: its error, then the end
            return items, isinstance(exc, SchedulerClosed)
        return items, len(items) < n

    def known(self) -> int:
        """Items it still has (a container knows)."""
        return length_hint(self._it, 0)

    def deadline(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class ThreadedInput:
    """An input read ahead by its own thread: any iterable that may block or run user code.

    It holds at most ``limit`` items (one batch: the driving thread moves the
    limit with the batch size) and at most ``READ_AHEAD_BYTES`` of them as
    ``sys.getsizeof`` tells (at least one item), so the input is read at most
    one batch ahead of the buffer, whatever an item weighs. The thread ends at
    the end of the input, or when the map stops (unless it is blocked inside
    the iterable: then it ends when the iterable returns).
    """

    chained = False
    read_ahead = True

    def __init__(self, it: Iterator[Any], limit: int, wake: Any, name: str) -> None:
        self._it = it
        self._limit = max(1, limit)  # written by the driving thread (set_limit)
        self._wake = wake
        self._items: deque[Any] = deque()  # appended by the reader, popped by the driver
        self._ended = False  # (reader) the input is exhausted
        self._stop = False  # (driver) read no more
        self._wanted = 0  # (driver) items it waits for (0: none); the reader resets it
        # (reader) bytes of an item: quick to rise, slow to fall, so one huge item
        # stops the read-ahead at once
        self.item_bytes = 0.0
        self._room = threading.Condition(threading.Lock())  # notified when items are taken
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _held_limit(self) -> int:
        limit = self._limit
        nbytes = self.item_bytes
        if nbytes > 0:
            limit = min(limit, max(1, int(READ_AHEAD_BYTES / nbytes)))
        return limit

    def set_limit(self, limit: int) -> None:
        """(driving thread) Hold at most ``limit`` items (the batch size)."""
        limit = max(1, limit)
        if limit == self._limit:
            return
        grown = limit > self._limit
        self._limit = limit
        if grown:
            with self._room:
                self._room.notify()

    def _run(self) -> None:
        items, room = self._items, self._room
        it = self._it
        try:
            while True:
                with room:
                    while len(items) >= self._held_limit() and not self._stop:
                        room.wait()
                    if self._stop:
                        return
                wanted_at = monotonic()
                while True:
                    try:
                        item = next(it)
                    except StopIteration:
                        self._ended = True
                        return
                    except BaseException as exc:  # noqa: BLE001 - that item's error;
                        item = _input_error(exc)  # reading goes on after it
                        if isinstance(exc, SchedulerClosed):  # a stopped map as the input:
                            items.append(item)  # its error, then the end (not for ever)
                            self._ended = True
                            return
                    try:
                        size = float(getsizeof(item))
                    except Exception:  # noqa: BLE001 - a __sizeof__ of user code
                        size = 0.0
                    nbytes = self.item_bytes
                    self.item_bytes = size if size >= nbytes else 0.9 * nbytes + 0.1 * size
                    items.append(item)
                    wanted = self._wanted
                    if wanted and (len(items) >= wanted or monotonic() - wanted_at > 0.002):
                        self._wanted = 0
                        self._wake()
                    if self._stop:
                        return
                    if len(items) >= self._held_limit():
                        break
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
        out = self._take(n)
        if out:  # the reader may wait for room (checked under the lock: no lost wake-up)
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

    def known(self) -> int:
        """Items read from the iterable, not taken yet."""
        return len(self._items)

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

    __slots__ = ("_sched", "upstream", "_timeout", "_tracked", "_since", "timed_out")
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
        # (set by the Run) the TimeoutError of a wait for a task (Run.timed_out)
        self.timed_out: Any = lambda task, timeout: sched.timed_out(task, timeout)

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
                err = self.timed_out(self.upstream, self._timeout)
                if getattr(err, "index", None) is not None:  # that position is gone
                    out.append(Failed(err))
        return out, False

    def known(self) -> int:
        return 0  # what the upstream task holds is counted by the Run

    def deadline(self) -> float | None:
        if self._timeout is None or self._since < 0:
            return None
        return self._since + self._timeout

    def close(self) -> None:
        pass


class _Drive:
    """The drive protocol, as a context manager: one thread at a time drives a map
    (feeds it, pumps its pool's I/O); see ``Run.drive``."""

    __slots__ = ("run", "helper", "nothing_to_feed")

    def __init__(self, run: Run, helper: bool) -> None:
        self.run = run
        self.helper = helper
        self.nothing_to_feed = False  # (refill) consumers need not refill before a drive

    def __enter__(self) -> _Drive:
        run = self.run
        run.driver = threading.get_ident()
        if self.helper:
            run.helper_driving = True
            run.handover = False
        return self

    def __exit__(self, *exc_info: Any) -> None:
        run = self.run
        if self.helper:
            run.helper_driving = False
            run.handover = False
        run.driver = 0
        run.last_drive = monotonic()
        run.refill_level = -1 if self.nothing_to_feed else run._refill_level
        run.drive_lock.release()
        if run.waiting:
            run.sched.poke()  # a waiting consumer may take the drive now


class Run:
    """State of one started run, shared by the IMap, its consumers and its helper.

    Who writes what (everything else is set here and only read):

    * the **driving thread** (a consumer waiting for a result, or the helper;
      one at a time, ``drive_lock``, see ``drive``): the feeding state
      (``kept``, ``ended``, ``feeder_waiting``), the measurements and what
      follows them (``chunk``, ``probing``, ``item_time``, ``item_bytes``,
      ``result_bytes``, ``hand_out``, ``_cost``), ``driver``, ``last_drive``,
      ``refill_level``, ``helper_driving``;
    * **consumers**: ``ready`` (the one that finds it empty refills it, any
      pops), ``waiting`` and ``consumer_wait`` (approximate counters),
      ``handover`` (asks the helper to stop driving; the helper resets it);
    * ``IMap.stop``: ``stopping``; ``shutdown``: ``shut`` (under ``lock``);
    * the **helper thread**: ``failure`` (why it failed, if it did);
    * the scheduler and the pool guard their own state; the input threads
      write their own ``ThreadedInput``.
    """

    def __init__(
        self,
        sched: Any,
        pool: Pool,
        waker: Any,
        inputs: list[Any],
        chunk: int,
        grace: float | None,
        name: str,
        auto: bool = False,
        workers: int = 1,
        adaptive: bool = False,
        buffer_cap: int | None = None,
        tracked: dict[int, dict[int, Any]] | None = None,
        bars: dict[int, Any] | None = None,
        skips: list[bool | None] | None = None,
    ) -> None:
        # -- set here, then only read --------------------------------------------
        self.sched = sched
        self.pool = pool
        self.waker = waker  # interrupts the driving thread's wait (pool.pump)
        self.inputs = inputs
        self.workers = max(1, workers)
        self.grace = grace  # deadlock_grace
        self.name = name
        self.single = len(inputs) == 1
        self.started = monotonic()
        # chunksize='auto': ``chunk`` follows the measured cost of an item, up to
        # ``chunk_cap``; until the pool has measured one, few tasklets go out (a probe)
        self.auto = auto
        self.chunk_cap = chunk
        self.measures = pool.measures
        self.probe_limit = 4 * self.workers
        # batches the pool can usefully hold (None: it does not say)
        self.depth: int | None = pool.depth()
        # the default stride: the weave follows the work (a turn is one batch per
        # worker; a task with nothing ready gives its turn up); a given one is exact
        self.adaptive = adaptive
        # the default buffer: a count, lowered to hold at most MAX_PENDING_BYTES
        # (None: the buffer was given, it stays as it is)
        self.buffer_cap = buffer_cap
        # the weave that follows the work never has turns longer than the count of
        # the buffer allows for every task (tasks x stride <= buffer)
        self.stride_max = max(1, (buffer_cap or sched.buffer) // len(inputs))
        # {task: {index: result}} of the tasks tracked, and {task: progress bar}
        # (the IMap's, as they were at start): written at hand-out
        self.tracked = tracked if tracked is not None else {}
        self.bars = bars if bars is not None else {}
        self._postfix_due = 0.0  # (a consumer) when the bars show the workers again
        # per task: does a timeout give the awaited position up (None: the map's skip)
        self.skips = skips if skips is not None else [None] * len(inputs)
        # the inputs read ahead by their own threads
        self.ahead = [inp for inp in {id(i): i for i in inputs}.values() if inp.read_ahead]
        self.lock = threading.Lock()  # guards shut
        self.drive_lock = threading.Lock()  # held by the driving thread
        self._helper_stop = threading.Event()
        self._helper: threading.Thread | None = None

        # -- the driving thread ------------------------------------------------
        self.chunk = chunk if not auto else (1 if self.measures else min(chunk, 16))
        self.probing = auto and self.measures
        self.item_time = -1.0  # seconds of a worker's time per tasklet (-1: not yet)
        self.item_bytes = 0.0  # bytes of an argument (0: not yet)
        self.result_bytes = 0.0  # bytes of a result (0: not yet)
        self.hand_out = self.chunk  # results a consumer takes from the core at once
        self._cost: Any = None  # the pool's last measurements, as taken
        self.kept: list[list[Any]] = [[] for _ in inputs]  # read, not yet submitted
        self.ended = [False] * len(inputs)  # a task's input said it ended
        self.feeder_waiting = False  # the feeding found no free slot (deadlock check)
        self.driver = 0  # ident of the driving thread (0: none)
        self.helper_driving = False
        self.last_drive = monotonic()  # when a drive last ended (the helper waits)
        # A consumer that takes ready results (not driving) tops the buffer up once a
        # batch (and a quarter of the buffer) is free; -1: off until the next drive.
        self._refill_level = self.refill_level = 0
        self._set_refill_level()

        # -- consumers ------------------------------------------------------------
        # per task, results taken from the core a batch at a time and not returned
        # yet (any consumer thread pops; the one that found it empty refills)
        self.ready: list[deque[Any]] = [deque() for _ in inputs]
        self.handover = False  # a consumer wants the helper to stop driving
        self.waiting = 0  # consumers waiting while another thread drives
        self.consumer_wait = 0.0  # seconds consumers spent waiting for results

        # -- stop, shutdown, the helper ----------------------------------------------
        self.stopping = False  # stop(ends=...): end the inputs, finish what was read
        self.shut = False
        self.failure: BaseException | None = None  # why the helper failed, if it did

        self._set_weave()
        for inp in inputs:
            if inp.chained:
                inp.timed_out = self.timed_out
        for inp in self.ahead:  # read ahead one batch: the first is a probe
            inp.set_limit(self.chunk)

    def drive(self, blocking: bool = False, helper: bool = False) -> _Drive | None:
        """Take the drive: ``with run.drive() as d:`` (None if another thread drives
        and ``blocking`` is false). Leaving the block gives it up, re-enables
        refills and wakes the consumers waiting for it."""
        if not self.drive_lock.acquire(blocking):
            return None
        return _Drive(self, helper)

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
        drive = self.drive(blocking=True)
        assert drive is not None
        with drive:
            try:
                self.top_up()
                self.pool.pump(0)
            except SchedulerClosed:
                pass

    def shutdown(self, timeout: float = 1.0) -> None:
        """Close the scheduler (waking every waiter) and stop the workers. Idempotent."""
        with self.lock:
            if self.shut:
                return
            self.shut = True
        self._helper_stop.set()
        self.sched.close()
        for ready in self.ready:  # what no consumer took is dropped with the map
            ready.clear()
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
        """Take the pool's measurements and follow the work with them.

        * the bytes of an argument bound the work in flight and (with the
          default buffer) the slots: at most ``MAX_PENDING_BYTES`` of results
          and arguments;
        * with ``chunksize='auto'``, batches of about ``TARGET_BATCH`` seconds
          of a worker's time and at most ``MAX_BATCH_BYTES`` of arguments or results,
          grown by at most a factor ``GROWTH`` at a time, shrunk at once (and
          at the end of an input whose length is known, its last batches
          share the rest evenly: ``_feed``);
        * with the default stride, a turn of the weave is one batch per worker.
        """
        ahead = 0.0  # what the read-ahead threads weigh (sys.getsizeof), before the pool says
        for inp in self.ahead:
            if inp.item_bytes > ahead:
                ahead = inp.item_bytes
        cost = self.pool.cost() if self.measures else None
        if cost is None:
            if ahead:
                self.item_bytes = ahead
                self._bound_buffer()
            return
        if cost == self._cost and ahead <= self.item_bytes:
            return  # nothing new
        self._cost = cost
        self.probing = False
        seconds, nbytes, rbytes = cost
        self.item_time = seconds
        self.item_bytes = max(nbytes, ahead)
        self.result_bytes = rbytes
        if self.auto:
            chunk = float(self.chunk_cap)
            if seconds > 0:
                chunk = min(chunk, TARGET_BATCH / seconds)
            heaviest = max(nbytes, rbytes)  # a batch's request, or its reply
            if heaviest > 0:
                chunk = min(chunk, MAX_BATCH_BYTES / heaviest)
            new = max(1, min(int(chunk), GROWTH * self.chunk))
            if new != self.chunk:
                self.chunk = new
                self._set_weave()
                self._set_refill_level()
                for inp in self.ahead:
                    inp.set_limit(new)
        # with the default stride, a run of arrived batches of light results is
        # taken at once; an explicit stride keeps the seed's one slot per read
        self.hand_out = self.chunk
        if self.adaptive and 0 < rbytes:
            self.hand_out = max(self.chunk, min(HAND_OUT, int(HAND_OUT_BYTES / rbytes)))
        self._bound_buffer()

    def _set_weave(self) -> None:
        """(the default stride) A turn of the weave is one batch per worker."""
        if self.adaptive:
            stride = max(1, min(self.workers * self.chunk, self.stride_max))
            if stride != self.sched.stride:
                self.sched.set_stride(stride)

    def _bound_buffer(self) -> None:
        """(default buffer) At most MAX_PENDING_BYTES of results in the slots, as measured; never
        below tasks x stride, and lowered only as far as the slots taken (so a
        chained task can always take the slots it frees)."""
        cap = self.buffer_cap
        if cap is None:
            return
        sched = self.sched
        slot = self.result_bytes  # (arguments in flight have their own bound)
        target = cap if slot <= 0 else min(cap, int(MAX_PENDING_BYTES / slot))
        target = max(target, sched.n_tasks * sched.stride, min(cap, 2 * self.workers))
        current = sched.buffer
        if target < current:
            target = max(target, min(current, sched.buffer_used))
        if target != current:
            sched.set_buffer(target)
            self._set_refill_level()

    def _room(self) -> int:
        """Tasklets that may still go out now.

        No more than the pool can usefully hold (``depth`` batches: one running
        and a few queued per worker), so that a batch of a chained task is
        queued behind about one round of its upstream's work, not behind all
        of it; a probe before the first measurement; at most
        MAX_IN_FLIGHT_BYTES of arguments in flight.
        """
        in_flight: int = self.sched.in_flight
        if self.probing:
            return self.probe_limit - in_flight
        if self.depth is None:
            limit = MAX_SPAN + in_flight
        else:
            limit = self.depth * self.chunk
            if self.item_time > 0:  # quick items: enough to cover the way there and back
                limit = max(limit, int(self.workers * IN_FLIGHT_SECONDS / self.item_time))
        nbytes = self.item_bytes
        if nbytes > 0:
            by_bytes = int(MAX_IN_FLIGHT_BYTES / nbytes)
            limit = min(limit, max(MIN_IN_FLIGHT_PER_WORKER * self.workers, by_bytes))
        return limit - in_flight

    # -- feeding ----------------------------------------------------------------
    def top_up(self) -> None:
        """Read inputs in weave order and submit tasklets while buffer slots are free.

        Per turn of the weave it reads up to ``min(batches for the free slots,
        turn_left)`` items of the task, *then* takes slots (reading first lets
        a chained task free the slots of the upstream results it reads),
        submits what it got slots for, at most the rest of the turn, in
        batches, and keeps the rest for the next time. The input is read at
        most ``buffer + chunk`` items ahead of the consumer.

        Where a task's input has nothing ready (or no slot is free), the exact
        weave (a stride given) stops and waits for it (unless it is a chained
        task whose upstream has nothing on its way: that wait would never
        end); the weave that follows the work (the default stride) ends that
        task's turn and feeds the next task, and stops only after a whole
        round that fed nothing.
        """
        sched = self.sched
        moves_on = self.adaptive and not self.single
        n_inputs = len(self.inputs)
        idle = 0  # turns in a row that fed nothing (the weave that follows the work)
        blocked = False  # a task had items and found no free slot
        try:
            while True:
                room = self._room()
                if room <= 0:
                    return  # enough work on its way; more goes out as it comes back
                task = sched.next_task()
                if task < 0:
                    return
                fed = self._feed(task, room)
                if fed <= _FULL:
                    blocked = False
                    idle = 0
                    if fed == _FULL and not moves_on:
                        return  # no slot is left (and no other task can free one)
                    continue
                if fed == _NO_SLOT:
                    blocked = True
                if not moves_on and not (fed == _NOTHING and self._starved(task)):
                    return  # the exact weave waits for this task's input or a slot
                idle += 1
                if idle >= n_inputs:
                    return  # a whole round fed nothing
                sched.end_turn()
        finally:
            if blocked != self.feeder_waiting:
                self.feeder_waiting = blocked
                sched.set_feeder_waiting(blocked)

    def _starved(self, task: int) -> bool:
        """A chained task whose upstream has nothing on its way: only the upstream's
        turn can bring more (its results were read by someone else), so even the
        exact weave moves on rather than wait for ever."""
        inp = self.inputs[task]
        return inp.chained and self.sched.outstanding(inp.upstream) == 0  # type: ignore[no-any-return]

    def _feed(self, task: int, room: int) -> int:
        """One step of ``task``'s turn: read, take slots, submit (see ``top_up``).

        Returns ``_FED`` (something was submitted, or the task's input ended),
        ``_FULL`` (submitted, and the buffer has no free slot left), ``_NOTHING``
        (its input has nothing ready) or ``_NO_SLOT``.
        """
        sched, chunk, stopping = self.sched, self.chunk, self.stopping
        items = self.kept[task]
        if self.auto and chunk > 1 and type(self.inputs[task]) is SourceInput:
            # a container says how much is left: its last batches share it evenly
            # among the workers, so that none finishes long after the others
            left = self.inputs[task].known() + len(items)
            if left < 2 * self.workers * chunk:
                chunk = max(1, -(-left // (2 * self.workers)))
        free = sched.buffer - sched.buffer_used
        # as many whole batches as there are free slots (at least one batch: it
        # waits in `kept` if it finds no slot)
        want = chunk if free <= chunk else min(free - free % chunk, max(chunk, MAX_SPAN))
        want = min(want, max(room, 1))
        left = sched.turn_left()
        if not self.single:
            want = min(want, left)
        ended = self.ended[task]
        if not ended and len(items) < want and not (items and type(items[-1]) is Failed):
            inp = self.inputs[task]
            n = want - len(items)
            if inp.read_ahead and not stopping:  # it reads ahead itself: take no more
                n = min(n, free)  # than there is room for
            if n > 0 or (stopping and not inp.chained):
                got, ended = inp.read(max(n, 0), stopping and not inp.chained)
                if got:
                    items.extend(got)
                self.ended[task] = ended
            elif not items:
                return _NO_SLOT  # nothing taken from its read-ahead: no free slot
        if not items:
            if ended:
                sched.input_done(task)
                return _FED
            return _NOTHING
        need = len(items) if self.single else min(len(items), left)
        got_slots = sched.acquire_slots(min(need, max(room, 1)), 0)
        if not got_slots:
            return _NO_SLOT
        done = min(got_slots, left)
        first = sched.submit_many(task, done)
        while done < got_slots:  # (one task only) the rest, turn by turn
            k = min(got_slots - done, sched.turn_left())
            sched.submit_many(task, k)
            done += k
        # Reading stops at a failed item, so only the last one can have failed.
        last = items[got_slots - 1]
        n_ok = got_slots - 1 if type(last) is Failed else got_slots
        submit_range = self.pool.submit_range
        if n_ok:
            if n_ok <= chunk:
                submit_range(task, first, items if n_ok == len(items) else items[:n_ok])
            else:  # one range per batch: the unit of work, of failure and of retry
                for k in range(0, n_ok, chunk):
                    submit_range(task, first + k, items[k : min(k + chunk, n_ok)])
        if n_ok < got_slots:
            sched.put_result(task, first + n_ok, False, last.exc)
        rest = [] if got_slots == len(items) else items[got_slots:]
        self.kept[task] = rest
        if ended and not rest:
            sched.input_done(task)
        return _FULL if got_slots < need or got_slots >= free else _FED

    def known_ahead(self, task: int) -> int:
        """Positions of ``task`` past its submitted ones that exist: read from its input
        and not submitted yet, or (a chained task) on their way through its upstream
        task. A timeout with ``skip=True`` may give one of them up; a position its
        input has not given yet cannot be."""
        n = 0
        for _ in range(len(self.inputs)):  # up a chain, at most through every task
            inp = self.inputs[task]
            n += len(self.kept[task]) + int(inp.known())
            if not inp.chained:
                return n
            task = inp.upstream
            n += int(self.sched.outstanding(task))
        return n

    def timed_out(self, task: int, timeout: float | None) -> BaseException:
        """The TimeoutError of a wait for ``task`` (if it skips, the awaited position
        is given up if it exists)."""
        return self.sched.timed_out(  # type: ignore[no-any-return]
            task, timeout, self.known_ahead(task), self.skips[task]
        )

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
        drive = self.drive()
        if drive is None:
            if self.helper_driving:
                self.waker.wake()  # the helper tops up
            return
        with drive:
            if self.sched.closed:
                return
            self._retune()
            submitted = self.sched.in_flight
            self.top_up()
            # nothing to submit: not again before a drive
            drive.nothing_to_feed = self.sched.in_flight == submitted
            self.pool.pump(0)

    # -- consuming: the front door ---------------------------------------------------
    def next(self, task: int, timeout: float | None) -> Any:
        """The next result of ``task``, or raise: its item's exception (iteration can
        go on), ``StopIteration`` at its end, and what ``take`` raises.

        Results are taken from the core a run at a time (up to ``hand_out``: a
        batch, or a run of arrived batches of light results) and handed out one
        by one, to whichever consumer of the task asks first."""
        ready = self.ready[task]
        if ready:
            return ready.popleft()
        status, value = self._refill(task, timeout)
        if status == _scheduler.RESULT:
            return value
        if status == _scheduler.FINISHED:
            raise StopIteration
        raise value

    def outcome(self, task: int, timeout: float | None) -> tuple[bool, Any]:
        """Like ``next``, but an item's exception is returned, not raised: ``(True,
        result)`` or ``(False, exception)``; whatever is raised is not an item's."""
        ready = self.ready[task]
        if ready:
            return True, ready.popleft()
        status, value = self._refill(task, timeout)
        if status == _scheduler.FINISHED:
            raise StopIteration
        return status == _scheduler.RESULT, value

    def _refill(self, task: int, timeout: float | None) -> tuple[int, Any]:
        """Take ``task``'s next run of results (waiting at most ``timeout``):
        ``(status, value)`` of its first result, the rest left in ``ready``."""
        n = self.hand_out
        if task in self.tracked:  # tracked as it is returned: one at a time
            n = 1
        status, index, value = self.take(task, n if n > 1 else 0, timeout)
        if status == _scheduler.RESULT and n > 1:
            if self.tracked or self.bars:
                self.handed(task, index, value)
            ready = self.ready[task]
            ready.extend(value)
            return status, ready.popleft()
        if status != _scheduler.FINISHED and (self.tracked or self.bars):
            self.handed(task, index, (value,))
        return status, value

    def handed(self, task: int, first: int, values: Any) -> None:
        """Results ``first``, ``first + 1``, ... of ``task`` were handed out: track them
        and move its progress bar."""
        tracked = self.tracked.get(task)
        if tracked is not None:
            for index, value in enumerate(values, first):
                tracked[index] = value
        bar = self.bars.get(task)
        if bar is not None:
            bar.update(len(values))
            now = monotonic()
            if now >= self._postfix_due:
                self._postfix_due = now + 0.5
                bar.set_postfix_str(self.workers_summary(), refresh=False)

    def workers_summary(self) -> str:
        """What a progress bar shows of the workers: how busy, in batches of what."""
        stats = self.pool.worker_stats()
        if not stats:
            return f"{self.workers} workers"
        busy = sum(s["busy"] for s in stats)
        total = busy + sum(s["idle"] for s in stats)
        items = sum(s["items"] for s in stats)
        batches = sum(s["batches"] for s in stats)
        share = 100.0 * busy / total if total > 0 else 0.0
        mean = items / batches if batches else 0.0
        return f"{len(stats)} workers {share:.0f}% busy, batches of {mean:.0f}"

    def drain(self, ends: list[int]) -> None:
        """A graceful stop: read no more input, let what was read go through every task,
        and hand out (to nobody: tracked only) the results of ``ends``, in turns of
        ``stride``, until each ends (or the map is stopped, or a deadlock)."""
        self.stopping = True
        open_ends = list(ends)
        while open_ends:
            for task in list(open_ends):
                self.ready[task].clear()  # handed out already
                for _ in range(max(1, self.sched.stride)):
                    try:
                        status, index, value = self.take(task, 0, None)
                    except (SchedulerClosed, RuntimeError):  # stopped, or a deadlock
                        return
                    if status == _scheduler.FINISHED:
                        open_ends.remove(task)
                        break
                    if self.tracked or self.bars:
                        self.handed(task, index, (value,))

    def take(self, task: int, n: int, timeout: float | None) -> tuple[int, int, Any]:
        """The consumer's front door: ``(status, index, value)`` of ``task``'s next
        result (``n`` = 0), or up to ``n`` of its results at once (``n`` >= 1:
        ``value`` is a list of successful results; a failure comes alone).

        Takes what is ready without a lock or a wake-up (topping the buffer up
        when a batch of slots is free), else drives the map until it is there.
        Raises papy's ``TimeoutError`` after ``timeout`` seconds,
        ``DeadlockError``, ``SchedulerClosed`` (``RuntimeError`` if the helper
        failed); ``KeyboardInterrupt`` stops the workers first.
        """
        sched = self.sched
        try:
            got = sched.try_result(task) if n == 0 else sched.try_values(task, n)
            if got is None:
                return self.wait_for(task, n, timeout)
            if sched.buffer_used <= self.refill_level:
                self.refill()
            return got  # type: ignore[no-any-return]
        except SchedulerClosed:
            if self.failure is not None:
                raise RuntimeError(f"the IMap's helper failed: {self.failure!r}") from self.failure
            raise
        except KeyboardInterrupt:
            self.shutdown(0.2)
            raise

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
            drive = self.drive()
            if drive is not None:
                with drive:
                    return self._drive(task, n, deadline, timeout)
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
                    raise self.timed_out(task, timeout)
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
        stuck_since = -1.0
        while True:
            waker.arm()
            try:
                got = take(*args)
                if got is not None:
                    return got  # type: ignore[no-any-return]
                self._retune()
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
                        raise self.timed_out(task, timeout)
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
            drive = run.drive(helper=True)
            if drive is None:
                continue
            with drive:
                if not run.drive_as_helper():
                    sleep = HELPER_IDLE  # nothing to do: look again a little later
    except SchedulerClosed:
        return
    except BaseException as exc:  # noqa: BLE001 - a bug or a dead pool: end the map loudly
        if run.sched.closed:
            return
        run.failure = exc
        logger().error("%s: the helper thread failed: %r", run.name, exc)
        run.sched.close()
