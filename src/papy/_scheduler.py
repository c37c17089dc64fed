"""Selects the scheduling core: compiled ``papy._sched`` or its pure twin.

``PAPY_NO_EXTENSIONS=1`` (read once, at import) forces the pure-Python twin; so
does a Python implementation other than CPython. Otherwise the compiled core
must import: a normal install that lacks it is broken, and we say so instead
of silently running the slow path. Nothing else imports either core directly.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

TYPE_CHECKING = False  # without importing typing (import time)

__all__ = ["NO_EXTENSIONS", "IMPLEMENTATION", "core", "Scheduler", "RESULT", "ERROR", "FINISHED"]

NO_EXTENSIONS = bool(os.environ.get("PAPY_NO_EXTENSIONS")) or sys.implementation.name != "cpython"

if TYPE_CHECKING or NO_EXTENSIONS:
    from . import _sched_py as core
else:
    try:
        from . import _sched as core  # type: ignore[attr-defined, no-redef]
    except ImportError as exc:  # pragma: no cover - only a broken install gets here
        raise ImportError(
            "papy's compiled scheduler (papy._sched) is missing or broken: "
            f"{exc}. Reinstall papy with a C++ compiler and Cython available, "
            "or set PAPY_NO_EXTENSIONS=1 to use the pure-Python core."
        ) from exc

core_module: ModuleType = core
IMPLEMENTATION: str = core.IMPLEMENTATION
Scheduler = core.Scheduler
RESULT = core.RESULT
ERROR = core.ERROR
FINISHED = core.FINISHED
