"""Pure-Python twin of papy's scheduling core (the compiled one is ``papy._sched``).

This module is the specification: ``_sched.pyx`` has the same classes, methods,
errors and messages, and the whole test suite runs against both (PEP 399).
Nothing but the selector ``papy._scheduler`` imports either module.

Data flow through one :class:`Scheduler` (one IMap)::

    task inputs ──► feeding side ──────────────► workers ──► put_range() / put_result()
                     │ next_task()  weave: stride          │
                     │ acquire_slot(s)() (the buffer)      ▼
                     │ submit(_many)() takes the indices  per-task result store: chunks
                     ▼                                    (ordered: by first index,
                 buffer slots ◄──── freed at hand-out ◄── unordered: by arrival)
                                                          │
                     try_result() / try_values() ◄────────┘ consumers (non-blocking)
                     get_result() / get_many()             (blocking, with timeouts)

* The **weave** visits tasks in the order they were added, ``stride`` tasklets
  each, skipping tasks whose input is exhausted.
* The **buffer** counts tasklets submitted and not yet handed out: a slot is
  taken before submission and freed when the result is handed to a consumer
  (or when its position is skipped), not when it is computed.
* Results are stored as **chunks**: ``put_range`` stores a whole batch of
  consecutive results as one entry, and ``try_values`` hands out a run of them
  as one list (a slice), so a batch costs a few operations, not a few per item.
* A **skip** (``skip=True`` and a timeout) drops one *existing* position for
  good: a position that has been submitted, or one the feeding side knows of
  (read from the input, on its way through an upstream task) and says so
  (``timed_out(..., ahead=n)``). Its index is remembered, so a late result is
  discarded on arrival and can never be returned later. A wait that times out
  before its position exists skips nothing.
* A **deadlock** (the feeding side cannot get a slot, nothing is being
  computed, and the awaited result is not there) is reported after
  ``deadlock_grace`` seconds instead of blocking forever. It assumes the
  results of one map are read by a single consuming thread (plus the map's own
  feeding of chained tasks).

Locking: one mutex guards all state; two conditions share it. Every wait is
sliced (``WAIT_SLICE``) so that it notices ``close()`` and lets signals such as
``KeyboardInterrupt`` through.
"""

from __future__ import annotations

import threading
from collections import deque
from time import monotonic

from ._errors import DeadlockError, SchedulerClosed, timeout_error_class

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Scheduler", "Outlet", "RESULT", "ERROR", "FINISHED", "WAIT_SLICE", "IMPLEMENTATION"]

IMPLEMENTATION = "python"

#: ``get_result`` status codes
RESULT = 0
ERROR = 1
FINISHED = 2

#: longest single wait, in seconds, before a waiter re-checks close and signals
WAIT_SLICE = 0.05

_MSG_CLOSED = "the map was stopped"
_MSG_DEADLOCK = (
    "deadlock: task {task} waits for its next result, but the buffer ({buffer} slots) "
    "is full of results of other tasks that nobody is reading, and nothing is being "
    "computed. With a buffer of at least number of tasks x stride ({need}), read at "
    "most `stride` results of one task in a row and result n of task N before result "
    "n of task N+1; reading in exact weave order works with any buffer >= stride; "
    "reading one task to its end first needs a buffer that holds the other tasks' "
    "results."
)
_MSG_TIMEOUT = "no result of task {task} within {timeout} s"
_FINISHED_TUPLE = (FINISHED, -1, None)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Chunk:
    """Results of consecutive tasklets ``first``, ``first + 1``, ... of one task.

    ``errors`` maps an offset to the exception of that position (None: no
    errors); ``pos`` is the offset of the next result to hand out.
    """

    __slots__ = ("first", "values", "errors", "pos")

    def __init__(self, first: int, values: list[Any], errors: dict[int, Any] | None) -> None:
        self.first = first
        self.values = values
        self.errors = errors
        self.pos = 0


class Scheduler:
    """Stride weave, buffer accounting and per-task result queues of one map.

    Parties: one *feeding* side (``next_task``, ``input_done``, ``acquire_slot(s)``,
    ``turn_left``, ``submit(_many)``, ``set_feeder_waiting``), any number of
    *delivering* threads (``put_result``, ``put_many``, ``put_range``) and
    *consumers* (``try_result``, ``try_values``, ``get_result``, ``get_many``).
    ``wait_change`` and ``poke`` let a thread that drives the map sleep until
    something happens.
    """

    def __init__(
        self,
        n_tasks: int,
        stride: int,
        buffer: int,
        ordered: bool = True,
        skip: bool = False,
        deadlock_grace: float | None = 0.5,
    ) -> None:
        _check_int("n_tasks", n_tasks, 1)
        _check_int("stride", stride, 1)
        _check_int("buffer", buffer, 1)
        if buffer < stride:
            raise ValueError(f"buffer must be >= stride ({stride}), got {buffer}")
        if deadlock_grace is not None and not deadlock_grace >= 0:
            raise ValueError(f"deadlock_grace must be >= 0 or None, got {deadlock_grace}")
        self._n = n_tasks
        self._stride = stride
        self._buffer = buffer
        self._ordered = bool(ordered)
        self._skip = bool(skip)
        self._grace = deadlock_grace

        self._mutex = threading.Lock()
        # Notified by a delivery, input_done, close, a skip, poke, when the feeding
        # side starts waiting for a slot (so consumers re-check for deadlock), and
        # - while somebody waits in wait_change - when a slot is freed.
        self._results_changed = threading.Condition(self._mutex)
        # Notified whenever a buffer slot is freed, and by close.
        self._slot_freed = threading.Condition(self._mutex)
        self._changes = 0  # counts every notification: wait_change's sequence
        self._change_waiters = 0

        n = n_tasks
        self._submitted = [0] * n  # next index to submit
        self._next_out = [0] * n  # ordered: next index to hand out
        self._returned = [0] * n  # results handed out (errors included)
        self._failed = [0] * n  # ERROR results handed out
        self._n_skipped = [0] * n  # positions skipped
        self._live = [0] * n  # submitted, not arrived, not skipped
        self._task_in_flight = [0] * n  # submitted, not arrived
        self._n_ready = [0] * n  # arrived, not handed out
        self._input_done = [False] * n
        # ordered: first index -> _Chunk; unordered: deque of _Chunk by arrival
        self._ready: list[Any] = [({} if self._ordered else deque()) for _ in range(n)]
        self._current: list[_Chunk | None] = [None] * n  # the chunk being handed out
        # in-flight indices as disjoint intervals: start -> end (exclusive); a
        # submission next to the previous one extends it, so a batch is one entry
        self._pending: list[dict[int, int]] = [{} for _ in range(n)]
        self._last_pending = [-1] * n  # start of the interval the last submission went to
        self._skipped: list[set[int]] = [set() for _ in range(n)]  # skipped, in flight
        # skipped before they were submitted (a timeout waited for a position its
        # input had not given yet); such a position takes a slot when it is
        # submitted and frees it when its result arrives (and is dropped)
        self._ahead: list[set[int]] = [set() for _ in range(n)]

        self._turn = 0
        self._repeat = 0
        self._round = 0
        self._open_inputs = n

        self._used = 0  # buffer slots taken
        self._held = 0  # slots acquired by the feeding side, not yet submitted
        self._in_flight = 0  # all tasks: submitted, not arrived
        self._feeder_waiting = False  # the feeding side waits for a slot
        self._feeder_blocked_since = -1.0  # set_feeder_waiting(True): when
        self._closed = False
        self._feeder_wait = 0.0
        self._consumer_wait = 0.0

    # -- read-only properties -------------------------------------------------
    @property
    def n_tasks(self) -> int:
        return self._n

    @property
    def stride(self) -> int:
        return self._stride

    @property
    def buffer(self) -> int:
        return self._buffer

    @property
    def ordered(self) -> bool:
        return self._ordered

    @property
    def skip(self) -> bool:
        return self._skip

    @property
    def round(self) -> int:
        """Number of times the weave went back to the first task."""
        return self._round

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def buffer_used(self) -> int:
        return self._used

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def changes(self) -> int:
        """A counter that moves whenever something a waiter may care about happened."""
        return self._changes

    # -- notification helpers (mutex held) ------------------------------------
    def _notify_results(self) -> None:
        self._changes += 1
        self._results_changed.notify_all()

    def _notify_slot(self) -> None:
        self._changes += 1
        self._slot_freed.notify()
        if self._change_waiters:
            self._results_changed.notify_all()

    # -- feeding side -----------------------------------------------------------
    def _check_task(self, task: int) -> None:
        if isinstance(task, bool) or not isinstance(task, int):
            raise TypeError(f"task must be an int, got {type(task).__name__}")
        if not 0 <= task < self._n:
            raise IndexError(f"task {task} out of range (the map has {self._n} tasks)")

    def _advance(self) -> None:
        self._repeat = 0
        self._turn += 1
        if self._turn == self._n:
            self._turn = 0
            self._round += 1

    def next_task(self) -> int:
        """Return the task whose turn it is to be fed, or -1 when none is left."""
        with self._mutex:
            if self._closed or self._open_inputs == 0:
                return -1
            while self._input_done[self._turn]:
                self._advance()
            return self._turn

    def input_done(self, task: int) -> None:
        """Record that ``task``'s input is exhausted: it gets no more tasklets."""
        self._check_task(task)
        with self._mutex:
            if self._input_done[task]:
                return
            self._input_done[task] = True
            self._open_inputs -= 1
            if task == self._turn and self._open_inputs:
                self._advance()
            self._notify_results()

    def acquire_slot(self, timeout: float | None = None) -> bool:
        """Take a buffer slot, waiting while the buffer is full.

        Returns False if ``timeout`` passed first; raises ``SchedulerClosed``
        if the map is stopped meanwhile.
        """
        with self._mutex:
            if self._closed:
                raise SchedulerClosed(_MSG_CLOSED)
            if self._used < self._buffer:
                self._used += 1
                self._held += 1
                return True
            if timeout is not None and timeout <= 0:
                return False
            deadline = None if timeout is None else monotonic() + timeout
            started = monotonic()
            self._feeder_waiting = True
            self._notify_results()
            try:
                while self._used >= self._buffer:
                    if self._closed:
                        raise SchedulerClosed(_MSG_CLOSED)
                    wait = WAIT_SLICE
                    if deadline is not None:
                        remaining = deadline - monotonic()
                        if remaining <= 0:
                            return False
                        wait = min(wait, remaining)
                    self._slot_freed.wait(wait)
                self._used += 1
                self._held += 1
                return True
            finally:
                self._feeder_waiting = False
                self._feeder_wait += monotonic() - started

    def acquire_slots(self, n: int, timeout: float | None = None) -> int:
        """Take up to ``n`` free buffer slots; wait (like ``acquire_slot``) only if none is free.

        Returns how many were taken: 0 only if ``timeout`` passed first.
        """
        _check_int("n", n, 1)
        if not self.acquire_slot(timeout):
            return 0
        with self._mutex:
            extra = min(n - 1, self._buffer - self._used)
            self._used += extra
            self._held += extra
            return 1 + extra

    def set_feeder_waiting(self, waiting: bool) -> None:
        """Tell the core whether a feeding side that does not block in ``acquire_slot``
        (it polls with ``timeout=0``) is held up by a full buffer.

        Used for deadlock detection and the ``feeder_wait`` statistic.
        """
        with self._mutex:
            waiting = bool(waiting)
            if waiting == (self._feeder_blocked_since >= 0):
                return
            if waiting:
                self._feeder_blocked_since = monotonic()
                self._feeder_waiting = True
                self._notify_results()
            else:
                self._feeder_wait += monotonic() - self._feeder_blocked_since
                self._feeder_blocked_since = -1.0
                self._feeder_waiting = False

    def turn_left(self) -> int:
        """Tasklets the current task may still submit in this turn of the weave."""
        with self._mutex:
            return self._stride - self._repeat

    def end_turn(self) -> None:
        """End the current task's turn now: the weave moves on to the next task.

        For a feeding side that does not wait for an input with nothing ready
        (or for a free slot) while another task could be fed.
        """
        with self._mutex:
            if not self._closed and self._open_inputs:
                self._advance()

    def set_stride(self, stride: int) -> None:
        """Change the stride (the weave that follows the work). A turn that has
        already had ``stride`` tasklets ends now."""
        _check_int("stride", stride, 1)
        with self._mutex:
            self._stride = stride
            if self._repeat >= stride:
                self._advance()

    def set_buffer(self, buffer: int) -> None:
        """Change the number of buffer slots. Below the slots taken, no slot is free
        until enough results are handed out; nothing already submitted is undone."""
        _check_int("buffer", buffer, 1)
        with self._mutex:
            grown = buffer > self._buffer
            self._buffer = buffer
            if grown:
                self._changes += 1
                self._slot_freed.notify_all()
                if self._change_waiters:
                    self._results_changed.notify_all()

    def submit(self, task: int) -> int:
        """Record a tasklet of ``task`` (a slot must be held); return its index.

        ``task`` must be the one ``next_task`` returned; after ``stride``
        submissions the weave moves to the next task.
        """
        self._check_task(task)
        with self._mutex:
            if self._held <= 0:
                raise RuntimeError("submit() needs a buffer slot from acquire_slot()")
            if task != self._turn or self._input_done[task]:
                raise ValueError(f"task {task} is not the task whose turn it is ({self._turn})")
            self._held -= 1
            index = self._submitted[task]
            self._submitted[task] = index + 1
            self._in_flight += 1
            self._task_in_flight[task] += 1
            self._live[task] += 1
            self._add_pending(task, index, 1)
            self._repeat += 1
            if self._repeat >= self._stride:
                self._advance()
            return index

    def submit_many(self, task: int, n: int) -> int:
        """Record ``n`` tasklets of ``task`` at once (``n`` slots held, ``n <= turn_left()``).

        Returns the index of the first; the others follow it.
        """
        self._check_task(task)
        _check_int("n", n, 1)
        with self._mutex:
            if self._held < n:
                raise RuntimeError("submit_many() needs n buffer slots from acquire_slots()")
            if task != self._turn or self._input_done[task]:
                raise ValueError(f"task {task} is not the task whose turn it is ({self._turn})")
            if n > self._stride - self._repeat:
                raise ValueError(
                    f"n must be <= turn_left() ({self._stride - self._repeat}), got {n}"
                )
            first = self._submitted[task]
            self._add_pending(task, first, n)
            self._held -= n
            self._submitted[task] = first + n
            self._in_flight += n
            self._task_in_flight[task] += n
            self._live[task] += n
            self._repeat += n
            if self._repeat >= self._stride:
                self._advance()
            return first

    # -- in-flight intervals (mutex held) ---------------------------------------
    def _add_pending(self, task: int, first: int, n: int) -> None:
        pending = self._pending[task]
        last = self._last_pending[task]
        if last >= 0 and pending.get(last) == first:
            pending[last] = first + n
        else:
            pending[first] = first + n
            self._last_pending[task] = first

    def _find_pending(self, task: int, index: int) -> int:
        """Start of the in-flight interval holding ``index``, or -1."""
        pending = self._pending[task]
        if index in pending:
            return index
        for start, end in pending.items():
            if start < index < end:
                return start
        return -1

    def _take_pending(self, task: int, first: int, n: int) -> bool:
        """Remove tasklets ``first`` .. ``first + n - 1`` from the in-flight ones if they
        all are in flight (True); otherwise change nothing (False)."""
        pending = self._pending[task]
        stop = first + n
        cuts = []  # (start, end) of each interval touched, in order
        at = first
        while at < stop:
            start = self._find_pending(task, at)
            if start < 0:
                return False
            end = pending[start]
            cuts.append((start, end))
            at = end
        for start, end in cuts:
            del pending[start]
            if start < first:
                pending[start] = first
            if end > stop:
                pending[stop] = end
                if self._last_pending[task] == start:
                    self._last_pending[task] = stop
        return True

    # -- delivering side ------------------------------------------------------
    def _enqueue(self, task: int, chunk: _Chunk) -> None:
        """Make ``chunk`` available to consumers (mutex held)."""
        self._n_ready[task] += len(chunk.values)
        if self._ordered:
            self._ready[task][chunk.first] = chunk
        else:
            self._ready[task].append(chunk)

    def _store(self, task: int, index: int, ok: bool, value: Any) -> None:
        """Store one arrived result (mutex held)."""
        if not _is_index(index) or not self._take_pending(task, index, 1):
            raise ValueError(f"tasklet {index} of task {task} is not in flight")
        self._in_flight -= 1
        self._task_in_flight[task] -= 1
        skipped = self._skipped[task]
        if index in skipped:  # its slot was freed when it was skipped
            skipped.remove(index)
            return
        self._live[task] -= 1
        ahead = self._ahead[task]
        if index in ahead:  # skipped before it was submitted: its slot is freed now
            ahead.remove(index)
            self._used -= 1
            self._notify_slot()
            return
        self._enqueue(task, _Chunk(index, [value], None if ok else {0: value}))

    def put_result(self, task: int, index: int, ok: bool, value: Any) -> None:
        """Deliver the result of tasklet ``index`` of ``task``.

        ``ok`` False means ``value`` is an exception to raise at that position.
        A result of a skipped position is dropped. Ignored once closed.
        """
        self._check_task(task)
        with self._mutex:
            if self._closed:
                return
            self._store(task, index, ok, value)
            self._notify_results()

    def put_many(self, results: list[tuple[int, int, bool, Any]]) -> None:
        """Deliver several ``(task, index, ok, value)`` results at once."""
        for item in results:
            self._check_task(item[0])
        with self._mutex:
            if self._closed:
                return
            try:
                for task, index, ok, value in results:
                    self._store(task, index, ok, value)
            finally:
                self._notify_results()

    def put_range(
        self, task: int, first: int, values: list[Any], errors: dict[int, Any] | None = None
    ) -> None:
        """Deliver the results of tasklets ``first``, ``first + 1``, ... of ``task``.

        ``values[k]`` is the result of tasklet ``first + k``, unless ``k`` is a
        key of ``errors``: then ``errors[k]`` is the exception for that position.
        The core keeps ``values`` (a list) as it is: the caller must not reuse it.
        """
        self._check_task(task)
        _check_int("first", first, 0)
        if type(values) is not list:
            values = list(values)
        with self._mutex:
            if self._closed:
                return
            try:
                n = len(values)
                if (
                    n
                    and not self._skipped[task]
                    and not self._ahead[task]
                    and self._take_pending(task, first, n)
                ):
                    # the common case: one entry for the whole batch
                    self._in_flight -= n
                    self._task_in_flight[task] -= n
                    self._live[task] -= n
                    errors = {k: errors[k] for k in errors if 0 <= k < n} if errors else None
                    self._enqueue(task, _Chunk(first, values, errors or None))
                    return
                for k, value in enumerate(values):
                    if errors and k in errors:
                        self._store(task, first + k, False, errors[k])
                    else:
                        self._store(task, first + k, True, value)
            finally:
                self._notify_results()

    # -- consumer side --------------------------------------------------------
    def _head(self, task: int) -> _Chunk | None:
        """The chunk holding ``task``'s next result to hand out, if it arrived (mutex held)."""
        chunk = self._current[task]
        if chunk is not None and chunk.pos < len(chunk.values):
            return chunk
        ready = self._ready[task]
        if self._ordered:
            chunk = ready.pop(self._next_out[task], None)
        else:
            chunk = ready.popleft() if ready else None
        self._current[task] = chunk
        return chunk

    def _finished(self, task: int) -> bool:
        """True when ``task`` has nothing left to hand out, ever (mutex held; nothing ready)."""
        if not self._input_done[task]:
            return False
        if self._ordered:
            return self._next_out[task] >= self._submitted[task]
        return self._live[task] == 0

    def _hand_out(self, task: int, n: int) -> None:
        """Account for ``n`` results of ``task`` handed out (mutex held)."""
        self._n_ready[task] -= n
        self._returned[task] += n
        if self._ordered:
            self._next_out[task] += n
        self._used -= n
        self._notify_slot()

    def _take(self, task: int) -> tuple[int, int, Any] | None:
        """Hand out the next result of ``task`` if there is one (mutex held)."""
        chunk = self._head(task)
        if chunk is None:
            return _FINISHED_TUPLE if self._finished(task) else None
        k = chunk.pos
        chunk.pos = k + 1
        value = chunk.values[k]
        chunk.values[k] = None  # the consumer owns it now
        self._hand_out(task, 1)
        errors = chunk.errors
        if errors is not None and k in errors:
            self._failed[task] += 1
            return (ERROR, chunk.first + k, errors[k])
        return (RESULT, chunk.first + k, value)

    def try_result(self, task: int) -> tuple[int, int, Any] | None:
        """``(status, index, value)`` of ``task``'s next result if it is there, else None.

        Never waits. ``FINISHED`` once the task has nothing left; raises
        ``SchedulerClosed`` once stopped.
        """
        self._check_task(task)
        with self._mutex:
            if self._closed:
                raise SchedulerClosed(_MSG_CLOSED)
            return self._take(task)

    def try_values(self, task: int, n: int) -> tuple[int, int, Any] | None:
        """Up to ``n`` of ``task``'s next results at once, if they are there, else None.

        Returns ``(RESULT, first index, [values...])`` (at least one value, all
        successful, consecutive in hand-out order), ``(ERROR, index, exception)``
        for a single failed position, or ``(FINISHED, -1, None)``. Never waits.
        Ordered, the values may span several delivered batches (one call hands
        out many results of batches of one).
        """
        self._check_task(task)
        _check_int("n", n, 1)
        with self._mutex:
            if self._closed:
                raise SchedulerClosed(_MSG_CLOSED)
            chunk = self._head(task)
            if chunk is None:
                return _FINISHED_TUPLE if self._finished(task) else None
            if chunk.errors is not None and chunk.pos in chunk.errors:
                return self._take(task)
            first = chunk.first + chunk.pos
            out: list[Any] | None = None
            while True:
                k = chunk.pos
                values = chunk.values
                length = len(values)
                end = min(length, k + n)
                errors = chunk.errors
                if errors is not None:
                    for e in errors:
                        if k <= e < end:  # a failure comes alone: stop before it
                            end = e
                if end == k:
                    break
                if out is None and k == 0 and end == length:
                    out = values  # the whole chunk: no copy
                    chunk.values = []
                    chunk.pos = 0
                else:
                    if out is None:
                        out = values[k:end]
                    else:
                        out.extend(values[k:end])
                    values[k:end] = [None] * (end - k)
                    chunk.pos = end
                self._hand_out(task, end - k)
                n -= end - k
                if n == 0 or end < length or not self._ordered:
                    break
                head = self._head(task)  # the next position's batch, if it arrived
                if head is None:
                    break
                chunk = head
            return (RESULT, first, out)

    def _skip_one(self, task: int, ahead: int) -> int:
        """Give up the position a timed-out consumer of ``task`` waited for (mutex held).

        Ordered: the next position in input order; unordered: the oldest one in
        flight. A position not submitted yet is given up only if it exists:
        ``ahead`` is how many positions past the submitted ones the feeding side
        knows of (read from the input, or on their way through an upstream
        task). Returns its index, or -1 if there was none to skip.
        """
        skipped, ahead_set = self._skipped[task], self._ahead[task]
        submitted = self._submitted[task]
        if self._ordered:
            index = self._next_out[task]
            if index >= submitted:
                if index - submitted >= ahead:
                    return -1
                return self._skip_ahead(task, index)
            self._next_out[task] = index + 1
        else:
            index = -1
            for start in sorted(self._pending[task]):
                index = next(
                    (
                        i
                        for i in range(start, self._pending[task][start])
                        if i not in skipped and i not in ahead_set
                    ),
                    -1,
                )
                if index >= 0:
                    break
            if index < 0:
                claimed = sum(1 for i in ahead_set if i >= submitted)
                if claimed >= ahead:
                    return -1
                return self._skip_ahead(task, submitted + claimed)
        skipped.add(index)  # its slot is freed now, its result dropped on arrival
        self._live[task] -= 1
        self._n_skipped[task] += 1
        self._used -= 1
        self._notify_slot()
        self._notify_results()
        return index

    def _skip_ahead(self, task: int, index: int) -> int:
        """Give up position ``index`` of ``task`` before it is submitted (mutex held):
        it takes a slot when submitted, and frees it when its result is dropped."""
        self._ahead[task].add(index)
        if self._ordered:
            self._next_out[task] = index + 1
        self._n_skipped[task] += 1
        self._notify_results()
        return index

    def _timeout(
        self, task: int, timeout: float | None, ahead: int = 0, skip: bool | None = None
    ) -> BaseException:
        """The ``TimeoutError`` of a wait for ``task`` that timed out, skipping its
        position first if the map skips (or ``skip`` says so for this task; mutex
        held). ``.index`` is the position skipped for good, or None if no position
        was consumed."""
        if skip is None:
            skip = self._skip
        index = self._skip_one(task, ahead) if skip else -1
        message = _MSG_TIMEOUT.format(task=task, timeout=timeout)
        if index >= 0:
            message += f" (position {index} skipped)"
        err = timeout_error_class()(message)
        err.index = index if index >= 0 else None  # type: ignore[attr-defined]
        return err

    def _stuck(self) -> bool:
        """True when nothing can arrive and the feeding side cannot submit (mutex held)."""
        return self._feeder_waiting and self._in_flight == 0 and self._used >= self._buffer

    def stuck(self) -> bool:
        """True when nothing can arrive and the feeding side waits for a slot: if the
        result a consumer waits for is not there either, the map cannot progress."""
        with self._mutex:
            return self._stuck()

    def deadlock_error(self, task: int) -> BaseException:
        """The ``DeadlockError`` explaining why ``task``'s consumer can wait forever."""
        return DeadlockError(
            _MSG_DEADLOCK.format(task=task, buffer=self._buffer, need=self._n * self._stride)
        )

    def timed_out(
        self, task: int, timeout: float | None, ahead: int = 0, skip: bool | None = None
    ) -> BaseException:
        """A wait for ``task`` timed out: skip its position if the map skips (``skip``:
        this task's own choice, None: the map's) and the position exists:
        submitted, or one of ``ahead`` positions past the submitted ones that the
        feeding side knows of. Return the ``TimeoutError`` to raise."""
        self._check_task(task)
        _check_int("ahead", ahead, 0)
        with self._mutex:
            if self._closed:
                raise SchedulerClosed(_MSG_CLOSED)
            return self._timeout(task, timeout, ahead, None if skip is None else bool(skip))

    def outstanding(self, task: int) -> int:
        """Positions of ``task`` submitted and neither handed out nor skipped yet: the
        outcomes still to come from what it was given."""
        self._check_task(task)
        with self._mutex:
            if self._ordered:
                return max(0, self._submitted[task] - self._next_out[task])
            submitted = self._submitted[task]
            claimed = sum(1 for i in self._ahead[task] if i < submitted)
            return self._live[task] + self._n_ready[task] - claimed

    def get_result(self, task: int, timeout: float | None = None) -> tuple[int, int, Any]:
        """Return ``(status, index, value)`` for the next result of ``task``.

        ``status`` is ``RESULT``, ``ERROR`` (``value`` is the exception) or
        ``FINISHED`` (and stays so). Waits at most ``timeout`` seconds (None:
        no limit) and then raises papy's ``TimeoutError``, skipping the awaited
        position for good if the scheduler skips and the position exists.
        Raises ``DeadlockError`` if the wait can never end and
        ``SchedulerClosed`` once stopped.
        """
        self._check_task(task)
        with self._mutex:
            if self._closed:
                raise SchedulerClosed(_MSG_CLOSED)
            got = self._take(task)
            if got is not None:
                return got
            started = monotonic()
            deadline = None if timeout is None else started + timeout
            stuck_since = None
            try:
                while True:
                    now = monotonic()
                    if self._grace is not None and self._stuck():
                        if stuck_since is None:
                            stuck_since = now
                        if now - stuck_since >= self._grace:
                            raise self.deadlock_error(task)
                    else:
                        stuck_since = None
                    wait = WAIT_SLICE
                    if deadline is not None:
                        remaining = deadline - now
                        if remaining <= 0:
                            raise self._timeout(task, timeout)
                        wait = min(wait, remaining)
                    self._results_changed.wait(wait)
                    if self._closed:
                        raise SchedulerClosed(_MSG_CLOSED)
                    got = self._take(task)
                    if got is not None:
                        return got
            finally:
                self._consumer_wait += monotonic() - started

    def get_many(
        self, task: int, n: int, timeout: float | None = None
    ) -> list[tuple[int, int, Any]]:
        """Like ``get_result``, then also take up to ``n - 1`` more results already there.

        Returns a non-empty list; a ``FINISHED`` entry only ever comes alone.
        """
        _check_int("n", n, 1)
        first = self.get_result(task, timeout)
        out = [first]
        if first[0] == FINISHED or n == 1:
            return out
        with self._mutex:
            while len(out) < n:
                got = self._take(task)
                if got is None or got[0] == FINISHED:
                    break
                out.append(got)
        return out

    def wait_change(self, seen: int, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds until ``changes`` differs from ``seen``.

        Returns True if it did. For a thread that drives the map: take
        ``changes``, check everything, then wait here without missing what
        happened in between. Never raises ``SchedulerClosed`` (close is a change).
        """
        with self._mutex:
            if self._changes != seen or self._closed:
                return True
            if timeout <= 0:
                return False
            started = monotonic()
            self._change_waiters += 1
            try:
                deadline = started + timeout
                while self._changes == seen and not self._closed:
                    remaining = deadline - monotonic()
                    if remaining <= 0:
                        return False
                    self._results_changed.wait(min(WAIT_SLICE, remaining))
                return True
            finally:
                self._change_waiters -= 1
                self._consumer_wait += monotonic() - started

    def poke(self) -> None:
        """Wake every waiter (they re-check their state): something outside the core changed."""
        with self._mutex:
            self._notify_results()
            self._slot_freed.notify_all()

    def task_finished(self, task: int) -> bool:
        """True once ``task`` has handed out (or skipped) all of its results."""
        self._check_task(task)
        with self._mutex:
            if not self._input_done[task]:
                return False
            if self._ordered:
                return self._next_out[task] >= self._submitted[task]
            return self._live[task] == 0 and not self._n_ready[task]

    # -- lifecycle and inspection --------------------------------------------
    def close(self) -> None:
        """Stop: wake every waiter; later waits raise ``SchedulerClosed``."""
        with self._mutex:
            self._closed = True
            self._notify_results()
            self._slot_freed.notify_all()

    def stats(self) -> dict[str, Any]:
        """A consistent snapshot of the counters, per task and for the map."""
        with self._mutex:
            tasks = [
                {
                    "submitted": self._submitted[t],
                    "returned": self._returned[t],
                    "failed": self._failed[t],
                    "skipped": self._n_skipped[t],
                    "in_flight": self._task_in_flight[t],
                    "ready": self._n_ready[t],
                    "input_done": self._input_done[t],
                }
                for t in range(self._n)
            ]
            feeder_wait = self._feeder_wait
            if self._feeder_blocked_since >= 0:
                feeder_wait += monotonic() - self._feeder_blocked_since
            return {
                "tasks": tasks,
                "buffer_used": self._used,
                "buffer_size": self._buffer,
                "in_flight": self._in_flight,
                "feeder_wait": feeder_wait,
                "consumer_wait": self._consumer_wait,
                "round": self._round,
                "closed": self._closed,
            }

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<Scheduler {IMPLEMENTATION} {state} tasks={self._n} stride={self._stride} "
            f"buffer={self._used}/{self._buffer} in_flight={self._in_flight}>"
        )


class Outlet:
    """Hands out results one by one from a deque that ``refill`` fills a batch at
    a time (the base of papy's result iterators; compiled in ``papy._sched``).

    ``bind(ready, refill)``: ``ready`` is the deque (it may be shared by several
    outlets: each result is handed out once); ``refill(outlet)`` is called when
    it is empty and returns the next result (or raises: ``StopIteration`` at
    the end, an item's exception, a timeout ...).
    """

    __slots__ = ("_ready", "_pop", "_refill", "__weakref__")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ready: Any = _EMPTY
        self._pop: Any = _EMPTY.popleft
        self._refill: Any = None

    def bind(self, ready: Any, refill: Any) -> None:
        """Hand out from ``ready``; call ``refill(self)`` when it is empty."""
        self._ready = ready
        self._pop = ready.popleft
        self._refill = refill

    def __iter__(self) -> Outlet:
        return self

    def __next__(self) -> Any:
        if self._ready:  # (no exception on the way to a refill: one item a batch)
            try:
                return self._pop()
            except IndexError:  # another consumer took the last one meanwhile
                pass
        if self._refill is None:
            raise StopIteration
        return self._refill(self)


_EMPTY: deque[Any] = deque()  # never filled: an unbound outlet is empty
