"""Worker pools: where tasklets are evaluated.

Every pool has the same small interface, used by IMap's feeder thread:

* ``start(tasks, deliver, name)``: ``tasks`` maps a task id to a
  :class:`TaskDef` (the function, its constant arguments and, for pools that
  pickle, ``payload``: all three pickled once by IMap.add_task); ``deliver`` is
  called from the pool's own threads with a list of ``(task, index, ok, value)``;
* ``submit(batch)``: a list of ``(task, index, item)`` to evaluate, in order;
* ``shutdown()``: stop the workers promptly, never blocking for long.

A pool never holds a reference to its IMap, so an IMap that nobody uses any
more can be garbage-collected and shut down.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

Deliver = Callable[[list[tuple[int, int, bool, Any]]], None]

__all__ = ["Deliver", "TaskDef", "TaskDefs", "PoolConfig", "make_pool", "NEEDS_PICKLE"]


class TaskDef(NamedTuple):
    """One task as a pool sees it."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    payload: bytes | None  # pickled (func, args, kwargs), for pools that pickle


TaskDefs = dict[int, TaskDef]


class PoolConfig(NamedTuple):
    """What IMap asks of its pool (validated by IMap)."""

    worker_type: str
    worker_num: int
    remote: tuple[tuple[str, int, int], ...] = ()  # (host, port, n)
    start_method: str | None = None
    retries: int = 0
    options: Any = None  # pool-specific extras (e.g. TLS settings, an executor)


#: worker types whose tasks must be picklable (IMap pickles them at add_task)
NEEDS_PICKLE = {"process"}


def make_pool(config: PoolConfig) -> Any:
    """Build the pool for ``config``.

    * ``worker_type == 'executor'``: an :class:`~papy._pools.executor.ExecutorPool`
      over ``options['executor']`` (any ``concurrent.futures.Executor``);
    * remote slots only (``worker_num == 0``): a :class:`~papy._pools.remote.RemotePool`;
    * local workers and remote slots: a :class:`~papy._pools.composite.CompositePool`
      dispatching each batch to the less loaded of the two;
    * otherwise the local thread or process pool.
    """
    options = config.options if isinstance(config.options, dict) else {}
    if config.worker_type == "executor":
        from .executor import ExecutorPool

        return ExecutorPool(options.get("executor"), config.worker_num, config.retries)
    local: Any = None
    if config.worker_num > 0 or not config.remote:
        if config.worker_type == "thread":
            from .thread import ThreadPool

            local = ThreadPool(config.worker_num)
        else:
            from .process import ProcessPool

            local = ProcessPool(config.worker_num, config.start_method, config.retries)
    if not config.remote:
        return local
    from .remote import RemotePool

    remote = RemotePool(config.remote, config.retries, options.get("remote_ssl"))
    if local is None:
        return remote
    from .composite import CompositePool

    return CompositePool(local, remote)
