"""The loop run inside each worker process (kept small: spawned children import it).

It serves local process workers (two pipes) and papy's remote server (one
socket, after the RPyC handshake) alike. Messages are frames (``_io``) holding
one pickle each:

* parent -> worker: ``(TASKS, {task: pickled (func, args, kwargs)})`` once per
  task and worker (task ``INIT``: the map's initializer, run once here); ``(RUN, seq, [(task, first, items), ...])`` per batch, each
  entry a range of consecutive tasklets of one task; ``(SPLIT, seq, k)``;
  ``(EXIT,)``.
* worker -> parent, in the order of the requests: one reply per *range* of
  a RUN, sent as soon as that range is evaluated (so a worker that dies loses
  only the range it was evaluating; the ranges after it never started):
  ``(OK, task, first, values, errors, seconds)`` with ``errors`` None or
  ``{offset: (exception, traceback text)}`` and ``seconds`` the time the
  worker spent evaluating the range - one pickle per range;
  ``(BROKEN, message)`` (once, for the whole RUN) when it could not be
  unpickled here; ``(SPLIT, task, first, [pickled value or None, ...], errors)``
  answers ``(SPLIT, seq, k)``: range ``k`` of batch ``seq`` again, each value
  pickled apart, for a parent that could not unpickle the range as a whole
  (then only the culprit fails); ``(GONE, message)`` if it is no longer kept.

A function that raises ``StopIteration`` fails at its item (as PEP 479 makes
generators do), every other item of the batch is evaluated. A process forked
by the function never runs this loop: it exits where the loop would go on.
"""

from __future__ import annotations

import os
import pickle
import signal
from collections import deque
from time import perf_counter as clock

from .._serialize import safe_str, where

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from typing import Any

TASKS = 0
RUN = 1
EXIT = 2
SPLIT = 3

from . import INIT  # noqa: E402 - the initializer's pseudo-task (run_initializer)

OK = 0
BROKEN = 1
GONE = 2
# SPLIT (3) is also the kind of the reply to a SPLIT request

_PROTOCOL = 5
#: replies kept for a SPLIT request: at most this many, of at most _KEEP_BYTES in all
_KEEP = 8
_KEEP_BYTES = 16 * 1024 * 1024


def run_initializer(tasks: dict[int, Any]) -> None:
    """Run (and forget) the map's initializer once, in this worker; if it raises,
    every item this worker evaluates fails with that exception as the cause."""
    init = tasks.pop(INIT, None)
    if init is None:
        return
    func, args, _ = init
    try:
        func(*args)
    except BaseException as exc:  # noqa: BLE001 - reported at each item of this worker
        _exit_if_forked(exc)
        message = f"the worker's initializer {safe_str(func)} raised {type(exc).__name__}: {safe_str(exc)}"

        def fail(item: Any, *args: Any, **kwargs: Any) -> Any:
            from .._errors import InitializerError

            raise InitializerError(message)

        for task in list(tasks):
            tasks[task] = (fail, (), {})


def _broken_task(exc: BaseException) -> Any:
    message = safe_str(exc)

    def fail(item: Any, *args: Any, **kwargs: Any) -> Any:
        from .._errors import SerializationError

        raise SerializationError(
            f"the task's function could not be unpickled in the worker: {message}"
        )

    return fail


def _failure(exc: BaseException, where: str) -> tuple[BaseException, str]:
    from .._serialize import portable_exception

    return portable_exception(exc, where)


def _stop_iteration_error(task: int, index: int, item: Any) -> tuple[BaseException, str]:
    from .._serialize import STOP_ITERATION

    err = RuntimeError(STOP_ITERATION.format(where=where(task, index, item)))
    return err, f"RuntimeError: {err}\n"


def _evaluate_range(
    func: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    items: list[Any],
    task: int,
    first: int,
    failure: Any = None,
    owner: int = -1,
) -> tuple[list[Any], dict[int, Any] | None]:
    """Evaluate one range; return its values and ``{offset: (exception, traceback)}``.

    ``failure(exc, where)`` turns an exception into that pair (default: ready
    to cross a process boundary); ``owner`` is the process that runs the loop
    (default: this worker), a process forked by the function leaves.

    ``map`` runs the loop in C; after a failure it resumes with the next item,
    so no item is evaluated twice. ``map`` takes a ``StopIteration`` raised by
    the function for its own end: a range that ends early is noticed, and the
    item that stopped it fails.
    """
    call = func
    if args or kwargs:

        def call(x: Any) -> Any:
            return func(x, *args, **kwargs)

    if failure is None:
        failure = _failure
    values: list[Any] = []
    errors: dict[int, Any] | None = None
    it = iter(items)
    n = len(items)
    while True:
        try:
            values.extend(map(call, it))
        except BaseException as exc:  # noqa: BLE001 - reported at the item's position
            _exit_if_forked(exc, owner)
            k = len(values)
            if errors is None:
                errors = {}
            errors[k] = failure(exc, where(task, first + k, items[k]))
            values.append(None)
            continue
        _exit_if_forked(None, owner)
        if len(values) >= n:
            return values, errors
        k = len(values)  # the function raised StopIteration at item k
        if errors is None:
            errors = {}
        errors[k] = _stop_iteration_error(task, first + k, items[k])
        values.append(None)


#: set in every process forked from one that runs papy's loops (an at-fork hook);
#: such a process leaves where the loop of its parent would go on
_forked = False
_hooked = False
#: the process that runs this module's worker loop (``serve``)
_worker_pid = -1


def _mark_forked() -> None:
    global _forked
    _forked = True


def _exit_if_forked(exc: BaseException | None, owner: int = -1) -> None:
    """In a process forked by user code (not ``owner``, by default the worker), leave:
    only the process papy started runs papy's loops."""
    if not _forked:
        return
    if owner < 0:
        owner = _worker_pid
    if owner < 0 or os.getpid() == owner:  # no loop of papy's here, or its own process
        return
    code = 0
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    elif exc is not None:
        code = 1
    os._exit(code)


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, _PROTOCOL)


def _unpicklable(task: int, index: int, exc: BaseException) -> tuple[BaseException, str]:
    from .._errors import SerializationError

    err = SerializationError(
        f"the result of item {index} of task {task} could not be pickled: "
        f"{type(exc).__name__}: {safe_str(exc)}"
    )
    return err, f"SerializationError: {safe_str(err)}\n"


def _make_safe(task: int, first: int, values: list[Any], errors: Any) -> dict[int, Any] | None:
    """Replace, in place, each result or error of a range that cannot be pickled by a
    SerializationError at its position (a ``__reduce__`` may even raise SystemExit)."""
    errors = dict(errors or {})
    for k, value in enumerate(values):
        try:
            _dumps(errors[k] if k in errors else value)
        except BaseException as exc:  # noqa: BLE001 - user code
            _exit_if_forked(exc)
            errors[k] = _unpicklable(task, first + k, exc)
            values[k] = None
            try:  # the error itself may not travel (an exception whose str fails)
                _dumps(errors[k])
            except BaseException:  # noqa: BLE001
                errors[k] = _unpicklable(task, first + k, RuntimeError("unprintable"))
    return errors or None


def _reply(
    task: int, first: int, values: list[Any], errors: Any, seconds: float
) -> tuple[bytes, Any]:
    """One pickle for the whole range (the fast path), made safe if it fails; and the
    errors as sent (a result that could not be pickled became one, in place of it)."""
    try:
        return _dumps((OK, task, first, values, errors, seconds)), errors
    except BaseException as exc:  # noqa: BLE001 - user code inside a result
        _exit_if_forked(exc)
    errors = _make_safe(task, first, values, errors)
    return _dumps((OK, task, first, values, errors, seconds)), errors


def _split(task: int, first: int, values: list[Any], errors: Any) -> bytes:
    """The results of a range with every value pickled apart."""
    blobs: list[bytes | None] = []
    for k, value in enumerate(values):
        if errors and k in errors:
            blobs.append(None)
            continue
        try:
            blobs.append(_dumps(value))
        except BaseException:  # noqa: BLE001 - it was pickled once; be safe anyway
            blobs.append(None)
    return _dumps((SPLIT, task, first, blobs, errors))


class _Endpoint:
    """Blocking frame I/O for the worker: two pipe fds, or one socket.

    On a socket, ``heartbeat`` > 0 starts a thread that sends an empty frame
    every ``heartbeat`` seconds, also while a function runs, so the client can
    tell a busy server from a frozen or unreachable one; a lock keeps its
    frames out of the middle of a reply.
    """

    def __init__(
        self, rfd: int = -1, wfd: int = -1, sock: Any = None, heartbeat: float = 0.0
    ) -> None:
        self.rfd, self.wfd, self.sock = rfd, wfd, sock
        self._lock: Any = None
        self._closed = False
        if sock is not None and heartbeat > 0:
            import threading

            self._lock = threading.Lock()
            threading.Thread(
                target=self._beat, args=(heartbeat,), name="papy-heartbeat", daemon=True
            ).start()

    def _beat(self, interval: float) -> None:
        import time

        from ._io import HEADER

        frame = HEADER.pack(0)
        while not self._closed:
            time.sleep(interval)
            try:
                with self._lock:
                    self.sock.sendall(frame)
            except OSError:  # the connection is gone: serve() sees it too
                return

    def close(self) -> None:
        self._closed = True

    def recv(self) -> bytearray:
        if self.sock is None:
            from ._io import read_frame

            return read_frame(self.rfd)
        from ._io import HEADER

        header = self._recv_exact(HEADER.size)
        (size,) = HEADER.unpack(header)
        return self._recv_exact(size)

    def _recv_exact(self, size: int) -> bytearray:
        buf = bytearray(size)
        view = memoryview(buf)
        pos = 0
        while pos < size:
            n = self.sock.recv_into(view[pos:])
            if not n:
                raise EOFError
            pos += n
        return buf

    def send(self, data: bytes) -> None:
        if self.sock is None:
            from ._io import write_frame

            write_frame(self.wfd, data)
            return
        from ._io import HEADER

        if self._lock is None:
            self.sock.sendall(HEADER.pack(len(data)))
            self.sock.sendall(data)
            return
        with self._lock:
            self.sock.sendall(HEADER.pack(len(data)))
            self.sock.sendall(data)


def watch_forks() -> None:
    """Mark, from now on, every process forked from this one (by a task's function)."""
    global _hooked
    if not _hooked and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_mark_forked)
        _hooked = True


def serve(endpoint: _Endpoint, tasks: dict[int, Any] | None = None) -> None:
    """Answer requests from ``endpoint`` until EXIT or until the other side goes away."""
    global _worker_pid
    watch_forks()
    _worker_pid = os.getpid()
    tasks = {} if tasks is None else tasks
    # the last ranges answered, for a SPLIT request: ((seq, k), (task, first, values, errors), size)
    kept: deque[tuple[tuple[int, int], tuple[Any, ...], int]] = deque()
    kept_bytes = 0
    recv, send, loads = endpoint.recv, endpoint.send, pickle.loads
    while True:
        try:
            data = recv()
        except (EOFError, OSError):
            return
        try:
            message = loads(data)
        except BaseException as exc:  # noqa: BLE001 - an item that cannot be unpickled here
            _exit_if_forked(exc)
            message = (
                BROKEN,
                f"the batch could not be unpickled in the worker: {safe_str(exc)}",
            )
        del data
        kind = message[0]
        try:
            if kind == RUN:
                seq, ranges = message[1], message[2]
                del message
                for k, (task, first, items) in enumerate(ranges):
                    func, args, kwargs = tasks[task]
                    started = clock()
                    values, errors = _evaluate_range(func, args, kwargs, items, task, first)
                    reply, errors = _reply(task, first, values, errors, clock() - started)
                    send(reply)
                    size = len(reply)
                    del reply, items
                    if size <= _KEEP_BYTES // 2:
                        kept.append(((seq, k), (task, first, values, errors), size))
                        kept_bytes += size
                        while len(kept) > _KEEP or kept_bytes > _KEEP_BYTES:
                            kept_bytes -= kept.popleft()[2]
                    del values, errors
                del ranges
            elif kind == SPLIT:
                key = (message[1], message[2])
                found = next((r for s, r, _ in kept if s == key), None)
                if found is None:
                    send(_dumps((GONE, "no longer holds the results")))
                else:
                    send(_split(*found))
            elif kind == BROKEN:
                send(_dumps(message))
            elif kind == TASKS:
                for task, blob in message[1].items():
                    try:
                        tasks[task] = loads(blob)
                    except BaseException as exc:  # noqa: BLE001
                        _exit_if_forked(exc)
                        tasks[task] = (_broken_task(exc), (), {})
                run_initializer(tasks)
            else:
                return
        except (OSError, ValueError):  # the parent went away
            return


def main(requests: Any, replies: Any, lifeline: Any = None, death_signal: int = -1) -> None:
    """Entry point of a local worker process.

    ``requests``/``replies`` are the worker's ends of its two pipes (file
    descriptors in a forked worker, ``multiprocessing.connection.Connection``
    objects otherwise); ``lifeline`` is the read end
    of a pipe that only the parent holds open for writing: when it reads EOF
    the parent is gone, and the worker exits even if it is busy in a function.
    ``death_signal`` >= 0 asks Linux to kill the worker when its parent dies
    (> 0: the parent's pid, to check that it has not died already).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from ._lifeline import set_death_signal, watch_parent

    if death_signal >= 0:
        set_death_signal(death_signal)
    watch_parent(_fileno(lifeline) if lifeline is not None else -1)
    # papy stops its workers itself: a task's function may start processes of its own
    import multiprocessing

    multiprocessing.current_process()._config["daemon"] = False  # type: ignore[attr-defined]
    serve(_Endpoint(_fileno(requests), _fileno(replies)))


def _fileno(end: Any) -> int:
    """A pipe end as a forked worker inherits it (an int) or as spawn passes it."""
    return end if isinstance(end, int) else int(end.fileno())


def _evaluate_tasklets(
    tasks: dict[int, Any], batch: list[tuple[int, int, Any]]
) -> tuple[int, bytes]:
    """Evaluate ``(task, index, item)`` tasklets (the executor pool's format).

    Returns (number of failures, pickled list of ``(task, index, ok, value)``,
    ``value`` being ``(exception, traceback text)`` for a failure).
    """
    out = []
    me = os.getpid()  # this executor's worker: its own process, whatever it was forked from
    for task, index, item in batch:
        func, args, kwargs = tasks[task]
        values, errors = _evaluate_range(func, args, kwargs, [item], task, index, None, me)
        try:
            _dumps(errors[0] if errors else values[0])
        except BaseException:  # noqa: BLE001 - user code inside a result
            errors = _make_safe(task, index, values, errors)
        out.append((task, index, False, errors[0]) if errors else (task, index, True, values[0]))
    return sum(1 for r in out if not r[2]), _dumps(out)
