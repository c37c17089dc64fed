"""Selects the scheduling core: compiled ``papy._sched`` or its pure twin.

``PAPY_NO_EXTENSIONS=1`` (or ``true``, ``yes``, ``on``; read once, at import)
forces the pure-Python twin (``0``, ``false``, ``no``, ``off`` do not); so
does a Python implementation other than CPython. Otherwise the compiled core
must import: a normal install that lacks it is broken, and we say so instead
of silently running the slow path. Nothing else imports either core directly.

``Outlet`` (the base of papy's result iterators) is taken from the core chosen
here, once: the iterator classes are built at import.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

TYPE_CHECKING = False  # without importing typing (import time)

__all__ = [
    "NO_EXTENSIONS", "IMPLEMENTATION", "core", "Scheduler", "Outlet", "RESULT", "ERROR", "FINISHED"
]  # fmt: skip


def env_flag(name: str) -> bool:
    """An on/off environment variable: ``1``, ``true``, ``yes``, ``on`` mean on;
    unset, empty, ``0``, ``false``, ``no``, ``off`` mean off (any case); any other
    value is refused, so that a typo does not silently pick the other side."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(
        f"{name}={os.environ[name]!r} is not an on/off value: use 1/true/yes/on or 0/false/no/off"
    )


NO_EXTENSIONS = env_flag("PAPY_NO_EXTENSIONS") or sys.implementation.name != "cpython"

if TYPE_CHECKING or NO_EXTENSIONS:
    from . import _sched_py as core
else:
    try:
        from . import _sched as core  # type: ignore[attr-defined, no-redef]
    except ImportError as exc:  # pragma: no cover - only a broken install gets here
        raise ImportError(
            "papy's compiled scheduler (papy._sched) is missing or broken: "
            f"{exc}. Reinstall papy2 with a C++ compiler and Cython available, "
            "or set PAPY_NO_EXTENSIONS=1 to use the pure-Python core."
        ) from exc

core_module: ModuleType = core
IMPLEMENTATION: str = core.IMPLEMENTATION
Scheduler = core.Scheduler
Outlet = core.Outlet
RESULT = core.RESULT
ERROR = core.ERROR
FINISHED = core.FINISHED
