"""Process workers: one duplex pipe and one reader thread per worker.

Data flow::

    feeder thread ── submit(batch) ──► least-loaded worker's pipe ──► child: _child.main
                                                                         │ evaluates in order
    reader thread per worker ◄── recv_bytes (GIL released) ◄─────────────┘ one reply per batch
        │ unpickles, calls deliver() (the scheduler's put_many)
        └ a dead worker (EOF on its pipe): its oldest unanswered batch fails with
          WorkerLostError (or is re-run, up to ``retries`` times), the rest of its
          queue is re-sent to a fresh worker that replaces it.

The function of each task is pickled once and sent once to every worker
(again to a replacement), never with each item.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import threading
from collections import deque
from time import monotonic
TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

from .._errors import SerializationError, WorkerLostError
from .._log import logger
from .._serialize import PROTOCOL, dumps, revive
from . import Deliver, TaskDefs
from ._child import EXIT, RUN, TASKS, main

__all__ = ["ProcessPool"]


class _Batch:
    """A message in flight to one worker: its ids, its bytes, when it was sent, retries."""

    __slots__ = ("ids", "data", "sent_at", "tries")

    def __init__(self, ids: list[tuple[int, int]], data: bytes, tries: int = 0) -> None:
        self.ids = ids
        self.data = data
        self.sent_at = 0.0
        self.tries = tries


#: a busy worker gets a second batch only if its current one is younger than
#: this (seconds): quick items keep the pipe full, slow ones do not hold others up
PATIENCE = 0.002


class _Slot:
    """One worker process and what it has been sent but not answered."""

    __slots__ = ("index", "proc", "conn", "lock", "queue", "sent", "done", "reader")

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: Any = None
        self.conn: Any = None
        # Guards proc/conn/queue between the feeder (send) and the reader (replace).
        self.lock = threading.Lock()
        self.queue: deque[_Batch] = deque()
        self.sent = 0  # items sent, written by the feeder thread only
        self.done = 0  # items answered or failed, written by its reader thread only
        self.reader: threading.Thread | None = None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "its pipe closed"
    if code < 0:
        try:
            return f"it was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"it was killed by signal {-code}"
    return f"it exited with code {code}"


class ProcessPool:
    """``size`` worker processes started with ``start_method``."""

    kind = "process"

    def __init__(
        self, size: int, start_method: str | None = None, retries: int = 0, prefetch: int = 2
    ) -> None:
        self.size = size
        self.retries = retries
        self._ctx = multiprocessing.get_context(start_method)
        self._slots = [_Slot(i) for i in range(size)]
        # A worker gets a batch while it has fewer than `prefetch` unanswered ones
        # and its current one is younger than PATIENCE; the others wait here, in
        # order, for the first free worker (a quick item never queues behind a
        # slow one in a busy worker's pipe).
        self.prefetch = prefetch
        self._pending: deque[_Batch] = deque()
        self._dispatch_lock = threading.Lock()  # guards _pending and the choice of worker
        self._closing = False
        self._defs_msg = b""
        self._deliver: Deliver | None = None
        self._name = "papy"
        self.lost = 0  # workers lost so far

    # -- lifecycle ------------------------------------------------------------
    def start(self, tasks: TaskDefs, deliver: Deliver, name: str = "papy") -> None:
        """Start the workers and send each the pickled task definitions."""
        payloads = {task: d.payload for task, d in tasks.items()}
        self._defs_msg = pickle.dumps((TASKS, payloads), PROTOCOL)
        self._deliver = deliver
        self._name = name
        for slot in self._slots:
            self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        """Start a fresh worker in ``slot`` and send it the task definitions."""
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=main, args=(child,), name=f"{self._name}-worker-{slot.index}", daemon=True
        )
        proc.start()
        child.close()
        slot.proc, slot.conn = proc, parent
        try:
            parent.send_bytes(self._defs_msg)
        except OSError:
            pass  # it died at once; its reader sees EOF
        slot.reader = threading.Thread(
            target=self._read,
            args=(slot, proc, parent),
            name=f"{self._name}-reader-{slot.index}",
            daemon=True,
        )
        slot.reader.start()

    def shutdown(self, timeout: float = 1.0) -> None:
        """Stop every worker: ask politely, then terminate, then kill."""
        self._closing = True
        exit_msg = pickle.dumps((EXIT,), PROTOCOL)
        for slot in self._slots:
            with slot.lock:
                try:
                    slot.conn.send_bytes(exit_msg)
                except (OSError, ValueError, AttributeError):
                    pass
        for slot in self._slots:
            proc = slot.proc
            if proc is None:
                continue
            proc.join(timeout)
            if proc.exitcode is None:
                proc.terminate()
                proc.join(0.5)
            if proc.exitcode is None:
                proc.kill()
                proc.join(0.5)
        current = threading.current_thread()
        for slot in self._slots:
            if slot.reader is not None and slot.reader is not current:
                slot.reader.join(1.0)
        for slot in self._slots:
            with slot.lock:
                if slot.conn is not None:
                    slot.conn.close()
                if slot.proc is not None:
                    try:
                        slot.proc.close()
                    except ValueError:
                        pass
                slot.queue.clear()

    def alive(self) -> int:
        return sum(1 for s in self._slots if s.proc is not None and s.proc.is_alive())

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self._slots if s.proc is not None]

    # -- feeder side ----------------------------------------------------------
    def submit(self, batch: list[tuple[int, int, Any]]) -> None:
        """Send ``batch`` to the least busy worker, or queue it until one is free."""
        try:
            data = pickle.dumps((RUN, batch), PROTOCOL)
        except Exception:
            batch = self._drop_unpicklable(batch)
            if not batch:
                return
            data = dumps((RUN, batch))
        job = _Batch([(task, index) for task, index, _ in batch], data)
        with self._dispatch_lock:
            best = self._slots[0]
            load = len(best.queue)
            if self.size > 1:
                for slot in self._slots:
                    if len(slot.queue) < load:
                        best, load = slot, len(slot.queue)
            if load and (load >= self.prefetch or self._head_age(best) > PATIENCE):
                self._pending.append(job)  # sent by a reader thread when its worker is free
                return
            self._send(best, job)

    @staticmethod
    def _head_age(slot: _Slot) -> float:
        """Seconds since ``slot``'s oldest unanswered batch was sent (0 if none)."""
        try:
            return monotonic() - slot.queue[0].sent_at
        except IndexError:  # answered meanwhile, by its reader thread
            return 0.0

    def _send(self, slot: _Slot, job: _Batch) -> None:
        with slot.lock:
            job.sent_at = monotonic()
            slot.queue.append(job)
            slot.sent += len(job.ids)
            try:
                slot.conn.send_bytes(job.data)
            except (OSError, ValueError):
                pass  # the worker died; its reader fails or re-sends the batch

    def _drop_unpicklable(self, batch: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
        """Fail the items of ``batch`` that cannot be pickled; return the others."""
        keep, failed = [], []
        for task, index, item in batch:
            try:
                dumps(item)
                keep.append((task, index, item))
            except Exception as exc:
                err = SerializationError(
                    f"item {index} of task {task} could not be pickled for a worker process: {exc!r}"
                )
                err.__cause__ = exc
                failed.append((task, index, False, err))
        if failed and self._deliver is not None:
            self._deliver(failed)
        return keep

    # -- reader side ----------------------------------------------------------
    def _read(self, slot: _Slot, proc: Any, conn: Any) -> None:
        """Reader thread of one worker: deliver its replies until its pipe closes.

        The parent holds no copy of the child's end of the pipe, so the pipe
        reads EOF as soon as the worker dies, however it died.
        """
        recv = conn.recv_bytes
        while True:
            try:
                data = recv()
            except (EOFError, OSError):
                break
            self._reply(slot, data)
        if not self._closing and slot.proc is proc:
            self._lost(slot)

    def _reply(self, slot: _Slot, data: bytes) -> None:
        """Deliver one reply of ``slot``'s worker."""
        ids, payload = pickle.loads(data)
        with slot.lock:
            batch = slot.queue.popleft() if slot.queue else None
        if batch is None:
            return
        ids = batch.ids
        out: list[tuple[int, int, bool, Any]]
        if isinstance(payload, str):  # the worker could not unpickle the batch
            out = [(t, i, False, SerializationError(f"item {i} of task {t}: {payload}")) for t, i in ids]
        else:
            try:
                values = pickle.loads(payload)
            except Exception as exc:
                values = [
                    (False, (SerializationError(f"the result could not be unpickled: {exc!r}"), ""))
                ] * len(ids)
            out = []
            for (task, index), (ok, value) in zip(ids, values):
                if not ok:
                    value = revive(*value) if value[1] else value[0]
                out.append((task, index, ok, value))
        slot.done += len(ids)
        if self._pending:
            with self._dispatch_lock:
                if self._pending and len(slot.queue) < self.prefetch:
                    self._send(slot, self._pending.popleft())
        if self._deliver is not None:
            self._deliver(out)

    def _lost(self, slot: _Slot) -> None:
        """``slot``'s worker died: fail (or retry) its current batch, replace it."""
        proc, conn = slot.proc, slot.conn
        proc.join(0.5)
        reason = _describe_exit(proc.exitcode)
        pid = proc.pid
        with slot.lock:
            if self._closing:
                return
            self.lost += 1
            logger().warning("worker process %s was lost (%s); starting a new one", pid, reason)
            queue = slot.queue
            slot.queue = deque()
            conn.close()
            try:
                proc.close()
            except ValueError:
                pass
            failed: list[tuple[int, int, bool, Any]] = []
            if queue:
                current = queue[0]
                if current.tries < self.retries:
                    current.tries += 1
                else:
                    queue.popleft()
                    for task, index in current.ids:
                        failed.append(
                            (
                                task,
                                index,
                                False,
                                WorkerLostError(
                                    f"worker process {pid} was lost while evaluating item "
                                    f"{index} of task {task}: {reason}"
                                ),
                            )
                        )
            self._spawn(slot)
            for batch in queue:  # re-send what it had not started, in order
                slot.queue.append(batch)
                try:
                    slot.conn.send_bytes(batch.data)
                except (OSError, ValueError):
                    break
            slot.done += len(failed)
        if failed and self._deliver is not None:
            self._deliver(failed)
