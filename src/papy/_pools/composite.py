"""Local workers and remote slots behind one pool interface.

``IMap(worker_num=2, worker_remote=[("host", 4)])`` evaluates on 2 local workers
and 4 remote slots. Each batch goes to the side with the lower share of
unanswered tasklets per worker (ties go to the local side), so a fast side
takes more of the work. Batches that the remote side can no longer run (every
remote slot lost) are handed to the local workers instead of failing.
"""

from __future__ import annotations

from collections import deque
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import Sink, TaskDefs
    from ._io import Waker


__all__ = ["CompositePool"]


class CompositePool:
    """``local`` (a thread or process pool) plus ``remote`` (a RemotePool)."""

    kind = "composite"

    def __init__(self, local: Any, remote: Any) -> None:
        self.local = local
        self.remote = remote
        self.size = local.size + remote.size
        self._sched: Any = None
        self._waker: Waker | None = None
        self._fallback: deque[list[tuple[int, int, Any]]] = deque()  # from remote threads

    def start(self, tasks: TaskDefs, sink: Sink, waker: Waker, name: str = "papy") -> None:
        """Connect the remote slots first (the likelier to fail), then start local workers."""
        self._sched = sink.sched
        self._waker = waker
        self.remote.fallback = self._to_local
        self.remote.start(tasks, sink, waker, name)
        try:
            self.local.start(tasks, sink, waker, name)
        except BaseException:
            self.remote.shutdown(0.2)
            raise

    def _to_local(self, batch: list[tuple[int, int, Any]]) -> None:
        """(a remote slot's thread) The remote side gives up ``batch``: the local
        workers run it, handed over by the driving thread's next ``pump``."""
        self._fallback.append(batch)
        if self._waker is not None:
            self._waker.wake()

    def submit_range(self, task: int, first: int, items: list[Any]) -> None:
        n = len(items)
        remote_slots = self.remote.alive()
        # what is in flight on the remote side is what the scheduler holds minus ours
        in_flight = self._sched.in_flight
        remote_items = self.remote.load()
        local_items = max(0, in_flight - remote_items - n)
        side = "local"
        if remote_slots:
            local_share = (local_items + n) / self.local.size
            remote_share = (remote_items + n) / remote_slots
            if remote_share < local_share:
                side = "remote"
        (self.remote if side == "remote" else self.local).submit_range(task, first, items)

    def pump(self, timeout: float) -> None:
        while self._fallback:
            for task, index, item in self._fallback.popleft():
                self.local.submit_range(task, index, [item])
        self.local.pump(timeout)

    def shutdown(self, timeout: float = 1.0) -> None:
        try:
            self.remote.shutdown(timeout)
        finally:
            self.local.shutdown(timeout)

    def alive(self) -> int:
        local = self.local.alive() if hasattr(self.local, "alive") else self.local.size
        return int(local) + int(self.remote.alive())
