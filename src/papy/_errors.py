"""Exceptions raised by papy, shared by both scheduler cores and the IMap API.

``TimeoutError`` must be an instance of both the builtin ``TimeoutError`` and
``multiprocessing.TimeoutError`` (so code written for ``Pool.imap`` keeps working).
Importing ``multiprocessing`` costs as much as half of ``import papy``, so the
class is built on first use (``timeout_error_class``) and exposed lazily.
"""

from __future__ import annotations

import builtins

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "PapyError",
    "DeadlockError",
    "SchedulerClosed",
    "WorkerLostError",
    "RemoteTraceback",
    "SerializationError",
    "InputError",
    "InitializerError",
    "TaskletAbortedError",
    "timeout_error_class",
]


class PapyError(Exception):
    """Base class of papy's own exceptions."""


class DeadlockError(PapyError, RuntimeError):
    """The consumer waits for a result that can never arrive.

    Raised by ``next()`` instead of blocking forever when the buffer is full
    of results that nobody is reading, nothing is being computed, and the
    awaited result's tasklet cannot be submitted, for ``deadlock_grace``
    seconds. The message explains the stride and buffer rule; the map stays
    usable: read in another order, and go on.
    """


class SchedulerClosed(PapyError, RuntimeError):
    """The map was stopped while a thread was waiting on it.

    Also raised at the position of a task whose input is a task iterator of
    another IMap that was stopped (the task then ends).
    """


class WorkerLostError(PapyError):
    """The worker evaluating an item died (killed, crashed, or exited).

    Raised at that item's position once the map's ``retries`` are used up; the
    message says which signal or exit code. A lost process worker is replaced,
    and the other items go on.
    """


class SerializationError(PapyError):
    """An argument, a result or an exception could not be pickled or unpickled.

    Raised at that item's position (process and remote workers pickle; thread
    workers do not); the message names the item and the reason, and the other
    items of its batch are delivered.
    """


class TaskletAbortedError(PapyError):
    """The function raised a ``BaseException`` that is not an ``Exception``.

    ``SystemExit``, ``KeyboardInterrupt`` or ``GeneratorExit`` raised by the
    function is reported at that item's position instead of killing a worker.
    With thread workers the original is kept as ``.exception``.
    """

    exception: BaseException | None = None


class InitializerError(PapyError, RuntimeError):
    """The worker's ``initializer`` raised: raised at each item that worker evaluates,
    naming the initializer and its exception."""


class InputError(PapyError):
    """The input iterable of a task raised; the original exception is the cause.

    Raised at the position where the input failed, and at the same position of
    every task chained to it, so counts stay aligned.
    """


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised inside a worker.

    papy attaches it as ``__cause__`` of the exception re-raised by ``next()``,
    so the worker's frames are shown even when the worker was another process.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return "\n\n" + self.tb


# tracebacks and reprs show the public names (papy.WorkerLostError), which is
# also where pickle finds them
for _cls in (
    PapyError,
    DeadlockError,
    SchedulerClosed,
    WorkerLostError,
    SerializationError,
    TaskletAbortedError,
    InitializerError,
    InputError,
    RemoteTraceback,
):
    _cls.__module__ = "papy"
del _cls

_timeout_cls: Any = None


def timeout_error_class() -> type[builtins.TimeoutError]:
    """Return papy's TimeoutError, building it on first use."""
    global _timeout_cls
    if _timeout_cls is None:
        import multiprocessing

        class TimeoutError(builtins.TimeoutError, multiprocessing.TimeoutError):  # noqa: A001
            """No result within the timeout given to ``next()``.

            An instance of both the builtin ``TimeoutError`` and
            ``multiprocessing.TimeoutError``. ``index`` is the input position
            that was skipped for good (``skip=True``), or None when the wait
            consumed no position (nothing skipped, or that position had not
            been read from the input yet).
            """

            index: int | None = None

        TimeoutError.__module__ = "papy"
        TimeoutError.__qualname__ = "TimeoutError"
        _timeout_cls = TimeoutError
    return _timeout_cls  # type: ignore[no-any-return]


def __getattr__(name: str) -> Any:
    if name == "TimeoutError":
        return timeout_error_class()
    raise AttributeError(name)
