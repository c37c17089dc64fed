"""Worker: a composition of functions, the unit of work of a Piper.

The worker-function convention (as in the original PaPy): a function called by
a Worker gets the *inbox* as its first argument, a list with one entry per
upstream pipe (``inbox[0]`` is the item of the first upstream), followed by its
constant arguments; it returns one (unboxed) value. In a composition
``Worker((f, g, h))`` the first function gets the inbox and every later one
gets the previous return value boxed in a 1-tuple, so that a function reads
``inbox[0]`` at any position of a composition::

    r = f(inbox, *args_f, **kwargs_f)
    r = g((r,), *args_g, **kwargs_g)
    h((r,), *args_h, **kwargs_h)

A Worker never raises: an exception becomes a ``WorkerError`` that is
*returned* and travels downstream in place of the item. If the inbox already
holds an error (an upstream item failed), no function runs and that error is
returned as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._node import Node
from .errors import WorkerError

__all__ = ["Worker", "Batch"]


class Batch(list):  # type: ignore[type-arg]
    """The inbox entries gathered by a Piper with ``consume > 1``.

    A plain list of the ``consume`` inboxes (each a list with one entry per
    upstream pipe); the type only tells a Worker to look inside it for errors.
    """

    __slots__ = ()


def _fname(func: Any) -> str:
    name = getattr(func, "__name__", None)
    if name is None:
        name = type(func).__name__
    return str(name)


def _first_error(inbox: Any) -> WorkerError | None:
    if not isinstance(inbox, (list, tuple)):
        return None
    for entry in inbox:
        if isinstance(entry, WorkerError):
            return entry
        if isinstance(entry, Batch):
            for row in entry:
                for item in row:
                    if isinstance(item, WorkerError):
                        return item
    return None


def _refuse_pipers(functions: Any) -> None:
    """A Piper is callable (``piper(inbox)`` connects it) but is not a worker function."""
    items = functions if isinstance(functions, (list, tuple)) else [functions]
    for f in items:
        if isinstance(f, Node):
            raise TypeError(
                f"{f!r} is a Piper, not a worker function: a Worker composes functions "
                "(use piper.worker for its Worker, or Piper(piper) for a new Piper)"
            )


class Worker:
    """A composition of functions with constant arguments: what a Piper evaluates.

    Calling it, ``worker(inbox)``, calls the first function with the inbox and
    every later one with the previous result boxed in a 1-tuple, as the
    original PaPy did, so that a function reads ``inbox[0]`` wherever it sits
    in a composition. It never raises: an exception becomes a ``WorkerError``
    value that takes the item's place, so one bad item never stops a pipeline.
    Two Workers are equal if they compose the same functions with the same
    arguments; Workers are not hashable (like lists).

    Args:
        functions: A callable, a Worker, or a sequence of callables and
            Workers, composed left to right (Workers are flattened). A Piper
            is refused (``TypeError``).
        arguments: The constant positional arguments: for a single callable
            a tuple (``Worker(power, (3,))`` computes ``power(inbox, 3)``), for
            a sequence one tuple per function.
        kwargs: The constant keyword arguments: a dict, or one dict per
            function.
        name: The Worker's name; default: the functions' names joined by
            ``>`` (``"f>g"``).
    """

    def __init__(
        self,
        functions: Any,
        arguments: Any = None,
        kwargs: Any = None,
        name: str | None = None,
    ) -> None:
        _refuse_pipers(functions)
        if isinstance(functions, Worker):
            task, args, kws = functions.task, functions.args, functions.kwargs
            if arguments is not None or kwargs is not None:
                raise TypeError("a Worker built from a Worker takes no arguments or kwargs")
        elif callable(functions):
            task = (functions,)
            args = (self._check_args(arguments if arguments is not None else (), functions),)
            kws = (self._check_kwargs(kwargs if kwargs is not None else {}, functions),)
        elif isinstance(functions, Iterable) and not isinstance(functions, (str, bytes)):
            items = list(functions)
            if not items:
                raise TypeError("a Worker needs at least one function")
            if any(isinstance(f, Worker) for f in items):
                if arguments is not None or kwargs is not None:
                    raise TypeError("a Worker built from Workers takes no arguments or kwargs")
                parts = [f if isinstance(f, Worker) else Worker(f) for f in items]
                task = tuple(f for w in parts for f in w.task)
                args = tuple(a for w in parts for a in w.args)
                kws = tuple(k for w in parts for k in w.kwargs)
            else:
                for f in items:
                    if not callable(f):
                        raise TypeError(
                            "a Worker is built from a callable, a Worker, or a sequence of "
                            f"callables (or of Workers), got an item {f!r}"
                        )
                task = tuple(items)
                n = len(task)
                if arguments is None:
                    arguments = [()] * n
                if kwargs is None:
                    kwargs = [{}] * n
                if isinstance(arguments, (str, bytes)) or not isinstance(arguments, Sequence):
                    raise TypeError("arguments must be a sequence with one tuple per function")
                if isinstance(kwargs, Mapping) or not isinstance(kwargs, Sequence):
                    raise TypeError("kwargs must be a sequence with one dict per function")
                if len(arguments) != n:
                    raise ValueError(
                        f"{n} functions need {n} argument tuples, got {len(arguments)}"
                    )
                if len(kwargs) != n:
                    raise ValueError(f"{n} functions need {n} kwargs dicts, got {len(kwargs)}")
                args = tuple(self._check_args(a, f) for a, f in zip(arguments, task))
                kws = tuple(self._check_kwargs(k, f) for k, f in zip(kwargs, task))
        else:
            raise TypeError(
                "a Worker is built from a callable, a Worker, or a sequence of callables "
                f"(or of Workers), got {type(functions).__name__}"
            )
        self.task: tuple[Callable[..., Any], ...] = task
        self.args: tuple[tuple[Any, ...], ...] = args
        self.kwargs: tuple[dict[str, Any], ...] = kws
        self.__name__ = ">".join(_fname(f) for f in task)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        self.name = name if name is not None else self.__name__

    @staticmethod
    def _check_args(args: Any, func: Any) -> tuple[Any, ...]:
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise TypeError(
                f"the arguments of {_fname(func)} must be a tuple or list, got {type(args).__name__}"
            )
        return tuple(args)

    @staticmethod
    def _check_kwargs(kwargs: Any, func: Any) -> dict[str, Any]:
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise TypeError(
                f"the kwargs of {_fname(func)} must be a dict with str keys, got {kwargs!r}"
            )
        return dict(kwargs)

    def __call__(self, inbox: Any) -> Any:
        """Evaluate the composition on ``inbox``; return the result or a WorkerError."""
        error = _first_error(inbox)
        if error is not None:
            return error
        out = inbox
        boxed = inbox
        for func, args, kwargs in zip(self.task, self.args, self.kwargs):
            try:
                out = func(boxed, *args, **kwargs)
                boxed = (out,)  # the next function gets a 1-tuple inbox
            except Exception as exc:  # noqa: BLE001 - becomes the item's error value
                import traceback

                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                exc.__traceback__ = None  # do not keep the frames (and the inbox) alive
                return WorkerError(exc, tb, _fname(func))
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Worker):
            return NotImplemented
        return self.task == other.task and self.args == other.args and self.kwargs == other.kwargs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Worker({self.name})"

    def __getstate__(self) -> dict[str, Any]:
        return {"task": self.task, "args": self.args, "kwargs": self.kwargs, "name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.task = state["task"]
        self.args = state["args"]
        self.kwargs = state["kwargs"]
        self.name = state["name"]
        self.__name__ = ">".join(_fname(f) for f in self.task)
