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
    "dumps_task",
    "dumps_portable",
    "loads",
    "format_tb",
    "wrap_base_exception",
    "portable_exception",
    "revive",
    "safe_str",
    "short_repr",
    "where",
    "add_note",
    "located_tb",
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


def dumps_function(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], located: bool = True
) -> bytes:
    """Pickle a task's function and constant arguments once, by reference when possible.

    A function or class defined in ``__main__``, anywhere in what is pickled
    (a Worker composing ``__main__`` functions, a ``functools.partial``), makes
    the whole task go by value (cloudpickle): plain pickle would store it by
    reference, which workers started with spawn or forkserver, and remote
    servers, cannot resolve (their ``__main__`` is not the parent's). With
    ``located``, functions sent by value keep their file, lines and source in
    tracebacks (the worker needs papy: not for a stock classic server).
    """
    try:
        return dumps_portable((func, args, kwargs), located)
    except Exception as exc:
        raise TypeError(
            f"func {func!r} and its args/kwargs cannot be pickled for process workers: {exc}"
        ) from exc


def dumps_task(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bytes, bool]:
    """Pickle a task's function and constant arguments once, by reference if plain
    pickle can: ``(payload, refers_to_main)``.

    ``refers_to_main``: the payload names something of ``__main__`` by
    reference, which only a worker forked from this process is sure to find
    (``TaskDef.portable`` then pickles it by value for the others). What plain
    pickle refuses (lambdas, closures) goes by value (cloudpickle) at once.
    """
    obj = (func, args, kwargs)
    try:
        return _dumps_refusing_main(obj), False
    except _DefinedInMain:
        try:
            return pickle.dumps(obj, PROTOCOL), True
        except Exception:  # noqa: BLE001 - by value, below
            pass
    except Exception:  # noqa: BLE001 - by value, below
        pass
    return dumps_function(func, args, kwargs), False


def dumps_portable(obj: Any, located: bool = False) -> bytes:
    """Pickle ``obj`` so that another interpreter can load it: by reference where
    plain pickle can, by value (cloudpickle) if anything in it was defined in
    ``__main__`` or plain pickle refuses it.

    cloudpickle names the code of what it sends ``<dynamic-code>``; with
    ``located`` the payload also carries each function's file name and source
    lines, and unpickles (with papy installed) to functions whose tracebacks
    show them (``_located``).
    """
    try:
        return _dumps_refusing_main(obj)
    except Exception:  # noqa: BLE001 - cloudpickle tries next
        pass
    import cloudpickle

    if not located:
        return cloudpickle.dumps(obj, PROTOCOL)  # type: ignore[no-any-return]
    import io
    import types

    codes: list[Any] = []

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, value: Any) -> Any:
            if isinstance(value, types.FunctionType):
                codes.append(value.__code__)
            return super().reducer_override(value)

    buffer = io.BytesIO()
    Pickler(buffer, PROTOCOL).dump(obj)
    sources = _sources(codes)
    if not sources:
        return buffer.getvalue()
    return pickle.dumps(_Located(buffer.getvalue(), sources), PROTOCOL)


def _sources(codes: list[Any]) -> dict[tuple[str, int], tuple[str, list[str]]]:
    """``{(name, first line): (file name, the file's lines)}`` of these code
    objects and those nested in them (the lines only for files one can read)."""
    import linecache

    out: dict[tuple[str, int], tuple[str, list[str]]] = {}
    todo = list(codes)
    while todo:
        code = todo.pop()
        filename = code.co_filename
        if not filename.startswith("<"):
            out[(code.co_name, code.co_firstlineno)] = (filename, linecache.getlines(filename))
        todo.extend(c for c in code.co_consts if hasattr(c, "co_filename"))
    return out


class _Located:
    """A cloudpickle payload with where its functions were written (see
    ``dumps_portable``); unpickles to the object, its code located again."""

    __slots__ = ("payload", "sources")

    def __init__(self, payload: bytes, sources: dict[tuple[str, int], Any]) -> None:
        self.payload = payload
        self.sources = sources

    def __reduce__(self) -> tuple[Any, ...]:
        return (_located, (self.payload, self.sources))


def _located(payload: bytes, sources: dict[tuple[str, int], tuple[str, list[str]]]) -> Any:
    """(in a worker) Unpickle ``payload``; give its functions their file names back,
    and the source lines to ``linecache`` where the file is not here."""
    import linecache
    import os

    obj = pickle.loads(payload)
    for filename, lines in {v[0]: v[1] for v in sources.values()}.items():
        if lines and not os.path.exists(filename):
            linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    seen: set[int] = set()
    todo = [obj]
    while todo:  # the functions in what was sent (containers, partials, objects)
        value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        code = getattr(value, "__code__", None)
        if code is not None and getattr(value, "__name__", None) is not None:
            try:
                value.__code__ = _relocate(code, sources)
            except (AttributeError, TypeError, ValueError):
                pass
        if isinstance(value, (list, tuple, set, frozenset)):
            todo.extend(value)
        elif isinstance(value, dict):
            todo.extend(value.values())
        for name in ("func", "args", "keywords", "__dict__", "__wrapped__"):
            inner = getattr(value, name, None)
            if inner is not None and not isinstance(inner, (str, bytes, int, float)):
                todo.append(inner)
    return obj


def _relocate(code: Any, sources: dict[tuple[str, int], tuple[str, list[str]]]) -> Any:
    """``code`` (and the code nested in it) naming the file it was written in."""
    consts = tuple(
        _relocate(c, sources) if hasattr(c, "co_filename") else c for c in code.co_consts
    )
    found = sources.get((code.co_name, code.co_firstlineno))
    changes: dict[str, Any] = {}
    if consts != code.co_consts:
        changes["co_consts"] = consts
    if found is not None and code.co_filename != found[0]:
        changes["co_filename"] = found[0]
    return code.replace(**changes) if changes else code


class _DefinedInMain(Exception):
    """Raised while pickling: an object of ``__main__`` must go by value."""


def _dumps_refusing_main(obj: Any) -> bytes:
    import io

    class Pickler(pickle.Pickler):
        def reducer_override(self, value: Any) -> Any:
            if isinstance(value, type) or (callable(value) and hasattr(value, "__code__")):
                if getattr(value, "__module__", None) == "__main__":
                    raise _DefinedInMain(value)
            return NotImplemented

    buffer = io.BytesIO()
    Pickler(buffer, PROTOCOL).dump(obj)
    return buffer.getvalue()


def format_tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


STOP_ITERATION = (
    "{where}: the function raised StopIteration, which would end the caller's loop "
    "early; it is reported as an error at this item instead (PEP 479)"
)


def safe_str(obj: Any) -> str:
    """``str(obj)``, or a placeholder if its ``__str__`` fails."""
    try:
        return str(obj)
    except BaseException:  # noqa: BLE001 - user code
        try:
            return f"<{type(obj).__qualname__} object: str() failed>"
        except BaseException:  # noqa: BLE001
            return "<unprintable object>"


def short_repr(obj: Any, limit: int = 80) -> str:
    """A repr of an argument for an error message: at most about ``limit``
    characters, and a placeholder if its ``__repr__`` fails."""
    try:
        import reprlib

        r = reprlib.Repr()
        r.maxstring = r.maxother = limit
        r.maxlevel = 2
        text = r.repr(obj)
    except BaseException:  # noqa: BLE001 - user code
        try:
            return f"<{type(obj).__qualname__} object: repr() failed>"
        except BaseException:  # noqa: BLE001
            return "<unprintable object>"
    return text if len(text) <= limit + 20 else text[:limit] + "..."


def where(task: int, index: int, item: Any) -> str:
    """Where an exception was raised, for its messages: the task, the input
    position and a short repr of the argument."""
    return f"item {index} of task {task} (argument: {short_repr(item)})"


def add_note(exc: BaseException, note: str) -> None:
    """Add ``note`` to ``exc`` (PEP 678; shown under the exception's message
    from Python 3.11), once; an exception that refuses it is left as it is."""
    try:
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list) and note in notes:
            return
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        else:  # Python 3.10: kept for code that reads __notes__
            exc.__notes__ = [*(notes or []), note]  # type: ignore[attr-defined]
    except BaseException:  # noqa: BLE001 - a user exception with odd attributes
        pass


def wrap_base_exception(exc: BaseException, where: str) -> BaseException:
    """Make an item's exception safe to raise from ``next()``: a non-``Exception``
    (``SystemExit``, ``KeyboardInterrupt``) becomes a ``TaskletAbortedError``, and a
    ``StopIteration`` a ``RuntimeError`` (raised as it is, it would end the
    caller's ``for`` loop silently)."""
    if isinstance(exc, (StopIteration, StopAsyncIteration)):
        err: BaseException = RuntimeError(STOP_ITERATION.format(where=where))
        err.__cause__ = exc
        return err
    if isinstance(exc, Exception):
        add_note(exc, f"papy: raised by {where}")
        return exc
    aborted = TaskletAbortedError(f"{where} raised {type(exc).__name__}({safe_str(exc)})")
    aborted.exception = exc
    return aborted


def located_tb(exc: BaseException, where: str) -> str:
    """The traceback text of an item's exception, headed by where it was raised."""
    try:
        tb = format_tb(exc)
    except BaseException:  # noqa: BLE001 - a broken exception
        tb = f"{type(exc).__qualname__}: (its traceback could not be formatted)\n"
    return f"raised by {where}:\n{tb}"


def portable_exception(exc: BaseException, where: str) -> tuple[BaseException, str]:
    """Return ``(exception, traceback text)`` ready to cross a process boundary.

    An exception that does not survive a pickle round trip is replaced by a
    ``SerializationError`` that keeps its type name and message; the traceback
    travels as text and becomes the ``__cause__`` again on the other side
    (:func:`revive`).
    """
    tb = located_tb(exc, where)
    exc = wrap_base_exception(exc, where)
    try:
        clone = pickle.loads(pickle.dumps(exc, PROTOCOL))
        if type(clone) is not type(exc):
            raise TypeError("its type changed in a pickle round trip")
    except BaseException as why:  # noqa: BLE001 - a __reduce__ may raise anything
        exc = SerializationError(
            f"{where} raised {type(exc).__qualname__}: {safe_str(exc)}; the exception "
            f"itself could not be pickled ({safe_str(why)})"
        )
    exc.__traceback__ = None
    if isinstance(exc, TaskletAbortedError):
        exc.exception = None  # SystemExit & co. are not sent back
    return exc, tb


def revive(exc: BaseException, tb: str) -> BaseException:
    """Attach the worker's traceback text as the ``__cause__`` of ``exc``."""
    exc.__cause__ = RemoteTraceback(tb)
    return exc
