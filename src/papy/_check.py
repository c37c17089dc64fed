"""One checker for papy's arguments: a wrong type is a ``TypeError``, a value out
of range a ``ValueError``, and the message names the argument. Used by IMap,
the pipeline and ``script``; the scheduling cores keep their own (they are
self-contained and twin each other)."""

from __future__ import annotations

import numbers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["count", "flag", "seconds"]


def seconds(name: str, value: Any, *, positive: bool = False) -> float | None:
    """A number of seconds or None (no limit): >= 0 (> 0 with ``positive``), not NaN."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds or None, got {type(value).__name__}")
    number = float(value)
    # (not >= 0 catches NaN too, which would make every deadline a wait without end)
    if not number >= 0 or (positive and number == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {number}")
    return number


def count(name: str, value: Any, minimum: int) -> int:
    """An int >= ``minimum`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def flag(name: str, value: Any) -> bool:
    """A yes/no argument: a bool (or the ints 0 and 1, as old code passes them)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")
