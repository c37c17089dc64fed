"""Flow-based pipelines: Worker -> Piper -> Dagger -> Plumber.

* ``Worker``: a composition of functions; turns exceptions into
  ``WorkerError`` values.
* ``Piper``: a node; evaluates a Worker over its inputs, linearly or on a
  ``papy.IMap``.
* ``Dagger``: the directed acyclic graph of Pipers and pipes.
* ``Plumber``: runs a Dagger (``start``, ``run``, ``wait``, ``pause``,
  ``stop``, ``stats``) and draws it (``to_dot``, ``to_mermaid``).
* ``papy.pipeline.util``: ready-made worker functions;
  ``papy.pipeline.script``'s ``script()`` runs an external program per item.
* ``Plumber.save``/``Plumber.load``: a pipeline's definition in a file.

See docs/pipelines.md.
"""

from __future__ import annotations

from .dagger import Dagger
from .errors import DaggerError, PiperError, PlumberError, WorkerError
from .piper import Piper
from .plumber import Plumber
from .worker import Batch, Worker

__all__ = [
    "Worker",
    "Batch",
    "Piper",
    "Dagger",
    "Plumber",
    "WorkerError",
    "PiperError",
    "DaggerError",
    "PlumberError",
]
