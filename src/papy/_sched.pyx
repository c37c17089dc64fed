# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled scheduling core of papy (the pure-Python twin is ``papy._sched_py``).

``papy._sched_py`` is the specification: this module has the same classes,
methods, errors and messages, and the whole test suite runs against both.
Nothing but the selector ``papy._scheduler`` imports either module.

Results are stored as chunks (one entry per delivered batch, handed out as a
slice), exactly as in the twin; see its docstring for the data flow.

Locking: every method runs with the GIL held and does not release it while it
touches the state, so the GIL is the state lock (no Python-level lock).
Blocking waits release the GIL and sleep on a C++ ``std::condition_variable``
(one for "results changed", one for "slot freed"); lost wake-ups are avoided
with sequence counters:

* a producer (GIL held) updates the state, then - if somebody waits - locks
  the C mutex, bumps the counter, notifies and unlocks. Locking the C mutex
  while holding the GIL is safe because its holders never need the GIL;
* a waiter (GIL held) registers, snapshots the counter and checks the state;
  then, without the GIL, waits at most one slice while the counter is
  unchanged. Back with the GIL it runs signal handlers (``KeyboardInterrupt``)
  and re-checks close, deadlock, timeout and readiness like the twin.
"""

from cpython.exc cimport PyErr_CheckSignals
from cpython.long cimport PyLong_AsSsize_t
from cpython.mem cimport PyMem_Calloc, PyMem_Free

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

from collections import deque

from papy._errors import DeadlockError, SchedulerClosed, timeout_error_class

__all__ = ["Scheduler", "Outlet", "RESULT", "ERROR", "FINISHED", "WAIT_SLICE", "IMPLEMENTATION"]

IMPLEMENTATION = "cython"

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

cdef object _FINISHED_TUPLE = (2, -1, None)

# ``a, b, c, d = item`` compiled by CPython, not Cython: same error messages as
# the twin on every Python version (used for items that are not 4-tuples)
_ns = {}
exec("def _unpack4(item):\n    a, b, c, d = item\n    return a, b, c, d\n", _ns)
cdef object _unpack4 = _ns["_unpack4"]
del _ns


cdef extern from *:
    """
    #include <mutex>
    #include <condition_variable>
    #include <chrono>
    #include <new>

    namespace {

    struct papy_sync_t {
        std::mutex mutex;
        std::condition_variable results_cv;  /* consumers wait here */
        std::condition_variable slot_cv;     /* the feeder waits here */
        unsigned long long results_seq;
        unsigned long long slot_seq;
        papy_sync_t() : results_seq(0), slot_seq(0) {}
    };

    static papy_sync_t *papy_sync_new(void) {
        try {
            return new papy_sync_t();
        } catch (...) {
            return NULL;
        }
    }

    static void papy_sync_free(papy_sync_t *s) {
        delete s;
    }

    /* Called with the GIL held: the mutex is only ever held by code that
       never needs the GIL, so this cannot deadlock. */
    static inline void papy_sync_bump(papy_sync_t *s, int slot) {
        try {
            std::lock_guard<std::mutex> lock(s->mutex);
            if (slot) {
                ++s->slot_seq;
                s->slot_cv.notify_all();
            } else {
                ++s->results_seq;
                s->results_cv.notify_all();
            }
        } catch (...) {
            /* lock() failing is not recoverable here; waiters wake up at the
               end of their slice anyway */
        }
    }

    /* Called WITHOUT the GIL: waits at most `seconds` while the counter still
       equals `snapshot`. */
    static inline void papy_sync_wait(papy_sync_t *s, int slot,
                                      unsigned long long snapshot, double seconds) {
        try {
            std::chrono::steady_clock::duration d =
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                    std::chrono::duration<double>(seconds));
            std::unique_lock<std::mutex> lock(s->mutex);
            if (slot) {
                s->slot_cv.wait_for(lock, d, [s, snapshot] { return s->slot_seq != snapshot; });
            } else {
                s->results_cv.wait_for(lock, d,
                                       [s, snapshot] { return s->results_seq != snapshot; });
            }
        } catch (...) {
            /* treated as a spurious wake-up: the caller re-checks everything */
        }
    }

    static inline double papy_monotonic(void) {
        return std::chrono::duration<double>(
            std::chrono::steady_clock::now().time_since_epoch()).count();
    }

    }  // namespace
    """
    ctypedef struct papy_sync_t:
        unsigned long long results_seq
        unsigned long long slot_seq
    papy_sync_t *papy_sync_new()
    void papy_sync_free(papy_sync_t *s)
    void papy_sync_bump(papy_sync_t *s, int slot)
    void papy_sync_wait(papy_sync_t *s, int slot, unsigned long long snapshot,
                        double seconds) nogil
    double papy_monotonic() nogil


cdef struct TaskState:
    Py_ssize_t submitted       # next index to submit
    Py_ssize_t next_out        # ordered: next index to hand out
    Py_ssize_t returned        # results handed out (errors included)
    Py_ssize_t failed          # ERROR results handed out
    Py_ssize_t n_skipped       # positions skipped
    Py_ssize_t live            # submitted, not arrived, not skipped
    Py_ssize_t task_in_flight  # submitted, not arrived
    Py_ssize_t n_ready         # arrived, not handed out
    Py_ssize_t last_pending    # start of the in-flight interval the last submission went to
    bint input_done


cdef object _check_int(str name, object value, Py_ssize_t minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


cdef inline bint _is_index(object value):
    return isinstance(value, int) and not isinstance(value, bool)


cdef inline Py_ssize_t _clamp(object value):
    """An int >= 1 as Py_ssize_t, saturating (only ever compared with counters)."""
    try:
        return PyLong_AsSsize_t(value)
    except OverflowError:
        return PY_SSIZE_T_MAX


cdef class _Chunk:
    """Results of consecutive tasklets ``first``, ``first + 1``, ... of one task.

    ``errors`` maps an offset to the exception of that position (None: no
    errors); ``pos`` is the offset of the next result to hand out.
    """

    cdef Py_ssize_t first
    cdef Py_ssize_t pos
    cdef list values
    cdef object errors

    def __cinit__(self, Py_ssize_t first, list values, object errors):
        self.first = first
        self.values = values
        self.errors = errors
        self.pos = 0


cdef class Scheduler:
    """Stride weave, buffer accounting and per-task result queues of one map.

    Parties: one *feeding* side (``next_task``, ``input_done``, ``acquire_slot(s)``,
    ``turn_left``, ``submit(_many)``, ``set_feeder_waiting``), any number of
    *delivering* threads (``put_result``, ``put_many``, ``put_range``) and
    *consumers* (``try_result``, ``try_values``, ``get_result``, ``get_many``).
    ``wait_change`` and ``poke`` let a thread that drives the map sleep until
    something happens.
    """

    cdef TaskState *_tasks
    cdef papy_sync_t *_sync
    cdef Py_ssize_t _n
    cdef Py_ssize_t _stride     # clamped to PY_SSIZE_T_MAX: only compared with counters
    cdef Py_ssize_t _buffer     # likewise
    cdef object _n_obj          # the arguments as given: properties, stats, messages
    cdef object _stride_obj
    cdef object _buffer_obj
    cdef bint _ordered
    cdef bint _skip
    cdef bint _has_grace
    cdef double _grace

    cdef list _ready     # per task: dict first index -> _Chunk | deque of _Chunk
    cdef list _current   # per task: the _Chunk being handed out, or None
    cdef list _pending   # per task: dict start -> end of in-flight intervals
    cdef list _skipped   # per task: set of skipped in-flight indices
    cdef list _ahead     # per task: set of indices skipped before they were submitted

    cdef Py_ssize_t _turn
    cdef Py_ssize_t _repeat
    cdef Py_ssize_t _round
    cdef Py_ssize_t _open_inputs

    cdef Py_ssize_t _used       # buffer slots taken
    cdef Py_ssize_t _held       # slots acquired by the feeding side, not yet submitted
    cdef Py_ssize_t _in_flight  # all tasks: submitted, not arrived
    cdef bint _feeder_waiting
    cdef double _feeder_blocked_since  # set_feeder_waiting(True): when (-1: not blocked)
    cdef bint _closed
    cdef double _feeder_wait
    cdef double _consumer_wait
    cdef unsigned long long _changes  # every notification: wait_change's sequence
    cdef int _results_waiters   # threads inside get_result's wait loop
    cdef int _slot_waiters      # threads inside acquire_slot's wait loop
    cdef int _change_waiters    # threads inside wait_change

    cdef object __weakref__

    def __cinit__(
        self,
        n_tasks,
        stride,
        buffer,
        ordered=True,
        skip=False,
        deadlock_grace=0.5,
    ):
        cdef Py_ssize_t n
        _check_int("n_tasks", n_tasks, 1)
        _check_int("stride", stride, 1)
        _check_int("buffer", buffer, 1)
        if buffer < stride:
            raise ValueError(f"buffer must be >= stride ({stride}), got {buffer}")
        if deadlock_grace is not None and not deadlock_grace >= 0:
            raise ValueError(f"deadlock_grace must be >= 0 or None, got {deadlock_grace}")
        try:
            n = n_tasks
        except OverflowError:
            # the twin's message (from ``[0] * n_tasks``)
            raise OverflowError("cannot fit 'int' into an index-sized integer") from None
        self._n = n
        self._n_obj = n_tasks
        self._stride = _clamp(stride)
        self._stride_obj = stride
        self._buffer = _clamp(buffer)
        self._buffer_obj = buffer
        self._ordered = bool(ordered)
        self._skip = bool(skip)
        self._has_grace = deadlock_grace is not None
        if self._has_grace:
            try:
                self._grace = float(deadlock_grace)
            except OverflowError:
                self._grace = float("inf")
        self._feeder_blocked_since = -1.0

        self._tasks = <TaskState *>PyMem_Calloc(<size_t>n, sizeof(TaskState))
        if self._tasks == NULL:
            raise MemoryError()
        self._sync = papy_sync_new()
        if self._sync == NULL:
            raise MemoryError()
        if self._ordered:
            self._ready = [{} for _ in range(n)]
        else:
            self._ready = [deque() for _ in range(n)]
        self._current = [None] * n
        self._pending = [{} for _ in range(n)]
        for i in range(n):
            self._tasks[i].last_pending = -1
        self._skipped = [set() for _ in range(n)]
        self._ahead = [set() for _ in range(n)]
        self._open_inputs = n

    def __init__(
        self,
        n_tasks,
        stride,
        buffer,
        ordered=True,
        skip=False,
        deadlock_grace=0.5,
    ):
        # everything is validated and set up in __cinit__
        pass

    def __dealloc__(self):
        if self._sync != NULL:
            papy_sync_free(self._sync)
            self._sync = NULL
        if self._tasks != NULL:
            PyMem_Free(self._tasks)
            self._tasks = NULL

    # -- read-only properties -------------------------------------------------
    @property
    def n_tasks(self):
        return self._n_obj

    @property
    def stride(self):
        return self._stride_obj

    @property
    def buffer(self):
        return self._buffer_obj

    @property
    def ordered(self):
        return self._ordered

    @property
    def skip(self):
        return self._skip

    @property
    def round(self):
        """Number of times the weave went back to the first task."""
        return self._round

    @property
    def closed(self):
        return self._closed

    @property
    def buffer_used(self):
        return self._used

    @property
    def in_flight(self):
        return self._in_flight

    @property
    def changes(self):
        """A counter that moves whenever something a waiter may care about happened."""
        return self._changes

    # -- notification helpers (GIL held) -------------------------------------
    cdef inline void _notify_results(self):
        self._changes += 1
        if self._results_waiters > 0 or self._change_waiters > 0:
            papy_sync_bump(self._sync, 0)

    cdef inline void _notify_slot(self):
        self._changes += 1
        if self._slot_waiters > 0:
            papy_sync_bump(self._sync, 1)
        if self._change_waiters > 0:
            papy_sync_bump(self._sync, 0)

    # -- feeding side -----------------------------------------------------------
    cdef inline Py_ssize_t _check_task(self, object task) except -1:
        cdef Py_ssize_t t
        if isinstance(task, bool) or not isinstance(task, int):
            raise TypeError(f"task must be an int, got {type(task).__name__}")
        try:
            t = PyLong_AsSsize_t(task)
        except OverflowError:
            t = -1
        if t < 0 or t >= self._n:
            raise IndexError(f"task {task} out of range (the map has {self._n_obj} tasks)")
        return t

    cdef inline void _advance(self):
        self._repeat = 0
        self._turn += 1
        if self._turn == self._n:
            self._turn = 0
            self._round += 1

    def next_task(self):
        """Return the task whose turn it is to be fed, or -1 when none is left."""
        if self._closed or self._open_inputs == 0:
            return -1
        while self._tasks[self._turn].input_done:
            self._advance()
        return self._turn

    def input_done(self, task):
        """Record that ``task``'s input is exhausted: it gets no more tasklets."""
        cdef Py_ssize_t t = self._check_task(task)
        if self._tasks[t].input_done:
            return
        self._tasks[t].input_done = True
        self._open_inputs -= 1
        if t == self._turn and self._open_inputs:
            self._advance()
        self._notify_results()

    def acquire_slot(self, timeout=None):
        """Take a buffer slot, waiting while the buffer is full.

        Returns False if ``timeout`` passed first; raises ``SchedulerClosed``
        if the map is stopped meanwhile.
        """
        if self._closed:
            raise SchedulerClosed(_MSG_CLOSED)
        if self._used < self._buffer:
            self._used += 1
            self._held += 1
            return True
        if timeout is not None and timeout <= 0:
            return False
        return self._wait_slot(timeout)

    cdef object _wait_slot(self, object timeout):
        cdef bint has_deadline = timeout is not None
        cdef double deadline = 0.0
        cdef double started, remaining, wait
        cdef unsigned long long snapshot
        if has_deadline:
            deadline = papy_monotonic() + timeout
        started = papy_monotonic()
        self._feeder_waiting = True
        self._notify_results()
        self._slot_waiters += 1
        try:
            snapshot = self._sync.slot_seq
            while self._used >= self._buffer:
                if self._closed:
                    raise SchedulerClosed(_MSG_CLOSED)
                wait = WAIT_SLICE
                if has_deadline:
                    remaining = deadline - papy_monotonic()
                    if remaining <= 0:
                        return False
                    if remaining < wait:
                        wait = remaining
                with nogil:
                    papy_sync_wait(self._sync, 1, snapshot, wait)
                PyErr_CheckSignals()
                snapshot = self._sync.slot_seq
            self._used += 1
            self._held += 1
            return True
        finally:
            self._slot_waiters -= 1
            self._feeder_waiting = False
            self._feeder_wait += papy_monotonic() - started

    def acquire_slots(self, n, timeout=None):
        """Take up to ``n`` free buffer slots; wait (like ``acquire_slot``) only if none is free.

        Returns how many were taken: 0 only if ``timeout`` passed first.
        """
        cdef Py_ssize_t extra
        _check_int("n", n, 1)
        if not self.acquire_slot(timeout):
            return 0
        extra = _clamp(n) - 1
        if self._buffer - self._used < extra:
            extra = self._buffer - self._used
        self._used += extra
        self._held += extra
        return 1 + extra

    def set_feeder_waiting(self, waiting):
        """Tell the core whether a feeding side that does not block in ``acquire_slot``
        (it polls with ``timeout=0``) is held up by a full buffer.

        Used for deadlock detection and the ``feeder_wait`` statistic.
        """
        cdef bint w = bool(waiting)
        if w == (self._feeder_blocked_since >= 0):
            return
        if w:
            self._feeder_blocked_since = papy_monotonic()
            self._feeder_waiting = True
            self._notify_results()
        else:
            self._feeder_wait += papy_monotonic() - self._feeder_blocked_since
            self._feeder_blocked_since = -1.0
            self._feeder_waiting = False

    def turn_left(self):
        """Tasklets the current task may still submit in this turn of the weave."""
        return self._stride_obj - self._repeat

    def end_turn(self):
        """End the current task's turn now: the weave moves on to the next task.

        For a feeding side that does not wait for an input with nothing ready
        (or for a free slot) while another task could be fed.
        """
        if not self._closed and self._open_inputs:
            self._advance()

    def set_stride(self, stride):
        """Change the stride (the weave that follows the work). A turn that has
        already had ``stride`` tasklets ends now."""
        _check_int("stride", stride, 1)
        self._stride = _clamp(stride)
        self._stride_obj = stride
        if self._repeat >= self._stride:
            self._advance()

    def set_buffer(self, buffer):
        """Change the number of buffer slots. Below the slots taken, no slot is free
        until enough results are handed out; nothing already submitted is undone."""
        cdef bint grown
        _check_int("buffer", buffer, 1)
        grown = buffer > self._buffer_obj
        self._buffer = _clamp(buffer)
        self._buffer_obj = buffer
        if grown:
            self._notify_slot()

    def submit(self, task):
        """Record a tasklet of ``task`` (a slot must be held); return its index.

        ``task`` must be the one ``next_task`` returned; after ``stride``
        submissions the weave moves to the next task.
        """
        cdef Py_ssize_t t = self._check_task(task)
        cdef TaskState *ts
        cdef Py_ssize_t index
        if self._held <= 0:
            raise RuntimeError("submit() needs a buffer slot from acquire_slot()")
        ts = &self._tasks[t]
        if t != self._turn or ts.input_done:
            raise ValueError(f"task {task} is not the task whose turn it is ({self._turn})")
        index = ts.submitted
        py_index = index
        self._add_pending(t, index, 1)
        self._held -= 1
        ts.submitted = index + 1
        self._in_flight += 1
        ts.task_in_flight += 1
        ts.live += 1
        self._repeat += 1
        if self._repeat >= self._stride:
            self._advance()
        return py_index

    def submit_many(self, task, n):
        """Record ``n`` tasklets of ``task`` at once (``n`` slots held, ``n <= turn_left()``).

        Returns the index of the first; the others follow it.
        """
        cdef Py_ssize_t t = self._check_task(task)
        cdef Py_ssize_t count, first
        cdef TaskState *ts
        _check_int("n", n, 1)
        count = _clamp(n)
        if self._held < count:
            raise RuntimeError("submit_many() needs n buffer slots from acquire_slots()")
        ts = &self._tasks[t]
        if t != self._turn or ts.input_done:
            raise ValueError(f"task {task} is not the task whose turn it is ({self._turn})")
        if count > self._stride - self._repeat:
            raise ValueError(
                f"n must be <= turn_left() ({self._stride_obj - self._repeat}), got {n}"
            )
        first = ts.submitted
        self._add_pending(t, first, count)
        self._held -= count
        ts.submitted = first + count
        self._in_flight += count
        ts.task_in_flight += count
        ts.live += count
        self._repeat += count
        if self._repeat >= self._stride:
            self._advance()
        return first

    # -- in-flight intervals ------------------------------------------------------
    cdef int _add_pending(self, Py_ssize_t t, Py_ssize_t first, Py_ssize_t n) except -1:
        cdef dict pending = <dict>self._pending[t]
        cdef TaskState *ts = &self._tasks[t]
        if ts.last_pending >= 0 and pending.get(ts.last_pending) == first:
            pending[ts.last_pending] = first + n
        else:
            pending[first] = first + n
            ts.last_pending = first
        return 0

    cdef Py_ssize_t _find_pending(self, Py_ssize_t t, Py_ssize_t index) except -2:
        """Start of the in-flight interval holding ``index``, or -1."""
        cdef dict pending = <dict>self._pending[t]
        cdef Py_ssize_t start, end
        if index in pending:
            return index
        for key, value in pending.items():
            start = key
            end = value
            if start < index < end:
                return start
        return -1

    cdef bint _take_pending(self, Py_ssize_t t, Py_ssize_t first, Py_ssize_t n) except -1:
        """Remove tasklets ``first`` .. ``first + n - 1`` from the in-flight ones if they
        all are in flight (True); otherwise change nothing (False)."""
        cdef dict pending = <dict>self._pending[t]
        cdef Py_ssize_t stop = first + n
        cdef Py_ssize_t at = first
        cdef Py_ssize_t start, end
        cdef list cuts = []
        while at < stop:
            start = self._find_pending(t, at)
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
                if self._tasks[t].last_pending == start:
                    self._tasks[t].last_pending = stop
        return True

    # -- delivering side ------------------------------------------------------
    cdef inline void _enqueue(self, Py_ssize_t t, _Chunk chunk):
        """Make ``chunk`` available to consumers."""
        self._tasks[t].n_ready += len(chunk.values)
        if self._ordered:
            (<dict>self._ready[t])[chunk.first] = chunk
        else:
            self._ready[t].append(chunk)

    cdef int _store(self, Py_ssize_t t, object task, object index, object ok,
                    object value) except -1:
        """Store one arrived result."""
        cdef set skipped, ahead
        cdef TaskState *ts = &self._tasks[t]
        cdef Py_ssize_t i
        if not _is_index(index):
            raise ValueError(f"tasklet {index} of task {task} is not in flight")
        try:
            i = index
        except OverflowError:
            raise ValueError(f"tasklet {index} of task {task} is not in flight") from None
        if not self._take_pending(t, i, 1):
            raise ValueError(f"tasklet {index} of task {task} is not in flight")
        self._in_flight -= 1
        ts.task_in_flight -= 1
        skipped = <set>self._skipped[t]
        if skipped and index in skipped:  # its slot was freed when it was skipped
            skipped.remove(index)
            return 0
        ts.live -= 1
        ahead = <set>self._ahead[t]
        if ahead and index in ahead:  # skipped before it was submitted: its slot is freed now
            ahead.remove(index)
            self._used -= 1
            self._notify_slot()
            return 0
        self._enqueue(t, _Chunk(index, [value], None if ok else {0: value}))
        return 0

    def put_result(self, task, index, ok, value):
        """Deliver the result of tasklet ``index`` of ``task``.

        ``ok`` False means ``value`` is an exception to raise at that position.
        A result of a skipped position is dropped. Ignored once closed.
        """
        cdef Py_ssize_t t = self._check_task(task)
        if self._closed:
            return
        self._store(t, task, index, ok, value)
        self._notify_results()

    def put_many(self, results):
        """Deliver several ``(task, index, ok, value)`` results at once."""
        for item in results:
            self._check_task(item[0])
        if self._closed:
            return
        try:
            for item in results:
                if type(item) is tuple and len(<tuple>item) == 4:
                    task, index, ok, value = <tuple>item
                else:  # let CPython unpack, for its exact error messages
                    task, index, ok, value = _unpack4(item)
                self._store(self._check_task(task), task, index, ok, value)
        finally:
            self._notify_results()

    def put_range(self, task, first, values, errors=None):
        """Deliver the results of tasklets ``first``, ``first + 1``, ... of ``task``.

        ``values[k]`` is the result of tasklet ``first + k``, unless ``k`` is a
        key of ``errors``: then ``errors[k]`` is the exception for that position.
        The core keeps ``values`` (a list) as it is: the caller must not reuse it.
        """
        cdef Py_ssize_t t = self._check_task(task)
        cdef Py_ssize_t k = 0, n
        cdef TaskState *ts
        cdef list vals
        _check_int("first", first, 0)
        if type(values) is list:
            vals = <list>values
        else:
            vals = list(values)
        if self._closed:
            return
        try:
            n = len(vals)
            if (
                n
                and not self._skipped[t]
                and not self._ahead[t]
                and first <= self._tasks[t].submitted
            ):
                if self._take_pending(t, first, n):
                    # the common case: one entry for the whole batch
                    ts = &self._tasks[t]
                    self._in_flight -= n
                    ts.task_in_flight -= n
                    ts.live -= n
                    if errors:
                        errors = {e: errors[e] for e in errors if 0 <= e < n}
                    self._enqueue(t, _Chunk(first, vals, errors or None))
                    return
            for value in vals:
                if errors and k in errors:
                    self._store(t, task, first + k, False, errors[k])
                else:
                    self._store(t, task, first + k, True, value)
                k += 1
        finally:
            self._notify_results()

    # -- consumer side --------------------------------------------------------
    cdef object _head(self, Py_ssize_t t):
        """The chunk holding ``t``'s next result to hand out, if it arrived, else None."""
        cdef object current = self._current[t]
        cdef _Chunk chunk
        if current is not None:
            chunk = <_Chunk>current
            if chunk.pos < len(chunk.values):
                return chunk
        if self._ordered:
            current = (<dict>self._ready[t]).pop(self._tasks[t].next_out, None)
        else:
            queue = self._ready[t]
            current = queue.popleft() if queue else None
        self._current[t] = current
        return current

    cdef inline bint _finished(self, Py_ssize_t t):
        """True when ``t`` has nothing left to hand out, ever (nothing ready)."""
        cdef TaskState *ts = &self._tasks[t]
        if not ts.input_done:
            return False
        if self._ordered:
            return ts.next_out >= ts.submitted
        return ts.live == 0

    cdef inline void _hand_out(self, Py_ssize_t t, Py_ssize_t n):
        """Account for ``n`` results of ``t`` handed out."""
        cdef TaskState *ts = &self._tasks[t]
        ts.n_ready -= n
        ts.returned += n
        if self._ordered:
            ts.next_out += n
        self._used -= n
        self._notify_slot()

    cdef object _take(self, Py_ssize_t t):
        """Hand out the next result of ``t`` if there is one, else None."""
        cdef object head = self._head(t)
        cdef _Chunk chunk
        cdef Py_ssize_t k
        if head is None:
            return _FINISHED_TUPLE if self._finished(t) else None
        chunk = <_Chunk>head
        k = chunk.pos
        chunk.pos = k + 1
        value = chunk.values[k]
        chunk.values[k] = None  # the consumer owns it now
        self._hand_out(t, 1)
        errors = chunk.errors
        if errors is not None and k in <dict>errors:
            self._tasks[t].failed += 1
            return (ERROR, chunk.first + k, (<dict>errors)[k])
        return (RESULT, chunk.first + k, value)

    def try_result(self, task):
        """``(status, index, value)`` of ``task``'s next result if it is there, else None.

        Never waits. ``FINISHED`` once the task has nothing left; raises
        ``SchedulerClosed`` once stopped.
        """
        cdef Py_ssize_t t = self._check_task(task)
        if self._closed:
            raise SchedulerClosed(_MSG_CLOSED)
        return self._take(t)

    def try_values(self, task, n):
        """Up to ``n`` of ``task``'s next results at once, if they are there, else None.

        Returns ``(RESULT, first index, [values...])`` (at least one value, all
        successful, consecutive in hand-out order), ``(ERROR, index, exception)``
        for a single failed position, or ``(FINISHED, -1, None)``. Never waits.
        Ordered, the values may span several delivered batches (one call hands
        out many results of batches of one).
        """
        cdef Py_ssize_t t = self._check_task(task)
        cdef Py_ssize_t k, end, length, i, e, count, first
        cdef _Chunk chunk
        cdef list values
        cdef list out = None
        _check_int("n", n, 1)
        count = _clamp(n)
        if self._closed:
            raise SchedulerClosed(_MSG_CLOSED)
        head = self._head(t)
        if head is None:
            return _FINISHED_TUPLE if self._finished(t) else None
        chunk = <_Chunk>head
        if chunk.errors is not None and chunk.pos in <dict>chunk.errors:
            return self._take(t)
        first = chunk.first + chunk.pos
        while True:
            k = chunk.pos
            values = chunk.values
            length = len(values)
            end = length
            if count < length - k:
                end = k + count
            errors = chunk.errors
            if errors is not None:
                for key in <dict>errors:
                    e = key
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
                for i in range(k, end):
                    values[i] = None
                chunk.pos = end
            self._hand_out(t, end - k)
            count -= end - k
            if count == 0 or end < length or not self._ordered:
                break
            head = self._head(t)  # the next position's batch, if it arrived
            if head is None:
                break
            chunk = <_Chunk>head
        return (RESULT, first, out)

    cdef Py_ssize_t _skip_one(self, Py_ssize_t t, Py_ssize_t ahead) except -2:
        """Give up the position a timed-out consumer of ``t`` waited for.

        Ordered: the next position in input order; unordered: the oldest one in
        flight. A position not submitted yet is given up only if it exists:
        ``ahead`` is how many positions past the submitted ones the feeding side
        knows of. Returns its index, or -1 if there was none to skip.
        """
        cdef set skipped = <set>self._skipped[t]
        cdef set ahead_set = <set>self._ahead[t]
        cdef TaskState *ts = &self._tasks[t]
        cdef Py_ssize_t index = 0, i, claimed
        cdef bint found = False
        if self._ordered:
            index = ts.next_out
            if index >= ts.submitted:
                if index - ts.submitted >= ahead:
                    return -1
                return self._skip_ahead(t, index)
            ts.next_out = index + 1
        else:
            for start in sorted(<dict>self._pending[t]):
                for i in range(start, (<dict>self._pending[t])[start]):
                    if i not in skipped and i not in ahead_set:
                        index = i
                        found = True
                        break
                if found:
                    break
            if not found:
                claimed = 0
                for j in ahead_set:
                    if j >= ts.submitted:
                        claimed += 1
                if claimed >= ahead:
                    return -1
                return self._skip_ahead(t, ts.submitted + claimed)
        skipped.add(index)  # its slot is freed now, its result dropped on arrival
        ts.live -= 1
        ts.n_skipped += 1
        self._used -= 1
        self._notify_slot()
        self._notify_results()
        return index

    cdef Py_ssize_t _skip_ahead(self, Py_ssize_t t, Py_ssize_t index) except -2:
        """Give up position ``index`` of ``t`` before it is submitted: it takes a slot
        when submitted, and frees it when its result is dropped."""
        cdef TaskState *ts = &self._tasks[t]
        (<set>self._ahead[t]).add(index)
        if self._ordered:
            ts.next_out = index + 1
        ts.n_skipped += 1
        self._notify_results()
        return index

    cdef object _timeout(self, Py_ssize_t t, object task, object timeout, Py_ssize_t ahead=0,
                         object skip=None):
        """The ``TimeoutError`` of a wait for ``t`` that timed out, skipping its
        position first if the map skips (or ``skip`` says so for this task).
        ``.index`` is the position skipped for good, or None if no position was
        consumed."""
        cdef bint skipping = self._skip if skip is None else bool(skip)
        cdef Py_ssize_t index = self._skip_one(t, ahead) if skipping else -1
        message = _MSG_TIMEOUT.format(task=task, timeout=timeout)
        if index >= 0:
            message += f" (position {index} skipped)"
        err = timeout_error_class()(message)
        err.index = index if index >= 0 else None
        return err

    cdef inline bint _stuck(self):
        """True when nothing can arrive and the feeding side cannot submit."""
        return self._feeder_waiting and self._in_flight == 0 and self._used >= self._buffer

    def stuck(self):
        """True when nothing can arrive and the feeding side waits for a slot: if the
        result a consumer waits for is not there either, the map cannot progress."""
        return self._stuck()

    def deadlock_error(self, task):
        """The ``DeadlockError`` explaining why ``task``'s consumer can wait forever."""
        return DeadlockError(
            _MSG_DEADLOCK.format(
                task=task, buffer=self._buffer_obj, need=self._n_obj * self._stride_obj
            )
        )

    def timed_out(self, task, timeout, ahead=0, skip=None):
        """A wait for ``task`` timed out: skip its position if the map skips (``skip``:
        this task's own choice, None: the map's) and the position exists:
        submitted, or one of ``ahead`` positions past the submitted ones that the
        feeding side knows of. Return the ``TimeoutError`` to raise."""
        cdef Py_ssize_t t = self._check_task(task)
        _check_int("ahead", ahead, 0)
        if self._closed:
            raise SchedulerClosed(_MSG_CLOSED)
        return self._timeout(t, task, timeout, _clamp(ahead), skip)

    def outstanding(self, task):
        """Positions of ``task`` submitted and neither handed out nor skipped yet: the
        outcomes still to come from what it was given."""
        cdef Py_ssize_t t = self._check_task(task)
        cdef TaskState *ts = &self._tasks[t]
        cdef Py_ssize_t claimed = 0
        if self._ordered:
            return max(0, ts.submitted - ts.next_out)
        for j in <set>self._ahead[t]:
            if j < ts.submitted:
                claimed += 1
        return ts.live + ts.n_ready - claimed

    def get_result(self, task, timeout=None):
        """Return ``(status, index, value)`` for the next result of ``task``.

        ``status`` is ``RESULT``, ``ERROR`` (``value`` is the exception) or
        ``FINISHED`` (and stays so). Waits at most ``timeout`` seconds (None:
        no limit) and then raises papy's ``TimeoutError``, skipping the awaited
        position for good if the scheduler skips and the position exists.
        Raises ``DeadlockError`` if the wait can never end and
        ``SchedulerClosed`` once stopped.
        """
        cdef Py_ssize_t t = self._check_task(task)
        if self._closed:
            raise SchedulerClosed(_MSG_CLOSED)
        got = self._take(t)
        if got is not None:
            return got
        return self._wait_result(t, task, timeout)

    cdef object _wait_result(self, Py_ssize_t t, object task, object timeout):
        cdef double started = papy_monotonic()
        cdef bint has_deadline = timeout is not None
        cdef double deadline = 0.0
        cdef bint stuck = False
        cdef double stuck_since = 0.0
        cdef double now, remaining, wait
        cdef unsigned long long snapshot
        if has_deadline:
            deadline = started + timeout
        self._results_waiters += 1
        try:
            # Nothing can have changed since the caller's _take (the GIL is
            # held), but registering first makes the wake-up airtight.
            snapshot = self._sync.results_seq
            got = self._take(t)
            if got is not None:
                return got
            while True:
                now = papy_monotonic()
                if self._has_grace and self._stuck():
                    if not stuck:
                        stuck = True
                        stuck_since = now
                    if now - stuck_since >= self._grace:
                        raise self.deadlock_error(task)
                else:
                    stuck = False
                wait = WAIT_SLICE
                if has_deadline:
                    remaining = deadline - now
                    if remaining <= 0:
                        raise self._timeout(t, task, timeout)
                    if remaining < wait:
                        wait = remaining
                with nogil:
                    papy_sync_wait(self._sync, 0, snapshot, wait)
                PyErr_CheckSignals()
                if self._closed:
                    raise SchedulerClosed(_MSG_CLOSED)
                snapshot = self._sync.results_seq
                got = self._take(t)
                if got is not None:
                    return got
        finally:
            self._results_waiters -= 1
            self._consumer_wait += papy_monotonic() - started

    def get_many(self, task, n, timeout=None):
        """Like ``get_result``, then also take up to ``n - 1`` more results already there.

        Returns a non-empty list; a ``FINISHED`` entry only ever comes alone.
        """
        cdef Py_ssize_t t, count, taken
        _check_int("n", n, 1)
        count = _clamp(n)
        first = self.get_result(task, timeout)
        out = [first]
        if (<tuple>first)[0] == FINISHED or count == 1:
            return out
        t = self._check_task(task)
        taken = 1
        while taken < count:
            got = self._take(t)
            if got is None or (<tuple>got)[0] == FINISHED:
                break
            out.append(got)
            taken += 1
        return out

    def wait_change(self, seen, timeout):
        """Wait at most ``timeout`` seconds until ``changes`` differs from ``seen``.

        Returns True if it did. For a thread that drives the map: take
        ``changes``, check everything, then wait here without missing what
        happened in between. Never raises ``SchedulerClosed`` (close is a change).
        """
        cdef double started, deadline, remaining, wait
        cdef unsigned long long snapshot
        if self._changes != seen or self._closed:
            return True
        if timeout <= 0:
            return False
        started = papy_monotonic()
        deadline = started + timeout
        self._change_waiters += 1
        try:
            while self._changes == seen and not self._closed:
                remaining = deadline - papy_monotonic()
                if remaining <= 0:
                    return False
                wait = WAIT_SLICE
                if remaining < wait:
                    wait = remaining
                snapshot = self._sync.results_seq
                with nogil:
                    papy_sync_wait(self._sync, 0, snapshot, wait)
                PyErr_CheckSignals()
            return True
        finally:
            self._change_waiters -= 1
            self._consumer_wait += papy_monotonic() - started

    def poke(self):
        """Wake every waiter (they re-check their state): something outside the core changed."""
        self._changes += 1
        papy_sync_bump(self._sync, 0)
        papy_sync_bump(self._sync, 1)

    def task_finished(self, task):
        """True once ``task`` has handed out (or skipped) all of its results."""
        cdef Py_ssize_t t = self._check_task(task)
        cdef TaskState *ts = &self._tasks[t]
        if not ts.input_done:
            return False
        if self._ordered:
            return ts.next_out >= ts.submitted
        return ts.live == 0 and ts.n_ready == 0

    # -- lifecycle and inspection --------------------------------------------
    def close(self):
        """Stop: wake every waiter; later waits raise ``SchedulerClosed``."""
        self._closed = True
        self._changes += 1
        papy_sync_bump(self._sync, 0)
        papy_sync_bump(self._sync, 1)

    def stats(self):
        """A consistent snapshot of the counters, per task and for the map."""
        cdef Py_ssize_t t
        cdef TaskState *ts
        cdef double feeder_wait = self._feeder_wait
        tasks = []
        for t in range(self._n):
            ts = &self._tasks[t]
            tasks.append(
                {
                    "submitted": ts.submitted,
                    "returned": ts.returned,
                    "failed": ts.failed,
                    "skipped": ts.n_skipped,
                    "in_flight": ts.task_in_flight,
                    "ready": ts.n_ready,
                    "input_done": ts.input_done,
                }
            )
        if self._feeder_blocked_since >= 0:
            feeder_wait += papy_monotonic() - self._feeder_blocked_since
        return {
            "tasks": tasks,
            "buffer_used": self._used,
            "buffer_size": self._buffer_obj,
            "in_flight": self._in_flight,
            "feeder_wait": feeder_wait,
            "consumer_wait": self._consumer_wait,
            "round": self._round,
            "closed": self._closed,
        }

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return (
            f"<Scheduler {IMPLEMENTATION} {state} tasks={self._n_obj} stride={self._stride_obj} "
            f"buffer={self._used}/{self._buffer_obj} in_flight={self._in_flight}>"
        )


cdef class Outlet:
    """Hands out results one by one, at C speed, from a deque that ``refill``
    fills a batch at a time (the base of papy's result iterators).

    ``bind(ready, refill)``: ``ready`` is the deque (it may be shared by several
    outlets: each result is handed out once); ``refill(outlet)`` is called when
    it is empty and returns the next result (or raises: ``StopIteration`` at
    the end, an item's exception, a timeout ...).
    """

    cdef object _ready
    cdef object _pop
    cdef object _refill
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        self._ready = _EMPTY
        self._pop = _EMPTY.popleft
        self._refill = None

    def bind(self, ready, refill):
        """Hand out from ``ready``; call ``refill(self)`` when it is empty."""
        self._ready = ready
        self._pop = ready.popleft
        self._refill = refill

    def __iter__(self):
        return self

    def __next__(self):
        if self._ready:  # (no exception on the way to a refill: one item a batch)
            try:
                return self._pop()
            except IndexError:  # another consumer took the last one meanwhile
                pass
        if self._refill is None:
            raise StopIteration
        return self._refill(self)


cdef object _EMPTY = deque()  # never filled: an unbound outlet is empty
