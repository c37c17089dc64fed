"""IMap: a lazy, parallel, buffered, multi-task ``imap`` (the public API).

This module keeps the arguments, the documentation and the tasks; starting a
map assembles a ``Run`` (``papy._engine``) from one scheduling core
(``papy._scheduler``), one worker pool (``papy._pools``: a ``Pool``) and the
task inputs, and every consumer goes through the Run's front door::

    add_task(f, it) ─┐                  ┌──────────── Scheduler ─────────────┐
    add_task(g, t0) ─┤  start() ──►  top up: weave (stride) ─ buffer slot ─► pool.submit_range
                     │   (a Run)        │                                     │ workers
    next(task=1)  ◄──┤                  │                                     │
    task iterators ◄─┼── Run.next ◄── per-task result chunks ◄── put_range ◄──┘
    imap()        ◄──┤       │ a batch at a time; not there: drive (top up, pump the
    Pipers        ◄──┘       │ pool's I/O) until it is

* Inputs are read lazily in weave order: ``stride`` tasklets of task 0, then
  of task 1, ... An input is read before a buffer slot is taken, so a chained
  task pulls its upstream results (freeing their slots) before it waits:
  chains need only ``buffer >= stride``.
* A task whose input is another task of the same IMap is *chained*; the
  engine reads that input straight from the scheduler.
* The engine, threads and pools never hold a reference to the IMap, so an
  abandoned IMap is garbage-collected and shuts its workers down; at
  interpreter exit every running IMap is shut down.
"""

from __future__ import annotations

import atexit
import copy
import numbers
import os
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from time import monotonic

from . import _check, _scheduler
from ._engine import ChainedInput, Run, SourceInput, ThreadedInput, reads_inline
from ._errors import SchedulerClosed
from ._log import logger
from ._pools import INIT, NEEDS_PICKLE, PROCESS_WORKERS, PoolConfig, Sink, TaskDef, make_pool

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["IMap", "NuMap", "TaskIterator", "MapIterator", "imap", "starmap"]

WORKER_TYPES = ("process", "thread")
DEFAULT_REMOTE_PORT = 18812


_check_timeout = _check.seconds
_check_count = _check.count
_check_flag = _check.flag


def _check_heartbeat(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"remote_heartbeat must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not 0.1 <= seconds <= 3600:
        raise ValueError(f"remote_heartbeat must be between 0.1 and 3600 seconds, got {value}")
    return seconds


_PROGRESS_HINT = "progress=True needs tqdm: pip install 'papy2[progress]'"


def _progress_factory(progress: Any, iterable: Any, desc: str | None) -> Callable[[], Any] | None:
    """Check ``progress`` (False, True or a dict of tqdm options) at the call and
    return what makes the bar later (None: no bar). tqdm is imported here, so
    that a missing tqdm fails before anything runs."""
    if progress is False or progress is None:
        return None
    if progress is True:
        options: dict[str, Any] = {}
    elif isinstance(progress, Mapping) and all(isinstance(k, str) for k in progress):
        options = dict(progress)
    else:
        raise TypeError(f"progress must be True, False or a dict of tqdm options, got {progress!r}")
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError(_PROGRESS_HINT) from None
    if "total" not in options and hasattr(iterable, "__len__"):
        try:
            options["total"] = len(iterable)
        except Exception:  # noqa: BLE001 - a length is only a nicety
            pass
    options.setdefault("unit", "item")
    if desc is not None:
        options.setdefault("desc", desc)

    def make() -> Any:
        return tqdm(**options)

    return make


def _parse_remote(worker_remote: Any) -> list[tuple[str, int, int]]:
    """Validate ``[(host, n), ('host:port', n), ...]`` into ``(host, port, n)``."""
    if worker_remote is None:
        return []
    if isinstance(worker_remote, (str, bytes)) or not isinstance(worker_remote, Iterable):
        raise TypeError("worker_remote must be a sequence of (host, n) pairs")
    out = []
    for entry in worker_remote:
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise TypeError(f"worker_remote entries must be (host, n) pairs, got {entry!r}")
        host, n = entry
        if not isinstance(host, str) or not host:
            raise TypeError(f"worker_remote host must be a non-empty str, got {host!r}")
        port = DEFAULT_REMOTE_PORT
        if host.count(":") == 1:
            host, _, port_text = host.partition(":")
            if not port_text.isdigit() or not 0 < int(port_text) < 65536 or not host:
                raise ValueError(
                    f"worker_remote address must be 'host' or 'host:port', got {entry[0]!r}"
                )
            port = int(port_text)
        n = _check_count(f"worker_remote count for {entry[0]!r}", n, 1)
        out.append((host, port, n))
    return out


class _Task:
    """What add_task recorded: the function, its input and its options."""

    __slots__ = (
        "func", "iterable", "args", "kwargs", "timeout", "block", "track", "upstream", "skip"
    )  # fmt: skip

    def __init__(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        block: bool,
        track: bool,
        upstream: int,
        skip: bool | None = None,
    ) -> None:
        self.func = func
        self.iterable = iterable
        self.args = args
        self.kwargs = kwargs
        self.timeout = timeout
        self.block = block
        self.track = track
        self.upstream = upstream  # task id of this IMap feeding it, or -1
        self.skip = skip  # its own skip (None: the map's)


_live_runs: weakref.WeakSet[Run] = weakref.WeakSet()
_exit_hook_registered = False


def _shutdown_all() -> None:
    """At interpreter exit, stop every map that is still running (quietly)."""
    for run in list(_live_runs):
        try:
            run.shutdown(0.2)
        except Exception:  # noqa: BLE001 - never block or fail the exit
            pass


def _register_exit_hook() -> None:
    """Register ``_shutdown_all`` once, after the pools imported multiprocessing:
    exit hooks run last-in first-out, so papy stops its workers before
    multiprocessing's own hook would terminate them under a running map."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        atexit.register(_shutdown_all)


class TaskIterator(_scheduler.Outlet):
    """The iterator over one task's results, returned by ``IMap.add_task`` and
    ``IMap.get_task`` (not made directly).

    ``next(it)`` is ``it.imap.next(it.timeout, it.task, it.block)``: the task's
    next result (in input order if the map is ordered), or the exception the
    function raised for that item (iteration can go on after it), or
    ``StopIteration`` at the end. All iterators of one task share its results:
    each result is handed out once. Passed to ``add_task`` of the same map, it
    chains the new task to this one.

    Attributes:
        task: The task's number in its map (0 for the first task added).
        timeout: The default ``timeout`` of ``next`` (seconds; ``None``: no limit).
        block: The default ``block`` of ``next`` (``False``: never wait).
    """

    __slots__ = ("_imap", "task", "timeout", "block")

    def __init__(self, imap: IMap, task: int, timeout: float | None = None, block: bool = True):
        super().__init__()
        self._imap = imap
        self.task = task
        self.timeout = timeout
        self.block = block
        # ``next(it)`` (the Outlet, at C speed with the compiled core) pops the
        # results of this task handed out with the last batch and not returned yet
        # (the running map's Run.ready[task], shared by every iterator of the task);
        # when there is none, ``_next_of_map`` takes the next batch
        self.bind(_NOTHING_READY, _next_of_map)

    @property
    def imap(self) -> IMap:
        """The IMap this task belongs to."""
        return self._imap

    def outcome(self, timeout: float | None = None) -> tuple[bool, Any]:
        """The task's next outcome without raising an item's exception: ``(True,
        result)``, or ``(False, exception)`` for an item whose function raised.

        Args:
            timeout: Seconds to wait at most; ``None``: the iterator's
                ``timeout``.

        Returns:
            ``(ok, value)``. Whatever is raised is not an item's: ``StopIteration``
            at the end, ``papy.TimeoutError``, ``papy.DeadlockError``, a stopped
            map (``papy.SchedulerClosed``) ...
        """
        imap = self._imap
        run = imap._run
        if run is None:
            raise _not_started()
        if timeout is None:
            timeout = self.timeout
        elif timeout is not None:
            timeout = _check_timeout("timeout", timeout)
        return run.outcome(self.task, 0.0 if not self.block else timeout)

    def next(self, timeout: float | None = None) -> Any:
        """The task's next result, with another timeout than the iterator's own.

        Args:
            timeout: Seconds to wait at most; ``None``: the iterator's
                ``timeout``.

        Returns:
            The next result. Raises what ``IMap.next`` raises: the item's
            exception, ``StopIteration`` at the end, ``papy.TimeoutError``
            after ``timeout`` ...
        """
        return self._imap.next(self.timeout if timeout is None else timeout, self.task, self.block)

    def __repr__(self) -> str:
        return f"<TaskIterator task={self.task} of {self._imap!r}>"


_NOTHING_READY: deque[Any] = deque()  # never filled: a task iterator before its first result


def _not_started() -> BaseException:
    """What reading a map that is not running raises: a ``RuntimeError`` (as
    ``SchedulerClosed``), so that a map reading it as an input ends that input."""
    return SchedulerClosed("the IMap is not started; call start() first")


def _next_of_map(it: TaskIterator) -> Any:
    """(a task iterator whose ready results ran out) The task's next result from the
    map, which hands its batch out; the iterator then pops the rest of it."""
    imap = it._imap
    value = imap.next(it.timeout, it.task, it.block)
    run = imap._run
    if run is not None:  # (a run empties its deques when it stops)
        it.bind(run.ready[it.task], _next_of_map)
    return value


class IMap:
    """A parallel, lazy, buffered map of many tasks over one pool of workers.

    A *task* is a function with its input and constant arguments; a *tasklet*
    is one evaluation, ``func(item, *args, **kwargs)``. All tasks of an IMap
    share its workers. Tasklets are submitted in *weave* order, ``stride`` of
    task 0, then ``stride`` of task 1, ..., so that a chain of tasks (a task
    whose input is an earlier task's results) yields its first final results
    after a few turns, not after the whole input went through the first
    function. The ``buffer`` bounds the tasklets submitted and not yet handed
    out: a slow consumer throttles the workers, and memory stays bounded.

    Give ``func`` and ``iterable`` to add that task and start at once (the map
    then iterates over it); give neither to add tasks with ``add_task`` and
    then ``start``. An IMap is an iterator over the results of its task 0, and
    a context manager: leaving ``with IMap(...) as m:`` stops it, however the
    block ends. A stopped map can be given new tasks and started again.

    The defaults follow the work, as measured while the map runs:
    ``chunksize="auto"`` (batches of about 2 ms of a worker's time), a weave
    of one batch per worker per task in which a task with nothing ready gives
    its turn up, a buffer of 8192 slots per worker holding at most about
    64 MB of results, at most 4 MB of arguments in flight, and inputs read
    ahead by one batch (8 MB at most). ``NuMap`` keeps the original PaPy's
    defaults.

    Args:
        func: With ``iterable``, the task ``func(item, *args, **kwargs)``, added
            and started at once. ``None`` (with ``iterable=None``): no task yet.
        iterable: The input of that task: any iterable, read lazily, at most
            ``buffer + chunksize`` items ahead of the consumer (an endless
            generator is fine).
        args: Constant positional arguments of that task, after the item (a
            tuple or list; ``None``: none).
        kwargs: Constant keyword arguments of that task (``None``: none).
        worker_type: ``"process"``: worker processes, for CPU-bound Python
            code (Linux and macOS); functions, items and results are pickled.
            ``"thread"``: worker threads, for I/O and code that releases the
            GIL; nothing is pickled. It reads ``"executor"`` after construction
            when ``executor`` is given.
        worker_num: Local workers. ``None``: the CPU count, or 0 when there are
            remote workers, or the executor's ``_max_workers``. ``0`` makes a
            purely remote map.
        worker_remote: Slots on papy's worker servers (``python -m papy.remote
            serve``), as ``[(host, n), ...]``: ``n`` connections to each
            ``"host"`` or ``"host:port"`` (port 18812 by default). They count
            like local workers in the default stride.
        stride: Tasklets of one task submitted before the next task's. Longer
            bursts of one task mean more parallelism per task and more
            intermediate results at once; keep it at least the number of
            workers, or some idle at each turn. A stride given keeps the exact
            weave: a turn waits for its task's input. ``None``: the weave
            follows the work: one batch per worker (``workers x chunksize``
            to begin with, then as the batch size follows the work; at most
            ``buffer // tasks``), and a task whose input has nothing ready,
            or that finds no free slot, gives the rest of its turn up.
        buffer: The most tasklets submitted and not yet handed out, over all
            tasks, at least ``stride``. A slot is freed when its result is
            handed out, so at most ``buffer`` results exist at once. A buffer
            given is kept as given. ``None``: tasks x stride (what reading at
            most ``stride`` results of one task in a row needs), and with the
            default stride at least 8192 per worker, computed at ``start``;
            while the map runs it is lowered to hold at most about 64 MB of
            results as measured (never below tasks x stride).
        ordered: ``True``: each task's results in input order (a quick result
            waits for the slower ones before it); ``False``: as they arrive.
        skip: What a ``next`` that times out does with the awaited position.
            ``True``: gives it up for good (its late result is dropped), so
            every position yields exactly one outcome; ``False``: the late
            result is returned by a later ``next``.
        name: Names the map's threads and log lines; default
            ``"imap_<hex id>"``.
        start_method: How process workers start: ``"fork"``, ``"spawn"`` or
            ``"forkserver"``. ``None``: the platform's default, except that
            from Python 3.12 ``forkserver`` replaces ``fork`` when this process
            already runs threads (forking them can deadlock the child).
        chunksize: The most tasklets of one task sent to a worker in one
            message (a batch): a round trip costs more than a quick function,
            and a worker that dies costs only its batch (it runs again item by
            item, so only the item that kills a worker fails). ``"auto"``: batches of
            about 2 ms of a worker's time and at most 1 MB of arguments or
            results, as measured while the map runs (one tasklet at a time
            until the first measurement). ``1``: the lowest latency per item.
        retries: How often an item whose worker died is run again before it
            fails with ``WorkerLostError``. Process and remote workers run a
            lost batch again item by item, so only the item that kills a
            worker fails; an executor's lost batch runs again whole.
        deadlock_grace: Seconds a provable deadlock (the buffer full of unread
            results, nothing computing, the awaited tasklet not submitted) may
            last before ``next`` raises ``DeadlockError`` instead of waiting
            forever. ``None`` turns the detection off, which maps read by
            several threads need (a busy reader looks like a deadlock).
        executor: Any ``concurrent.futures.Executor`` (a Dask client's
            ``get_executor()``, loky, a ``ProcessPoolExecutor``) to evaluate on
            instead of papy's workers, through ``submit()`` only; the stride,
            buffer, ordering, timeouts and skip stay papy's. It stays yours:
            papy never shuts it down. Not together with ``worker_remote``.
        remote_ssl: TLS for ``worker_remote``, a dict with ``ca_certs``,
            ``certfile``, ``keyfile``, ``check_hostname`` (default ``True``)
            and ``server_hostname``. Use client certificates between machines:
            whoever can connect to a worker server can run any code there.
        remote_heartbeat: Seconds after which a remote worker (papy's server)
            that sent nothing, not even its heartbeat, counts as lost: frozen,
            cut off by the network or dead without closing the connection. Its
            items in flight fail with ``WorkerLostError`` or, with ``retries``,
            run again elsewhere; papy keeps reconnecting to it while the map
            runs. The server beats four times per period.
        initializer: Called as ``initializer(*initargs)`` once in each worker
            (process, thread, or a connection to a remote server) before it
            evaluates anything, as ``multiprocessing.Pool`` does: to open a
            connection, load a model, seed a generator ... If it raises,
            every item that worker evaluates fails with an error saying so.
            Not with ``executor`` (give the executor its own).
        initargs: The arguments of ``initializer`` (a tuple or list).

    Raises:
        TypeError: An argument of the wrong type (here, not later).
        ValueError: An argument out of range: an unknown ``worker_type`` or
            ``start_method``, ``worker_num=0`` without remote workers, a
            ``buffer`` smaller than ``stride``, ``func`` without ``iterable``
            (or the reverse), ``executor`` with ``worker_remote``. With
            ``func``, also what ``add_task`` and ``start`` raise.

    Attributes:
        tracked: ``{task: {index: result}}`` for the tasks added with
            ``track=True``: every result handed out (by ``next``, to a chained
            task, or drained by a graceful ``stop``), errors included. ``stop``
            replaces it with a new, empty dict.
        stride: The stride in use (resolved when defaulted).
        buffer: The buffer as given (``None`` when defaulted).
        worker_num: The local workers (resolved when defaulted).
        worker_remote: The remote slots, as ``[("host:port", n), ...]``.
    """

    #: with the default stride, the weave follows the work: a turn is one batch per
    #: worker (batches follow the measured cost of an item) and a task with nothing
    #: ready gives its turn up (False: the original's exact weave, NuMap)
    _WEAVE_FOLLOWS_WORK = True
    #: with the default stride, the default buffer is at least this many slots per worker
    _BUFFER_PER_WORKER = 8192

    def __init__(
        self,
        func: Callable[..., Any] | None = None,
        iterable: Iterable[Any] | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        worker_type: str = "process",
        worker_num: int | None = None,
        worker_remote: Sequence[tuple[str, int]] | None = None,
        stride: int | None = None,
        buffer: int | None = None,
        ordered: bool = True,
        skip: bool = False,
        name: str | None = None,
        *,
        start_method: str | None = None,
        chunksize: int | str = "auto",
        retries: int = 0,
        deadlock_grace: float | None = 0.5,
        executor: Any = None,
        remote_ssl: Mapping[str, str] | None = None,
        remote_heartbeat: float = 10.0,
        initializer: Callable[..., Any] | None = None,
        initargs: Sequence[Any] = (),
    ) -> None:
        if (func is None) != (iterable is None):
            missing = "iterable" if iterable is None else "func"
            raise ValueError(f"give both func and iterable, or neither ({missing} is missing)")
        if worker_type not in WORKER_TYPES:
            raise ValueError(f"worker_type must be one of {WORKER_TYPES}, got {worker_type!r}")
        if (
            worker_type == "process"
            and executor is None
            and not PROCESS_WORKERS
            and (worker_num is None and not worker_remote or worker_num)
        ):
            raise ValueError(
                "worker_type='process' needs POSIX pipes and poll() (Linux, macOS); on this "
                "platform use worker_type='thread', remote workers only, or executor=..."
            )
        if executor is not None:
            if not callable(getattr(executor, "submit", None)):
                raise TypeError(
                    f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}"
                )
            if worker_remote:
                raise ValueError("give executor or worker_remote, not both")
            worker_type = "executor"
        if remote_ssl is not None and not isinstance(remote_ssl, Mapping):
            raise TypeError(f"remote_ssl must be a mapping, got {type(remote_ssl).__name__}")
        self._remote = _parse_remote(worker_remote)
        n_remote = sum(n for _, _, n in self._remote)
        if worker_num is None:
            if executor is not None:
                worker_num = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
            else:
                worker_num = 0 if self._remote else (os.cpu_count() or 1)
        worker_num = _check_count("worker_num", worker_num, 0)
        if worker_num + n_remote == 0:
            raise ValueError(
                "worker_num is 0 and there are no worker_remote workers: nothing would run"
            )
        if isinstance(chunksize, str) and chunksize != "auto":
            raise ValueError(f"chunksize must be an int >= 1 or 'auto', got {chunksize!r}")
        auto = chunksize == "auto"
        self.chunksize = 1 if auto else _check_count("chunksize", chunksize, 1)
        workers = worker_num + n_remote
        self._default_stride = stride is None
        if stride is None:
            # one batch per worker (IMap moves it with the batch size while it runs)
            stride = workers * self.chunksize
            if isinstance(buffer, int) and not isinstance(buffer, bool) and 1 <= buffer < stride:
                stride = max(workers, buffer)
        stride = _check_count("stride", stride, 1)
        if buffer is not None:
            buffer = _check_count("buffer", buffer, 1)
            if buffer < stride:
                which = (
                    f"the default stride, {stride} for {workers} workers x chunksize "
                    f"{self.chunksize}; give stride= to set another"
                    if self._default_stride
                    else f"stride={stride}"
                )
                raise ValueError(f"buffer must be >= stride ({which}), got buffer={buffer}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if start_method is not None:
            import multiprocessing

            methods = multiprocessing.get_all_start_methods()
            if start_method not in methods:
                raise ValueError(f"start_method must be one of {methods}, got {start_method!r}")
        self.retries = _check_count("retries", retries, 0)
        if deadlock_grace is not None:
            deadlock_grace = _check_timeout("deadlock_grace", deadlock_grace)
        self.worker_type = worker_type
        self.worker_num = worker_num
        self.worker_remote = [(f"{h}:{p}", n) for h, p, n in self._remote]
        self._stride = stride
        self.buffer = buffer
        self.auto_chunksize = auto  # chunksize='auto': chosen at start() from the buffer
        self.ordered = _check_flag("ordered", ordered)
        self.skip = _check_flag("skip", skip)
        self.name = name if name is not None else f"imap_{id(self):x}"
        self.start_method = start_method
        self.deadlock_grace = deadlock_grace
        self._tasks: list[_Task] = []
        # task -> (func, args, kwargs) pickled at add_task, and whether that names
        # __main__ by reference (only forked workers get it so; see TaskDef)
        self._payloads: dict[int, tuple[bytes, bool]] = {}
        self._bar_factories: dict[int, Callable[[], Any]] = {}  # task -> makes its bar
        self._bars: dict[int, Any] = {}  # task -> its progress bar, while started
        self._last_stats: dict[str, Any] | None = None  # stats() of the last run, at stop
        self._run: Run | None = None
        self.remote_heartbeat = _check_heartbeat(remote_heartbeat)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, got {initializer!r}")
        if isinstance(initargs, (str, bytes)) or not isinstance(initargs, Sequence):
            raise TypeError(f"initargs must be a tuple or list, got {type(initargs).__name__}")
        if initializer is not None and executor is not None:
            raise ValueError(
                "initializer= does not reach an executor's workers: give the executor its "
                "own initializer (ProcessPoolExecutor(initializer=...), Dask's worker plugins)"
            )
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self._init_payload: tuple[bytes, bool] | None = None  # pickled at the call
        if initializer is not None and (self._remote or worker_type in NEEDS_PICKLE):
            from ._serialize import dumps_function, dumps_task

            if self._remote:
                self._init_payload = (dumps_function(initializer, self.initargs, {}), False)
            else:
                self._init_payload = dumps_task(initializer, self.initargs, {})
        self._pool_options: Any = {
            "executor": executor,
            "remote_ssl": remote_ssl,
            "remote_heartbeat": self.remote_heartbeat,
            "initializer": self.initializer,
            "initargs": self.initargs,
        }
        self.tracked: dict[int, dict[int, Any]] = {}
        if func is not None:
            self.add_task(func, iterable, args, kwargs)  # type: ignore[arg-type]
            self.start()

    # -- building -------------------------------------------------------------
    @property
    def stride(self) -> int:
        """The stride: as given; with the default stride, one batch per worker (while
        the map runs, as the batch size follows the work)."""
        run = self._run
        if run is not None and run.adaptive:
            return run.sched.stride  # type: ignore[no-any-return]
        return self._stride

    def settings(self) -> dict[str, Any]:
        """The constructor arguments that make a map like this one (its tasks aside):
        ``type(m)(**m.settings())``. Defaults stay defaults (``stride`` and
        ``buffer`` are ``None`` when they were not given).

        Returns:
            A new dict: ``worker_type`` (with an executor: ``"process"``, and
            ``executor``), ``worker_num``, ``worker_remote``, ``stride``,
            ``buffer``, ``ordered``, ``skip``, ``name``, ``start_method``,
            ``chunksize``, ``retries``, ``deadlock_grace``, ``remote_ssl``,
            ``remote_heartbeat``.
        """
        settings: dict[str, Any] = {
            "worker_type": self.worker_type,
            "worker_num": self.worker_num,
            "worker_remote": list(self.worker_remote) or None,
            "stride": None if self._default_stride else self._stride,
            "buffer": self.buffer,
            "ordered": self.ordered,
            "skip": self.skip,
            "name": self.name,
            "start_method": self.start_method,
            "chunksize": "auto" if self.auto_chunksize else self.chunksize,
            "retries": self.retries,
            "deadlock_grace": self.deadlock_grace,
            "remote_ssl": self._pool_options.get("remote_ssl"),
            "remote_heartbeat": self.remote_heartbeat,
            "initializer": self.initializer,
            "initargs": self.initargs,
        }
        if self.worker_type == "executor":  # (the worker type given is not used then)
            settings["worker_type"] = "process"
            settings["executor"] = self._pool_options.get("executor")
        return settings

    @property
    def started(self) -> bool:
        """``True`` between ``start`` and ``stop``."""
        return self._run is not None

    @property
    def n_tasks(self) -> int:
        """The number of tasks added (0 again after ``stop``)."""
        return len(self._tasks)

    def _check_not_started(self, what: str) -> None:
        if self._run is not None:
            raise RuntimeError(f"{what} is not allowed after start(); stop() the IMap first")

    def add_task(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        block: bool = True,
        track: bool = False,
        progress: bool | Mapping[str, Any] = False,
        skip: bool | None = None,
    ) -> TaskIterator:
        """Add the task ``func(item, *args, **kwargs)`` for each item of ``iterable``.

        Tasks are added before ``start``, so that all of them are known when the
        evaluation begins; they are numbered from 0 in the order added.
        ``m(func, iterable, ...)`` is the same call.

        Args:
            func: The function. For process and remote workers it is pickled
                once, here, with its constant arguments (by value with
                cloudpickle when plain pickle refuses it: lambdas, closures,
                functions of ``__main__``); only items and results travel per
                tasklet.
            iterable: The input, read lazily in weave order. The result
                iterator of a task added earlier to this map chains the tasks:
                the map reads those results itself, freeing their buffer slots,
                so a chain needs only ``buffer >= stride``. An iterator (a
                generator, a file) can feed one task only: two tasks would
                split its items (give each its own, ``itertools.tee``), unless
                it has a true ``shared_input`` attribute: the tasks given it
                then take its items in turns of the weave (a Piper's ``spawn``
                copies do).
            args: Constant positional arguments, after the item.
            kwargs: Constant keyword arguments.
            timeout: The default ``timeout`` of the returned iterator's
                ``next``; for a chained task, how long the map waits for each
                result of the upstream task.
            block: The default ``block`` of the returned iterator's ``next``.
            track: Keep every result handed out, errors included, in
                ``tracked[task]`` as ``{index: result}``, whoever read it (you,
                a chained task, a graceful ``stop``).
            progress: ``True``, or a dict of tqdm options (``desc``,
                ``position``, ``leave`` ...): a tqdm bar counts this task's
                results handed out, from ``start`` to ``stop``
                (``pip install "papy2[progress]"``).
            skip: This task's own ``skip`` (what a ``next`` that times out
                does with the awaited position); ``None``: the map's.

        Returns:
            The iterator over this task's results.

        Raises:
            RuntimeError: The map is started (``stop`` it first).
            TypeError: ``func`` is not callable, ``iterable`` not iterable,
                ``args`` not a tuple or list, ``kwargs`` not a mapping with str
                keys, ``progress`` neither a bool nor a dict, ``skip`` neither
                a bool nor None; or, for process and remote workers, the
                function and its arguments cannot be pickled, even with
                cloudpickle.
            ValueError: A negative ``timeout``; an iterator that another task
                already reads.
            ImportError: ``progress`` without tqdm installed.
        """
        self._check_not_started("add_task")
        if not callable(func):
            raise TypeError(f"func must be callable, got {type(func).__name__}")
        upstream = -1
        if isinstance(iterable, TaskIterator) and iterable.imap is self:
            upstream = iterable.task
        elif iterable is self:  # the original's way to chain: the map yields task 0
            if not self._tasks:
                raise ValueError("iterable is this IMap, which has no task 0 to read yet")
            upstream = 0
        else:
            try:
                it = iter(iterable)
            except TypeError:
                raise TypeError(
                    f"iterable must be iterable, got {type(iterable).__name__}"
                ) from None
            if it is iterable and not getattr(iterable, "shared_input", False):
                for i, t in enumerate(self._tasks):
                    if t.iterable is iterable:
                        raise ValueError(
                            f"iterable is the iterator that task {i} already reads: two tasks "
                            "would split its items between them; give each task its own "
                            "iterable (itertools.tee), or chain the tasks"
                        )
        bar = _progress_factory(progress, iterable, f"task {len(self._tasks)}")
        if args is None:
            args = ()
        elif isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise TypeError(
                f"args must be a tuple or list of constant arguments, got {type(args).__name__}"
            )
        if kwargs is None:
            kwargs = {}
        elif not isinstance(kwargs, Mapping):
            raise TypeError(f"kwargs must be a mapping, got {type(kwargs).__name__}")
        elif not all(isinstance(k, str) for k in kwargs):
            raise TypeError("kwargs keys must be str")
        timeout = _check_timeout("timeout", timeout)
        if skip is not None:
            skip = _check_flag("skip", skip)
        task_id = len(self._tasks)
        args, kwargs = tuple(args), dict(kwargs)
        if self._remote or self.worker_type in NEEDS_PICKLE:
            from ._serialize import dumps_function, dumps_task

            if self._remote:  # remote servers never share this __main__
                self._payloads[task_id] = (dumps_function(func, args, kwargs), False)
            else:
                self._payloads[task_id] = dumps_task(func, args, kwargs)
        self._tasks.append(
            _Task(func, iterable, args, kwargs, timeout, bool(block), bool(track), upstream, skip)
        )
        if track:
            self.tracked[task_id] = {}
        if bar is not None:
            self._bar_factories[task_id] = bar
        return self.get_task(task_id, timeout, block)

    __call__ = add_task

    def get_task(
        self, task: int = 0, timeout: float | None = None, block: bool = True
    ) -> TaskIterator:
        """A new iterator over the results of ``task``, with its own defaults.

        All iterators of one task share its results: each result is handed out
        once, to whichever iterator asks first.

        Args:
            task: The task's number (0 for the first task added).
            timeout: The default ``timeout`` of the iterator's ``next``.
            block: The default ``block`` of the iterator's ``next``.

        Returns:
            The iterator, as ``add_task`` returned it for that task.

        Raises:
            IndexError: No such task.
            TypeError: ``task`` is not an int.
        """
        self._check_task(task)
        return TaskIterator(self, task, _check_timeout("timeout", timeout), bool(block))

    def pop_task(self, number: int | bool) -> None:
        """Remove the last tasks added, and their tracking, before ``start``.

        Args:
            number: How many of the last tasks to remove; ``True``: all.

        Raises:
            RuntimeError: The map is started.
            ValueError: ``number`` is below 1 or more than the tasks there are.
        """
        self._check_not_started("pop_task")
        if number is True:
            number = len(self._tasks)
        number = _check_count("number", number, 1)
        if number > len(self._tasks):
            raise ValueError(
                f"number must be <= the number of tasks ({len(self._tasks)}), got {number}"
            )
        for task_id in range(len(self._tasks) - number, len(self._tasks)):
            self._payloads.pop(task_id, None)
            self._bar_factories.pop(task_id, None)
            self.tracked.pop(task_id, None)
        del self._tasks[len(self._tasks) - number :]

    def _check_task(self, task: Any) -> int:
        if isinstance(task, bool) or not isinstance(task, numbers.Integral):
            raise TypeError(f"task must be an int, got {type(task).__name__}")
        if not 0 <= int(task) < len(self._tasks):
            raise IndexError(f"task {task} does not exist (the IMap has {len(self._tasks)} tasks)")
        return int(task)

    # -- running --------------------------------------------------------------
    def start(self, stages: Sequence[int] | None = None) -> None:
        """Start the workers and the evaluation; calling it again does nothing.

        The workers start, the first batches are fed, and a helper thread
        drives the map while no consumer does. Tasks cannot be added until
        ``stop``.

        Args:
            stages: The original NuMap's two-stage start, kept for its code.
                ``None``, ``(1, 2)`` or ``(2,)`` start the map; ``(1,)`` alone
                does nothing, because papy starts its workers and the
                evaluation together, and tasks may be added until then.

        Raises:
            RuntimeError: The map has no task.
            papy.remote.RemoteConnectionError: A remote worker cannot be
                reached (nothing is left running).
            TypeError: ``stages`` is not a sequence.
            ValueError: ``stages`` holds something else than 1 and 2.
        """
        if stages is not None:
            if isinstance(stages, (str, bytes)) or not isinstance(stages, Iterable):
                raise TypeError(f"stages must be a sequence of the stages 1 and 2, got {stages!r}")
            stages = list(stages)
            if any(isinstance(s, bool) or s not in (1, 2) for s in stages):
                raise ValueError(f"stages must be made of the stages 1 and 2, got {stages!r}")
            if 2 not in stages:
                return
        if self._run is not None:
            return
        if not self._tasks:
            raise RuntimeError("start() needs at least one task; call add_task first")
        n = len(self._tasks)
        buffer = self._buffer_for(n)
        sched = _scheduler.Scheduler(
            n, self._stride, buffer, self.ordered, self.skip, self.deadlock_grace
        )
        defs = {
            i: TaskDef(t.func, t.args, t.kwargs, *self._payloads.get(i, (None, False)))
            for i, t in enumerate(self._tasks)
        }
        if self.initializer is not None:  # once per worker, when its tasks are defined
            defs[INIT] = TaskDef(
                self.initializer, self.initargs, {}, *(self._init_payload or (None, False))
            )
        pool = make_pool(
            PoolConfig(
                self.worker_type,
                self.worker_num,
                tuple(self._remote),
                self.start_method,
                self.retries,
                self._pool_options,
            ),
            defs,
            self.name,
        )
        from ._pools._io import Waker

        waker = Waker()
        chunk = self._chunk_for(buffer)
        # Workers first: a process is best forked before this map starts threads.
        pool.start(defs, Sink(sched, waker), waker, self.name)
        _register_exit_hook()
        inputs: list[Any] = []
        shared: dict[int, Any] = {}  # tasks given the same iterator share its items, in weave order
        for i, t in enumerate(self._tasks):
            if t.upstream >= 0:
                timeout = getattr(t.iterable, "timeout", None)  # a TaskIterator's, or none
                tracked = self.tracked.get(t.upstream)
                inputs.append(ChainedInput(sched, t.upstream, timeout, tracked))
                continue
            it = iter(t.iterable)
            inp = shared.get(id(it))
            if inp is None:
                if reads_inline(it):
                    inp = SourceInput(it)
                else:
                    inp = ThreadedInput(it, chunk, waker.wake, f"{self.name}-input-{i}")
                shared[id(it)] = inp
            inputs.append(inp)
        # Tasks that share one input take its items in turns of exactly `stride` (a
        # Piper's spawned copies read their results back so): the exact weave.
        shares = len(shared) < sum(1 for t in self._tasks if t.upstream < 0)
        run = Run(
            sched,
            pool,
            waker,
            inputs,
            chunk,
            self.deadlock_grace,
            self.name,
            auto=self.auto_chunksize,
            workers=self._workers,
            adaptive=self._default_stride and self._WEAVE_FOLLOWS_WORK and not shares,
            buffer_cap=buffer if self.buffer is None else None,
            tracked=self.tracked,
            bars=self._bars,
            skips=[t.skip for t in self._tasks],
        )
        self._run = run
        self._bars.update((task, make()) for task, make in self._bar_factories.items())
        _live_runs.add(run)
        self._finalizer = weakref.finalize(self, run.shutdown, 0.2)
        run.start()
        logger().debug(
            "%s started: %d tasks, %s workers=%d, stride=%d, buffer=%d, chunk=%d, core=%s",
            self.name,
            n,
            self.worker_type,
            self.worker_num,
            self.stride,
            buffer,
            chunk,
            _scheduler.IMPLEMENTATION,
        )

    @property
    def _workers(self) -> int:
        return self.worker_num + sum(n for _, _, n in self._remote)

    def _buffer_for(self, n_tasks: int) -> int:
        """The buffer: as given; else tasks x stride (the seed's rule), and with the
        default stride at least ``_BUFFER_PER_WORKER`` slots per worker."""
        if self.buffer is not None:
            return self.buffer
        buffer = n_tasks * self._stride
        if self._default_stride and self._BUFFER_PER_WORKER:
            buffer = max(buffer, self._BUFFER_PER_WORKER * self._workers)
        return buffer

    def _chunk_for(self, buffer: int) -> int:
        """The batch size: ``chunksize``; for ``'auto'`` its upper bound, a share of
        the buffer that lets every worker hold a few batches."""
        if not self.auto_chunksize:
            return self.chunksize
        return max(1, buffer // (max(1, len(self._tasks)) * 2 * self._workers))

    def next(self, timeout: float | None = None, task: int = 0, block: bool = True) -> Any:
        """Return the next result of ``task``, or raise the exception of its item.

        Results come in input order if the map is ordered. An item's exception
        is raised at its position, with the worker's formatted traceback as its
        ``__cause__`` (a ``papy.RemoteTraceback``), and the next call goes on
        with the next item. ``KeyboardInterrupt`` while waiting stops the map's
        workers and propagates.

        Args:
            timeout: Seconds to wait at most; ``None``: no limit.
            task: The task's number.
            block: ``False``: do not wait at all (a ``timeout`` of 0).

        Returns:
            The next result of the task.

        Raises:
            StopIteration: The task has handed out all its results (again on
                every later call).
            papy.TimeoutError: No result within ``timeout``; with ``skip=True``
                that position is given up for good.
            papy.DeadlockError: The wait can never end (after
                ``deadlock_grace`` seconds); read in another order and go on.
            papy.InputError: The input iterable raised at that position.
            papy.WorkerLostError: The worker evaluating that item died.
            papy.SerializationError: That item's argument, result or exception
                could not be pickled.
            papy.TaskletAbortedError: The function raised ``SystemExit`` or
                another ``BaseException`` that is not an ``Exception``.
            papy.SchedulerClosed: Another thread stopped the map meanwhile.
            RuntimeError: The map is not started, or its helper thread failed.
        """
        run = self._run
        if run is None:
            raise _not_started()
        if type(task) is not int or not 0 <= task < len(self._tasks):
            task = self._check_task(task)
        if not block:
            timeout = 0.0
        elif timeout is not None and (type(timeout) is not float or not timeout >= 0):
            timeout = _check_timeout("timeout", timeout)  # (not >= 0: also NaN)
        return run.next(task, timeout)

    def __iter__(self) -> TaskIterator:
        if not self._tasks:
            raise RuntimeError("the IMap has no tasks to iterate over")
        return self.get_task(0)

    def __next__(self) -> Any:
        return self.next()

    def stop(self, ends: Sequence[int] | None = None, forced: bool = False) -> None:
        """Stop the map; it can then be given new tasks and started again.

        The map then has no tasks and a new, empty ``tracked``; ``stats``
        keeps the counters as they were. Does nothing if not started. Leaving
        a ``with`` block, or dropping the last reference to a map, stops it
        too.

        Args:
            ends: The tasks whose results nobody else reads (the last task of
                a chain), for a graceful stop: no more input is read, the
                current turn of the weave is finished so that every input item
                read so far goes through every task downstream of it, and the
                results of ``ends`` are read and discarded (or tracked) before
                the workers stop. A task missing from ``ends`` does not make it
                hang. ``None``: stop at once, discarding pending results (a
                busy process worker is terminated after a short grace period).
            forced: Stop at once, even with ``ends``.

        Raises:
            IndexError: ``ends`` names a task the map does not have (checked
                before anything stops: the map runs on).
            TypeError: ``ends`` is not a sequence of task numbers.
        """
        run = self._run
        if run is None:
            return
        if ends is not None:  # checked first: a bad `ends` changes nothing
            if isinstance(ends, (str, bytes)) or not isinstance(ends, Iterable):
                raise TypeError(f"ends must be a sequence of task numbers, got {ends!r}")
            ends = [self._check_task(t) for t in ends]
        try:
            if ends is not None and not forced:
                run.drain(ends)
        finally:
            try:
                self._last_stats = self._snapshot(run)
            except Exception:  # noqa: BLE001 - a snapshot never keeps a map from stopping
                self._last_stats = None
            run.shutdown(0.2)
            self._finalizer.detach()
            _live_runs.discard(run)
            self._run = None
            self._tasks = []
            self._payloads = {}
            self._bar_factories = {}
            self.tracked = {}
            bars, self._bars = self._bars, {}
            for bar in bars.values():
                bar.close()

    def stats(self) -> dict[str, Any]:
        """A snapshot of the map's counters, to see where the time goes.

        ``consumer_wait`` close to ``elapsed``: the workers are the bottleneck.
        ``feeder_wait`` close to ``elapsed`` with a small ``consumer_wait``:
        the consumer is. Both large: the buffer is too small.

        After ``stop`` (or the end of a ``with`` block) it is the snapshot
        taken when the map stopped, until the map is started again.

        Returns:
            A new dict. For the map: ``buffer_used`` of ``buffer_size`` (slots
            taken), ``in_flight`` (submitted, result not back),
            ``feeder_wait`` (seconds the feeding waited for a free slot),
            ``consumer_wait`` (seconds consumers waited for a result),
            ``round`` (turns of the weave), ``closed``, ``elapsed`` (seconds
            since ``start``), ``workers``; ``per_worker``, a list with per
            worker (process, thread or remote slot; empty for an executor):
            ``worker``, ``items``, ``busy`` and ``idle`` (seconds),
            ``batches``, ``mean_batch``, ``largest_batch``. ``tasks``, a list
            with per task:
            ``submitted``, ``completed`` (results computed), ``returned``
            (handed out, errors included), ``failed``, ``skipped``,
            ``in_flight``, ``ready`` (computed, not handed out),
            ``input_done``.

        Raises:
            RuntimeError: The map was never started.
        """
        run = self._run
        if run is None:
            if self._last_stats is None:
                raise RuntimeError("the IMap was never started: it has no stats yet")
            return copy.deepcopy(self._last_stats)
        return self._snapshot(run)

    def _snapshot(self, run: Run) -> dict[str, Any]:
        snap = dict(run.sched.stats())
        for task in snap["tasks"]:
            task["completed"] = task["submitted"] - task["in_flight"]
        snap["consumer_wait"] = run.consumer_wait
        snap["elapsed"] = monotonic() - run.started
        snap["workers"] = self.worker_num + sum(n for _, _, n in self._remote)
        snap["per_worker"] = run.pool.worker_stats()
        return snap

    # -- context manager and housekeeping ------------------------------------
    def __enter__(self) -> IMap:
        """``with IMap(...) as m:`` binds the map itself."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Leaving the block stops the map (``stop()``), however the block ended."""
        self.stop()

    def __repr__(self) -> str:
        state = "started" if self._run is not None else "stopped"
        return (
            f"<IMap {self.name} {state} {self.worker_type} workers={self.worker_num}"
            f"{'+remote' if self._remote else ''} tasks={len(self._tasks)} stride={self.stride} "
            f"buffer={self.buffer} core={_scheduler.IMPLEMENTATION}>"
        )


#: the keywords imap() and starmap() pass on to IMap
_IMAP_OPTIONS = frozenset(
    IMap.__init__.__code__.co_varnames[
        1 : IMap.__init__.__code__.co_argcount + IMap.__init__.__code__.co_kwonlyargcount
    ]
) - {"func", "iterable", "args", "kwargs"}


class NuMap(IMap):
    """IMap with the original PaPy's defaults, for code written for its ``NuMap``.

    ``stride`` defaults to the number of workers (the exact weave: a turn
    waits for its task's input), ``buffer`` to tasks x stride and
    ``chunksize`` to 1, so the original's evaluation orders, memory bound and
    tests hold unchanged. The arguments, methods and behaviour are IMap's (see
    ``IMap`` for each argument); IMap's own defaults follow the work instead.
    """

    _WEAVE_FOLLOWS_WORK = False
    _BUFFER_PER_WORKER = 0

    def __init__(self, *args: Any, chunksize: int | str = 1, **kwargs: Any) -> None:
        super().__init__(*args, chunksize=chunksize, **kwargs)


def imap(
    func: Callable[..., Any],
    *iterables: Iterable[Any],
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    progress: bool | Mapping[str, Any] = False,
    **options: Any,
) -> MapIterator:
    """Like the builtin ``map``, but parallel and lazy: one call, one iterator.

    ``imap(f, xs)`` evaluates ``f(x)`` for each ``x``; ``imap(f, xs, ys)``
    evaluates ``f(x, y)`` for the pairs of ``zip(xs, ys)``, stopping at the
    shortest input, as ``map`` does. Makes an ``IMap(**options)`` with that one
    task and starts it now, so that bad arguments fail at the call. The first
    item that fails raises its exception and ends the iteration, as with
    ``map``. The workers stop when the iterator is exhausted, closed, left in
    a ``with`` block, or garbage-collected (breaking out of a ``for`` loop is
    enough).

    Args:
        func: The function, called as ``func(x, ..., *args, **kwargs)`` with
            one item of each iterable.
        *iterables: The inputs, read lazily (an endless generator is fine);
            at least one.
        args: Constant positional arguments, after the items.
        kwargs: Constant keyword arguments.
        timeout: Seconds to wait at most for each result
            (``papy.TimeoutError``, and the iterator goes on); ``None``: no
            limit.
        progress: ``True`` shows a tqdm progress bar on stderr, with a total
            when the input has a length (``pip install "papy2[progress]"``);
            a dict passes tqdm options (``desc``, ``position``, ``leave``,
            ``total`` ...).
        **options: IMap's constructor arguments (``worker_type``,
            ``worker_num``, ``stride``, ``buffer``, ``ordered``, ``chunksize``,
            ``initializer``, ``initargs``, ``executor`` ...). With
            ``chunksize`` c > 1, up to c ready results are taken at once.

    Returns:
        The iterator over the results, with the map's ``stats()``.

    Raises:
        TypeError: No iterable; an unknown keyword argument (named in the
            message); what ``IMap`` and ``add_task`` raise for bad
            arguments; a ``progress`` that is neither a bool nor a dict.
        ValueError: What ``IMap`` and ``add_task`` raise.
        ImportError: ``progress`` without tqdm installed.
    """
    if not iterables:
        raise TypeError("imap() needs at least one iterable: imap(func, iterable, ...)")
    if len(iterables) == 1:
        return _map_one(func, iterables[0], args, kwargs, timeout, progress, options, "imap")
    length = _shortest(iterables)
    return _map_one(
        _Star(func), zip(*iterables), args, kwargs, timeout, progress, options, "imap", length
    )


def starmap(
    func: Callable[..., Any],
    iterable: Iterable[Iterable[Any]],
    *,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    progress: bool | Mapping[str, Any] = False,
    **options: Any,
) -> MapIterator:
    """Like ``itertools.starmap``, but parallel and lazy: ``func(*item)`` for each
    item (a tuple of arguments) of ``iterable``; otherwise as ``imap``.

    Args:
        func: The function, called as ``func(*item, *args, **kwargs)``.
        iterable: The argument tuples, read lazily.
        args: Constant positional arguments, after an item's.
        kwargs: Constant keyword arguments.
        timeout: As ``imap``'s.
        progress: As ``imap``'s.
        **options: IMap's constructor arguments, as ``imap``'s.

    Returns:
        The iterator over the results, with the map's ``stats()``.
    """
    return _map_one(_Star(func), iterable, args, kwargs, timeout, progress, options, "starmap")


class _Star:
    """``func(*item, ...)``: a task function that spreads each item over the
    positional arguments (``starmap``, and ``imap`` over several iterables).
    Module level, so process workers find it by reference."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, item: Any, *args: Any, **kwargs: Any) -> Any:
        return self.func(*item, *args, **kwargs)

    def __repr__(self) -> str:
        return f"starred({self.func!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Star, (self.func,))


def _shortest(iterables: tuple[Iterable[Any], ...]) -> int | None:
    """The length of ``zip(*iterables)`` if every iterable says its own."""
    try:
        return min(len(it) for it in iterables)  # type: ignore[arg-type]
    except TypeError:
        return None


def _map_one(
    func: Callable[..., Any],
    iterable: Iterable[Any],
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    timeout: float | None,
    progress: bool | Mapping[str, Any],
    options: dict[str, Any],
    caller: str,
    length: int | None = None,
) -> MapIterator:
    """One started IMap of one task, behind a ``MapIterator``."""
    unknown = sorted(set(options) - _IMAP_OPTIONS)
    if unknown:
        raise TypeError(
            f"{caller}() got an unexpected keyword argument {unknown[0]!r} (its keywords: "
            "args, kwargs, timeout, progress, and IMap's: " + ", ".join(sorted(_IMAP_OPTIONS)) + ")"
        )
    if progress and length is not None:
        progress = {"total": length, **(progress if isinstance(progress, Mapping) else {})}
    make_bar = _progress_factory(progress, iterable, None)
    m = IMap(**options)
    m.add_task(func, iterable, args, kwargs, timeout=timeout)
    if make_bar is not None:
        m._bar_factories[0] = make_bar  # made at start, closed at stop
    m.start()
    return MapIterator(m, timeout)


class MapIterator(_scheduler.Outlet):
    """What ``imap`` and ``starmap`` return: the iterator over the results, with the
    map's ``stats()``.

    It behaves like a generator: the first item that fails raises its exception
    and ends it, and ``close()``, exhausting it, leaving a ``with`` block or
    dropping it stops the map's workers. A ``TimeoutError``
    (``imap(timeout=...)``) does not end it: the map goes on, and the next
    ``next()`` waits again. ``stats()`` stays available afterwards, as the
    final snapshot.
    """

    __slots__ = ("_imap", "_timeout")

    def __init__(self, imap: IMap, timeout: float | None = None) -> None:
        super().__init__()
        self._imap = imap
        self._timeout = timeout
        # ``next(it)`` (the Outlet, at C speed with the compiled core) pops the
        # results of the last batch; when there is none, ``_next_batch`` takes one
        run = imap._run
        self.bind(run.ready[0] if run is not None else _NOTHING_READY, _next_batch)

    def close(self) -> None:
        """Stop the map now (as closing a generator does)."""
        self._imap.stop()

    def __enter__(self) -> MapIterator:
        """``with papy.imap(...) as results:`` binds the iterator."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Leaving the block stops the map (``close()``), however the block ended."""
        self.close()

    def stats(self) -> dict[str, Any]:
        """The map's ``IMap.stats()``: the final snapshot once the iteration ended."""
        return self._imap.stats()

    @property
    def imap(self) -> IMap:
        """The IMap behind the results."""
        return self._imap


def _next_batch(it: MapIterator) -> Any:
    """(``imap``'s iterator, its ready results out) Take the next batch of results:
    its first is returned, the rest left for the iterator to pop. Stops the map at
    the end and at the first failure, but not when a wait times out."""
    m = it._imap
    run = m._run
    if run is None:
        raise StopIteration
    sched = run.sched
    try:
        got = sched.try_values(0, run.hand_out) if not sched.closed else None
        if got is None:
            got = run.take(0, run.hand_out, it._timeout)  # waits (and says why a map stopped)
        elif sched.buffer_used <= run.refill_level:
            run.refill()
    except TimeoutError:  # a wait that timed out: the map goes on
        raise
    except BaseException:
        m.stop()
        raise
    status, index, value = got
    if status == _scheduler.RESULT:
        if run.bars:
            run.handed(0, index, value)
        if len(value) == 1:
            return value[0]
        ready = run.ready[0]
        ready.extend(value)
        return ready.popleft()
    if run.bars and status != _scheduler.FINISHED:
        run.handed(0, index, (value,))
    m.stop()
    if status == _scheduler.FINISHED:
        raise StopIteration
    raise value
