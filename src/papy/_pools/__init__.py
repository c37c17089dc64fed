"""Worker pools: where tasklets are evaluated.

Every pool has the same small interface, used by the thread that drives the
map (a consumer waiting for a result, or the map's helper thread):

* ``start(tasks, sink, waker, name)``: ``tasks`` maps a task id to a
  :class:`TaskDef` (the function, its constant arguments and, for pools that
  pickle, ``payload``: all three pickled once by IMap.add_task); results go to
  ``sink`` (:class:`Sink`: the scheduler, plus a wake-up of the driving thread
  for results delivered by the pool's own threads);
* ``submit_range(task, first, items)``: evaluate tasklets ``first``,
  ``first + 1``, ... of ``task``; never blocks (work waits in the pool);
* ``pump(timeout)``: (driving thread only) move work and results, and wait at
  most ``timeout`` seconds for something to happen; ``waker.wake()`` from any
  thread ends the wait early;
* ``shutdown(timeout)``: stop the workers promptly, never blocking for long.

A pool never holds a reference to its IMap, so an IMap that nobody uses any
more can be garbage-collected and shut down.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing is not imported at run time (import time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Deliver = Callable[[list[tuple[int, int, bool, Any]]], None]
else:
    Deliver = None  # only used in annotations

__all__ = [
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

    ``put_many``/``put_range`` are for a pool's own threads: they store the
    results and wake the driving thread. A pool that delivers from inside
    ``pump`` (in the driving thread) uses ``sched`` directly.
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

    def put_range(
        self, task: int, first: int, values: list[Any], errors: dict[int, Any] | None = None
    ) -> None:
        try:
            self.sched.put_range(task, first, values, errors)
        finally:
            self.waker.wake()


class TaskDef(namedtuple("TaskDef", "func args kwargs payload refers_to_main", defaults=(False,))):
    """One task as a pool sees it: ``func``, its constant ``args`` and ``kwargs``,
    and ``payload``, the three pickled once (for pools that pickle) or None.

    ``refers_to_main``: the payload names something of ``__main__`` by reference,
    which only a worker forked from this process is sure to find (fast: no
    cloudpickle); ``portable()`` is what any other worker gets.
    """

    __slots__ = ()

    def portable(self) -> bytes:
        """The payload for a worker that is not a fork of this process (spawn,
        forkserver, a remote server, an executor): by value where needed."""
        if self.payload is not None and not self.refers_to_main:
            return self.payload  # type: ignore[no-any-return]
        from .._serialize import dumps_function

        return dumps_function(self.func, self.args, self.kwargs)


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


#: worker types whose tasks must be picklable (IMap pickles them at add_task)
NEEDS_PICKLE = {"process"}

#: process workers are driven through POSIX pipes and ``poll`` (Linux, macOS, BSDs)
PROCESS_WORKERS = hasattr(__import__("select"), "poll") and hasattr(__import__("os"), "readv")


def make_pool(config: PoolConfig, tasks: TaskDefs | None = None, name: str = "papy") -> Any:
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
    sides: list[Any] = []
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
