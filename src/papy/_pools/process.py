"""Process workers: one duplex pipe and one reader thread per worker.

Data flow::

    feeder ── submit_range(task, first, items) ──► an idle worker's pipe ──► child: _child.main
      │ (all busy: a pending queue, sent packed by the first                  │ evaluates
      │  reader thread whose worker answers)                                   │ in order
    reader thread per worker ◄── recv_bytes (GIL released) ◄──────────────────┘ one reply
        │ unpickles, calls deliver_range() (the scheduler's put_range)
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

from .._errors import SerializationError, WorkerLostError
from .._log import logger
from .._serialize import PROTOCOL, dumps, revive
from . import Deliver, TaskDefs
from ._child import EXIT, RUN, TASKS, main

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ProcessPool"]


class _Batch:
    """A message in flight to one worker: its ranges, its bytes, when it was sent, retries."""

    __slots__ = ("ranges", "data", "sent_at", "tries", "size")

    def __init__(self, ranges: list[tuple[int, int, int]], data: bytes, tries: int = 0) -> None:
        self.ranges = ranges  # (task, first index, count)
        self.data = data
        self.sent_at = 0.0
        self.tries = tries
        self.size = sum(r[2] for r in ranges)

    @property
    def ids(self) -> list[tuple[int, int]]:
        return [(t, i) for t, first, n in self.ranges for i in range(first, first + n)]


def _ranges(batch: list[tuple[int, int, Any]]) -> list[tuple[int, int, list[Any]]]:
    """Group ``(task, index, item)`` tasklets into runs of consecutive indices."""
    out: list[tuple[int, int, list[Any]]] = []
    for task, index, item in batch:
        if out and out[-1][0] == task and out[-1][1] + len(out[-1][2]) == index:
            out[-1][2].append(item)
        else:
            out.append((task, index, [item]))
    return out


#: a busy worker gets a second batch only if its current one is younger than
#: this (seconds): quick items keep the pipe full, slow ones do not hold others up
PATIENCE = 0.002

#: most tasklets packed into one message by ``_refill``
MAX_PACK = 256


class _Slot:
    """One worker process and what it has been sent but not answered."""

    __slots__ = ("index", "proc", "conn", "lock", "queue", "sent", "done", "reader", "item_time")

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
        self.item_time = -1.0  # seconds per tasklet, a moving average (-1: not measured)


def _revive(value: tuple[BaseException, str]) -> BaseException:
    exc, tb = value
    return revive(exc, tb) if tb else exc


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
        self._ctx: Any = multiprocessing.get_context(start_method)
        self._slots = [_Slot(i) for i in range(size)]
        # A worker gets a batch while it has fewer than `prefetch` unanswered ones
        # and its current one is younger than PATIENCE; the others wait here, in
        # order, for the first free worker (a quick item never queues behind a
        # slow one in a busy worker's pipe).
        self.prefetch = prefetch
        self._pending: deque[tuple[int, int, list[Any]]] = deque()  # ranges waiting for a worker
        self._n_pending = 0  # tasklets in _pending
        self._dispatch_lock = threading.Lock()  # guards _pending and the choice of worker
        self._closing = False
        self._defs_msg = b""
        self._deliver: Deliver | None = None
        self._deliver_range: Any = None
        self._name = "papy"
        self.lost = 0  # workers lost so far

    # -- lifecycle ------------------------------------------------------------
    def start(
        self, tasks: TaskDefs, deliver: Deliver, name: str = "papy", deliver_range: Any = None
    ) -> None:
        """Start the workers and send each the pickled task definitions.

        ``deliver_range(task, first, values, errors)`` (the scheduler's
        ``put_range``), when given, takes whole batches of results.
        """
        self._deliver_range = deliver_range
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
        """Evaluate ``(task, index, item)`` tasklets (see ``submit_range``)."""
        for task, first, items in _ranges(batch):
            self.submit_range(task, first, items)

    def submit_range(self, task: int, first: int, items: list[Any]) -> None:
        """Evaluate ``items``, tasklets ``first``, ``first + 1``, ... of ``task``:
        now, on an idle worker, or later, when the first worker is free."""
        with self._dispatch_lock:
            best = self._slots[0]
            load = len(best.queue)
            if self.size > 1:
                for slot in self._slots:
                    if len(slot.queue) < load:
                        best, load = slot, len(slot.queue)
            if self._pending or (
                load and (load >= self.prefetch or self._head_age(best) > PATIENCE)
            ):
                self._pending.append((task, first, items))  # a reader thread sends it
                self._n_pending += len(items)
                return
        self._send_ranges(best, [(task, first, items)])  # outside the lock: it may block

    def _refill(self, slot: _Slot) -> None:
        """(reader thread) Send waiting tasklets to ``slot``'s worker, which just answered.

        Quick tasklets that pile up are packed into one message: up to a fair
        share of what waits, and no more than the worker gets through in about
        PATIENCE seconds (from the measured time per tasklet); a batch of
        ``chunksize`` tasklets is never split.
        """
        with self._dispatch_lock:
            pending = self._pending
            if not pending or len(slot.queue) >= self.prefetch:
                return
            share = -(-self._n_pending // self.size)
            cap = int(PATIENCE / slot.item_time) if slot.item_time > 0 else MAX_PACK
            want = max(1, min(share, cap, MAX_PACK))
            ranges = []
            while pending and want > 0:  # whole ranges: a batch is never split
                task, first, items = pending.popleft()
                ranges.append((task, first, items))
                want -= len(items)
                self._n_pending -= len(items)
        self._send_ranges(slot, ranges)

    def _send_ranges(self, slot: _Slot, ranges: list[tuple[int, int, list[Any]]]) -> None:
        try:
            data = pickle.dumps((RUN, ranges), PROTOCOL)
        except Exception:
            ranges = self._drop_unpicklable(ranges)
            if not ranges:
                return
            data = dumps((RUN, ranges))
        self._send(slot, _Batch([(t, first, len(items)) for t, first, items in ranges], data))

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
            slot.sent += job.size
            try:
                slot.conn.send_bytes(job.data)
            except (OSError, ValueError):
                pass  # the worker died; its reader fails or re-sends the batch

    def _drop_unpicklable(
        self, ranges: list[tuple[int, int, list[Any]]]
    ) -> list[tuple[int, int, list[Any]]]:
        """Fail the items that cannot be pickled; return the others, as ranges."""
        keep: list[tuple[int, int, Any]] = []
        failed = []
        for task, first, items in ranges:
            for index, item in enumerate(items, first):
                try:
                    dumps(item)
                    keep.append((task, index, item))
                except Exception as exc:
                    err = SerializationError(
                        f"item {index} of task {task} could not be pickled for a worker process: "
                        f"{exc!r}"
                    )
                    err.__cause__ = exc
                    failed.append((task, index, False, err))
        if failed and self._deliver is not None:
            self._deliver(failed)
        return _ranges(keep)

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
        """Deliver one reply of ``slot``'s worker (in its reader thread)."""
        failures, payload = pickle.loads(data)
        with slot.lock:
            batch = slot.queue.popleft() if slot.queue else None
        if batch is None:
            return
        per_item = (monotonic() - batch.sent_at) / batch.size
        slot.item_time = per_item if slot.item_time < 0 else 0.8 * slot.item_time + 0.2 * per_item
        results = None
        why = ""
        if failures is None:  # the worker could not unpickle the batch
            why = payload
        else:
            try:
                results = pickle.loads(payload)
            except Exception as exc:
                why = (
                    "its result (or that of another item of its batch) could not be "
                    f"unpickled: {exc!r}"
                )
        slot.done += batch.size
        if self._pending:
            self._refill(slot)
        if results is None:
            self._fail(batch, lambda t, i: SerializationError(f"item {i} of task {t}: {why}"))
            return
        deliver, deliver_range = self._deliver, self._deliver_range
        for task, first, values, errors in results:
            if errors:
                errors = {k: _revive(v) for k, v in errors.items()}
            if deliver_range is not None:
                deliver_range(task, first, values, errors)
            elif deliver is not None:
                deliver(
                    [
                        (task, first + k, False, errors[k])
                        if errors and k in errors
                        else (task, first + k, True, v)
                        for k, v in enumerate(values)
                    ]
                )

    def _fail(self, batch: _Batch, error: Any) -> None:
        """Deliver ``error(task, index)`` for every tasklet of ``batch``."""
        if self._deliver is not None:
            self._deliver([(t, i, False, error(t, i)) for t, i in batch.ids])

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
            lost = None
            if queue:
                current = queue[0]
                if current.tries < self.retries:
                    current.tries += 1
                else:
                    lost = queue.popleft()
            self._spawn(slot)
            for batch in queue:  # re-send what it had not started, in order
                slot.queue.append(batch)
                try:
                    slot.conn.send_bytes(batch.data)
                except (OSError, ValueError):
                    break
            if lost is not None:
                slot.done += lost.size
        if lost is not None:
            self._fail(
                lost,
                lambda t, i: WorkerLostError(
                    f"worker process {pid} was lost while evaluating item {i} of task {t}: {reason}"
                ),
            )
