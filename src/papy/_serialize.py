"""Pickling for process and remote workers.

Plain pickle (protocol 5) first, because it is several times faster; cloudpickle
only for what plain pickle refuses (lambdas, closures, functions defined in
``__main__`` under the spawn and forkserver start methods). Objects pickled by
cloudpickle unpickle with plain ``pickle.loads`` wherever cloudpickle is
installed, so workers need no special loader.
"""

from __future__ import annotations

import pickle
import traceback

from ._errors import RemoteTraceback, SerializationError, TaskletAbortedError

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

PROTOCOL = 5

__all__ = [
    "dumps",
    "dumps_function",
    "loads",
    "format_tb",
    "wrap_base_exception",
    "portable_exception",
    "revive",
    "PROTOCOL",
]

loads = pickle.loads


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``, with cloudpickle as the fallback."""
    try:
        return pickle.dumps(obj, PROTOCOL)
    except Exception:
        import cloudpickle

        return cloudpickle.dumps(obj, PROTOCOL)  # type: ignore[no-any-return]


def dumps_function(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Pickle a task's function and constant arguments once, by reference when possible.

    A function that plain pickle stores by reference but that is defined in
    ``__main__`` goes by value (cloudpickle), so it also reaches workers started
    with spawn or forkserver, whose ``__main__`` is not the parent's.
    """
    by_value = getattr(func, "__module__", None) == "__main__"
    if not by_value:
        try:
            return pickle.dumps((func, args, kwargs), PROTOCOL)
        except Exception:
            pass
    try:
        import cloudpickle

        return cloudpickle.dumps((func, args, kwargs), PROTOCOL)  # type: ignore[no-any-return]
    except Exception as exc:
        raise TypeError(
            f"func {func!r} and its args/kwargs cannot be pickled for process workers: {exc}"
        ) from exc


def format_tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def wrap_base_exception(exc: BaseException, where: str) -> BaseException:
    """Turn a non-``Exception`` (``SystemExit``, ``KeyboardInterrupt``) into a reportable error."""
    if isinstance(exc, Exception):
        return exc
    err = TaskletAbortedError(f"{where} raised {type(exc).__name__}({exc})")
    err.exception = exc
    return err


def portable_exception(exc: BaseException, where: str) -> tuple[BaseException, str]:
    """Return ``(exception, traceback text)`` ready to cross a process boundary.

    An exception that does not survive a pickle round trip is replaced by a
    ``SerializationError`` that keeps its type name and message; the traceback
    travels as text and becomes the ``__cause__`` again on the other side
    (:func:`revive`).
    """
    tb = format_tb(exc)
    exc = wrap_base_exception(exc, where)
    try:
        clone = pickle.loads(pickle.dumps(exc, PROTOCOL))
        if type(clone) is not type(exc):
            raise TypeError("its type changed in a pickle round trip")
    except Exception as why:
        exc = SerializationError(
            f"{where} raised {type(exc).__qualname__}: {exc}; the exception itself "
            f"could not be pickled ({why})"
        )
    exc.__traceback__ = None
    if isinstance(exc, TaskletAbortedError):
        exc.exception = None  # SystemExit & co. are not sent back
    return exc, tb


def revive(exc: BaseException, tb: str) -> BaseException:
    """Attach the worker's traceback text as the ``__cause__`` of ``exc``."""
    exc.__cause__ = RemoteTraceback(tb)
    return exc
