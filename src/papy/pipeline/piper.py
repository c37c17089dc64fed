"""Piper: one node of a pipeline, a Worker evaluated over the items of its inputs.

How the items of one Piper flow (``stride`` is the IMap's stride, 1 for a
linear Piper)::

    upstream Pipers (tees) / iterables
        │ _Inbox: zip, one list per position (the inbox)
        │ _Consume (consume > 1): ``consume`` inboxes in one Batch
        ▼
    spawn x task: IMap.add_task(worker, inbox) or, linear, worker(inbox) in the reading thread
        │ _Results: an exception raised by the IMap at a position becomes a WorkerError
        ▼
    _Outbox: the spawn tasks chained stride-wise, fresh errors stamped with the Piper's
        │ name and the position; produce > 1: each result split (or repeated) into
        │ ``produce`` items, interleaved stride-wise
        ▼
    Piper.__next__: counts, tracking, ``debug`` raising
        │ _Tee: one queue per downstream consumer (thread-safe)
        ▼
    downstream Pipers / the Plumber

Errors are values (``WorkerError``) that keep their position. An exception
*raised* by an upstream Piper (a ``debug`` Piper, or a broken IMap) is raised
again by every downstream Piper at the same position, so it reaches whoever
reads the pipeline's outputs.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

from .. import _check
from .._errors import DeadlockError, InputError, SchedulerClosed, WorkerLostError
from .._imap import TaskIterator
from .._log import pipeline_logger
from ._node import Node
from .errors import PiperError, WorkerError
from .worker import Batch, Worker

__all__ = ["Piper"]

_names = itertools.count()


class _Propagate(Exception):
    """Carries an exception *raised* by an upstream Piper to the same position downstream."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc


class _Raised:
    """A raised exception stored at a position (in a tee queue or a block)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


#: the Pipers connected to each IMap (the staged start lets them all in at once)
_SHARING: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Piper]] = weakref.WeakKeyDictionary()


def _is_fatal(exc: BaseException) -> bool:
    """Errors that break an IMap as a whole rather than one item."""
    return isinstance(exc, (SchedulerClosed, DeadlockError))


def _what(exc: BaseException) -> str:
    from .._errors import timeout_error_class

    if isinstance(exc, timeout_error_class()):
        return "<timeout>"
    if isinstance(exc, WorkerLostError):
        return "<worker lost>"
    if isinstance(exc, InputError):
        return "<input>"
    return f"<{type(exc).__name__}>"


class _Source:
    """A plain iterable connected to a Piper; ``stop()`` ends it (Dagger.stop)."""

    __slots__ = ("_it", "stopped")

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._it = iter(iterable)
        self.stopped = False

    def __iter__(self) -> _Source:
        return self

    def __next__(self) -> Any:
        if self.stopped:
            raise StopIteration
        return next(self._it)

    def stop(self) -> None:
        self.stopped = True


class _Tee:
    """Hands every item of one Piper to each of its consumers, from any thread.

    A consumer whose queue is empty pulls the next item from the Piper (one
    puller at a time; the others wait for it or read their own queue, so a
    consumer that is behind never waits for one that is ahead).
    """

    _PULL = object()

    def __init__(self, piper: Piper) -> None:
        self._piper = piper
        self._queues: list[deque[Any] | None] = []
        self._cond = threading.Condition()
        self._pulling = False
        self._done = False

    def add(self) -> _TeeHandle:
        with self._cond:
            self._queues.append(deque())
            return _TeeHandle(self, len(self._queues) - 1)

    def remove(self, index: int) -> None:
        with self._cond:
            self._queues[index] = None
            self._cond.notify_all()

    def get(self, index: int) -> Any:
        cond = self._cond
        with cond:
            while True:
                queue = self._queues[index]
                if queue is None:
                    raise StopIteration
                if queue:
                    item = queue.popleft()
                    break
                if self._done:
                    raise StopIteration
                if not self._pulling:
                    self._pulling = True
                    item = self._PULL
                    break
                cond.wait(0.05)
        if item is not self._PULL:
            if type(item) is _Raised:
                raise item.exc
            return item
        stored: Any
        try:
            value = next(self._piper)
            stored = value
        except StopIteration:
            with cond:
                self._pulling = False
                self._done = True
                cond.notify_all()
            raise
        except Exception as exc:  # noqa: BLE001 - raised again to every consumer
            stored = _Raised(exc)
            value = None
        except BaseException:
            with cond:
                self._pulling = False
                cond.notify_all()
            raise
        with cond:
            self._pulling = False
            for i, queue in enumerate(self._queues):
                if i != index and queue is not None:
                    queue.append(stored)
            cond.notify_all()
        if type(stored) is _Raised:
            raise stored.exc
        return value


class _TeeHandle:
    __slots__ = ("tee", "index")

    def __init__(self, tee: _Tee, index: int) -> None:
        self.tee = tee
        self.index = index

    def __iter__(self) -> _TeeHandle:
        return self

    def __next__(self) -> Any:
        return self.tee.get(self.index)


class _Inbox:
    """Zips the inputs of a Piper: one list per position, one entry per input.

    Every input is read at every position, even after one of them ended, so
    shared upstreams stay in step; the zip ends when any input ends. An
    exception raised by an input iterable becomes a WorkerError at that
    position; one raised by an upstream Piper is raised again (``_Propagate``).
    """

    #: a Piper's ``spawn`` copies take its rows in turns of the weave (IMap.add_task)
    shared_input = True

    def __init__(
        self, piper: Piper, sources: list[tuple[Iterator[Any], bool]], gate: threading.Event
    ) -> None:
        self._piper = piper
        self._sources = sources
        self._done = False
        self._gate: threading.Event | None = gate

    def __iter__(self) -> _Inbox:
        return self

    def __next__(self) -> list[Any]:
        if self._gate is not None:
            # wait until every IMap of the pipeline is started (Dagger.start,
            # Piper.start); give up if the map reading this inbox was stopped
            # meanwhile, so its input thread never waits for ever
            imap = self._piper.imap
            while not self._gate.wait(0.1):
                if imap is not None and not imap.started:
                    self._done = True
                    raise StopIteration
            self._gate = None
        piper = self._piper
        if self._done or piper._inbox is not self or not piper.started:
            raise StopIteration  # the end, or the Piper stopped: read nothing more
        row: list[Any] = []
        stopped = False
        raised: BaseException | None = None
        for source, from_piper in self._sources:
            try:
                item = next(source)
            except StopIteration:
                stopped = True
                continue
            except Exception as exc:  # noqa: BLE001 - keeps its position
                if from_piper:
                    if raised is None:
                        raised = exc
                    item = None
                else:
                    item = WorkerError(exc, function="<input>")
            row.append(item)
        if stopped or piper._inbox is not self or not piper.started:
            # the end, or a read that was blocked inside an input when the Piper
            # stopped: what it returned is dropped, not counted
            self._done = True
            raise StopIteration
        piper._n_in += 1
        if raised is not None:
            raise _Propagate(raised)
        return row


class _Consume:
    """Gathers ``n`` inboxes into one Batch.

    With ``stride`` s, a block of ``n*s`` inboxes is dealt out round robin
    (Batch j gets inboxes j, j+s, j+2s, ...), which regroups what a
    ``produce=n`` Piper of the same stride split. The last block may be short
    (m < n*s inboxes); it is dealt out with stride ceil(m/n), so the items a
    producer made from one result still end up together.
    """

    #: a Piper's ``spawn`` copies take its blocks in turns of the weave (IMap.add_task)
    shared_input = True

    def __init__(self, rows: Iterator[Any], n: int, stride: int) -> None:
        self._rows = rows
        self._n = n
        self._stride = stride
        self._ready: deque[Any] = deque()
        self._done = False

    def __iter__(self) -> _Consume:
        return self

    def __next__(self) -> Batch:
        if not self._ready:
            if self._done:
                raise StopIteration
            block: list[Any] = []
            while len(block) < self._n * self._stride:
                try:
                    row = next(self._rows)
                except StopIteration:
                    self._done = True
                    break
                except _Propagate as p:
                    row = _Raised(p)
                block.append(row)
            if not block:
                raise StopIteration
            stride = -(-len(block) // self._n)
            self._ready.extend(Batch(block[j::stride]) for j in range(stride))
        batch = self._ready.popleft()
        for row in batch:
            if type(row) is _Raised:
                raise row.exc
        return batch  # type: ignore[no-any-return]


class _Apply:
    """A linear task: the Worker applied in the thread that reads it."""

    __slots__ = ("_worker", "_inbox")

    def __init__(self, worker: Worker, inbox: Iterator[Any]) -> None:
        self._worker = worker
        self._inbox = inbox

    def __iter__(self) -> _Apply:
        return self

    def __next__(self) -> Any:
        return self._worker(next(self._inbox))


class _Results:
    """The results of one task; an error at a position becomes a WorkerError.

    On an IMap, the map hands out an item's error as a value, so whatever is
    *raised* (a stopped map, a deadlock, an exception from a signal handler of
    the reading thread) is not an item's and propagates.
    """

    __slots__ = ("_task",)

    def __init__(self, task: Iterator[Any]) -> None:
        self._task = task

    def __iter__(self) -> _Results:
        return self

    def __next__(self) -> Any:
        task = self._task
        if isinstance(task, TaskIterator):
            return self._next_of_map(task)
        try:
            return next(task)
        except (StopIteration, _Propagate):
            raise
        except Exception as exc:  # noqa: BLE001
            return _item_error(exc)

    @staticmethod
    def _next_of_map(task: TaskIterator) -> Any:
        from .._errors import timeout_error_class

        while True:
            try:
                ok, value = task.outcome()
            except timeout_error_class() as exc:
                if getattr(exc, "index", None) is None:
                    continue  # no position was given up: wait on
                return WorkerError(exc, function=_what(exc))  # that position is skipped
            return value if ok else _item_error(value)


def _item_error(exc: BaseException) -> Any:
    cause = exc.__cause__
    if isinstance(exc, InputError) and isinstance(cause, _Propagate):
        raise cause from None  # an upstream Piper raised: raise it here too
    if _is_fatal(exc):
        raise exc
    return WorkerError(exc, function=_what(exc))


class _Outbox:
    """Chains the spawn tasks stride-wise, stamps fresh errors, splits for produce."""

    def __init__(
        self, piper: Piper, tasks: list[Iterator[Any]], stride: int, produce: int, repeat: bool
    ) -> None:
        self._piper = piper
        self._tasks = tasks
        self._alive = [True] * len(tasks)
        self._n_alive = len(tasks)
        self._stride = stride
        self._turn = 0
        self._taken = 0
        self._produce = produce
        self._repeat = repeat
        self._pending: deque[Any] = deque()
        self._done = False
        self.n_eval = 0

    def _advance(self) -> None:
        self._turn = (self._turn + 1) % len(self._tasks)
        self._taken = 0

    def _count(self) -> int:
        self._taken += 1
        if self._taken >= self._stride:
            self._advance()
        index = self.n_eval
        self.n_eval += 1
        return index

    def _evaluate(self) -> Any:
        """The next result of the chained tasks, fresh errors stamped."""
        while self._n_alive:
            turn = self._turn
            if not self._alive[turn]:
                self._advance()
                continue
            try:
                value = next(self._tasks[turn])
            except StopIteration:
                self._alive[turn] = False
                self._n_alive -= 1
                self._advance()
                continue
            except _Propagate:
                self._count()
                raise
            index = self._count()
            if isinstance(value, WorkerError) and value.piper is None:
                value.piper = self._piper.name
                value.index = index
                self._piper._failed(value, self)
            return value
        raise StopIteration

    def _split(self, value: Any) -> Any:
        n = self._produce
        if isinstance(value, WorkerError) or self._repeat:
            return value
        problem = None
        if not isinstance(value, Sequence):
            try:
                value = tuple(value)
            except TypeError:
                problem = f"got {type(value).__name__}"
        if problem is None and len(value) < n:
            problem = f"got {len(value)} items"
        if problem is None:
            return value
        piper = self._piper
        error = WorkerError(
            ValueError(
                f"a Piper with produce={n} needs a sequence of at least {n} items, {problem}"
            ),
            function=piper.worker.__name__,
            piper=piper.name,
            index=self.n_eval - 1,
        )
        piper._failed(error, self)
        return error

    def __iter__(self) -> _Outbox:
        return self

    def __next__(self) -> Any:
        if self._produce == 1:
            return self._evaluate()
        pending = self._pending
        if not pending:
            if self._done:
                raise StopIteration
            block: list[Any] = []
            for _ in range(self._stride):
                try:
                    value = self._split(self._evaluate())
                except StopIteration:
                    self._done = True
                    break
                except _Propagate as p:
                    value = _Raised(p)
                block.append(value)
            if not block:
                raise StopIteration
            for rep in range(self._produce):
                for value in block:
                    if self._repeat or isinstance(value, (WorkerError, _Raised)):
                        pending.append(value)
                    else:
                        pending.append(value[rep])
        item = pending.popleft()
        if type(item) is _Raised:
            raise item.exc
        return item


def _rate(piper: Piper, imap: Any) -> Any:
    """Items ``piper`` hands out per weave round of ``imap`` when ``imap``'s own
    feeder thread reads it (None when another thread feeds it)."""
    from fractions import Fraction

    if piper.imap is imap:
        return Fraction(piper.spawn * piper.produce)
    if piper.imap is not None:
        return None
    rates = [r for x in piper._inputs if isinstance(x, Piper) and (r := _rate(x, imap)) is not None]
    if not rates:
        return None
    return min(rates) * piper.produce / piper.consume


def _check_int(name: str, value: Any) -> int:
    return _check.count(name, value, 1)


class Piper(Node):
    """A node of a pipeline: evaluates a Worker over the items flowing through it.

    Lifecycle on its own: ``connect([inputs])``, ``start()``, ``next()`` or
    iteration, ``stop()``, ``disconnect()``; a Dagger or Plumber does all of
    this for its Pipers. Errors stay values (``WorkerError``) at their
    position, so every Piper of a pipeline yields as many items as it should.

    Args:
        worker: A Worker, a callable, a sequence of callables (made into a
            Worker), or a Piper (its Worker is reused).
        parallel: A ``papy.IMap`` to evaluate the Worker on (several Pipers
            may share one), or ``False`` for a *linear* Piper, evaluated lazily
            by whichever thread reads it.
        consume: Inboxes given to one call of the Worker, as a ``Batch`` (a
            list of ``consume`` inboxes). With the IMap's stride s > 1, consume
            and produce deal items out in blocks of s, as the original did
            (see docs/pipelines.md).
        produce: Items made from one result: the result must be a sequence of
            at least ``produce`` items, handed out one by one (or see
            ``repeat``).
        spawn: Copies of the Worker added to the IMap as separate tasks over
            the same inbox; their results are re-chained in order.
        timeout: Seconds to wait for each result (parallel Pipers only). A
            late item is skipped for good (the Piper's tasks skip, whatever the
            IMap's ``skip``) and a ``WorkerError`` with papy's ``TimeoutError``
            takes its place, so counts stay aligned.
        branch: A sortable key: orders the inputs of a join and the inputs of
            a Dagger.
        debug: Raise a failed item's ``WorkerError`` from ``next()`` instead
            of handing it out.
        name: The Piper's name, unique within a Dagger; default: the
            Worker's name and a number (``"length_0"``).
        track: Keep every item handed out in ``self.tracked``
            (``{position: item}``, errors included).
        repeat: With ``produce`` n, hand the result itself out n times
            instead of its n parts.
    """

    def __init__(
        self,
        worker: Any,
        parallel: Any = False,
        consume: int = 1,
        produce: int = 1,
        spawn: int = 1,
        timeout: float | None = None,
        branch: Any = None,
        debug: bool = False,
        name: str | None = None,
        track: bool = False,
        repeat: bool = False,
    ) -> None:
        from .._imap import IMap

        if isinstance(worker, Piper):
            worker = worker.worker
        elif not isinstance(worker, Worker):
            worker = Worker(worker)
        if parallel is None or parallel is False:
            parallel = False
        elif not isinstance(parallel, IMap):
            raise TypeError(f"parallel must be an IMap or False, got {type(parallel).__name__}")
        self.worker: Worker = worker
        self.imap = parallel if parallel is not False else None
        self.consume = _check_int("consume", consume)
        self.produce = _check_int("produce", produce)
        self.spawn = _check_int("spawn", spawn)
        timeout = _check.seconds("timeout", timeout)
        if timeout is not None and self.imap is None:
            raise ValueError(
                "timeout needs a parallel Piper: a linear Piper cannot abandon an item"
            )
        self.timeout = timeout
        self.branch = branch
        self.debug = bool(debug)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        self.name = name if name is not None else f"{worker.__name__}_{next(_names)}"
        self.track = bool(track)
        self.repeat = bool(repeat)
        self.tracked: dict[int, Any] = {}
        self.connected = False
        self.started = False
        self.finished = False
        self.failure: BaseException | None = None
        self._stopped = False  # stop() was called: next() raises StopIteration
        #: called with every WorkerError that starts here (a Plumber counts and watches them)
        self._on_failure: Callable[[WorkerError], None] | None = None
        self._tee: _Tee | None = None
        self._inputs: list[Any] = []
        self._handles: list[tuple[Piper, _TeeHandle]] = []
        self._sources: list[_Source] = []
        self._task_ids: list[int] = []
        self._outbox: _Outbox | None = None
        self._inbox: _Inbox | None = None
        self._gate = threading.Event()
        self._upstream_ok = False
        self._dagger: weakref.ref[Any] | None = None  # the Dagger this Piper is a node of
        self._reset_counts()

    @property
    def parallel(self) -> Any:
        """The IMap of a parallel Piper, False for a linear one."""
        return self.imap if self.imap is not None else False

    def _reset_counts(self) -> None:
        self._n_in = 0
        self._n_out = 0
        self._n_errors = 0
        self._n_failed = 0

    def _failed(self, error: WorkerError, outbox: _Outbox) -> None:
        """Count ``error``, an item that failed here (not one of a stale outbox)."""
        if outbox is not self._outbox:
            return
        self._n_failed += 1
        watch = self._on_failure
        if watch is not None:
            watch(error)

    @property
    def stats(self) -> dict[str, int]:
        """Counts of the current (or last) run: inboxes read (``in``), items handed
        out (``out``), error items among them (``errors``) and the errors that
        started here (``failed``)."""
        return {
            "in": self._n_in,
            "out": self._n_out,
            "errors": self._n_errors,
            "failed": self._n_failed,
        }

    @property
    def inputs(self) -> list[Any]:
        """What the Piper is connected to (Pipers and iterables), in inbox order."""
        return list(self._inputs)

    # -- lifecycle ------------------------------------------------------------
    def connect(self, inbox: Sequence[Any]) -> Piper:
        """Connect to ``inbox``, a list with one input per upstream pipe.

        An input is an upstream Piper or any iterable. For a parallel Piper this
        adds its tasks to the IMap, which must not be started yet. Returns self.
        """
        if self.connected:
            raise PiperError(f"Piper {self.name!r} is already connected; disconnect() it first")
        if self.started:
            raise PiperError(f"Piper {self.name!r} is started")
        if self.imap is not None and self.imap.started:
            raise PiperError(
                f"the IMap of Piper {self.name!r} is already started: connect every Piper "
                "that shares an IMap before starting any of them"
            )
        if not isinstance(inbox, (list, tuple)) or not inbox:
            raise TypeError(
                "connect() takes a non-empty list of inputs (Pipers or iterables), one per pipe"
            )
        if self.imap is not None:
            for x in inbox:
                rate = _rate(x, self.imap) if isinstance(x, Piper) else None
                if rate is not None and self.consume * self.spawn > rate:
                    raise PiperError(
                        f"Piper {self.name!r} (consume={self.consume}, spawn={self.spawn}) needs more "
                        f"items in each weave round of its IMap than its upstream {x.name!r} on the same "
                        f"IMap makes ({rate} x stride): its IMap would wait for itself. Make upstream "
                        "produce x spawn >= downstream consume x spawn, or use another IMap"
                    )
        sources: list[tuple[Iterator[Any], bool]] = []
        handles: list[tuple[Piper, _TeeHandle]] = []
        plain: list[_Source] = []
        for x in inbox:
            if isinstance(x, Piper):
                if x is self:
                    raise PiperError(f"Piper {self.name!r} cannot be its own input")
                if not x.connected:
                    raise PiperError(
                        f"upstream Piper {x.name!r} must be connected before {self.name!r}"
                    )
                handle = x._tee_handle()
                handles.append((x, handle))
                sources.append((handle, True))
            else:
                try:
                    source = _Source(x)
                except TypeError:
                    for up, h in handles:
                        up._drop_handle(h)
                    raise TypeError(
                        f"an input must be a Piper or an iterable, got {type(x).__name__}"
                    ) from None
                plain.append(source)
                sources.append((source, False))
        self._reset_counts()
        self.tracked = {}
        self.failure = None
        stride = self.imap.stride if self.imap is not None else 1
        self._gate = threading.Event()
        inbox_rows = _Inbox(self, sources, self._gate)
        rows: Iterator[Any] = inbox_rows
        if self.consume > 1:
            rows = _Consume(rows, self.consume, stride)
        tasks: list[Iterator[Any]] = []
        if self.imap is not None:
            self._task_ids = []
            _SHARING.setdefault(self.imap, weakref.WeakSet()).add(self)
            for _ in range(self.spawn):
                it = self.imap.add_task(
                    self.worker,
                    rows,
                    timeout=self.timeout,
                    skip=True if self.timeout is not None else None,
                )
                self._task_ids.append(it.task)
                tasks.append(_Results(it))
        else:
            tasks = [_Results(_Apply(self.worker, rows)) for _ in range(self.spawn)]
        self._outbox = _Outbox(self, tasks, stride, self.produce, self.repeat)
        self._inbox = inbox_rows
        self._inputs = list(inbox)
        self._handles = handles
        self._sources = plain
        self.connected = True
        self.finished = False
        return self

    __call__ = connect

    def _tee_handle(self) -> _TeeHandle:
        if self._tee is None:
            self._tee = _Tee(self)
        return self._tee.add()

    def _drop_handle(self, handle: _TeeHandle) -> None:
        if self._tee is not None and handle.tee is self._tee:
            self._tee.remove(handle.index)

    def _mark_started(self) -> None:
        if not self.connected:
            raise PiperError(f"Piper {self.name!r} is not connected; connect() it first")
        self._upstream_ok = False
        self.started = True
        self._stopped = False
        self.finished = False

    def _open_gate(self) -> None:
        self._gate.set()

    def start(self, stages: Sequence[int] | None = None) -> Piper:
        """Start the Piper (and its IMap; with a shared IMap, connect all its Pipers first).

        ``stages`` is the original's staged start, for Pipers sharing one IMap:
        stages 0 and 1 mark the Piper started, stage 2 starts its IMap and lets
        items in. The default does all three; ``Dagger.start`` does it for
        every Piper of a pipeline.
        """
        if stages is None:
            stages = (0, 1, 2)
        elif isinstance(stages, (str, bytes)) or not isinstance(stages, Iterable):
            raise TypeError(f"stages must be a sequence of the stages 0, 1 and 2, got {stages!r}")
        stages = list(stages)
        if any(isinstance(st, bool) or st not in (0, 1, 2) for st in stages):
            raise ValueError(f"stages must be made of the stages 0, 1 and 2, got {stages!r}")
        if 0 in stages or 1 in stages or not self.started:
            self._mark_started()
        if self.imap is None:
            self._open_gate()  # a linear Piper has nothing to wait for
        elif 2 in stages:
            self.imap.start()
            # the original's stage 2 started the shared map's feeding for every
            # Piper on it: those already started (stages 0 and 1) are let in too
            for piper in list(_SHARING.get(self.imap, ())):
                if piper.started:
                    piper._open_gate()
            self._open_gate()
        self.log.debug("%r started (stages %s)", self, stages)
        return self

    def _end_inputs(self) -> None:
        """Make the plain iterables this Piper reads end now (a graceful stop)."""
        for source in self._sources:
            source.stop()

    def stop(self, forced: bool = False, ends: Sequence[int] | None = None) -> None:
        """Stop the Piper and its IMap (which stops every Piper sharing it).

        A Piper that has not handed out all its items yet needs ``forced=True``.
        ``ends`` (the original's call, ``stop(ends=[0])``) stops the IMap
        gracefully, draining those of its tasks (see ``IMap.stop``); a linear
        Piper has no map and ignores it.
        """
        if not self.started:
            raise PiperError(f"Piper {self.name!r} is not started")
        if not self.finished and not forced:
            raise PiperError(
                f"Piper {self.name!r} has not finished; stop(forced=True) stops it early"
            )
        if forced:
            self._end_inputs()
        if ends is None:
            # first: a read that the map's stop interrupts ends (StopIteration), and is
            # not counted; a graceful stop (ends) reads on through the Piper meanwhile
            self._halt()
        self._shut(ends)

    def _halt(self) -> None:
        """Mark the Piper stopped: a read in progress, or one that the stop of its
        IMap interrupts, ends with StopIteration and is not counted. A Dagger halts
        every Piper before it stops any IMap, so that no Piper reads the error of
        a map stopped under another Piper that shares it (or is upstream)."""
        self.started = False
        self._stopped = True

    def _shut(self, ends: Sequence[int] | None = None) -> None:
        """Stop the IMap (and let a Piper still waiting for the start through)."""
        self._open_gate()
        if self.imap is not None:
            self.imap.stop(ends=ends)
        self._halt()
        self.log.debug("%r stopped", self)

    def disconnect(self, forced: bool = False) -> None:
        """Forget the inputs (and remove the Piper's tasks from its stopped IMap)."""
        if not self.connected:
            raise PiperError(f"Piper {self.name!r} is not connected")
        if self.started:
            raise PiperError(f"Piper {self.name!r} is started; stop() it first")
        imap = self.imap
        if imap is not None:
            if imap.started:
                raise PiperError(f"the IMap of Piper {self.name!r} is running; stop it first")
            n = imap.n_tasks
            if n and self._task_ids and self._task_ids[-1] < n:
                if self._task_ids[-1] == n - 1:
                    imap.pop_task(len(self._task_ids))
                elif forced:
                    imap.pop_task(True)
                else:
                    raise PiperError(
                        f"Piper {self.name!r} is not the last Piper added to its IMap; "
                        "disconnect the later ones first, or use forced=True"
                    )
        for up, handle in self._handles:
            up._drop_handle(handle)
        self._handles = []
        self._sources = []
        self._inputs = []
        self._task_ids = []
        self._outbox = None
        self._inbox = None
        self._tee = None
        self._stopped = False
        self.connected = False

    @property
    def log(self) -> logging.Logger:
        """The ``papy.pipeline`` logger (the original's ``Piper.log``)."""
        return pipeline_logger()

    def _check_upstream_started(self) -> None:
        """Raise if a Piper upstream of this one is connected but not started:
        its items would never come (a shared IMap would wait for them for ever)."""
        for up in self._inputs:
            if isinstance(up, Piper):
                if not up.started:
                    raise PiperError(
                        f"the upstream Piper {up.name!r} of {self.name!r} is connected but "
                        "not started: start it too (Dagger.start starts every Piper)"
                    )
                up._check_upstream_started()

    # -- iteration --------------------------------------------------------------
    def __iter__(self) -> Piper:
        return self

    def __next__(self) -> Any:
        outbox = self._outbox
        if outbox is None or not self.started:
            if self._stopped and outbox is not None:
                raise StopIteration  # a stopped Piper has ended (the original's behaviour)
            raise PiperError(f"Piper {self.name!r} is not started")
        if not self._upstream_ok:
            self._check_upstream_started()
            self._upstream_ok = True
        if self.failure is not None:
            raise StopIteration
        raised: BaseException | None = None
        try:
            item = next(outbox)
        except StopIteration:
            if outbox is self._outbox:
                self.finished = True
            raise
        except _Propagate as p:
            if outbox is not self._outbox or not self.started:
                raise StopIteration from None  # stopped during the read
            self._n_out += 1
            raised = p.exc
        except Exception as exc:
            if outbox is not self._outbox or not self.started:
                raise StopIteration from None  # stopped during the read: the read ends
            if _is_fatal(exc):
                self.failure = exc
                self.finished = True
            raise
        if outbox is not self._outbox or not self.started:
            raise StopIteration  # stopped during the read: the item is dropped, not counted
        if raised is not None:
            raise raised  # outside the except block: no chained context
        position = self._n_out
        self._n_out += 1
        if self.track:
            self.tracked[position] = item
        if isinstance(item, WorkerError):
            self._n_errors += 1
            if self.debug:
                if item.__cause__ is None:
                    item.__cause__ = item.exception
                raise item
        return item

    def next(self) -> Any:
        """The next item (a value or a WorkerError); ``StopIteration`` at the end."""
        return self.__next__()

    def __repr__(self) -> str:
        return f"Piper({self.name!r})"
