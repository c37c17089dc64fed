"""Errors of papy's pipelines.

``WorkerError`` is the one error *value* of a pipeline: when a worker
function raises (or an item times out, or its worker process dies), the item
becomes a ``WorkerError`` that travels downstream in place of the item, so the
other items are unaffected and every position stays aligned. It is never
wrapped again: a Piper that receives an error passes the same error on.

``PiperError``, ``DaggerError`` and ``PlumberError`` are raised
for misuse (a wrong argument, a call in the wrong state).
"""

from __future__ import annotations

from typing import Any

from .._errors import PapyError

__all__ = ["WorkerError", "PiperError", "DaggerError", "PlumberError"]


class PiperError(PapyError):
    """A Piper was used in a way its state does not allow."""


class DaggerError(PapyError):
    """A graph operation was refused (a cycle, an unknown piper, ...)."""


class PlumberError(PapyError):
    """A Plumber was used in a way its state does not allow."""


def _format(exc: BaseException) -> str:
    import traceback as _traceback

    return "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))


class WorkerError(PapyError):
    """An item that failed, travelling downstream in place of the item.

    Downstream Pipers pass the same object on without calling their worker, so
    ``piper`` and ``index`` always point at the origin of the failure, and
    every position of the pipeline stays aligned. papy makes these; the
    arguments are also its attributes.

    Args:
        exception: The original exception (for example the ``ValueError``
            raised by a worker function, or papy's ``TimeoutError``).
        traceback: The traceback text, formatted where it was raised (inside
            the worker process for process workers).
        function: The name of the function that raised (``'<timeout>'``,
            ``'<input>'`` ... when no function did).
        piper: The name of the Piper where the item failed.
        index: The item's position in that Piper: the number of the
            evaluation (the inbox) that failed, counted from 0.
    """

    def __init__(
        self,
        exception: BaseException,
        traceback: str | None = None,
        function: str | None = None,
        piper: str | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(exception)
        self.exception = exception
        self.traceback = traceback if traceback is not None else _format(exception)
        self.function = function
        self.piper = piper
        self.index = index

    def __str__(self) -> str:
        where = []
        if self.piper is not None:
            where.append(f"piper {self.piper!r}")
        if self.index is not None:
            where.append(f"item {self.index}")
        if self.function is not None:
            where.append(f"function {self.function!r}")
        head = ", ".join(where) or "worker"
        exc = self.exception
        return f"{head}: {type(exc).__name__}: {exc}"

    def __repr__(self) -> str:
        return (
            f"WorkerError({type(self.exception).__name__}({str(self.exception)!r}), "
            f"function={self.function!r}, piper={self.piper!r}, index={self.index!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        import pickle

        exc = self.exception
        try:
            clone = pickle.loads(pickle.dumps(exc))
            if type(clone) is not type(exc):
                raise TypeError("its type changed in a pickle round trip")
        except Exception as why:  # noqa: BLE001 - replaced by a portable stand-in
            exc = RuntimeError(
                f"{type(exc).__qualname__}: {exc} (the exception itself could not be pickled: {why})"
            )
        return (_rebuild, (exc, self.traceback, self.function, self.piper, self.index))


def _rebuild(
    exception: BaseException,
    traceback: str,
    function: str | None,
    piper: str | None,
    index: int | None,
) -> WorkerError:
    return WorkerError(exception, traceback, function, piper, index)


# tracebacks and reprs show the public names (papy.pipeline.WorkerError)
for _cls in (PiperError, DaggerError, PlumberError, WorkerError):
    _cls.__module__ = "papy.pipeline"
del _cls
