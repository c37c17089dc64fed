"""Worker pools: where tasklets are evaluated.

Every pool has the same small interface, used by IMap's feeder thread:

* ``start(tasks, deliver)``: ``tasks`` maps a task id to ``(func, args,
  kwargs)`` (or, for process pools, to its pickled form), ``deliver`` is called
  from the pool's own threads with a list of ``(task, index, ok, value)``;
* ``submit(batch)``: a list of ``(task, index, item)`` to evaluate, in order;
* ``shutdown()``: stop the workers promptly, never blocking for long.

A pool never holds a reference to its IMap, so an IMap that nobody uses any
more can be garbage-collected and shut down.
"""

from __future__ import annotations

from typing import Any, Callable

Deliver = Callable[[list[tuple[int, int, bool, Any]]], None]
TaskDefs = dict[int, Any]

__all__ = ["Deliver", "TaskDefs"]
