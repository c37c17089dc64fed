"""Remote workers: one RPyC connection per remote slot.

A ``worker_remote`` entry ``(host, n)`` opens ``n`` connections to the server at
``host``; each connection is one *slot*, the remote counterpart of a local
worker. Two kinds of server are understood, told apart at connection time:

* papy's own server (``python -m papy.remote serve``, service ``PAPYWORKER``),
  which exposes only ``hello``, ``define`` and ``run``;
* a stock RPyC classic server (``rpyc_classic``, service ``SLAVE``), into which
  the evaluating half (:mod:`papy._pools._remote_worker`, standard library only) is
  executed once per connection.

Data flow::

    feeder ── submit(batch) ──► least-loaded live slot's queue
    slot sender thread ── async run(pickled batch) ──► server (at most PIPELINE_DEPTH in flight)
    slot receiver thread ◄── reply (pickled results) ── conn.serve() ── deliver()
        └ connection lost: the oldest unanswered batch fails with WorkerLostError
          (or is re-run elsewhere while ``retries`` allow), the slot's other
          batches go to the remaining slots (or, in a composite pool, to the
          local workers); with no slot left they fail.

Each task's function travels once per connection, pickled (``TaskDef.payload``);
items and results travel as pickled bytes. Runs are asynchronous requests with
no expiry, so RPyC's synchronous request timeout applies only to the handshake.

rpyc is an optional dependency (the ``remote`` extra): it is imported when a
remote pool is started or a server is made (:func:`import_rpyc`), never at
``import papy``; without it, those raise :class:`RemoteDependencyError`, which
says how to install it.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._errors import (
    InitializerError,
    PapyError,
    SerializationError,
    TaskletAbortedError,
    WorkerLostError,
)
from .._serialize import PROTOCOL, dumps, revive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import Deliver, Fallback, Sink, TaskDefs
    from ._io import Waker


__all__ = [
    "INSTALL_HINT",
    "SSL_KEYS",
    "Link",
    "RemoteConnectionError",
    "RemoteDependencyError",
    "RemotePool",
    "connect",
    "import_rpyc",
    "open_links",
    "ssl_context",
]

#: seconds to open a TCP connection (and finish the TLS handshake)
CONNECT_TIMEOUT = 10.0
#: seconds for the handshake requests (hello, define); runs have no timeout
REQUEST_TIMEOUT = 30.0
#: batches sent to one slot before its first one is answered
PIPELINE_DEPTH = 2
#: larger batches are sent only to an idle slot (see RemotePool._slot_loop)
PIPELINE_MAX_BYTES = 64 * 1024
#: keys accepted in ``IMap(remote_ssl=...)``
SSL_KEYS = frozenset({"keyfile", "certfile", "ca_certs", "check_hostname", "server_hostname"})

#: how to install what remote workers need (rpyc): the ``remote`` extra
INSTALL_HINT = 'pip install "papy2[remote]"'

_PAPY_SERVICE = "PAPYWORKER"
_FULL_SERVICE = "PAPYWORKERFULL"  # a papy server at its connection limit
_CLASSIC_SERVICES = ("SLAVE", "CLASSIC")
_WIRE_VERSION = 1


class RemoteConnectionError(PapyError, ConnectionError):
    """A remote worker could not be reached or refused the connection.

    ``host`` and ``port`` name the server; the original error is the ``__cause__``.
    """

    def __init__(self, message: str, host: str | None = None, port: int | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


class RemoteDependencyError(PapyError, ImportError):
    """Remote workers (``IMap(worker_remote=...)``, ``python -m papy.remote``,
    ``papy-worker``) need rpyc, which is not installed (or cannot be imported).

    The message says how to install it (:data:`INSTALL_HINT`); the import's own
    error is the ``__cause__``.
    """


for _cls in (RemoteConnectionError, RemoteDependencyError):
    _cls.__module__ = "papy.remote"  # where users import them from
del _cls


def import_rpyc() -> Any:
    """The ``rpyc`` module, or :class:`RemoteDependencyError` saying how to install it."""
    try:
        import rpyc
    except ImportError as exc:
        missing = exc.name == "rpyc" or (exc.name or "").startswith("rpyc.")
        raise RemoteDependencyError(
            "remote workers need rpyc, which "
            + ("is not installed" if missing else f"cannot be imported ({exc})")
            + f": {INSTALL_HINT}",
            name="rpyc",
        ) from exc
    return rpyc


# -- connecting ---------------------------------------------------------------
def ssl_context(options: Mapping[str, Any]) -> Any:
    """A client ``ssl.SSLContext`` from ``IMap(remote_ssl=...)`` options.

    ``ca_certs``: the CA file that signed the servers' certificates (default:
    the system's CAs); ``certfile``/``keyfile``: this client's certificate and
    key, for servers that require client certificates; ``check_hostname``
    (default True): the server certificate must name the host connected to.
    """
    import ssl

    if not isinstance(options, Mapping):
        raise TypeError(f"remote_ssl must be a mapping, got {type(options).__name__}")
    unknown = set(options) - SSL_KEYS
    if unknown:
        raise ValueError(f"unknown remote_ssl keys {sorted(unknown)}; allowed: {sorted(SSL_KEYS)}")
    certfile, keyfile = options.get("certfile"), options.get("keyfile")
    if keyfile is not None and certfile is None:
        raise ValueError("remote_ssl: 'keyfile' needs 'certfile'")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=options.get("ca_certs"))
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile)
    ctx._papy_client_cert = certfile is not None  # type: ignore[attr-defined]  # for _explain
    ctx.check_hostname = bool(options.get("check_hostname", True))
    return ctx


def _worker_source() -> str:
    from . import _remote_worker

    with open(_remote_worker.__file__, encoding="utf-8") as f:
        return f.read()


class Link:
    """One handshaken connection to a remote worker."""

    def __init__(self, host: str, port: int, conn: Any, sock: socket.socket, kind: str) -> None:
        self.host = host
        self.port = port
        self.conn = conn
        self.sock = sock
        self.kind = kind  # "papy" or "classic"
        self.pid = 0
        self.hostname = ""
        self.python: tuple[int, ...] = ()
        self.define: Callable[[int, bytes], None] = lambda task, payload: None
        self.run: Callable[[bytes], Any] = lambda data: None  # returns an rpyc AsyncResult
        self.streaming = False  # the connection carries papy's framed messages now
        self.rtt = 0.0  # seconds of one round trip (measured at the handshake)
        self._stream: Any = None

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    def abort(self) -> None:
        """Cut the connection at once (wakes a thread blocked reading it)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stream(self, heartbeat: float = 0.0) -> None:
        """(papy's server) Leave RPyC: the server now serves papy's framed messages
        (``_child.serve``) on this connection, as a local worker does on its pipes;
        with ``heartbeat`` > 0 it also sends an empty frame that often."""
        rpyc = import_rpyc()

        if self.kind != "papy":
            raise RemoteConnectionError(
                f"{self.label} is a classic server: it has no framed stream", self.host, self.port
            )
        self._stream = rpyc.async_(self.conn.root.stream)
        # its reply never comes: the server's handler runs until we close
        if heartbeat > 0:
            self._stream(heartbeat)
        else:
            self._stream()
        self.streaming = True
        # From here on RPyC must never write to the socket again: a proxy it
        # collects later (at any time, by the cyclic GC) would send its "release"
        # request into papy's framed stream and corrupt it.
        self.conn._send = _discard
        self.conn._closed = True

    def close(self) -> None:
        """Close the connection; never blocks on a busy server."""
        self.abort()
        if self.streaming:  # RPyC must not write its goodbye into the framed stream
            self.conn._closed = True
        else:
            try:
                self.conn.close()
            except BaseException:  # noqa: BLE001, S110 - it is going away anyway
                pass
        try:
            self.sock.close()
        except OSError:
            pass


def _discard(*args: Any) -> None:
    """Stands for an RPyC connection's ``_send`` once the socket carries papy's frames."""


def _configure(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:
                pass


def connect(
    host: str,
    port: int,
    ssl: Any = None,
    server_hostname: str | None = None,
    timeout: float | None = None,
) -> Link:
    """Connect to the remote worker at ``host:port`` and shake hands.

    ``ssl`` is an ``ssl.SSLContext`` (see :func:`ssl_context`) or None. Raises
    :class:`RemoteConnectionError` naming the server on any failure, and
    :class:`RemoteDependencyError` if rpyc is not installed.
    """
    rpyc = import_rpyc()
    from rpyc.core.service import VoidService
    from rpyc.core.stream import SocketStream
    from rpyc.utils.factory import connect_stream

    where = f"{host}:{port}"
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        raw = socket.create_connection((host, port), timeout)
    except OSError as exc:
        raise RemoteConnectionError(
            f"cannot connect to remote worker {where}: {exc}", host, port
        ) from exc
    sock: socket.socket = raw
    conn = None
    try:
        _configure(raw)
        if ssl is not None:
            sock = ssl.wrap_socket(raw, server_hostname=server_hostname or host)
        sock.settimeout(None)
        config = {
            "sync_request_timeout": REQUEST_TIMEOUT,
            "allow_pickle": False,
            "allow_public_attrs": False,
            "allow_all_attrs": False,
            "allow_setattr": False,
            "allow_delattr": False,
            "import_custom_exceptions": False,
            "instantiate_custom_exceptions": False,
            "bind_threads": False,
        }
        conn = connect_stream(SocketStream(sock), VoidService, config)
        root = conn.root
        service = str(root.get_service_name())
        if service == _FULL_SERVICE:
            raise RemoteConnectionError(
                f"remote worker {where} refused the connection: {root.why()}", host, port
            )
        if service == _PAPY_SERVICE:
            link = Link(host, port, conn, sock, "papy")
            hello, link.define, run = root.hello, root.define, root.run
        elif service in _CLASSIC_SERVICES:
            link = Link(host, port, conn, sock, "classic")
            root.execute(_worker_source())
            root.execute("_papy_worker = Worker()")
            hello = root.eval("_papy_worker.hello")
            link.define = root.eval("_papy_worker.define")
            run = root.eval("_papy_worker.run")
        else:
            raise RemoteConnectionError(
                f"{where} serves the RPyC service {service!r}, not papy's worker "
                f"({_PAPY_SERVICE}) or a classic server (SLAVE)",
                host,
                port,
            )
        t0 = time.monotonic()
        info = tuple(hello())
        link.rtt = time.monotonic() - t0
        if not info or info[0] != _WIRE_VERSION:
            raise RemoteConnectionError(
                f"remote worker {where} speaks wire version {info[:1]}, this papy speaks "
                f"{_WIRE_VERSION}: install the same papy version on both sides",
                host,
                port,
            )
        link.pid, link.hostname, link.python = int(info[1]), str(info[2]), tuple(info[3])
        link.run = rpyc.async_(run)
        link._keep = run  # type: ignore[attr-defined]  # rpyc caches async_ wrappers weakly
        return link
    except BaseException as exc:
        if conn is not None:
            Link(host, port, conn, sock, "").close()
        else:
            try:
                sock.close()
            except OSError:
                pass
        if isinstance(exc, RemoteConnectionError):
            raise
        if not isinstance(exc, Exception):
            raise
        raise RemoteConnectionError(
            f"cannot use remote worker {where}: {_explain(exc, ssl, server_hostname)}", host, port
        ) from exc


def _explain(exc: BaseException, ctx: Any, server_hostname: str | None) -> str:
    """What a failed connection means, TLS included, in the user's terms."""
    import ssl

    text = _describe(exc)
    low = text.lower()
    if ctx is None:
        if isinstance(exc, (EOFError, ConnectionResetError)):
            return (
                f"{text}; if the server requires TLS (papy-worker --ssl-certfile), give "
                "remote_ssl={'ca_certs': ..., 'certfile': ..., 'keyfile': ...}"
            )
        return text
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or text
        if "hostname" in why.lower() or "ip address mismatch" in why.lower():
            return (
                f"the server's certificate does not name the host connected to ({why}); "
                "give remote_ssl['server_hostname'] = the name in its certificate"
            )
        return (
            f"the server's certificate could not be verified ({why}): remote_ssl['ca_certs'] "
            "must be the CA that signed it"
        )
    has_cert = bool(getattr(ctx, "_papy_client_cert", False))
    if "unknown ca" in low or "bad certificate" in low or "certificate unknown" in low:
        return (
            "the server refused this client's certificate: it is not signed by a CA the "
            f"server trusts (its --ssl-cafile) [{text}]"
        )
    if "certificate required" in low or (
        not has_cert and ("eof" in low or "closed" in low or "reset" in low)
    ):
        return (
            "the server requires a client certificate: give remote_ssl['certfile'] and "
            f"remote_ssl['keyfile'] (signed by the CA of its --ssl-cafile) [{text}]"
        )
    if has_cert and ("eof" in low or "closed" in low or "reset" in low):
        return (
            "the server closed the TLS connection: it most likely refused this client's "
            "certificate (it must be signed by a CA of the server's --ssl-cafile) "
            f"[{text}]"
        )
    if "wrong version number" in low or "timed out" in low or "unexpected eof" in low:
        return (
            "no TLS handshake with the server: it may run without TLS (start it with "
            f"--ssl-keyfile/--ssl-certfile, or connect without remote_ssl) [{text}]"
        )
    return text


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        detail = str(exc.args[0]) if exc.args and str(exc.args[0]) else ""
        if not detail or detail == "connection closed by peer":
            return "the connection was closed by the server (refused, or it died)"
        return f"the connection was closed ({detail})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


def open_links(
    remote: Sequence[tuple[str, int, int]],
    tasks: TaskDefs,
    ssl_options: Mapping[str, Any] | None = None,
    name: str = "papy",
) -> list[Link]:
    """Connect every remote slot (``(host, port, n)``: ``n`` connections) and define
    every task on it, in parallel. Any failure closes them all and raises
    :class:`RemoteConnectionError` naming the server (:class:`RemoteDependencyError`
    at once if rpyc is not installed)."""
    import_rpyc()  # here, not in the connecting threads: the error names what to install
    ctx = ssl_context(ssl_options) if ssl_options is not None else None
    server_hostname = (ssl_options or {}).get("server_hostname")
    # papy's servers get functions sent by value with their file and lines (they
    # have papy); stock classic servers may not have papy: plain payloads
    payloads = {
        kind: {task: d.portable(located=kind == "papy") for task, d in tasks.items()}
        for kind in ("papy", "classic")
    }
    slots = [(host, port) for host, port, n in remote for _ in range(n)]
    links: list[Link | None] = [None] * len(slots)
    errors: list[BaseException | None] = [None] * len(slots)

    def open_slot(i: int) -> None:
        host, port = slots[i]
        try:
            link = connect(host, port, ctx, server_hostname)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors[i] = exc
            return
        links[i] = link
        try:
            for task, payload in payloads["papy" if link.kind == "papy" else "classic"].items():
                link.define(task, payload)
        except BaseException as exc:  # noqa: BLE001
            err = RemoteConnectionError(
                f"remote worker {link.label} refused the task definitions: {_describe(exc)}",
                host,
                port,
            )
            err.__cause__ = exc
            errors[i] = err

    openers = [
        threading.Thread(target=open_slot, args=(i,), name=f"{name}-connect-{i}", daemon=True)
        for i in range(1, len(slots))
    ]
    for t in openers:
        t.start()
    if slots:
        open_slot(0)
    for t in openers:
        t.join()
    failed = next((e for e in errors if e is not None), None)
    if failed is not None:
        for link in links:
            if link is not None:
                link.close()
        raise failed
    return [link for link in links if link is not None]


# -- the pool -----------------------------------------------------------------
class _Batch:
    """A batch assigned to a slot: its items (for a fallback), ids and bytes."""

    __slots__ = ("answered", "data", "ids", "items", "tries")

    def __init__(self, items: list[Any], ids: list[tuple[int, int]], data: bytes, tries: int = 0):
        self.items = items
        self.ids = ids
        self.data = data
        self.tries = tries
        self.answered = False

    def again(self, tries: int) -> _Batch:
        return _Batch(self.items, self.ids, self.data, tries)


class _Slot:
    """One connection: its queue, its batches in flight and its thread."""

    __slots__ = (
        "dead",
        "host",
        "index",
        "link",
        "load",
        "outstanding",
        "port",
        "queue",
        "thread",
        "wake_r",
        "wake_w",
        "woken",
    )

    def __init__(self, index: int, host: str, port: int) -> None:
        self.index = index
        self.host = host
        self.port = port
        self.link: Link | None = None
        self.queue: deque[_Batch] = deque()  # assigned, not sent
        self.outstanding: deque[_Batch] = deque()  # sent, not answered (oldest first)
        self.load = 0  # items queued or outstanding
        self.dead = False
        self.woken = False  # a wake-up byte is in the pipe
        self.wake_r = -1  # the slot thread's wake-up pipe
        self.wake_w = -1
        self.thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


class RemotePool:
    """Remote slots over RPyC calls, one thread each: the stock *classic* servers,
    which cannot switch to papy's framed stream (papy's own servers are workers
    of a :class:`~papy._pools.process.ProcessPool`). ``links`` are connected
    and have every task defined (:func:`open_links`)."""

    kind = "remote"
    measures = False

    def __init__(self, links: Sequence[Link], retries: int = 0) -> None:
        self._lock = threading.Lock()
        self._slots = []
        for i, link in enumerate(links):
            slot = _Slot(i, link.host, link.port)
            slot.link = link
            self._slots.append(slot)
        self.size = len(self._slots)
        self.retries = retries
        self._deliver: Deliver | None = None
        self._waker: Any = None
        self._closing = False
        self._name = "papy"
        #: called with ranges of one tasklet when no slot is left to run them
        #: (set by the composite pool); None: such items fail
        self.fallback: Fallback | None = None
        self.lost = 0  # slots lost so far

    # -- lifecycle ------------------------------------------------------------
    def start(self, tasks: TaskDefs, sink: Sink, waker: Waker, name: str = "papy") -> None:
        """Start each slot's thread (the slots are connected already)."""
        self._deliver = sink.put_many
        self._waker = waker
        self._name = name
        for slot in self._slots:
            slot.wake_r, slot.wake_w = os.pipe()
            os.set_blocking(slot.wake_r, False)
            os.set_blocking(slot.wake_w, False)
            slot.thread = threading.Thread(
                target=self._slot_loop,
                args=(slot,),
                name=f"{name}-remote-{slot.index}",
                daemon=True,
            )
            slot.thread.start()

    def shutdown(self, timeout: float = 1.0) -> None:
        """Cut every connection and stop the slot threads; never waits on a server."""
        with self._lock:
            self._closing = True
            for slot in self._slots:
                self._wake(slot)
        for slot in self._slots:
            if slot.link is not None:
                slot.link.abort()
        current = threading.current_thread()
        for slot in self._slots:
            t = slot.thread
            if t is not None and t is not current:
                t.join(max(timeout, 0.1))
        for slot in self._slots:
            if slot.link is not None:
                slot.link.close()
            with self._lock:
                slot.queue.clear()
                slot.outstanding.clear()
                if slot.wake_r >= 0 and (slot.thread is None or not slot.thread.is_alive()):
                    os.close(slot.wake_r)
                    os.close(slot.wake_w)
                    slot.wake_r = slot.wake_w = -1

    def load(self) -> int:
        """Tasklets queued on or evaluated by the live slots."""
        with self._lock:
            return sum(s.load for s in self._slots if not s.dead)

    def alive(self) -> int:
        """Number of slots whose connection is up."""
        return sum(1 for s in self._slots if s.link is not None and not s.dead)

    def servers(self) -> list[dict[str, Any]]:
        """Who answers each slot: address, kind of server, pid, host name, Python version."""
        return [
            {
                "address": s.label,
                "kind": s.link.kind if s.link else None,
                "pid": s.link.pid if s.link else None,
                "hostname": s.link.hostname if s.link else None,
                "python": s.link.python if s.link else None,
                "alive": s.link is not None and not s.dead,
            }
            for s in self._slots
        ]

    # -- feeder side ----------------------------------------------------------
    def submit_range(self, task: int, first: int, items: list[Any]) -> None:
        """Evaluate tasklets ``first``, ``first + 1``, ... of ``task`` (one batch)."""
        self.submit([(task, first + k, item) for k, item in enumerate(items)])

    def pump(self, timeout: float) -> None:
        """Results arrive from the pool's own threads, which wake the driving thread."""
        self._waker.wait(timeout)

    def flush(self) -> None:
        """Each slot's thread takes its queued batches itself: nothing waits here."""

    def cost(self) -> tuple[float, float, float] | None:
        return None

    def depth(self) -> int | None:
        return None

    def worker_stats(self) -> list[dict[str, Any]]:
        return []  # stock classic servers do not say what their time goes to

    def submit(self, batch: list[tuple[int, int, Any]]) -> None:
        """Queue ``batch`` on the live slot with the fewest unanswered items."""
        try:
            data = pickle.dumps(batch, PROTOCOL)
        except Exception:  # noqa: BLE001
            batch = self._drop_unpicklable(batch)
            if not batch:
                return
            data = dumps(batch)
        b = _Batch(batch, [(task, index) for task, index, _ in batch], data)
        with self._lock:
            placed = self._assign(b)
        if not placed:
            self._orphans([b], "every remote worker was lost")

    def _assign(self, batch: _Batch) -> bool:
        """Queue ``batch`` on the least-loaded live slot (lock held)."""
        best = None
        for slot in self._slots:
            if slot.dead or slot.link is None:
                continue
            if best is None or slot.load < best.load:
                best = slot
        if best is None:
            return False
        best.queue.append(batch)
        best.load += len(batch.ids)
        if len(best.queue) == 1:
            self._wake(best)
        return True

    def _orphans(self, batches: list[_Batch], why: str) -> None:
        """Batches no slot can run: hand them to the fallback, or fail them."""
        if self._closing:
            return
        if self.fallback is not None:
            for b in batches:  # as ranges of one tasklet each
                self.fallback([(task, index, [item]) for task, index, item in b.items])
            return
        failed = [
            (
                task,
                index,
                False,
                WorkerLostError(f"item {index} of task {task} was not evaluated: {why}"),
            )
            for b in batches
            for task, index in b.ids
        ]
        if failed and self._deliver is not None:
            self._deliver(failed)

    def _drop_unpicklable(self, batch: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
        """Fail the items of ``batch`` that cannot be pickled; return the others."""
        keep, failed = [], []
        for task, index, item in batch:
            try:
                dumps(item)
                keep.append((task, index, item))
            except Exception as exc:  # noqa: BLE001
                err = SerializationError(
                    f"item {index} of task {task} could not be pickled for a remote worker: {exc!r}"
                )
                err.__cause__ = exc.with_traceback(None)  # our frames hold the pool
                failed.append((task, index, False, err))
        if failed and self._deliver is not None:
            self._deliver(failed)
        return keep

    # -- slot threads -----------------------------------------------------------
    def _slot_loop(self, slot: _Slot) -> None:
        """Send the slot's queued batches and deliver its replies, until it dies or shuts down.

        One thread does both, so a connection (TLS included) is only ever used
        by one thread. A batch larger than PIPELINE_MAX_BYTES is sent only when
        nothing else is in flight, so that big requests and big replies never
        fill both directions of the connection at once.
        """
        import selectors

        link = slot.link
        assert link is not None
        serve = link.conn.serve
        replies: deque[tuple[_Batch, Any]] = deque()
        sock = link.sock
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
        selector = selectors.DefaultSelector()
        reason = ""
        try:
            selector.register(sock, selectors.EVENT_READ, "conn")
            selector.register(slot.wake_r, selectors.EVENT_READ, "wake")
            while True:
                with self._lock:
                    if slot.dead or self._closing:
                        return
                    sending = []
                    while slot.queue and self._may_send(slot, slot.queue[0]):
                        batch = slot.queue.popleft()
                        slot.outstanding.append(batch)
                        sending.append(batch)
                    slot.woken = False
                for batch in sending:
                    res = link.run(batch.data)
                    res.add_callback(lambda r, b=batch: replies.append((b, r)))
                if not (pending and pending() and serve(0)):  # TLS may hold a whole message
                    readable = False
                    for key, _ in selector.select(1.0):
                        if key.data == "wake":
                            try:
                                os.read(slot.wake_r, 512)
                            except (BlockingIOError, InterruptedError):
                                pass
                        else:
                            readable = True
                    if readable:
                        serve(0)
                while replies:
                    self._handle(slot, *replies.popleft())
        except BaseException as exc:  # noqa: BLE001 - the connection broke
            reason = _describe(exc)
        finally:
            selector.close()
        while replies:  # answered before the connection broke
            self._handle(slot, *replies.popleft())
        self._lost(slot, reason or "its connection closed")

    @staticmethod
    def _may_send(slot: _Slot, batch: _Batch) -> bool:
        """Whether ``batch`` may go now (lock held)."""
        if not slot.outstanding:
            return True
        if len(slot.outstanding) >= PIPELINE_DEPTH or len(batch.data) > PIPELINE_MAX_BYTES:
            return False
        return all(len(b.data) <= PIPELINE_MAX_BYTES for b in slot.outstanding)

    def _wake(self, slot: _Slot) -> None:
        """Wake ``slot``'s thread (lock held)."""
        if not slot.woken:
            slot.woken = True
            try:
                os.write(slot.wake_w, b"x")
            except OSError:
                pass

    def _handle(self, slot: _Slot, batch: _Batch, res: Any) -> None:
        """Deliver the reply ``res`` to ``batch`` (once)."""
        with self._lock:
            if batch.answered:
                return
            batch.answered = True
            try:
                slot.outstanding.remove(batch)
            except ValueError:
                pass
            slot.load -= len(batch.ids)
        out = self._decode(slot, batch, res)
        if self._deliver is not None and not self._closing:
            self._deliver(out)

    def _decode(self, slot: _Slot, batch: _Batch, res: Any) -> list[tuple[int, int, bool, Any]]:
        ids = batch.ids
        if res.error:
            try:
                err: BaseException = RuntimeError(f"the remote call failed: {res.value!r}")
            except BaseException as exc:  # noqa: BLE001 - rpyc's rebuilt remote exception
                err = exc
            return [
                (
                    t,
                    i,
                    False,
                    SerializationError(
                        f"remote worker {slot.label} failed to run item {i} "
                        f"of task {t}: {_describe(err)}"
                    ),
                )
                for t, i in ids
            ]
        try:
            values = pickle.loads(res.value)
        except Exception as exc:  # noqa: BLE001
            values = f"the results could not be unpickled: {exc!r}"
        if isinstance(values, str):
            return [
                (t, i, False, SerializationError(f"item {i} of task {t}: {values}")) for t, i in ids
            ]
        out = []
        for (task, index), (ok, value) in zip(ids, values):
            if not ok:
                value = self._exception(slot, value)
            out.append((task, index, ok, value))
        return out

    @staticmethod
    def _exception(slot: _Slot, value: tuple[Any, str, str, str]) -> BaseException:
        exc, tb, kind, message = value
        if exc is None:
            if kind == "aborted":
                exc = TaskletAbortedError(message)
            elif kind == "initializer":
                exc = InitializerError(message)
            else:
                exc = SerializationError(message)
        if not tb:
            return exc  # type: ignore[no-any-return]
        pid = slot.link.pid if slot.link is not None else "?"
        return revive(exc, f"{tb.rstrip()}\n(on remote worker {slot.label}, pid {pid})\n")

    def _lost(self, slot: _Slot, reason: str) -> None:
        """``slot``'s connection broke: fail or re-run its batch, re-queue the rest."""
        with self._lock:
            if slot.dead:
                return
            slot.dead = True
            if self._closing:
                return
            self.lost += 1
            started = [b for b in slot.outstanding if not b.answered]
            waiting = list(slot.queue)
            for b in started:
                b.answered = True  # a late reply must not be delivered twice
            slot.outstanding.clear()
            slot.queue.clear()
            slot.load = 0
            failed: list[tuple[int, int, bool, Any]] = []
            again: list[_Batch] = []
            if started:
                current = started[0]  # the one the server was evaluating
                if current.tries < self.retries:
                    again.append(current.again(current.tries + 1))
                else:
                    pid = slot.link.pid if slot.link is not None else "?"
                    for task, index in current.ids:
                        failed.append(
                            (
                                task,
                                index,
                                False,
                                WorkerLostError(
                                    f"remote worker {slot.label} (pid {pid}) was lost while "
                                    f"evaluating item {index} of task {task}: {reason}"
                                ),
                            )
                        )
                again.extend(b.again(b.tries) for b in started[1:])
            again.extend(waiting)
            orphans = [b for b in again if not self._assign(b)]
        if slot.link is not None:
            slot.link.abort()
        if failed and self._deliver is not None:
            self._deliver(failed)
        if orphans:
            self._orphans(
                orphans, f"every remote worker was lost (the last: {slot.label}, {reason})"
            )
