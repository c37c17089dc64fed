"""The loop run inside each worker process (kept small: spawned children import it).

Messages are pickled tuples sent with ``send_bytes``:

* parent -> child: ``(TASKS, {task: pickled (func, args, kwargs)})`` once per
  task and worker; ``(RUN, [(task, first, items), ...])`` per batch (each a
  range of consecutive tasklets of one task); ``(EXIT,)``.
* child -> parent: ``(None, message)`` if a batch could not be unpickled;
  else ``(failures, payload)`` per batch, ``payload`` being the pickled list
  of ``(task, first, values, errors)`` per range (``errors``: None or
  ``{offset: (exception, traceback text)}``), ready for the scheduler's
  ``put_range``. It is pickled apart so that a result that cannot be
  unpickled fails its batch (the parent knows which tasklets it held)
  instead of the whole reply.
"""

from __future__ import annotations

import pickle
import signal

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

TASKS = 0
RUN = 1
EXIT = 2

_PROTOCOL = 5


def _broken_task(exc: BaseException) -> Any:
    def fail(item: Any, *args: Any, **kwargs: Any) -> Any:
        from .._errors import SerializationError

        raise SerializationError(
            f"the task's function could not be unpickled in the worker: {exc!r}"
        )

    return fail


def _evaluate_range(
    func: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    items: list[Any],
    task: int,
    first: int,
) -> tuple[list[Any], dict[int, Any] | None]:
    """Evaluate one range; return its values and ``{offset: (exception, traceback)}``.

    ``map`` runs the loop in C; after a failure it resumes with the next item,
    so no item is evaluated twice.
    """
    call = func
    if args or kwargs:

        def call(x: Any) -> Any:
            return func(x, *args, **kwargs)

    values: list[Any] = []
    errors: dict[int, Any] | None = None
    it = iter(items)
    while True:
        try:
            values.extend(map(call, it))
            return values, errors
        except BaseException as exc:  # noqa: BLE001 - reported at the item's position
            from .._serialize import portable_exception

            k = len(values)
            if errors is None:
                errors = {}
            errors[k] = portable_exception(exc, f"item {first + k} of task {task}")
            values.append(None)


def _evaluate(tasks: dict[int, Any], ranges: list[tuple[int, int, list[Any]]]) -> tuple[int, bytes]:
    """Evaluate a batch of ranges; return (number of failures, pickled results)."""
    results = []
    failures = 0
    for task, first, items in ranges:
        func, args, kwargs = tasks[task]
        values, errors = _evaluate_range(func, args, kwargs, items, task, first)
        if errors:
            failures += len(errors)
        results.append((task, first, values, errors))
    try:
        return failures, pickle.dumps(results, _PROTOCOL)
    except Exception:
        return _dumps_one_by_one(results)


def _evaluate_tasklets(
    tasks: dict[int, Any], batch: list[tuple[int, int, Any]]
) -> tuple[int, bytes]:
    """Evaluate ``(task, index, item)`` tasklets (the executor pool's format).

    Returns (number of failures, pickled list of ``(task, index, ok, value)``,
    ``value`` being ``(exception, traceback text)`` for a failure).
    """
    results = []
    failures = 0
    for task, index, item in batch:
        func, args, kwargs = tasks[task]
        values, errors = _evaluate_range(func, args, kwargs, [item], task, index)
        if errors:
            failures += 1
            results.append((task, index, False, errors[0]))
        else:
            results.append((task, index, True, values[0]))
    try:
        return failures, pickle.dumps(results, _PROTOCOL)
    except Exception:
        from .._errors import SerializationError
        from .._serialize import portable_exception

        safe = []
        for result in results:
            try:
                pickle.dumps(result, _PROTOCOL)
                safe.append(result)
            except Exception as exc:
                task, index = result[0], result[1]
                err = SerializationError(
                    f"the result of item {index} of task {task} could not be pickled: {exc!r}"
                )
                safe.append(
                    (task, index, False, portable_exception(err, f"item {index} of task {task}"))
                )
        return sum(1 for r in safe if not r[2]), pickle.dumps(safe, _PROTOCOL)


def _dumps_one_by_one(results: list[Any]) -> tuple[int, bytes]:
    """Replace each result that cannot be pickled by a SerializationError."""
    from .._errors import SerializationError
    from .._serialize import portable_exception

    safe = []
    failures = 0
    for task, first, values, errors in results:
        errors = dict(errors or {})
        for k, value in enumerate(values):
            try:
                pickle.dumps(errors[k] if k in errors else value, _PROTOCOL)
            except Exception as exc:
                err = SerializationError(
                    f"the result of item {first + k} of task {task} could not be pickled: {exc!r}"
                )
                errors[k] = portable_exception(err, f"item {first + k} of task {task}")
                values[k] = None
        failures += len(errors)
        safe.append((task, first, values, errors or None))
    return failures, pickle.dumps(safe, _PROTOCOL)


def main(conn: Any) -> None:
    """Evaluate batches from ``conn`` until EXIT or until the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    tasks: dict[int, Any] = {}
    recv = conn.recv_bytes
    send = conn.send_bytes
    loads = pickle.loads
    dumps = pickle.dumps
    while True:
        try:
            data = recv()
        except (EOFError, OSError):
            return
        try:
            message = loads(data)
        except Exception as exc:  # an item that cannot be unpickled here
            try:
                send(dumps((None, f"the batch could not be unpickled in the worker: {exc!r}")))
            except (OSError, ValueError):
                return
            continue
        kind = message[0]
        if kind == RUN:
            failures, payload = _evaluate(tasks, message[1])
            try:
                send(dumps((failures, payload), _PROTOCOL))
            except (OSError, ValueError):
                return
        elif kind == TASKS:
            for task, blob in message[1].items():
                try:
                    tasks[task] = loads(blob)
                except BaseException as exc:  # noqa: BLE001
                    tasks[task] = (_broken_task(exc), (), {})
        else:
            return
