"""Pure-Python twin of papy's scheduling core (the compiled one is ``papy._sched``).

This module is the specification: ``_sched.pyx`` has the same classes, methods,
errors and messages, and the whole test suite runs against both (PEP 399).
Nothing but the selector ``papy._scheduler`` imports either module.

Data flow through one :class:`Scheduler` (one IMap)::

    task inputs ──► feeder thread ─────────────► workers ──► put_result()
                     │ next_task()  weave: stride          │
                     │ acquire_slot() waits while the      ▼
                     │   buffer is full                 per-task result store
                     │ submit() takes the next index     (ordered: by index,
                     ▼                                    unordered: by arrival)
                 buffer slots ◄──── freed at hand-out ◄── get_result() ◄── consumers

* The **weave** visits tasks in the order they were added, ``stride`` tasklets
  each, skipping tasks whose input is exhausted.
* The **buffer** counts tasklets submitted and not yet handed out: a slot is
  taken before submission and freed when the result is handed to a consumer
  (or when its position is skipped), not when it is computed.
* A **skip** (``skip=True`` and a timeout in ``get_result``) drops one position
  for good; its index is remembered, so a late result is discarded on arrival
  and can never be returned later.
* A **deadlock** (the feeder waits for a slot, nothing is being computed, and
  the awaited result is not there) is reported after ``deadlock_grace`` seconds
  instead of blocking forever. It assumes the results of one map are read by a
  single consuming thread (plus the map's own feeder for chained tasks).

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

__all__ = ["Scheduler", "RESULT", "ERROR", "FINISHED", "WAIT_SLICE", "IMPLEMENTATION"]

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


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class Scheduler:
    """Stride weave, buffer accounting and per-task result queues of one map.

    Parties: one *feeder* thread (``next_task``, ``input_done``,
    ``acquire_slot(s)``, ``turn_left``, ``submit(_many)``), any number of *delivering* threads
    (``put_result``, ``put_many``, ``put_range``) and *consumers* (``get_result``, ``get_many``).
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
        # Notified by put_result/put_many, input_done, close, a skip, and when the
        # feeder starts waiting for a slot (so consumers re-check for deadlock).
        self._results_changed = threading.Condition(self._mutex)
        # Notified whenever a buffer slot is freed, and by close.
        self._slot_freed = threading.Condition(self._mutex)

        n = n_tasks
        self._submitted = [0] * n  # next index to submit
        self._next_out = [0] * n  # ordered: next index to hand out
        self._returned = [0] * n  # results handed out (errors included)
        self._failed = [0] * n  # ERROR results handed out
        self._n_skipped = [0] * n  # positions skipped
        self._live = [0] * n  # submitted, not arrived, not skipped
        self._task_in_flight = [0] * n  # submitted, not arrived
        self._input_done = [False] * n
        self._results: list[Any] = [({} if self._ordered else deque()) for _ in range(n)]
        self._pending: list[set[int]] = [set() for _ in range(n)]  # in-flight indices
        self._skipped: list[dict[int, bool]] = [{} for _ in range(n)]  # index -> slot freed

        self._turn = 0
        self._repeat = 0
        self._round = 0
        self._open_inputs = n

        self._used = 0  # buffer slots taken
        self._held = 0  # slots acquired by the feeder, not yet submitted
        self._in_flight = 0  # all tasks: submitted, not arrived
        self._feeder_waiting = False
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

    # -- feeder side ----------------------------------------------------------
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
            self._results_changed.notify_all()

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
            self._results_changed.notify_all()
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

    def turn_left(self) -> int:
        """Tasklets the current task may still submit in this turn of the weave."""
        with self._mutex:
            return self._stride - self._repeat

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
            self._pending[task].add(index)
            if index not in self._skipped[task]:
                self._live[task] += 1
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
            skipped = self._skipped[task]
            pending = self._pending[task]
            live = 0
            for index in range(first, first + n):
                pending.add(index)
                if index not in skipped:
                    live += 1
            self._held -= n
            self._submitted[task] = first + n
            self._in_flight += n
            self._task_in_flight[task] += n
            self._live[task] += live
            self._repeat += n
            if self._repeat >= self._stride:
                self._advance()
            return first

    # -- delivering side ------------------------------------------------------
    def _store(self, task: int, index: int, ok: bool, value: Any) -> None:
        """Store one arrived result (mutex held)."""
        pending = self._pending[task]
        if index not in pending:
            raise ValueError(f"tasklet {index} of task {task} is not in flight")
        pending.remove(index)
        self._in_flight -= 1
        self._task_in_flight[task] -= 1
        skipped = self._skipped[task]
        if index in skipped:
            if not skipped.pop(index):
                self._used -= 1
                self._slot_freed.notify()
            return
        self._live[task] -= 1
        if self._ordered:
            self._results[task][index] = (ok, value)
        else:
            self._results[task].append((index, ok, value))

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
            self._results_changed.notify_all()

    def put_many(self, results: list[tuple[int, int, bool, Any]]) -> None:
        """Deliver several ``(task, index, ok, value)`` results at once."""
        for item in results:
            self._check_task(item[0])
        with self._mutex:
            if self._closed:
                return
            for task, index, ok, value in results:
                self._store(task, index, ok, value)
            self._results_changed.notify_all()

    def put_range(
        self, task: int, first: int, values: list[Any], errors: dict[int, Any] | None = None
    ) -> None:
        """Deliver the results of tasklets ``first``, ``first + 1``, ... of ``task``.

        ``values[k]`` is the result of tasklet ``first + k``, unless ``k`` is a
        key of ``errors``: then ``errors[k]`` is the exception for that position.
        """
        self._check_task(task)
        _check_int("first", first, 0)
        with self._mutex:
            if self._closed:
                return
            try:
                for k, value in enumerate(values):
                    if errors and k in errors:
                        self._store(task, first + k, False, errors[k])
                    else:
                        self._store(task, first + k, True, value)
            finally:
                self._results_changed.notify_all()

    # -- consumer side --------------------------------------------------------
    def _take(self, task: int) -> tuple[int, int, Any] | None:
        """Hand out the next result of ``task`` if there is one (mutex held)."""
        results = self._results[task]
        if self._ordered:
            index = self._next_out[task]
            if index in results:
                ok, value = results.pop(index)
                self._next_out[task] = index + 1
            elif self._input_done[task] and index >= self._submitted[task]:
                return (FINISHED, -1, None)
            else:
                return None
        elif results:
            index, ok, value = results.popleft()
        elif self._input_done[task] and self._live[task] == 0:
            return (FINISHED, -1, None)
        else:
            return None
        self._used -= 1
        self._slot_freed.notify()
        self._returned[task] += 1
        if ok:
            return (RESULT, index, value)
        self._failed[task] += 1
        return (ERROR, index, value)

    def _stuck(self) -> bool:
        """True when nothing can arrive and the feeder cannot submit (mutex held)."""
        return self._feeder_waiting and self._in_flight == 0 and self._used >= self._buffer

    def _skip_one(self, task: int) -> None:
        """Give up the position a timed-out consumer of ``task`` waited for (mutex held)."""
        skipped = self._skipped[task]
        if self._ordered:
            index = self._next_out[task]
            self._next_out[task] = index + 1
        else:
            live = [i for i in self._pending[task] if i not in skipped]
            if live:
                index = min(live)
            else:
                index = self._submitted[task]
                while index in skipped:
                    index += 1
        if index < self._submitted[task]:
            skipped[index] = True  # its slot is freed now, its result dropped later
            self._live[task] -= 1
            self._used -= 1
            self._slot_freed.notify()
        else:
            skipped[index] = False  # not submitted yet: its slot is freed on arrival
        self._n_skipped[task] += 1
        self._results_changed.notify_all()

    def get_result(self, task: int, timeout: float | None = None) -> tuple[int, int, Any]:
        """Return ``(status, index, value)`` for the next result of ``task``.

        ``status`` is ``RESULT``, ``ERROR`` (``value`` is the exception) or
        ``FINISHED`` (and stays so). Waits at most ``timeout`` seconds (None:
        no limit) and then raises papy's ``TimeoutError``, skipping the awaited
        position for good if the scheduler skips. Raises ``DeadlockError`` if
        the wait can never end and ``SchedulerClosed`` once stopped.
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
                            raise DeadlockError(
                                _MSG_DEADLOCK.format(
                                    task=task, buffer=self._buffer, need=self._n * self._stride
                                )
                            )
                    else:
                        stuck_since = None
                    wait = WAIT_SLICE
                    if deadline is not None:
                        remaining = deadline - now
                        if remaining <= 0:
                            if self._skip:
                                self._skip_one(task)
                            raise timeout_error_class()(
                                _MSG_TIMEOUT.format(task=task, timeout=timeout)
                            )
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

    def task_finished(self, task: int) -> bool:
        """True once ``task`` has handed out (or skipped) all of its results."""
        self._check_task(task)
        with self._mutex:
            if not self._input_done[task]:
                return False
            if self._ordered:
                return self._next_out[task] >= self._submitted[task]
            return self._live[task] == 0 and not self._results[task]

    # -- lifecycle and inspection --------------------------------------------
    def close(self) -> None:
        """Stop: wake every waiter; later waits raise ``SchedulerClosed``."""
        with self._mutex:
            self._closed = True
            self._results_changed.notify_all()
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
                    "ready": len(self._results[t]),
                    "input_done": self._input_done[t],
                }
                for t in range(self._n)
            ]
            return {
                "tasks": tasks,
                "buffer_used": self._used,
                "buffer_size": self._buffer,
                "in_flight": self._in_flight,
                "feeder_wait": self._feeder_wait,
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
