"""Worker pools: where tasklets are evaluated.

Every pool implements :class:`Pool`, the interface the engine (``papy._engine``)
and IMap call, each capability declared there: ``start``, ``submit_range``,
``flush``, ``pump`` and ``shutdown`` move work; ``cost``, ``depth``, ``load``
and ``alive`` say what the pool knows; ``kind``, ``size``, ``measures`` and
``fallback`` describe and connect it. The kinds::

    make_pool(config) ──► ProcessPool    local processes and papy's servers, one I/O path
                      ├─► ThreadPool     local threads
                      ├─► ExecutorPool   any concurrent.futures.Executor
                      ├─► RemotePool     stock RPyC classic servers
                      └─► CompositePool  several of these behind one Pool

A pool never holds a reference to its IMap, so an IMap that nobody uses any
more can be garbage-collected and shut down.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing is not imported at run time (import time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from ._io import Waker

    Deliver = Callable[[list[tuple[int, int, bool, Any]]], None]
    #: ``fallback(ranges)``: ``[(task, first, items), ...]`` that no worker of a pool
    #: is left to run
    Fallback = Callable[[list[tuple[int, int, list[Any]]]], None]

    class Pool(Protocol):
        """What the engine and IMap call on a pool; every pool class has all of it.

        Called by the thread that drives the map (one at a time), except
        ``shutdown`` (any thread, once) and the read-only ``alive``/``load``.
        """

        #: ``"process"``, ``"thread"``, ``"executor"``, ``"remote"``, ``"composite"``
        kind: str
        #: workers (local processes or threads, remote slots, the executor's)
        size: int
        #: ``cost()`` can measure items (batch sizes then follow the work)
        measures: bool
        #: where work goes that no worker is left to run (a CompositePool sets it
        #: on its remote sides); None: that work fails with WorkerLostError
        fallback: Fallback | None

        def start(self, tasks: TaskDefs, sink: Sink, waker: Waker, name: str = ...) -> None:
            """Start the workers; ``tasks`` maps a task id to its :class:`TaskDef`;
            results go to ``sink``; ``waker.wake()`` interrupts ``pump``."""

        def submit_range(self, task: int, first: int, items: list[Any]) -> None:
            """Evaluate tasklets ``first``, ``first + 1``, ... of ``task`` (one batch);
            never blocks: work waits in the pool."""

        def flush(self) -> None:
            """Hand what was submitted to the workers now, without waiting."""

        def pump(self, timeout: float) -> None:
            """Move work and results; wait at most ``timeout`` seconds for something to
            happen (``waker.wake()`` from any thread ends the wait early)."""

        def shutdown(self, timeout: float = ...) -> None:
            """Stop the workers promptly (idempotent), never blocking for long."""

        def cost(self) -> tuple[float, float, float] | None:
            """``(seconds, argument bytes, result bytes)`` per tasklet as measured so
            far (None: not yet, or never: ``measures`` is false)."""

        def depth(self) -> int | None:
            """Batches the pool can usefully hold at once (None: it cannot say)."""

        def load(self) -> int:
            """Tasklets queued in the pool or held by its workers."""

        def alive(self) -> int:
            """Workers that can take work now."""

        def worker_stats(self) -> list[dict[str, Any]]:
            """What each worker did so far (``WorkerStats.snapshot``; [] if the
            pool cannot tell: an executor, stock classic servers)."""

else:
    Deliver = Fallback = Pool = None  # only used in annotations

__all__ = [
    "INIT",
    "WorkerStats",
    "Pool",
    "Fallback",
    "Deliver",
    "Sink",
    "TaskDef",
    "TaskDefs",
    "PoolConfig",
    "make_pool",
    "NEEDS_PICKLE",
    "PROCESS_WORKERS",
]


class Sink:
    """Where a pool delivers results: the scheduler, and the driving thread's waker.

    ``put_many`` is for a pool's own threads: it stores the results and wakes
    the driving thread. A pool that delivers from inside ``pump`` (in the
    driving thread), or that wakes it itself, uses ``sched`` directly.
    """

    __slots__ = ("sched", "waker")

    def __init__(self, sched: Any, waker: Any) -> None:
        self.sched = sched
        self.waker = waker

    def put_many(self, results: list[tuple[int, int, bool, Any]]) -> None:
        try:
            self.sched.put_many(results)
        finally:
            self.waker.wake()


class WorkerStats:
    """What one worker (a process, a thread, a remote slot) did: items evaluated,
    seconds busy evaluating them, batches and their sizes. Written by whoever
    delivers that worker's results (the driving thread for processes, the worker
    thread itself for threads); read by ``IMap.stats``."""

    __slots__ = ("label", "items", "busy", "batches", "largest", "since")

    def __init__(self, label: str) -> None:
        from time import monotonic

        self.label = label
        self.items = 0
        self.busy = 0.0
        self.batches = 0
        self.largest = 0
        self.since = monotonic()

    def add(self, items: int, seconds: float, batches: int = 1, largest: int = 0) -> None:
        """``batches`` batches of ``items`` in all, the largest of ``largest`` items
        (one batch: ``items``), took ``seconds`` of this worker's time together (a
        thread times a packed job of tiny batches once)."""
        self.items += items
        self.busy += seconds
        self.batches += batches
        if batches == 1:
            largest = items
        if largest > self.largest:
            self.largest = largest

    def snapshot(self, now: float) -> dict[str, Any]:
        """``worker``, ``items``, ``busy`` and ``idle`` (seconds since it started),
        ``batches``, ``mean_batch``, ``largest_batch``."""
        busy = min(self.busy, max(0.0, now - self.since))
        return {
            "worker": self.label,
            "items": self.items,
            "busy": busy,
            "idle": max(0.0, now - self.since - busy),
            "batches": self.batches,
            "mean_batch": self.items / self.batches if self.batches else 0.0,
            "largest_batch": self.largest,
        }


class TaskDef(namedtuple("TaskDef", "func args kwargs payload refers_to_main", defaults=(False,))):
    """One task as a pool sees it: ``func``, its constant ``args`` and ``kwargs``,
    and ``payload``, the three pickled once (for pools that pickle) or None.

    ``refers_to_main``: the payload names something of ``__main__`` by reference,
    which only a worker forked from this process is sure to find (fast: no
    cloudpickle); ``portable()`` is what any other worker gets.
    """

    __slots__ = ()

    def portable(self, located: bool = True) -> bytes:
        """The payload for a worker that is not a fork of this process (spawn,
        forkserver, a remote server, an executor): by value where needed; with
        ``located``, what goes by value keeps its file and lines in tracebacks
        (needs papy in the worker: not so on a stock classic server)."""
        if self.payload is not None and not self.refers_to_main:
            return self.payload  # type: ignore[no-any-return]
        from .._serialize import dumps_function

        return dumps_function(self.func, self.args, self.kwargs, located)


if TYPE_CHECKING:
    TaskDefs = dict[int, TaskDef]
else:
    TaskDefs = dict  # task id -> TaskDef


class PoolConfig(
    namedtuple(
        "PoolConfig",
        "worker_type worker_num remote start_method retries options",
        defaults=((), None, 0, None),
    )
):
    """What IMap asks of its pool (validated by IMap): ``worker_type``,
    ``worker_num``, ``remote`` ((host, port, n) triples), ``start_method``,
    ``retries`` and ``options`` (pool-specific extras: TLS settings, an executor)."""

    __slots__ = ()


#: the pseudo-task of a map's ``initializer`` among its task definitions:
#: ``TaskDef(initializer, initargs, {}, ...)``, run once per worker when the tasks
#: are defined (``_child.run_initializer``, a remote worker's ``define``)
INIT = -1

#: worker types whose tasks must be picklable (IMap pickles them at add_task)
NEEDS_PICKLE = {"process"}

#: process workers are driven through POSIX pipes and ``poll`` (Linux, macOS, BSDs)
PROCESS_WORKERS = hasattr(__import__("select"), "poll") and hasattr(__import__("os"), "readv")


def make_pool(config: PoolConfig, tasks: TaskDefs | None = None, name: str = "papy") -> Pool:
    """Build the pool for ``config``; remote slots are connected (and ``tasks``
    defined on them) here, where their kind of server becomes known.

    * ``worker_type == 'executor'``: an :class:`~papy._pools.executor.ExecutorPool`
      over ``options['executor']`` (any ``concurrent.futures.Executor``);
    * local process workers and papy's remote servers: one
      :class:`~papy._pools.process.ProcessPool`, all served by the same I/O path;
    * local thread workers: a :class:`~papy._pools.thread.ThreadPool`;
    * stock RPyC classic servers: a :class:`~papy._pools.remote.RemotePool`;
    * more than one of these: a :class:`~papy._pools.composite.CompositePool`
      dispatching each batch to the least loaded.
    """
    options = config.options if isinstance(config.options, dict) else {}
    if config.worker_type == "executor":
        from .executor import ExecutorPool

        return ExecutorPool(options.get("executor"), config.worker_num, config.retries)
    links: list[Any] = []
    if config.remote:
        from .remote import open_links

        links = open_links(config.remote, tasks or {}, options.get("remote_ssl"), name)
    # papy's servers join the process workers' I/O path where there is one (POSIX)
    papy_links = [link for link in links if link.kind == "papy" and PROCESS_WORKERS]
    classic_links = [link for link in links if link not in papy_links]
    sides: list[Pool] = []
    local = config.worker_num if (config.worker_num > 0 or not config.remote) else 0
    try:
        if config.worker_type == "thread" and local:
            from .thread import ThreadPool

            sides.append(ThreadPool(local))
            local = 0
        if local or papy_links:
            from .process import HEARTBEAT, ProcessPool

            reconnect = None
            if papy_links:
                from .remote import open_links

                ssl_options = options.get("remote_ssl")

                def reconnect(host: str, port: int) -> Any:
                    return open_links([(host, port, 1)], tasks or {}, ssl_options, name)[0]

            heartbeat = options.get("remote_heartbeat")
            sides.append(
                ProcessPool(
                    local,
                    config.start_method,
                    config.retries,
                    papy_links,
                    HEARTBEAT if heartbeat is None else heartbeat,
                    reconnect,
                )
            )
        if classic_links:
            from .remote import RemotePool

            sides.append(RemotePool(classic_links, config.retries))
    except BaseException:
        for link in links:
            link.close()
        raise
    if len(sides) == 1:
        return sides[0]
    from .composite import CompositePool

    return CompositePool(sides)
