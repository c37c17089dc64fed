"""What a Dagger's nodes are: the base of ``Piper``, known to ``Worker`` without
importing the Piper module (a Worker refuses a Piper as a function)."""

from __future__ import annotations

__all__ = ["Node"]


class Node:
    """A node of a pipeline (a ``Piper``): callable, to connect it, but not a function."""

    __slots__ = ()
