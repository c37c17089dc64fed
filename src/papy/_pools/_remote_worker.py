"""The evaluating half of a remote worker: standard library only.

papy's own server (:mod:`papy.remote.server`) imports this module; for a stock
RPyC classic server the client executes this file's source once per connection
in that connection's namespace, so papy need not be installed on such a server
(cloudpickle must be, for functions that travel by value). Keep it free of
imports from papy and valid on every Python version papy supports.

Wire format (all ``bytes``, pickled with protocol 5):

* ``define(task, payload)``: ``payload`` is the pickled ``(func, args, kwargs)``
  of one task, sent once per connection; task -1 is the map's initializer,
  ``(initializer, initargs, {})``, run at once.
* ``run(data)``: ``data`` is the pickled batch ``[(task, index, item), ...]``;
  the reply is the pickled list of ``(ok, value)``, one per item, or a ``str``
  if the batch itself could not be unpickled here. For a failure, ``value`` is
  ``(exception or None, traceback text, kind, message)``: ``exception`` is
  ``None`` when it could not travel, and the client rebuilds it from ``kind``
  (``"aborted"``: a ``BaseException`` that is not an ``Exception``;
  ``"serialization"``: something could not be pickled or unpickled;
  ``"initializer"``: the map's initializer raised on this worker).
"""

import os
import pickle
import socket
import sys
import traceback

PROTOCOL = 5
WIRE_VERSION = 1


def _format_tb(exc):
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _safe_str(obj):
    try:
        return str(obj)
    except BaseException:  # noqa: BLE001 - user code
        return "<str() failed>"


def _failure(exc, where):
    """``(exception or None, traceback text, kind, message)`` ready to be pickled."""
    try:
        tb = _format_tb(exc)
    except BaseException:  # noqa: BLE001 - a broken exception
        tb = type(exc).__qualname__ + ": (its traceback could not be formatted)\n"
    if isinstance(exc, (StopIteration, StopAsyncIteration)):
        # raised as it is, it would end the caller's for loop silently (PEP 479)
        exc = RuntimeError(
            f"{where}: the function raised StopIteration, which would end the caller's "
            "loop early; it is reported as an error at this item instead (PEP 479)"
        )
    if not isinstance(exc, Exception):
        name = type(exc).__name__
        return (None, tb, "aborted", f"{where} raised {name}({_safe_str(exc)})")
    try:
        clone = pickle.loads(pickle.dumps(exc, PROTOCOL))
        if type(clone) is not type(exc):
            raise TypeError("its type changed in a pickle round trip")
    except BaseException as why:  # noqa: BLE001 - anything may go wrong in user code
        message = (
            f"{where} raised {type(exc).__qualname__}: {_safe_str(exc)}; "
            f"the exception itself could not be pickled ({_safe_str(why)})"
        )
        return (None, tb, "serialization", message)
    exc.__traceback__ = None
    return (exc, tb, "", "")


class _Broken:
    """Stands for a task whose function could not be unpickled here (``kind``
    "serialization"), or for every task when the initializer raised ("initializer")."""

    def __init__(self, message, tb, kind="serialization"):
        self.message = message
        self.tb = tb
        self.kind = kind


def _raiser(message, kind="serialization"):
    try:  # papy's own server has papy; a classic server may not
        if kind == "initializer":
            from papy._errors import InitializerError as error
        else:
            from papy._errors import SerializationError as error
    except ImportError:
        error = RuntimeError

    def fail(item, *args, **kwargs):
        raise error(message)

    return fail


class Worker:
    """The tasks defined by one client connection, and how to run them."""

    def __init__(self):
        self.tasks = {}
        self.init_failure = None  # a _Broken: the initializer raised

    def hello(self):
        """``(wire version, pid, host name, python version)``: who is answering."""
        return (WIRE_VERSION, os.getpid(), socket.gethostname(), tuple(sys.version_info[:3]))

    def define(self, task, payload):
        """Unpickle the function of ``task``; a failure is reported at each of its items.

        Task -1 is the map's initializer, ``(initializer, initargs, {})``: it runs
        here, once per connection; if it raises, every item fails with that reason.
        """
        if not isinstance(task, int) or not isinstance(payload, bytes):
            raise TypeError("define() takes an int and bytes")
        try:
            definition = pickle.loads(payload)
            if task == -1:
                func, args, _ = definition
                func(*args)
                return
            self.tasks[task] = definition
        except BaseException as exc:  # noqa: BLE001 - reported at every item of the task
            if task == -1:
                self.init_failure = _Broken(
                    f"the worker's initializer raised on the remote worker: {exc!r}",
                    _format_tb(exc),
                    "initializer",
                )
                return
            message = (
                f"the function of task {task} could not be unpickled on the remote worker: {exc!r}"
            )
            self.tasks[task] = _Broken(message, _format_tb(exc))

    def runnable(self):
        """The tasks as ``{task: (func, args, kwargs)}``: one that could not be
        unpickled raises its reason at each item (papy's own server, stream mode)."""
        out = {}
        for task, definition in self.tasks.items():
            if self.init_failure is not None:
                definition = self.init_failure
            if isinstance(definition, _Broken):
                out[task] = (_raiser(definition.message, definition.kind), (), {})
            else:
                out[task] = definition
        return out

    def run(self, data):
        """Evaluate a pickled batch in order; return the pickled results."""
        if not isinstance(data, bytes):
            raise TypeError("run() takes bytes")
        try:
            batch = pickle.loads(data)
        except BaseException as exc:  # noqa: BLE001 - an item that cannot be unpickled here
            return pickle.dumps(
                f"the batch could not be unpickled on the remote worker: {exc!r}", PROTOCOL
            )
        values = []
        for task, index, item in batch:
            where = f"item {index} of task {task}"
            definition = self.tasks.get(task)
            if self.init_failure is not None and definition is not None:
                definition = self.init_failure
            if definition is None:
                message = f"task {task} is not defined on this remote worker"
                values.append((False, (None, "", "serialization", message)))
                continue
            if isinstance(definition, _Broken):
                values.append((False, (None, definition.tb, definition.kind, definition.message)))
                continue
            func, args, kwargs = definition
            try:
                values.append((True, func(item, *args, **kwargs)))
            except BaseException as exc:  # noqa: BLE001 - reported at the item's position
                values.append((False, _failure(exc, where)))
        try:
            return pickle.dumps(values, PROTOCOL)
        except BaseException:  # noqa: BLE001 - find the culprits one by one
            return self._dumps_one_by_one(batch, values)

    @staticmethod
    def _dumps_one_by_one(batch, values):
        """Replace each result that cannot be pickled by a serialization failure."""
        safe = []
        for (task, index, _), value in zip(batch, values):
            try:
                pickle.dumps(value, PROTOCOL)
                safe.append(value)
            except BaseException as exc:  # noqa: BLE001 - reported at the item
                message = (
                    f"the result of item {index} of task {task} could not be pickled: "
                    f"{type(exc).__name__}: {_safe_str(exc)}"
                )
                safe.append((False, (None, "", "serialization", message)))
        return pickle.dumps(safe, PROTOCOL)
