"""Local workers and remote slots behind one pool interface.

``IMap(worker_num=2, worker_remote=[("host", 4)])`` evaluates on 2 local workers
and 4 remote slots. Each batch goes to the side with the lower share of
unanswered items per worker (ties go to the local side), so a fast side takes
more of the work. Batches that the remote side can no longer run (every remote
slot lost) are handed to the local workers instead of failing.
"""

from __future__ import annotations

import threading
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import Deliver, TaskDefs


__all__ = ["CompositePool"]


class CompositePool:
    """``local`` (a thread or process pool) plus ``remote`` (a RemotePool)."""

    kind = "composite"

    def __init__(self, local: Any, remote: Any) -> None:
        self.local = local
        self.remote = remote
        self.size = local.size + remote.size
        self._lock = threading.Lock()
        self._pending = {"local": 0, "remote": 0}  # items submitted, not delivered

    def start(self, tasks: TaskDefs, deliver: Deliver, name: str = "papy") -> None:
        """Connect the remote slots first (the likelier to fail), then start local workers."""

        def counted(side: str) -> Deliver:
            pending = self._pending
            lock = self._lock

            def deliver_side(results: list[tuple[int, int, bool, Any]]) -> None:
                with lock:
                    pending[side] -= len(results)
                deliver(results)

            return deliver_side

        self.remote.fallback = self._to_local
        self.remote.start(tasks, counted("remote"), name)
        try:
            self.local.start(tasks, counted("local"), name)
        except BaseException:
            self.remote.shutdown(0.2)
            raise

    def _to_local(self, batch: list[tuple[int, int, Any]]) -> None:
        """The remote side gives up ``batch`` (no slot left): the local workers run it."""
        with self._lock:
            self._pending["remote"] -= len(batch)
            self._pending["local"] += len(batch)
        self.local.submit(batch)

    def submit(self, batch: list[tuple[int, int, Any]]) -> None:
        n = len(batch)
        remote_slots = self.remote.alive()
        with self._lock:
            side = "local"
            if remote_slots:
                local_share = (self._pending["local"] + n) / self.local.size
                remote_share = (self._pending["remote"] + n) / remote_slots
                if remote_share < local_share:
                    side = "remote"
            self._pending[side] += n
        (self.remote if side == "remote" else self.local).submit(batch)

    def shutdown(self, timeout: float = 1.0) -> None:
        try:
            self.remote.shutdown(timeout)
        finally:
            self.local.shutdown(timeout)

    def alive(self) -> int:
        local = self.local.alive() if hasattr(self.local, "alive") else self.local.size
        return int(local) + int(self.remote.alive())
