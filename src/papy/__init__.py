"""papy: parallel pipelines in Python.

The heart is ``IMap``, a lazy, parallel, buffered, multi-task ``imap``:
many ``(function, iterable)`` tasks share one pool of thread or process
workers; ``stride`` sets how many tasklets of one task are submitted before
the next task's, ``buffer`` bounds how many results may be pending.
"""

from __future__ import annotations

from ._errors import (
    DeadlockError,
    InitializerError,
    InputError,
    PapyError,
    RemoteTraceback,
    SchedulerClosed,
    SerializationError,
    TaskletAbortedError,
    WorkerLostError,
)
from ._imap import IMap, MapIterator, NuMap, TaskIterator, imap, starmap
from ._imports import imports

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

__version__ = "2.0.0.dev0"

__all__ = [
    "IMap",
    "NuMap",
    "TaskIterator",
    "MapIterator",
    "imap",
    "starmap",
    "imports",
    "TimeoutError",
    "PapyError",
    "DeadlockError",
    "InitializerError",
    "InputError",
    "RemoteTraceback",
    "SchedulerClosed",
    "SerializationError",
    "TaskletAbortedError",
    "WorkerLostError",
    # papy.pipeline, imported on first use (see __getattr__)
    "Worker",
    "Piper",
    "Dagger",
    "Plumber",
    "WorkerError",
    "PiperError",
    "DaggerError",
    "PlumberError",
    "__version__",
]

#: names of papy.pipeline offered here; the subpackage is imported on first use
_PIPELINE_NAMES = frozenset(
    (
        "Worker",
        "Piper",
        "Dagger",
        "Plumber",
        "WorkerError",
        "PiperError",
        "DaggerError",
        "PlumberError",
    )
)


def __getattr__(name: str) -> Any:
    # papy.TimeoutError subclasses multiprocessing.TimeoutError; building it
    # imports multiprocessing, so it is done on first use only.
    if name == "TimeoutError":
        from ._errors import timeout_error_class

        return timeout_error_class()
    if name in _PIPELINE_NAMES:
        from . import pipeline

        value = getattr(pipeline, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'papy' has no attribute {name!r}")
