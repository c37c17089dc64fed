"""The loop run inside each worker process (kept small: spawned children import it).

Messages are pickled tuples sent with ``send_bytes``:

* parent -> child: ``(TASKS, {task: pickled (func, args, kwargs)})`` once per
  task and worker; ``(RUN, [(task, index, item), ...])`` per batch; ``(EXIT,)``.
* child -> parent: ``(None, message)`` if a batch could not be unpickled;
  ``(ids, payload)`` per batch, where ``ids`` is the list of
  ``(task, index)`` and ``payload`` the pickled list of ``(ok, value)`` (for a
  failure ``value`` is ``(exception, traceback text)``). ``ids`` is pickled
  apart from the values so that the parent always knows which items a reply
  was for, even if the values cannot be unpickled.
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

        raise SerializationError(f"the task's function could not be unpickled in the worker: {exc!r}")

    return fail


def _evaluate(tasks: dict[int, Any], batch: list[tuple[int, int, Any]]) -> tuple[list[Any], bytes]:
    ids = []
    values: list[Any] = []
    for task, index, item in batch:
        ids.append((task, index))
        func, args, kwargs = tasks[task]
        try:
            values.append((True, func(item, *args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - reported at the item's position
            from .._serialize import portable_exception

            values.append((False, portable_exception(exc, f"item {index} of task {task}")))
    try:
        return ids, pickle.dumps(values, _PROTOCOL)
    except Exception:
        return ids, _dumps_one_by_one(ids, values)


def _dumps_one_by_one(ids: list[tuple[int, int]], values: list[Any]) -> bytes:
    """Replace each result that cannot be pickled by a SerializationError."""
    from .._errors import SerializationError
    from .._serialize import portable_exception

    safe = []
    for (task, index), value in zip(ids, values):
        try:
            pickle.dumps(value, _PROTOCOL)
            safe.append(value)
        except Exception as exc:
            err = SerializationError(
                f"the result of item {index} of task {task} could not be pickled: {exc!r}"
            )
            safe.append((False, portable_exception(err, f"item {index} of task {task}")))
    return pickle.dumps(safe, _PROTOCOL)


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
            ids, payload = _evaluate(tasks, message[1])
            try:
                send(dumps((ids, payload), _PROTOCOL))
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
