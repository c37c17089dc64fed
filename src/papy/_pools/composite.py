"""Several pools behind one pool interface: local workers and remote servers.

``IMap(worker_num=2, worker_remote=[("host", 4)])`` evaluates on 2 local workers
and 4 remote slots. Local process workers and papy's servers are one
:class:`~papy._pools.process.ProcessPool` already; a composite joins what
cannot be one: local *thread* workers, remote workers of a
:class:`~papy._pools.process.ProcessPool`, stock classic servers
(:class:`~papy._pools.remote.RemotePool`).

Each batch goes to the side with the lowest share of unanswered tasklets per
worker (ties go to the first, local side), so a fast side takes more of the
work. Batches that a remote side can no longer run (every slot lost) go to
the first side instead of failing.
"""

from __future__ import annotations

from collections import deque
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import Fallback, Pool, Sink, TaskDefs
    from ._io import Waker


__all__ = ["CompositePool"]


class CompositePool:
    """``sides``: the first is the local pool (or the first remote one)."""

    kind = "composite"

    def __init__(self, sides: list[Pool]) -> None:
        self.sides = sides
        self.size = sum(side.size for side in sides)
        self.measures = any(side.measures for side in sides)
        self.fallback: Fallback | None = None  # the first side takes its sides' orphans
        self._sched: Any = None
        self._waker: Waker | None = None
        self._load = [0] * len(sides)  # tasklets given to each side and not yet back (estimate)
        self._fallback: deque[list[tuple[int, int, list[Any]]]] = deque()  # from any thread

    @property
    def local(self) -> Any:
        return self.sides[0]

    @property
    def remote(self) -> Any:
        return self.sides[-1]

    def start(self, tasks: TaskDefs, sink: Sink, waker: Waker, name: str = "papy") -> None:
        """Start the remote sides first (the likelier to fail), then the local one."""
        self._sched = sink.sched
        self._waker = waker
        started: list[Any] = []
        try:
            for side in reversed(self.sides):
                if side is not self.sides[0]:
                    side.fallback = self._to_first
                side.start(tasks, sink, waker, name)
                started.append(side)
        except BaseException:
            for side in started:
                side.shutdown(0.2)
            raise

    def _to_first(self, batch: list[Any]) -> None:
        """(any thread) A side gives up ``batch`` (no worker left): the first side
        runs it, handed over by the driving thread's next ``pump``."""
        self._fallback.append(batch)
        if self._waker is not None:
            self._waker.wake()

    def submit_range(self, task: int, first: int, items: list[Any]) -> None:
        best, best_share = 0, None
        for i, side in enumerate(self.sides):
            alive = side.alive()
            if not alive:
                continue
            share = (_load(side) + len(items)) / alive
            if best_share is None or share < best_share:
                best, best_share = i, share
        self.sides[best].submit_range(task, first, items)

    def pump(self, timeout: float) -> None:
        while self._fallback:
            for task, first, items in self._fallback.popleft():
                self.sides[0].submit_range(task, first, items)
        # the side that polls its own connections waits; the others deliver from
        # their threads and wake it (the waker is in every poll)
        poller = next((s for s in self.sides if s.kind == "process"), self.sides[0])
        for side in self.sides:
            if side is not poller:
                side.flush()
        poller.pump(timeout)

    def flush(self) -> None:
        for side in self.sides:
            side.flush()

    def load(self) -> int:
        return sum(side.load() for side in self.sides)

    def worker_stats(self) -> list[dict[str, Any]]:
        return [info for side in self.sides for info in side.worker_stats()]

    def depth(self) -> int | None:
        depths = [side.depth() for side in self.sides]
        return None if None in depths else sum(d for d in depths if d is not None)

    def cost(self) -> tuple[float, float, float] | None:
        costs = [c for side in self.sides if (c := side.cost())]
        if not costs:
            return None
        return max(c[0] for c in costs), max(c[1] for c in costs), max(c[2] for c in costs)

    def shutdown(self, timeout: float = 1.0) -> None:
        for side in reversed(self.sides):
            try:
                side.shutdown(timeout)
            except Exception:  # noqa: BLE001 - stop the others anyway
                pass

    def alive(self) -> int:
        return sum(int(side.alive()) for side in self.sides)

    def servers(self) -> list[dict[str, Any]]:
        return [info for side in self.sides if hasattr(side, "servers") for info in side.servers()]

    @property
    def lost(self) -> int:
        return sum(getattr(side, "lost", 0) for side in self.sides)


def _load(side: Pool) -> int:
    """Tasklets a side holds (queued or being evaluated), as well as it can tell."""
    return side.load()
