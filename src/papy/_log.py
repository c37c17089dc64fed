"""papy's logger, ``logging.getLogger('papy')``: silent unless the application
configures logging. :mod:`logging` is imported on first use only (import time),
and nothing is logged on the per-item path.

While the application has not imported :mod:`logging` at all, nothing it could
configure would show papy's records, so ``logger()`` returns a silent stand-in
and :mod:`logging` stays unimported (a map starts without it).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any

_logger: logging.Logger | None = None


class _Silent:
    """What ``logger()`` gives while :mod:`logging` is not imported: drops records."""

    def _drop(self, *args: Any, **kwargs: Any) -> None:
        return None

    debug = info = warning = error = exception = _drop


_SILENT: Any = _Silent()


def logger() -> logging.Logger:
    global _logger
    if _logger is None:
        if "logging" not in sys.modules:
            return _SILENT  # type: ignore[no-any-return]
        import logging

        _logger = logging.getLogger("papy")
        _logger.addHandler(logging.NullHandler())
    return _logger


def pipeline_logger() -> logging.Logger:
    """``papy.pipeline``: what Pipers, Daggers and Plumbers log (their ``log``)."""
    import logging  # noqa: F401 - a Piper's `log` is a real logger

    return logger().getChild("pipeline")
