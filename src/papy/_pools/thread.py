"""Thread workers: tasklets travel through one ``queue.SimpleQueue``."""

from __future__ import annotations

import queue
import threading
from time import monotonic

from .._serialize import format_tb, revive, wrap_base_exception
from . import Deliver, TaskDefs

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

_STOP = None


def _run(tasks: TaskDefs, inbox: queue.SimpleQueue[Any], deliver: Deliver, n_threads: int) -> None:
    """Worker thread loop: evaluate batches until the stop sentinel."""
    get, get_nowait, qsize = inbox.get, inbox.get_nowait, inbox.qsize
    while True:
        batch = get()
        if batch is _STOP:
            return
        out: list[tuple[int, int, bool, Any]] = []
        # Take a fair share of what else waits, delivered together: fewer
        # hand-offs, and no tasklet waits behind a slow one for long (below).
        extra = qsize() // n_threads
        started = monotonic()
        while True:
            for task, index, item in batch:
                d = tasks[task]
                try:
                    out.append((task, index, True, d.func(item, *d.args, **d.kwargs)))
                except BaseException as exc:  # noqa: BLE001 - reported at the item's position
                    where = f"item {index} of task {task}"
                    err = wrap_base_exception(exc, where)
                    out.append((task, index, False, revive(err, format_tb(exc))))
                    del exc, err
            if extra <= 0 or monotonic() - started > PATIENCE:
                break
            try:
                batch = get_nowait()
            except queue.Empty:
                break
            if batch is _STOP:
                inbox.put(_STOP)  # for this loop's next round
                break
            extra -= 1
        try:
            deliver(out)
        except BaseException:  # noqa: BLE001 - the map was stopped meanwhile
            return


#: a worker thread stops taking waiting batches once it has worked this long (s)
PATIENCE = 0.002


class ThreadPool:
    """``size`` daemon threads evaluating tasklets in submission order."""

    kind = "thread"

    def __init__(self, size: int) -> None:
        self.size = size
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self, tasks: TaskDefs, deliver: Deliver, name: str = "papy") -> None:
        for i in range(self.size):
            t = threading.Thread(
                target=_run,
                args=(tasks, self._inbox, deliver, self.size),
                name=f"{name}-thread-{i}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)

    def submit(self, batch: list[tuple[int, int, Any]]) -> None:
        self._inbox.put(batch)

    def shutdown(self, timeout: float = 1.0) -> None:
        """Ask every thread to stop; wait up to ``timeout`` for idle ones.

        A thread stuck inside a user function cannot be killed; it is a daemon
        thread, so it never keeps the interpreter from exiting.
        """
        for _ in self._threads:
            self._inbox.put(_STOP)
        current = threading.current_thread()
        for t in self._threads:
            if t is not current:
                t.join(timeout)
        self._threads = []

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads)
