"""``@imports``: the original NuMap's decorator, for code written for it.

The original sent a remote function as its source text, so the modules the
function used had to be imported inside it; ``@imports(['os'])`` did that by
binding the modules into the function's module namespace. papy sends functions
pickled (by reference or by value), so the decorator is not needed, but
original code that uses it, or that relies on the names it binds, runs
unchanged: the binding is done the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

TYPE_CHECKING = False  # typing is not imported at run time (papy's import time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["imports"]


def imports(modules: Sequence[str], forgive: bool = False) -> Callable[[F], F]:
    """Import ``modules`` and bind each into the decorated function's globals.

    An entry is a dotted module name (``'xml.dom.domreg'`` is bound as
    ``domreg``) or comma-separated alternatives tried in order (``'ujson,json'``
    binds whichever imports first under the name ``ujson``, the last part of
    the first alternative). If no alternative imports: ``ImportError``, or a
    warning with ``forgive=True``. The function gets an ``imports`` attribute
    (the list), and is returned itself.
    """
    if isinstance(modules, (str, bytes)) or not isinstance(modules, Sequence):
        raise TypeError(
            f"modules must be a list of module names, like ['os', 're'], got {modules!r}"
        )
    for entry in modules:
        if not isinstance(entry, str) or not entry.strip():
            raise TypeError(f"modules must hold module names (str), got {entry!r}")

    def decorate(func: F) -> F:
        import importlib
        import warnings

        namespace = getattr(func, "__globals__", None)
        if not isinstance(namespace, dict):
            raise TypeError(
                f"@imports decorates a Python function (with __globals__), got {func!r}"
            )
        for entry in modules:
            alternatives = [name.strip() for name in entry.split(",")]
            bound_as = alternatives[0].rsplit(".", 1)[-1]
            for name in alternatives:
                try:
                    namespace[bound_as] = importlib.import_module(name)
                    break
                except ImportError:
                    continue
            else:
                message = f"@imports: none of {', '.join(alternatives)} can be imported"
                if not forgive:
                    raise ImportError(message)
                warnings.warn(message, ImportWarning, stacklevel=2)
        func.imports = list(modules)  # type: ignore[attr-defined]
        return func

    return decorate
