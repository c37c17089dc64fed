"""Process workers - local ones and papy's remote servers - driven by the thread
that drives the map.

A worker is a *channel*: two pipes to a local process (started here), or one
TCP (or TLS) connection to papy's remote server, switched from RPyC to the
same framed messages once the tasks are defined. Both are served by the same
code. Data flow (everything in the parent happens in :meth:`ProcessPool.pump`,
called by the map's driving thread - a consumer waiting for a result, or the
map's helper thread when no consumer is waiting)::

    submit_range(task, first, items) ─► pending ranges ─► dispatch: the least loaded
        worker with room gets a batch (several ranges packed into one message)
                                           │ queued on its channel, written as the
                                           ▼ pipe or socket takes it (never blocking)
    worker: _child.serve ── evaluates in order ── one reply per range (one pickle)
                                           │
    pump ◄── poll(replies, process sentinels, waker) ◄─┘  reads what has arrived,
        └─► scheduler.put_range (a whole range at once)    delivers, dispatches more

* A worker holds at most ``PREFETCH`` batches (a remote one ``PREFETCH_REMOTE``,
  to cover the round trip), and another one only while what it holds is quick
  (measured) and the bytes in flight stay under ``MAX_BYTES_IN_FLIGHT``: a
  quick item never waits behind a slow one, and a worker's pipes never fill
  with work another worker could do.
* Reading and writing are non-blocking and done by one thread, so a full pipe
  in one direction can never stop the other: no deadlock with large items.
* A dead worker (EOF, a process sentinel, a broken connection): the range it
  was evaluating runs again item by item (so that only an item that kills a
  worker fails), and a single item fails with ``WorkerLostError`` (or runs
  again, up to ``retries`` times); its other ranges go back to the front of
  the queue; a
  local worker is replaced at once, a remote one is reconnected in the
  background while the map runs (with none left meanwhile, what waits goes to
  the composite pool's local side, or fails).
* A remote worker that sends nothing, not even its heartbeat, for
  ``heartbeat`` seconds (frozen, or cut off by the network) counts as dead.

The function of each task is pickled once (by IMap) and sent once to every
worker (again to a replacement), never with each item.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections import deque
from time import monotonic

from .._errors import SerializationError, WorkerLostError
from .._log import logger
from .._serialize import PROTOCOL, dumps, revive
from . import WorkerStats
from ._child import BROKEN, EXIT, GONE, OK, RUN, SPLIT, TASKS, main
from ._io import PipeChannel, raise_pipe_size
from ._lifeline import preload, register_parent_fd, unregister_parent_fd

TYPE_CHECKING = False  # typing is not imported at run time: it would double import time
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from . import Sink, TaskDefs
    from ._io import Waker

__all__ = ["ProcessPool"]

#: default seconds of silence after which a remote worker counts as lost
HEARTBEAT = 10.0
#: first and longest pause between attempts to reconnect a lost remote worker (s)
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 5.0
#: most batches one worker holds (being evaluated or waiting in its pipe)
PREFETCH = 2
#: a worker gets a second batch only while the work it holds is measured below this (s)
PREFETCH_HORIZON = 0.01
#: a remote worker holds up to this many batches, while the work they hold is measured
#: below PREFETCH_HORIZON plus two round trips (so a slow link does not idle it)
PREFETCH_REMOTE = 128
#: a worker gets a second batch only while the requests it holds are below this (bytes)
MAX_BYTES_IN_FLIGHT = 4 * 1024 * 1024
#: ranges are packed into one message only while a tasklet is measured below this (s)
PACK_BELOW = 20e-6
#: most tasklets packed into one message ...
MAX_PACK = 4096
#: ... and about this many bytes of arguments (as measured): a worker starts on a
#: message only once it has all of it, so big ones would stall the pipeline
PACK_BYTES = 256 * 1024

_POLLIN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_POLLOUT = select.POLLOUT
#: what an fd the poll watches is to its worker
_READ, _WRITE, _SENTINEL, _SOCKET = 0, 1, 2, 3


class _Batch:
    """A message in flight to a worker: RUN (ranges to evaluate, each answered on its
    own, in order) or SPLIT (one range again, value by value)."""

    __slots__ = (
        "kind",
        "seq",
        "ranges",
        "size",
        "answered",
        "nbytes",
        "sent_at",
        "tries",
        "work",
        "reply_bytes",
    )

    def __init__(
        self, kind: int, seq: int, ranges: list[Any], nbytes: int, tries: list[int]
    ) -> None:
        self.kind = kind
        self.seq = seq
        self.ranges = ranges  # [(task, first, items)], kept to re-run or fail them
        self.size = max(1, sum(len(r[2]) for r in ranges))  # tasklets
        self.answered = 0  # ranges answered so far
        self.nbytes = nbytes
        self.sent_at = monotonic()
        self.tries = tries  # per range: how often it already ran on a worker that died
        self.work = 0.0  # seconds the worker says it spent on the ranges answered (-1: unsaid)
        self.reply_bytes = 0  # bytes of the replies so far


class _Worker:
    """One worker process: its channel and the batches it holds, oldest first."""

    __slots__ = (
        "index",
        "proc",
        "link",
        "channel",
        "sentinel",
        "outstanding",
        "items",
        "nbytes",
        "item_time",
        "free_since",
        "seq",
        "polling_out",
        "dead",
        "stats",
    )

    def __init__(self, index: int, link: Any = None) -> None:
        self.index = index
        self.proc: Any = None
        self.link = link  # a remote worker: its connection to papy's server
        self.channel: Any = None  # PipeChannel (local) or SocketChannel (remote)
        self.sentinel = -1
        self.outstanding: deque[_Batch] = deque()
        self.items = 0  # tasklets held
        self.nbytes = 0  # request bytes held
        self.item_time = -1.0  # seconds per tasklet, a moving average (-1: not measured)
        self.free_since = 0.0  # when its last reply arrived (its next batch starts then)
        self.seq = 0
        self.polling_out = False
        self.dead = False
        self.stats: WorkerStats | None = None  # what this place's workers did

    def fresh(self, channel: Any) -> None:
        """A new worker (or connection) in this place, holding nothing yet."""
        self.channel = channel
        self.outstanding = deque()
        self.items = self.nbytes = 0
        self.seq = 0
        self.dead = False
        self.polling_out = False
        self.free_since = monotonic()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "its pipe closed"
    if code < 0:
        try:
            return f"it was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"it was killed by signal {-code}"
    return f"it exited with code {code}"


def _errors_of(errors: dict[int, Any] | None, where: str = "") -> dict[int, BaseException] | None:
    """Revive a reply's ``{offset: (exception, traceback text)}``; ``where`` names a
    remote worker in the traceback."""
    if not errors:
        return None
    return {
        k: revive(exc, f"{tb.rstrip()}\n({where})\n" if where else tb) if tb else exc
        for k, (exc, tb) in errors.items()
    }


def _where(w: _Worker) -> str:
    return f"on remote worker {w.link.label}, pid {w.link.pid}" if w.link is not None else ""


#: what a worker imports before it can run a task sent by value: imported once by
#: the forkserver, not by every worker of every map (a map's first result came
#: about 70 ms after start(), about 12 ms with them preloaded; 2 cores, 3.12)
_FORKSERVER_PRELOAD = ("papy._pools._child", "cloudpickle")


def _preload_forkserver(ctx: Any) -> None:
    """Have the forkserver import the worker's modules before it forks workers.

    Its children then start in milliseconds, so a map's first timeout is not
    spent on imports. The modules are added to the preload list already set
    (``__main__`` by default, or the application's); it takes effect when the
    forkserver starts, so a forkserver already running keeps what it has.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    preload = list(getattr(server, "_preload_modules", ["__main__"]))
    missing = [name for name in _FORKSERVER_PRELOAD if name not in preload]
    if missing:
        ctx.set_forkserver_preload(preload + missing)


class ProcessPool:
    """``size`` worker processes started with ``start_method``."""

    kind = "process"
    measures = True

    def __init__(
        self,
        size: int,
        start_method: str | None = None,
        retries: int = 0,
        links: Sequence[Any] = (),
        heartbeat: float = HEARTBEAT,
        reconnect: Callable[[str, int], Any] | None = None,
    ) -> None:
        self.size = size + len(links)
        #: a remote worker silent for this long (no reply, no heartbeat) is lost
        self.heartbeat = heartbeat
        #: ``reconnect(host, port)``: a new link to a lost remote worker's server, its
        #: tasks defined (None: lost remote workers are not reconnected)
        self._reconnect = reconnect
        self._reconnecting: set[int] = set()  # workers a thread is reconnecting
        self._returned: deque[tuple[_Worker, Any]] = deque()  # reconnected, to attach
        self._has_links = bool(links)
        self.retries = retries
        self.start_method = start_method
        self._workers = [_Worker(i) for i in range(size)]
        self._workers += [_Worker(size + i, link) for i, link in enumerate(links)]
        self._pending: deque[list[Any]] = deque()  # [task, first, items, tries], in order
        self._n_pending = 0  # tasklets in _pending
        self._poll = select.poll()
        self._fds: dict[int, tuple[_Worker, int]] = {}  # fd -> (worker, role)
        self._defs_msg = b""  # the tasks' definitions, as a forked worker gets them
        self._portable_msg: bytes | None = None  # as any other worker gets them (b"": to make)
        self._tasks: TaskDefs = {}
        self._sched: Any = None
        self._waker: Waker | None = None
        self._name = "papy"
        self._closing = False
        self._lifeline_r = self._lifeline_w = -1
        self._item_time = -1.0  # seconds a tasklet takes, worker and pipes (moving average)
        self._item_bytes = -1.0  # bytes of pickled arguments per tasklet (moving average)
        self._result_bytes = 0.0  # bytes of pickled results per tasklet (likewise)
        self.lost = 0  # workers lost so far
        #: called with ``[(task, first, items), ...]`` that no worker is left to run
        #: (every remote worker lost; set by a composite pool); None: they fail
        self.fallback: Callable[[list[tuple[int, int, list[Any]]]], None] | None = None

    # -- lifecycle ------------------------------------------------------------
    def start(self, tasks: TaskDefs, sink: Sink, waker: Waker, name: str = "papy") -> None:
        """Start the workers; each gets the pickled task definitions first."""
        self._tasks = tasks
        payloads = {task: d.payload for task, d in tasks.items()}
        self._defs_msg = pickle.dumps((TASKS, payloads), PROTOCOL)
        if any(d.refers_to_main for d in tasks.values()):
            self._portable_msg = b""  # made when a worker that is not forked needs it
        self._sched = sink.sched
        self._waker = waker
        self._name = name
        self._lifeline_r, self._lifeline_w = os.pipe()
        register_parent_fd(self._lifeline_w)
        preload()
        self._poll.register(waker.fileno(), _POLLIN)
        try:
            for w in self._workers:
                if w.link is None:
                    self._spawn(w)
                else:
                    self._attach(w)
        except BaseException:
            self.shutdown(0.2)
            raise

    def _context(self) -> Any:
        """The start method of a new worker.

        Forking a process that runs other threads can deadlock the child (and
        warns from Python 3.12): when nobody chose a method and the platform
        default is ``fork``, workers are started by a forkserver instead then.
        """
        method = self.start_method
        if method is None and multiprocessing.get_start_method() == "fork":
            if sys.version_info >= (3, 12) and threading.active_count() > 1:
                method = "forkserver"
        ctx = multiprocessing.get_context(method)
        if ctx.get_start_method() == "forkserver":
            _preload_forkserver(ctx)
        return ctx

    def _spawn(self, w: _Worker) -> None:
        """Start a fresh worker in ``w``'s place and queue the task definitions for it.

        A forked worker inherits its ends of the pipes as they are; for spawn and
        forkserver they travel as ``multiprocessing.connection.Connection`` objects
        (imported only then: it is a tenth of a map's start-up)."""
        ctx = self._context()
        method = ctx.get_start_method()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        register_parent_fd(req_w, rep_r)
        raise_pipe_size(req_w)
        raise_pipe_size(rep_w)
        lifeline = os.dup(self._lifeline_r)
        child_ends: tuple[Any, ...]
        if method == "fork":
            child_ends = (req_r, rep_w)
            life: Any = lifeline
        else:
            from multiprocessing.connection import Connection

            child_ends = (Connection(req_r, writable=False), Connection(rep_w, readable=False))
            life = Connection(lifeline, writable=False)
        # the kernel's parent-death signal binds to the creating thread: use it only
        # when that thread lives as long as the process (or a forkserver creates)
        if method == "forkserver":
            death_signal = 0
        elif threading.current_thread() is threading.main_thread():
            death_signal = os.getpid()
        else:
            death_signal = -1
        proc = ctx.Process(
            target=main,
            args=(*child_ends, life, death_signal),
            name=f"{self._name}-worker-{w.index}",
            daemon=True,
        )
        try:
            proc.start()
        except BaseException:
            unregister_parent_fd(req_w, rep_r)
            for fd in (req_w, rep_r):
                os.close(fd)
            raise
        finally:
            for end in (*child_ends, life):
                if isinstance(end, int):
                    os.close(end)
                else:
                    end.close()
        w.proc = proc
        w.sentinel = proc.sentinel
        w.fresh(PipeChannel(rep_r, req_w))
        if w.stats is None:
            w.stats = WorkerStats(f"process {w.index}")
        w.channel.send(self._defs_msg if method == "fork" else self._portable_defs())
        self._watch(w)
        self._flush(w)

    def _portable_defs(self) -> bytes:
        """The TASKS message for a worker that is not a fork of this process."""
        if self._portable_msg is None:
            return self._defs_msg
        if not self._portable_msg:
            payloads = {task: d.portable() for task, d in self._tasks.items()}
            self._portable_msg = pickle.dumps((TASKS, payloads), PROTOCOL)
        return self._portable_msg

    def _attach(self, w: _Worker, streaming: bool = False) -> None:
        """Switch ``w``'s connection to papy's server over to framed messages."""
        from ._io import SocketChannel

        if not streaming:
            w.link.stream(self.heartbeat / 4)  # the tasks were defined over RPyC already
        w.fresh(SocketChannel(w.link.sock))
        if w.stats is None:
            w.stats = WorkerStats(f"remote {w.link.label}")
        self._watch(w)

    # -- remote workers: liveness and reconnection -----------------------------------
    def _check_heartbeats(self, now: float) -> list[_Worker]:
        """Remote workers silent for longer than the heartbeat: frozen, cut off or
        gone without a word (their connection is cut, so nothing more comes)."""
        silent = []
        for w in self._workers:
            if w.link is None or w.dead or w.channel is None:
                continue
            if now - w.channel.heard > self.heartbeat:
                silent.append(w)
                w.link.abort()
        return silent

    def _start_reconnecting(self, w: _Worker) -> None:
        """Try, in a thread, to reach ``w``'s server again while the map runs."""
        if self._reconnect is None or w.index in self._reconnecting or self._closing:
            return
        self._reconnecting.add(w.index)
        host, port = w.link.host, w.link.port
        threading.Thread(
            target=self._reconnect_loop,
            args=(w, host, port),
            name=f"{self._name}-reconnect-{w.index}",
            daemon=True,
        ).start()

    def _reconnect_loop(self, w: _Worker, host: str, port: int) -> None:
        delay = RECONNECT_FIRST
        while not self._closing:
            time.sleep(delay)
            if self._closing:
                return
            try:
                link = self._reconnect(host, port)  # type: ignore[misc]
                link.stream(self.heartbeat / 4)
            except Exception as exc:  # noqa: BLE001 - not back yet: try again later
                logger().debug("reconnecting to %s:%s failed: %s", host, port, exc)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            if self._closing:
                link.close()
                return
            self._returned.append((w, link))
            if self._waker is not None:
                self._waker.wake()
            return

    def _take_back(self) -> None:
        """Attach the remote workers that a reconnecting thread reached again."""
        while self._returned:
            w, link = self._returned.popleft()
            self._reconnecting.discard(w.index)
            if self._closing:
                link.close()
                continue
            w.link = link
            self._attach(w, streaming=True)
            logger().warning("remote worker %s is back (pid %s)", link.label, link.pid)

    # -- which fds the poll watches -------------------------------------------
    def _watch(self, w: _Worker) -> None:
        channel = w.channel
        if w.link is not None:
            self._fds[channel.rfd] = (w, _SOCKET)
            self._poll.register(channel.rfd, _POLLIN)
            return
        for fd, role in ((channel.rfd, _READ), (w.sentinel, _SENTINEL)):
            self._fds[fd] = (w, role)
            self._poll.register(fd, _POLLIN)
        self._fds[channel.wfd] = (w, _WRITE)

    def _watch_out(self, w: _Worker, on: bool) -> None:
        """Watch (or stop watching) ``w``'s connection for room to write."""
        w.polling_out = on
        channel = w.channel
        if w.link is not None:
            self._poll.modify(channel.rfd, _POLLIN | _POLLOUT if on else _POLLIN)
        elif on:
            self._poll.register(channel.wfd, _POLLOUT)
        else:
            self._poll.unregister(channel.wfd)

    def _unwatch(self, w: _Worker) -> None:
        channel = w.channel
        for fd in {channel.rfd, channel.wfd, w.sentinel}:
            if fd < 0:
                continue
            self._fds.pop(fd, None)
            try:
                self._poll.unregister(fd)
            except (KeyError, ValueError):
                pass
        w.polling_out = False

    def shutdown(self, timeout: float = 1.0) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones are terminated
        (their results would be discarded); any left after ``timeout`` are killed."""
        self._closing = True
        exit_msg = pickle.dumps((EXIT,), PROTOCOL)
        procs = []
        for w in self._workers:
            if w.link is not None:
                w.link.close()  # the server sees EOF and ends that connection
                continue
            if w.proc is None:
                continue
            procs.append(w.proc)
            if w.dead:
                continue
            if w.outstanding or (w.channel is not None and w.channel.unsent):
                _terminate(w.proc)
            elif w.channel is not None:
                w.channel.send(exit_msg)
                try:
                    w.channel.flush()
                except EOFError:
                    pass
        _wait_for_exit(procs, timeout)
        for proc in procs:
            if proc.exitcode is None:
                _terminate(proc)
        _wait_for_exit(procs, 0.5)
        for proc in procs:
            if proc.exitcode is None:
                proc.kill()
        _wait_for_exit(procs, 0.5)
        for w in self._workers:
            self._release(w)
        self._pending.clear()
        self._n_pending = 0
        if self._lifeline_w >= 0:
            unregister_parent_fd(self._lifeline_w)
            for fd in (self._lifeline_r, self._lifeline_w):
                os.close(fd)
            self._lifeline_r = self._lifeline_w = -1

    def _release(self, w: _Worker) -> None:
        """Forget ``w``'s process and close the parent's ends of its pipes."""
        channel = w.channel
        if channel is not None:
            self._unwatch(w)
            if w.link is not None:
                w.link.close()
            else:
                unregister_parent_fd(channel.rfd, channel.wfd)
                for fd in (channel.rfd, channel.wfd):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            w.channel = None
        proc = w.proc
        if proc is not None and proc.exitcode is not None:
            try:
                proc.close()
            except ValueError:
                pass

    def depth(self) -> int:
        """Batches worth holding: what each worker may hold (``PREFETCH``: one being
        evaluated, one waiting; a remote one up to ``PREFETCH_REMOTE``)."""
        return sum(PREFETCH_REMOTE if w.link is not None else PREFETCH for w in self._workers)

    def cost(self) -> tuple[float, float, float] | None:
        """``(seconds, argument bytes, result bytes)`` per tasklet as measured so far
        (None: not yet): a worker's time, pickled sizes."""
        if self._item_time < 0:
            return None
        return self._item_time, self._item_bytes, self._result_bytes

    def alive(self) -> int:
        """Workers that can take work: live processes and connected servers."""
        return sum(
            1
            for w in self._workers
            if (w.link is not None and not w.dead) or (w.proc is not None and w.proc.is_alive())
        )

    def worker_stats(self) -> list[dict[str, Any]]:
        """What each worker (a process, or a connection to a server) did; a worker
        that replaced a lost one adds to its place's counts."""
        now = monotonic()
        return [w.stats.snapshot(now) for w in self._workers if w.stats is not None]

    def flush(self) -> None:
        """Send what waits to workers with room, without waiting for anything."""
        self.pump(0)

    def load(self) -> int:
        """Tasklets waiting for a worker or held by one."""
        return self._n_pending + sum(w.items for w in self._workers)

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc is not None]

    def servers(self) -> list[dict[str, Any]]:
        """Who answers each remote worker: address, kind of server, pid, host, Python."""
        return [
            {
                "address": w.link.label,
                "kind": w.link.kind,
                "pid": w.link.pid,
                "hostname": w.link.hostname,
                "python": w.link.python,
                "alive": not w.dead,
            }
            for w in self._workers
            if w.link is not None
        ]

    # -- submitting -------------------------------------------------------------
    def submit_range(self, task: int, first: int, items: list[Any]) -> None:
        """Evaluate ``items``, tasklets ``first``, ``first + 1``, ... of ``task``.

        Queued here; sent by the next ``pump`` (in the same thread).
        """
        self._pending.append([task, first, items, 0])
        self._n_pending += len(items)

    def _capacity(self, w: _Worker, now: float) -> bool:
        """Whether ``w`` may get another batch now."""
        if w.dead or w.channel is None:
            return False
        held = len(w.outstanding)
        if held == 0:
            return True
        horizon = PREFETCH_HORIZON
        if w.link is not None:  # cover the round trip: the server never waits for us
            if held >= PREFETCH_REMOTE or w.nbytes >= MAX_BYTES_IN_FLIGHT:
                return False
            horizon += 2 * w.link.rtt
        elif held >= PREFETCH or w.nbytes >= MAX_BYTES_IN_FLIGHT:
            return False
        # a second batch only behind work known to be quick: an unmeasured batch may
        # be a slow one, and what waits behind it could run on the next free worker
        return 0 <= w.item_time and w.item_time * w.items < horizon

    def _dispatch(self) -> None:
        """Give waiting ranges to workers with room: a fair share each, packed."""
        pending = self._pending
        if not pending:
            return
        now = monotonic()
        ready = [w for w in self._workers if self._capacity(w, now)]
        if not ready and all(w.dead for w in self._workers):
            self._orphans("every worker was lost")
            return
        while pending and ready:
            ready.sort(key=lambda w: w.items)
            w = ready.pop(0)
            share = -(-self._n_pending // (len(ready) + 1))
            want = min(share, MAX_PACK)
            if self._item_bytes > 0:
                want = min(want, int(PACK_BYTES / self._item_bytes))
            if not 0 <= self._item_time < PACK_BELOW:
                # items of unknown or measurable cost go one range a message, so a
                # worker that is free takes the next range instead of it waiting
                # behind a slow one in another worker's message
                want = 1
            want = max(1, want)
            ranges = []
            tries = []
            while pending and want > 0:  # whole ranges: a chunk is never split
                task, first, items, t = pending.popleft()
                ranges.append((task, first, items))
                tries.append(t)
                want -= len(items)
                self._n_pending -= len(items)
            self._send(w, ranges, tries)
            if self._capacity(w, now):
                ready.append(w)

    def _send(self, w: _Worker, ranges: list[tuple[int, int, list[Any]]], tries: list[int]) -> None:
        seq = w.seq
        w.seq += 1
        try:
            data = pickle.dumps((RUN, seq, ranges), PROTOCOL)
        except Exception:
            ranges = self._drop_unpicklable(ranges)
            if not ranges:
                return
            tries = [max(tries)] * len(ranges)
            data = dumps((RUN, seq, ranges))
        batch = _Batch(RUN, seq, ranges, len(data), tries)
        w.outstanding.append(batch)
        w.items += batch.size
        w.nbytes += batch.nbytes
        assert w.channel is not None
        w.channel.send(data)

    def _drop_unpicklable(
        self, ranges: list[tuple[int, int, list[Any]]]
    ) -> list[tuple[int, int, list[Any]]]:
        """Fail the items that cannot be pickled; return the others, as ranges."""
        keep: list[tuple[int, int, list[Any]]] = []
        for task, first, items in ranges:
            for index, item in enumerate(items, first):
                try:
                    dumps(item)
                except Exception as exc:
                    err = SerializationError(
                        f"item {index} of task {task} could not be pickled for a worker process: "
                        f"{exc!r}"
                    )
                    err.__cause__ = exc.with_traceback(None)  # our frames hold the pool
                    self._sched.put_result(task, index, False, err)
                    continue
                if keep and keep[-1][0] == task and keep[-1][1] + len(keep[-1][2]) == index:
                    keep[-1][2].append(item)
                else:
                    keep.append((task, index, [item]))
        return keep

    def _flush(self, w: _Worker) -> None:
        """Write what ``w``'s pipe takes now; watch for room if something is left."""
        channel = w.channel
        if channel is None or w.dead:
            return
        try:
            done = channel.flush()
        except EOFError:
            done = True  # the worker is gone: its EOF or sentinel says so next
        if done == w.polling_out:
            self._watch_out(w, not done)

    # -- the driving thread's work ----------------------------------------------
    def pump(self, timeout: float) -> None:
        """Send what waits, wait at most ``timeout`` seconds for something to happen
        (a reply, a death, room in a pipe, a wake-up), and handle it."""
        if self._returned:
            self._take_back()
        self._dispatch()
        for w in self._workers:
            if w.channel is not None and w.channel.unsent and not w.dead:
                self._flush(w)
        lost: list[_Worker] = []  # handled last: a replacement may reuse fd numbers
        if self._has_links:  # wake up in time to notice a silent remote worker
            timeout = min(timeout, self.heartbeat / 4)
        for w in self._workers:  # TLS: whole messages may wait inside the SSL object
            if w.link is not None and not w.dead and w.channel is not None and w.channel.buffered:
                timeout = 0
                if not self._receive(w):
                    lost.append(w)
        try:
            events = self._poll.poll(max(0, int(timeout * 1000 + 0.999)))
        except InterruptedError:
            events = []
        for fd, event in events:
            entry = self._fds.get(fd)
            if entry is None:
                continue  # the waker (the caller disarms it)
            w, role = entry
            if w.dead or w.channel is None or w in lost:
                continue
            if role == _SOCKET:
                if event & _POLLOUT:
                    self._flush(w)
                if event & _POLLIN and not self._receive(w):
                    lost.append(w)
            elif role == _READ:
                if not self._receive(w):
                    lost.append(w)
            elif role == _WRITE:
                self._flush(w)
            else:
                lost.append(w)
        if self._has_links:
            for w in self._check_heartbeats(monotonic()):
                if w not in lost:
                    self._lost(
                        w,
                        f"nothing heard from it for {self.heartbeat:g} s (frozen, "
                        "unreachable or overloaded)",
                    )
        for w in lost:
            self._lost(w)
        self._dispatch()
        for w in self._workers:
            if w.channel is not None and w.channel.unsent and not w.dead:
                self._flush(w)

    def _receive(self, w: _Worker) -> bool:
        """Deliver what ``w`` has sent; False once its pipe is closed."""
        channel = w.channel
        assert channel is not None
        try:
            channel.receive(lambda frame: self._reply(w, frame))
        except EOFError:
            return False
        return True

    def _reply(self, w: _Worker, frame: memoryview) -> None:
        """Deliver one reply of ``w``: the answer to the next unanswered range of its
        oldest outstanding message (an empty frame is a remote worker's heartbeat)."""
        if not frame:
            return
        batch = w.outstanding[0]
        k = batch.answered
        task, first, items = batch.ranges[k]
        n = len(items)
        try:
            message = pickle.loads(frame)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - user code inside a result
            if batch.kind == RUN:
                self._ask_split(w, batch, k)
            else:
                self._fail_range(task, first, n, SerializationError, f"unreadable: {exc!r}")
            message = None
        kind = message[0] if message is not None else -1
        batch.reply_bytes += len(frame)
        if kind == OK:
            if len(message) == 6:
                _, task, first, values, errors, seconds = message
                if batch.work >= 0:
                    batch.work += seconds
            else:  # a server that does not say: measured between replies
                _, task, first, values, errors = message
                batch.work = -1.0
            self._sched.put_range(
                task, first, values, _errors_of(errors, _where(w)) if errors else None
            )
        elif kind == SPLIT:
            _, task, first, blobs, errors = message
            self._deliver_split(task, first, blobs, errors, _where(w))
        elif kind == BROKEN:  # the whole message: every range it holds
            for task, first, items in batch.ranges[k:]:
                self._fail_range(task, first, len(items), SerializationError, message[1])
                w.items -= len(items)
            self._done(w, batch)
            return
        elif kind == GONE:
            self._fail_range(
                task,
                first,
                n,
                SerializationError,
                f"its results could not be unpickled, and the worker {message[1]}",
            )
        w.items -= n
        batch.answered = k + 1
        if batch.answered == len(batch.ranges):
            if batch.kind == RUN:
                self._measure(w, batch)
            self._done(w, batch)

    def _measure(self, w: _Worker, batch: _Batch) -> None:
        """``batch`` is answered: fold its seconds and bytes per tasklet into the averages.

        The seconds are those the worker says it spent evaluating (replies read
        together would make their spacing look like no work at all); from a
        server that does not say, the time since it was free or the batch sent.
        Sizes rise at once and fall slowly: they bound memory.
        """
        now = monotonic()
        if batch.work >= 0:
            elapsed = batch.work
        else:
            elapsed = now - max(batch.sent_at, w.free_since)
            if w.link is not None and batch.sent_at >= w.free_since:
                # the batch found the server idle: the network's round trip is not work
                elapsed = max(0.0, elapsed - w.link.rtt)
        per_item = elapsed / batch.size
        if w.stats is not None:
            w.stats.add(batch.size, elapsed)
        w.item_time = per_item if w.item_time < 0 else 0.7 * w.item_time + 0.3 * per_item
        w.free_since = now
        t = self._item_time  # quick to follow a drop (start-up costs fade at once)
        self._item_time = per_item if t < 0 or per_item < t else 0.8 * t + 0.2 * per_item
        nbytes = batch.nbytes / batch.size
        b = self._item_bytes
        self._item_bytes = nbytes if nbytes >= b else 0.9 * b + 0.1 * nbytes
        rbytes = batch.reply_bytes / batch.size
        b = self._result_bytes
        self._result_bytes = rbytes if rbytes >= b else 0.9 * b + 0.1 * rbytes

    @staticmethod
    def _done(w: _Worker, batch: _Batch) -> None:
        w.outstanding.popleft()
        w.nbytes -= batch.nbytes

    def _ask_split(self, w: _Worker, batch: _Batch, k: int) -> None:
        """A range's reply could not be unpickled: ask for its results one by one."""
        data = pickle.dumps((SPLIT, batch.seq, k), PROTOCOL)
        split = _Batch(SPLIT, batch.seq, [batch.ranges[k]], len(data), [0])
        w.outstanding.append(split)
        w.items += len(batch.ranges[k][2])
        w.nbytes += split.nbytes
        assert w.channel is not None
        w.channel.send(data)

    def _deliver_split(
        self, task: int, first: int, blobs: list[bytes | None], errors: Any, where: str = ""
    ) -> None:
        errors = _errors_of(errors, where) or {}
        values: list[Any] = []
        for k, blob in enumerate(blobs):
            value = None
            if k not in errors:
                try:
                    value = pickle.loads(blob)  # type: ignore[arg-type]
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - the culprit
                    err = SerializationError(
                        f"the result of item {first + k} of task {task} could not be "
                        f"unpickled: {_describe(exc)}"
                    )
                    err.__cause__ = exc if isinstance(exc, Exception) else None
                    errors[k] = err
            values.append(value)
        self._sched.put_range(task, first, values, errors or None)

    def _fail_range(
        self, task: int, first: int, n: int, cls: type[BaseException], why: str
    ) -> None:
        self._sched.put_range(
            task,
            first,
            [None] * n,
            {k: cls(f"item {first + k} of task {task}: {why}") for k in range(n)},
        )

    def _lost(self, w: _Worker, why: str | None = None) -> None:
        """``w``'s worker died: fail (or re-run) its current batch, re-queue the rest,
        start a fresh worker in its place (a remote one: reconnect in the background)."""
        if w.dead:
            return
        channel = w.channel
        if channel is not None:
            try:  # replies it wrote before it died
                channel.receive(lambda frame: self._reply(w, frame))
            except EOFError:
                pass
        w.dead = True
        if w.link is not None:
            pid = w.link.pid
            reason = why or "the connection was closed (the server died or was cut off)"
            what = f"remote worker {w.link.label} (pid {pid})"
        else:
            proc = w.proc
            proc.join(0.5)
            pid, reason = proc.pid, _describe_exit(proc.exitcode)
            what = f"worker process {pid}"
        outstanding = list(w.outstanding)
        w.outstanding.clear()
        w.items = w.nbytes = 0
        self._release(w)
        if self._closing or _exiting():
            return
        self.lost += 1
        if w.link is None:
            logger().warning("%s was lost (%s); starting a new one", what, reason)
        else:
            logger().warning("%s was lost (%s)", what, reason)
        again: list[list[Any]] = []
        culprit = True
        for batch in outstanding:
            ranges = batch.ranges[batch.answered :]
            tries = batch.tries[batch.answered :]
            if batch.kind == SPLIT:
                for task, first, items in ranges:
                    self._fail_range(
                        task,
                        first,
                        len(items),
                        SerializationError,
                        f"its results could not be unpickled ({reason})",
                    )
                continue
            if culprit and ranges:  # the range it was evaluating
                culprit = False
                task, first, items = ranges.pop(0)
                t = tries.pop(0)
                if len(items) > 1:
                    # one of its items killed the worker (or the worker just died):
                    # the items run again one range each, so that only the item
                    # that kills a worker fails; the others spend no retry
                    again.extend([task, first + k, [item], t] for k, item in enumerate(items))
                elif t >= self.retries:
                    self._fail_range(
                        task,
                        first,
                        len(items),
                        WorkerLostError,
                        f"{what} was lost while evaluating it: {reason}",
                    )
                else:
                    again.append([task, first, items, t + 1])
            # the ranges after it never started
            again.extend([r[0], r[1], r[2], t] for r, t in zip(ranges, tries))
        for entry in reversed(again):  # first in line again, in their order
            self._pending.appendleft(entry)
            self._n_pending += len(entry[2])
        if w.link is None:
            self._spawn(w)
            return
        self._start_reconnecting(w)
        if not any(not x.dead for x in self._workers):
            self._orphans(f"every worker was lost (the last: {what}, {reason})")

    def _orphans(self, why: str) -> None:
        """No worker is left: hand what waits to the fallback, or fail it."""
        pending = list(self._pending)
        self._pending.clear()
        self._n_pending = 0
        if self.fallback is not None:
            self.fallback([(task, first, items) for task, first, items, _ in pending])
            return
        for task, first, items, _ in pending:
            self._fail_range(task, first, len(items), WorkerLostError, f"not evaluated: {why}")


def _describe(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except BaseException:  # noqa: BLE001 - an exception whose str fails
        return type(exc).__name__


def _exiting() -> bool:
    """True while the interpreter (or multiprocessing's exit hook) shuts down."""
    if sys.is_finalizing():
        return True
    util = sys.modules.get("multiprocessing.util")
    return bool(getattr(util, "_exiting", False))


def _terminate(proc: Any) -> None:
    try:
        proc.terminate()
    except (OSError, ValueError, AttributeError):
        pass


def _wait_for_exit(procs: list[Any], timeout: float) -> None:
    """Wait until every process in ``procs`` has exited, at most ``timeout`` seconds."""
    deadline = monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            try:
                if proc.exitcode is None:
                    alive.append(proc.sentinel)
            except ValueError:  # closed
                continue
        remaining = deadline - monotonic()
        if not alive or remaining <= 0:
            return
        poll = select.poll()  # a sentinel becomes readable when its process exits
        for fd in alive:
            poll.register(fd, _POLLIN)
        try:
            poll.poll(max(1, int(remaining * 1000)))
        except InterruptedError:
            pass
