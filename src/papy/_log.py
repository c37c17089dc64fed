"""papy's logger, ``logging.getLogger('papy')``: silent unless the application
configures logging. :mod:`logging` is imported on first use only (import time),
and nothing is logged on the per-item path."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

_logger: logging.Logger | None = None


def logger() -> logging.Logger:
    global _logger
    if _logger is None:
        import logging

        _logger = logging.getLogger("papy")
        _logger.addHandler(logging.NullHandler())
    return _logger


def pipeline_logger() -> logging.Logger:
    """``papy.pipeline``: what Pipers, Daggers and Plumbers log (their ``log``)."""
    return logger().getChild("pipeline")
