"""Any ``concurrent.futures.Executor`` as papy's workers: ``IMap(executor=...)``.

The executor is driven only through ``submit()`` and done-callbacks; papy's
stride, buffer, ordering, timeouts and skip are the scheduler's, as with any
pool. Each batch is one future:

* a ``ThreadPoolExecutor`` evaluates the batch in its threads, functions and
  items as they are (nothing is pickled);
* any other executor (``ProcessPoolExecutor``, loky, ``dask.distributed``'s
  ``Client.get_executor()``, ...) gets the module-level :func:`run_batch` with
  the task's pickled ``(func, args, kwargs)`` and the pickled batch, as bytes.
  Lambdas and closures therefore work whatever the executor's own pickler
  is; workers unpickle a task's function once per map (cached by a token) and
  return the pickled results, errors captured per item with their traceback.

``dask.distributed`` deduplicates calls with equal arguments (``pure=True``);
papy passes ``pure=False`` to Dask's executor, and every batch carries its
item indexes and a per-map token anyway, so identical items of an impure
function are always evaluated separately.

The executor belongs to the caller: stopping the map cancels its batches that
have not started, never shuts the executor down.
"""

from __future__ import annotations

import os
import pickle
import queue
import threading
from collections import OrderedDict
from concurrent.futures import BrokenExecutor, CancelledError, ThreadPoolExecutor
from typing import Any

from .._errors import SerializationError, WorkerLostError
from .._serialize import (
    PROTOCOL,
    dumps,
    located_tb,
    revive,
    where,
    wrap_base_exception,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import Deliver, Fallback, Sink, TaskDefs
    from ._io import Waker


__all__ = ["ExecutorPool", "run_batch"]

_LOST_TYPES = ("KilledWorker", "TerminatedWorkerError", "BrokenProcessPool", "WorkerLostError")
#: what a broken executor (concurrent.futures' BrokenProcessPool) means for the rest
_BROKEN_HINT = (
    " (a concurrent.futures executor that lost a worker is broken for good: every later "
    "item fails too; papy's own process workers, or loky's executor, replace a lost worker)"
)

# -- worker side (runs inside the executor's workers) -------------------------
_functions: OrderedDict[str, dict[int, Any]] = OrderedDict()
_functions_lock = threading.Lock()
_CACHE_MAPS = 16


def run_batch(token: str, payloads: dict[int, bytes], data: bytes) -> bytes:
    """Evaluate a pickled batch; return the pickled ``[(ok, value), ...]``.

    ``payloads`` holds the pickled ``(func, args, kwargs)`` of the batch's
    tasks; they are unpickled once per ``token`` (one map) and worker process.
    The reply is a pickled ``str`` if the batch could not be unpickled.
    """
    from ._child import _broken_task, _evaluate_tasklets

    with _functions_lock:
        tasks = _functions.get(token)
        if tasks is None:
            tasks = _functions[token] = {}
            while len(_functions) > _CACHE_MAPS:
                _functions.popitem(last=False)
        else:
            _functions.move_to_end(token)
        for task, blob in payloads.items():
            if task not in tasks:
                try:
                    tasks[task] = pickle.loads(blob)
                except BaseException as exc:  # noqa: BLE001 - reported at each item
                    tasks[task] = (_broken_task(exc), (), {})
    try:
        batch = pickle.loads(data)
    except Exception as exc:  # noqa: BLE001
        return pickle.dumps(
            f"the batch could not be unpickled in the executor's worker: {exc!r}", PROTOCOL
        )
    _, payload = _evaluate_tasklets(tasks, batch)
    return payload


def _run_direct(
    tasks: TaskDefs, batch: list[tuple[int, int, Any]]
) -> list[tuple[int, int, bool, Any]]:
    """Evaluate a batch in an executor thread (nothing pickled)."""
    out = []
    for task, index, item in batch:
        d = tasks[task]
        try:
            out.append((task, index, True, d.func(item, *d.args, **d.kwargs)))
        except BaseException as exc:  # noqa: BLE001 - reported at the item's position
            at = where(task, index, item)
            tb = located_tb(exc, at)
            out.append((task, index, False, revive(wrap_base_exception(exc, at), tb)))
    return out


# -- client side -----------------------------------------------------------------
class _Batch:
    __slots__ = ("data", "ids", "items", "payloads", "tries")

    def __init__(
        self,
        items: list[Any],
        ids: list[tuple[int, int]],
        data: bytes | None,
        payloads: dict[int, bytes] | None,
    ) -> None:
        self.items = items
        self.ids = ids
        self.data = data
        self.payloads = payloads
        self.tries = 0


def _is_dask(executor: Any) -> bool:
    cls = type(executor)
    return cls.__name__ == "ClientExecutor" and cls.__module__.startswith("distributed")


class ExecutorPool:
    """Batches as futures of a caller's ``concurrent.futures.Executor``."""

    kind = "executor"
    measures = False  # papy cannot time an executor's workers

    def __init__(self, executor: Any, size: int, retries: int = 0) -> None:
        if not callable(getattr(executor, "submit", None)):
            raise TypeError(
                f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}"
            )
        self.executor = executor
        self.size = size
        self.retries = retries
        self._direct = isinstance(executor, ThreadPoolExecutor)
        self._submit_kwargs: dict[str, Any] = {"pure": False} if _is_dask(executor) else {}
        self._token = os.urandom(12).hex()
        self._tasks: TaskDefs = {}
        self._payloads: dict[int, bytes] = {}
        self._deliver: Deliver | None = None
        self._waker: Any = None
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._futures: set[Any] = set()
        self._lock = threading.Lock()
        self.fallback: Fallback | None = None  # an executor's workers are its own business
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self, tasks: TaskDefs, sink: Sink, waker: Waker, name: str = "papy") -> None:
        self._tasks = dict(tasks)
        self._deliver = sink.put_many
        self._waker = waker
        if not self._direct:
            self._payloads = {task: d.portable() for task, d in tasks.items()}
        self._thread = threading.Thread(target=self._collect, name=f"{name}-executor", daemon=True)
        self._thread.start()

    def submit_range(self, task: int, first: int, items: list[Any]) -> None:
        """Evaluate tasklets ``first``, ``first + 1``, ... of ``task`` (one batch)."""
        self.submit([(task, first + k, item) for k, item in enumerate(items)])

    def pump(self, timeout: float) -> None:
        """Results arrive from the pool's own threads, which wake the driving thread."""
        self._waker.wait(timeout)

    def submit(self, batch: list[tuple[int, int, Any]]) -> None:
        data = payloads = None
        if not self._direct:
            try:
                data = pickle.dumps(batch, PROTOCOL)
            except Exception:  # noqa: BLE001
                batch = self._drop_unpicklable(batch)
                if not batch:
                    return
                data = dumps(batch)
            payloads = {task: self._payloads[task] for task in {t for t, _, _ in batch}}
        b = _Batch(batch, [(task, index) for task, index, _ in batch], data, payloads)
        self._send(b)

    def _send(self, b: _Batch) -> None:
        try:
            if self._direct:
                fut = self.executor.submit(_run_direct, self._tasks, b.items)
            else:
                fut = self.executor.submit(
                    run_batch, self._token, b.payloads, b.data, **self._submit_kwargs
                )
        except Exception as exc:  # noqa: BLE001 - shut down or broken: fail the batch
            self._fail(b, exc)
            return
        with self._lock:
            self._futures.add(fut)
        fut.add_done_callback(lambda f, b=b: self._done.put((b, f)))

    def _drop_unpicklable(self, batch: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
        keep, failed = [], []
        for task, index, item in batch:
            try:
                dumps(item)
                keep.append((task, index, item))
            except Exception as exc:  # noqa: BLE001
                err = SerializationError(
                    f"item {index} of task {task} could not be pickled for the executor: {exc!r}"
                )
                err.__cause__ = exc.with_traceback(None)  # our frames hold the pool
                failed.append((task, index, False, err))
        if failed and self._deliver is not None:
            self._deliver(failed)
        return keep

    def _collect(self) -> None:
        """Deliver finished batches (off the executor's own threads)."""
        get = self._done.get
        while True:
            entry = get()
            if entry is None:
                return
            b, fut = entry
            with self._lock:
                self._futures.discard(fut)
            if self._closing:
                continue
            if fut.cancelled():
                self._fail(b, CancelledError("the executor cancelled the batch"))
                continue
            exc = fut.exception()
            if exc is not None:
                self._fail(b, exc)
                continue
            value = fut.result()
            try:
                out = value if self._direct else self._decode(b, value)
            except Exception as exc:  # noqa: BLE001 - a reply we cannot read fails its batch
                out = [
                    (
                        t,
                        i,
                        False,
                        SerializationError(f"item {i} of task {t}: unreadable reply: {exc!r}"),
                    )
                    for t, i in b.ids
                ]
            if self._deliver is not None:
                self._deliver(out)

    def _decode(self, b: _Batch, payload: bytes) -> list[tuple[int, int, bool, Any]]:
        try:
            values = pickle.loads(payload)
        except Exception as exc:  # noqa: BLE001
            values = f"the results could not be unpickled: {exc!r}"
        if isinstance(values, str):
            return [
                (t, i, False, SerializationError(f"item {i} of task {t}: {values}"))
                for t, i in b.ids
            ]
        out = []
        for task, index, ok, value in values:  # (task, index, ok, value) per tasklet
            if not ok:
                value = revive(*value) if value[1] else value[0]
            out.append((task, index, ok, value))
        return out

    def _fail(self, b: _Batch, exc: BaseException) -> None:
        """The whole batch failed: re-run it while ``retries`` allow if its worker was lost."""
        lost = (
            isinstance(exc, (BrokenExecutor, CancelledError)) or type(exc).__name__ in _LOST_TYPES
        )
        if lost and b.tries < self.retries and not self._closing:
            b.tries += 1
            self._send(b)
            return
        broken = isinstance(exc, BrokenExecutor)
        out: list[tuple[int, int, bool, Any]] = []
        for task, index in b.ids:
            if lost:
                err: BaseException = WorkerLostError(
                    f"the executor lost item {index} of task {task}: {type(exc).__name__}: {exc}"
                    + (_BROKEN_HINT if broken else "")
                )
                err.__cause__ = exc
            else:
                err = exc
            out.append((task, index, False, err))
        if self._deliver is not None and not self._closing:
            self._deliver(out)

    def shutdown(self, timeout: float = 1.0) -> None:
        """Cancel the batches that have not started; leave the executor running."""
        self._closing = True
        with self._lock:
            futures = list(self._futures)
            self._futures.clear()
        for fut in futures:
            fut.cancel()
        self._done.put(None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def alive(self) -> int:
        return self.size

    def load(self) -> int:
        """Batches submitted to the executor and not back yet (as tasklets, roughly)."""
        with self._lock:
            return len(self._futures)

    def flush(self) -> None:
        """Batches go to the executor at once: nothing waits here."""

    def cost(self) -> tuple[float, float, float] | None:
        return None

    def depth(self) -> int | None:
        return None

    def worker_stats(self) -> list[dict[str, Any]]:
        return []  # an executor's workers are its own business
