"""papy's remote worker server: ``python -m papy.remote serve`` or ``papy-worker``.

An RPyC server whose service (``PAPYWORKER``) exposes three calls and nothing
else: ``hello()``, ``define(task, payload)`` (a task's pickled function, once per
connection) and ``run(batch)`` (pickled tasklets in, pickled results out). The
evaluation itself is :class:`papy._pools._remote_worker.Worker`, one per connection.

By default each connection is served by its own forked process (``--mode
forking``, POSIX), so ``worker_remote=[(host, n)]`` gives ``n`` processes running
in parallel; ``--mode threaded`` serves every connection from a thread of one
process (fine for I/O-bound functions or code that releases the GIL).

The server stays in control of its connections. The main process accepts every
connection in one loop and gives it a process (or thread) only once the client
has sent something; a connection must finish the handshake (TLS, RPyC and the
first call of papy's service) within ``--handshake-timeout`` seconds of being
accepted, or it is closed. Only a connection whose client asked for the service
takes one of the ``--max-connections`` slots: idle or half-open connections never
lock real clients out. A connection's process watches its client's socket and
ends itself, the running function with it, as soon as the client is gone.

Security: a client sends pickled functions, so whoever can connect can run any
code as the server's user. The server binds to 127.0.0.1 unless told
otherwise; on any other interface use TLS with client certificates
(``--ssl-keyfile``, ``--ssl-certfile`` and ``--ssl-cafile``), so that only clients
holding a certificate signed by that CA are accepted.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .._pools._remote_worker import Worker

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_PORT",
    "add_serve_arguments",
    "main",
    "make_server",
    "serve",
]

DEFAULT_PORT = 18812
DEFAULT_HOST = "127.0.0.1"
#: the service a client meets when the server is at its connection limit
FULL_SERVICE = "PAPYWORKERFULL"
#: seconds a connection has, from being accepted, to finish its handshake
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
#: accepted connections that have not sent anything yet, at most (the oldest goes)
MAX_WAITING = 256
#: connections in their handshake at once, at least (their processes or threads)
MIN_HANDSHAKES = 64


def default_max_connections() -> int:
    """Connections served at once by default: 4 per CPU, at least 16."""
    return max(16, 4 * (os.cpu_count() or 1))


_SERVICE_CONFIG = {
    "allow_public_attrs": False,
    "allow_all_attrs": False,
    "allow_setattr": False,
    "allow_delattr": False,
    "allow_pickle": False,
    "import_custom_exceptions": False,
    "instantiate_custom_exceptions": False,
    "sync_request_timeout": None,
    "bind_threads": False,
}


def _service_class() -> type:
    from .._pools.remote import import_rpyc

    import_rpyc()  # or an error that says how to install it
    import rpyc

    class PapyWorkerService(rpyc.Service):  # type: ignore[misc]
        """The calls a papy client needs, and nothing else.

        A client takes a slot when it asks for the service's name (its first
        call); at the server's limit it meets ``FULL_SERVICE`` instead, whose
        ``why()`` says so. Its first call of papy's service ends the handshake."""

        ALIASES = ("PAPYWORKER",)

        def __init__(self, gate: _Gate | None = None) -> None:
            self._gate = gate
            self._claimed = gate is None
            self._refused: str | None = None  # why the server turned this client away

        def on_connect(self, conn: Any) -> None:
            self._conn = conn
            self._worker = Worker()

        def exposed_get_service_name(self) -> str:
            if not self._claimed and self._refused is None and self._gate is not None:
                self._refused = self._gate.claim()
                self._claimed = self._refused is None
            return FULL_SERVICE if self._refused is not None else str(self.get_service_name())

        def exposed_why(self) -> str:
            return self._refused or ""

        def _served(self) -> None:
            """A call of papy's service: the handshake is over, if the client has a slot."""
            if not self._claimed:
                self.exposed_get_service_name()
            if self._refused is not None:
                raise ConnectionRefusedError(f"the server refused the connection: {self._refused}")
            if self._gate is not None:
                self._gate.handshaken()

        def exposed_hello(self) -> tuple[Any, ...]:
            self._served()
            return self._worker.hello()  # type: ignore[no-any-return]

        def exposed_define(self, task: int, payload: bytes) -> None:
            self._served()
            if type(task) is not int or type(payload) is not bytes:
                raise TypeError("define(task, payload) takes an int and bytes")
            self._worker.define(task, payload)

        def exposed_run(self, data: bytes) -> bytes:
            self._served()
            if type(data) is not bytes:
                raise TypeError("run(data) takes bytes")
            return self._worker.run(data)  # type: ignore[no-any-return]

        def exposed_stream(self, heartbeat: float | None = None) -> None:
            """Leave RPyC: from here on the connection carries papy's own framed
            messages (those of a local worker's pipes), until the client closes it.

            ``heartbeat`` (seconds): send an empty frame that often, so that the
            client detects a frozen or unreachable server; a client that stops
            answering is dropped after a few of them (``_drop_dead_peer``)."""
            from .._pools._child import _Endpoint, serve

            self._served()
            interval = 0.0
            if heartbeat is not None:
                if type(heartbeat) not in (int, float) or not 0 < heartbeat <= 3600:
                    raise ValueError("heartbeat must be a number of seconds in (0, 3600]")
                interval = float(heartbeat)
            sock = self._conn._channel.stream.sock
            _drop_dead_peer(sock, interval)
            endpoint = _Endpoint(sock=sock, heartbeat=interval)
            try:
                serve(endpoint, self._worker.runnable())
            finally:
                endpoint.close()

    return PapyWorkerService


def _logged(authenticator: Any, log: logging.Logger) -> Callable[[Any], Any]:
    """The TLS authenticator, saying in the server's log why a client was refused
    (a missing or untrusted client certificate, a client without TLS)."""
    from rpyc.utils.authenticators import AuthenticationError

    def authenticate(sock: Any) -> Any:
        peer = _peer(sock)
        try:
            return authenticator(sock)
        except AuthenticationError as exc:
            log.warning("refused a client from %s: TLS handshake failed: %s", peer, exc)
            raise

    return authenticate


#: poll events that say a client is gone (a peer that shut its side, a reset)
_RDHUP = getattr(select, "POLLRDHUP", 0)
_GONE = _RDHUP | getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0)


class _Gate:
    """One connection's side of the server's bookkeeping, in the process or thread
    that serves it: its slot (asked of the main process over ``ctl``), its
    handshake deadline, and a thread that watches its client's socket.

    The watching thread closes the connection when the handshake is not over by
    the deadline; after the handshake, as soon as the client is gone (it shut its
    side of the connection, the connection was reset, or TCP gave up on it). In
    a forked connection process it ends the process, a function running there
    included.
    """

    def __init__(
        self,
        ctl: socket.socket,
        sock: socket.socket,
        timeout: float,
        limit: int,
        forked: bool,
        logger: logging.Logger,
    ) -> None:
        self._ctl = ctl
        self._sock = sock  # the TCP socket (under TLS, if any)
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._limit = limit
        self._forked = forked
        self._logger = logger
        self._peer = _peer(sock)
        self._handshaken = threading.Event()
        self._closed = False

    def start(self) -> None:
        threading.Thread(target=self._watch, name="papy-connection-watch", daemon=True).start()

    def claim(self) -> str | None:
        """Take a slot: None, or why the server turns this client away."""
        try:
            self._ctl.settimeout(10.0)
            self._ctl.sendall(b"?")
            answer = self._ctl.recv(1)
        except OSError:
            answer = b""
        if answer == b"+":
            return None
        if answer == b"-":
            why = (
                f"it serves {self._limit} connections already, its limit "
                "(papy-worker --max-connections)"
            )
        else:
            why = "it is shutting down"
        self._logger.warning("refused a client from %s: %s", self._peer, why)
        return why

    def handshaken(self) -> None:
        self._handshaken.set()

    def close(self) -> None:
        """The connection is over: tell the main process (its end reads EOF)."""
        self._closed = True
        self._handshaken.set()  # wakes the watching thread, which then leaves
        try:
            self._ctl.close()
        except OSError:
            pass

    def _watch(self) -> None:
        # the handshake: only its deadline (a client that leaves meanwhile is
        # seen by the connection itself, which then says why in the log)
        handshaken = self._handshaken.wait(max(0.0, self._deadline - time.monotonic()))
        if self._closed:
            return
        if not handshaken:
            self._end(f"no handshake within {self._timeout:g} s")
            return
        if not hasattr(select, "poll"):
            return
        poller = select.poll()
        poller.register(self._sock.fileno(), _RDHUP or select.POLLIN)
        while not self._closed:
            for _, mask in poller.poll(500):
                if mask & select.POLLNVAL:  # closed here: the connection is over
                    return
                if self._gone(mask):
                    self._end("the client closed the connection or is gone")
                    return

    def _gone(self, mask: int) -> bool:
        if mask & _GONE:
            return True
        # no POLLRDHUP here: readable means a request or the end of the connection
        flags = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)
        if flags == socket.MSG_PEEK:
            time.sleep(0.5)
            return False
        try:
            with socket.socket(fileno=os.dup(self._sock.fileno())) as probe:
                if not probe.recv(1, flags):
                    return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        time.sleep(0.5)  # a request waits for the busy connection: look again later
        return False

    def _end(self, why: str) -> None:
        if self._closed:
            return
        self._logger.info("closed the connection from %s: %s", self._peer, why)
        if self._forked:
            os._exit(0)
        try:  # wakes the connection's thread, which then ends (after its function)
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Handler:
    """(main process) A connection being served: its process or thread, and the
    main process's end of its control socket."""

    __slots__ = ("ctl", "pid", "served")

    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.pid = 0
        self.served = False  # it holds a slot


def _capped(base: type) -> type:
    """``base`` (rpyc's ForkingServer or ThreadedServer) in control of its
    connections: one loop in the main process accepts them, closes those that
    send nothing by the handshake deadline, and starts a process or thread for
    each of the others; at most ``max_connections`` of those hold a slot at once
    (the next client meets the ``FULL_SERVICE``, which only says why).

    The loop, and nothing else, runs in the main process: a forking server never
    forks while other threads of its own run.
    """

    forking = base.__name__ == "ForkingServer"

    class CappedServer(base):  # type: ignore[misc]
        max_connections = 1 << 30
        handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            import selectors

            super().__init__(*args, **kwargs)
            if forking:  # replaces rpyc's handler: the loop reaps the connections' processes
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.listener.setblocking(False)
            self._selector = selectors.DefaultSelector()
            self._selector.register(self.listener, selectors.EVENT_READ, ("listen", None))
            self._waiting: dict[socket.socket, float] = {}  # silent so far, and their deadline
            self._queue: deque[tuple[socket.socket, float]] = deque()  # spoke, wait for a start
            self._handlers: dict[socket.socket, _Handler] = {}  # by their control socket
            self._by_pid: dict[int, _Handler] = {}

        # -- the main process's loop (rpyc's start() calls accept() while active)
        def accept(self) -> None:
            if not self.active:
                return
            now = time.monotonic()
            timeout = 0.5
            if self._waiting:
                timeout = min(timeout, next(iter(self._waiting.values())) - now)
            if self._queue:
                timeout = min(timeout, self._queue[0][1] - now)
            for key, _ in self._selector.select(max(0.0, timeout)):
                kind, obj = key.data
                if kind == "listen":
                    self._accept_all()
                elif kind == "wait":
                    self._spoke(obj)
                else:
                    self._control(obj)
            self._reap()
            self._expire()
            self._dispatch()

        def _accept_all(self) -> None:
            import selectors

            while self.active:
                try:
                    sock, _ = self.listener.accept()
                except (TimeoutError, BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    if exc.errno == errno.ECONNABORTED:
                        continue
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        self.logger.warning("cannot accept a connection: %s", exc)
                        if self._waiting:  # make room: the oldest silent connection goes
                            self._close_waiting(next(iter(self._waiting)), "to make room")
                        else:
                            time.sleep(0.1)
                        return
                    if not self.active:
                        return
                    raise EOFError from exc
                sock.setblocking(True)
                self.logger.info("accepted %s", _peer(sock))
                self._waiting[sock] = time.monotonic() + self.handshake_timeout
                self._selector.register(sock, selectors.EVENT_READ, ("wait", sock))
                if len(self._waiting) + len(self._queue) > MAX_WAITING:
                    self._close_waiting(next(iter(self._waiting)), "too many wait")

        def _close_waiting(self, sock: socket.socket, why: str) -> None:
            self.logger.info("closed the connection from %s: %s", _peer(sock), why)
            del self._waiting[sock]
            self._selector.unregister(sock)
            _close(sock)

        def _spoke(self, sock: socket.socket) -> None:
            """A waiting connection sent something (or closed): queue it for a start."""
            self._selector.unregister(sock)
            del self._waiting[sock]
            try:
                alive = bool(sock.recv(1, socket.MSG_PEEK))
            except OSError:
                alive = False
            if not alive:  # it left without a word
                _close(sock)
                return
            self._queue.append((sock, time.monotonic() + self.handshake_timeout))

        def _expire(self) -> None:
            now = time.monotonic()
            while self._waiting:
                sock, deadline = next(iter(self._waiting.items()))
                if deadline > now:
                    break
                self._close_waiting(sock, f"it sent nothing within {self.handshake_timeout:g} s")
            while self._queue and self._queue[0][1] <= now:
                sock, _ = self._queue.popleft()
                self.logger.info(
                    "closed the connection from %s: no room for its handshake within %g s",
                    _peer(sock),
                    self.handshake_timeout,
                )
                _close(sock)

        def _dispatch(self) -> None:
            """Start the queued connections there is room for."""
            room = max(MIN_HANDSHAKES, self.max_connections)
            while self._queue:
                starting = sum(1 for h in self._handlers.values() if not h.served)
                if starting >= room:
                    return
                sock, _ = self._queue.popleft()
                self._start(sock)

        def _start(self, sock: socket.socket) -> None:
            import selectors

            ours, theirs = socket.socketpair()
            handler = _Handler(ours)
            if forking:
                pid = os.fork()
                if pid == 0:  # the connection's process
                    code = 0
                    try:
                        ours.close()
                        self._forget()
                        self._serve_connection(sock, theirs, True)
                    except Exception:
                        self.logger.exception("the connection's process failed")
                        code = 1
                    finally:
                        os._exit(code)
                handler.pid = pid
                self._by_pid[pid] = handler
                theirs.close()
                sock.close()
            else:
                self.clients.add(sock)  # rpyc's close() shuts them down
                threading.Thread(
                    target=self._serve_in_thread,
                    args=(sock, theirs),
                    name=f"papy-connection-{_peer(sock)}",
                    daemon=True,
                ).start()
            self._handlers[ours] = handler
            self._selector.register(ours, selectors.EVENT_READ, ("ctl", handler))

        def _control(self, handler: _Handler) -> None:
            """A connection claims a slot, or has ended (its end of ``ctl`` closed)."""
            try:
                data = handler.ctl.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._drop(handler)
                return
            granted = handler.served or self._served() < self.max_connections
            handler.served = granted
            try:
                handler.ctl.sendall(b"+" if granted else b"-")
            except OSError:
                self._drop(handler)

        def _served(self) -> int:
            return sum(1 for h in self._handlers.values() if h.served)

        def _drop(self, handler: _Handler) -> None:
            if self._handlers.pop(handler.ctl, None) is None:
                return
            self._by_pid.pop(handler.pid, None)
            self._selector.unregister(handler.ctl)
            _close(handler.ctl)

        def _reap(self) -> None:
            if not forking:
                return
            while True:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid <= 0:
                    return
                handler = self._by_pid.get(pid)
                if handler is not None:  # its process ended before its control socket did
                    self._drop(handler)

        def _forget(self) -> None:
            """(in a connection's process) Close what belongs to the main process."""
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.listener.close()
            for sock in list(self._waiting) + [sock for sock, _ in self._queue]:
                sock.close()
            for ctl in self._handlers:
                ctl.close()
            self._waiting.clear()
            self._queue.clear()
            self._handlers.clear()
            self._by_pid.clear()
            self._selector.close()  # its own reference to the loop's epoll, if any
            self.clients.clear()

        def close(self) -> None:
            if self._closed:
                return
            super().close()
            for sock in list(self._waiting) + [sock for sock, _ in self._queue]:
                _close(sock)
            for ctl in self._handlers:
                _close(ctl)
            self._waiting.clear()
            self._queue.clear()
            self._handlers.clear()
            self._by_pid.clear()
            self._selector.close()

        # -- a connection's process or thread
        def _serve_in_thread(self, sock: socket.socket, ctl: socket.socket) -> None:
            try:
                self._serve_connection(sock, ctl, False)
            except Exception:
                self.logger.exception("a connection failed")
            finally:
                self.clients.discard(sock)

        def _serve_connection(self, sock: socket.socket, ctl: socket.socket, forked: bool) -> None:
            """TLS (if any), then RPyC until the client leaves; in the gate's watch."""
            from rpyc.core import Channel, SocketStream
            from rpyc.utils.authenticators import AuthenticationError

            gate = _Gate(
                ctl, sock, self.handshake_timeout, self.max_connections, forked, self.logger
            )
            gate.start()
            _drop_dead_peer(sock, 0.0)
            peer = _peer(sock)
            try:
                stream_sock, credentials = sock, None
                if self.authenticator is not None:
                    try:
                        stream_sock, credentials = self.authenticator(sock)
                    except AuthenticationError:
                        return  # the authenticator said why
                try:
                    endpoints = (stream_sock.getsockname(), stream_sock.getpeername())
                except OSError:
                    return  # the client is gone already
                self.logger.info("welcome %s", peer)
                config = dict(
                    self.protocol_config,
                    credentials=credentials,
                    endpoints=endpoints,
                    logger=self.logger,
                )
                conn = self.service(gate)._connect(Channel(SocketStream(stream_sock)), config)
                conn.serve_all()
            finally:
                gate.close()
                self.logger.info("goodbye %s", peer)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    return CappedServer


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _peer(sock: Any) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "a client"


def _drop_dead_peer(sock: Any, heartbeat: float) -> None:
    """Let the kernel give up on a client that is gone (a partition, a dead host):
    keepalive probes on an idle connection, and a bound on how long sent data may
    stay unacknowledged, so the connection's process ends instead of lingering."""
    raw = getattr(sock, "_sock", sock)  # an SSLSocket wraps the socket
    grace = max(30.0, 6 * heartbeat)
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), int(grace / 2)),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), 5),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), 3),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), int(grace * 1000)),
    ]
    for level, name, value in options:
        if name is None:
            continue
        try:
            raw.setsockopt(level, name, value)
        except (OSError, AttributeError):
            pass


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    mode: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_certfile: str | None = None,
    ssl_cafile: str | None = None,
    logger: logging.Logger | None = None,
    max_connections: int | None = None,
    handshake_timeout: float | None = None,
) -> Any:
    """Build (and bind) the server; ``server.start()`` serves until interrupted.

    ``port=0`` picks a free port (``server.port`` tells which). ``mode`` is
    ``'forking'`` (default on POSIX) or ``'threaded'``. At most
    ``max_connections`` clients are served at once (default
    :func:`default_max_connections`); a client beyond that is told so and
    closed, instead of getting a process or thread of its own. A connection
    that has not finished its handshake ``handshake_timeout`` seconds after it
    was accepted (default :data:`DEFAULT_HANDSHAKE_TIMEOUT`) is closed, and
    takes no slot meanwhile. Without rpyc (the ``remote`` extra), raises
    :class:`~papy.remote.RemoteDependencyError`.
    """
    from .._pools.remote import import_rpyc

    import_rpyc()
    from rpyc.utils.server import ForkingServer, ThreadedServer

    if mode is None:
        mode = "forking" if hasattr(os, "fork") else "threaded"
    if mode not in ("forking", "threaded"):
        raise ValueError(f"mode must be 'forking' or 'threaded', got {mode!r}")
    if max_connections is None:
        max_connections = default_max_connections()
    if isinstance(max_connections, bool) or not isinstance(max_connections, int):
        raise TypeError(f"max_connections must be an int, got {max_connections!r}")
    if max_connections < 1:
        raise ValueError(f"max_connections must be >= 1, got {max_connections}")
    if handshake_timeout is None:
        handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT
    if isinstance(handshake_timeout, bool) or not isinstance(handshake_timeout, (int, float)):
        raise TypeError(f"handshake_timeout must be a number of seconds, got {handshake_timeout!r}")
    if not 0 < handshake_timeout <= 3600:
        raise ValueError(
            f"handshake_timeout must be between 0 and 3600 seconds, got {handshake_timeout}"
        )
    if (ssl_keyfile is None) != (ssl_certfile is None):
        raise ValueError("TLS needs both --ssl-keyfile and --ssl-certfile")
    if ssl_cafile is not None and ssl_keyfile is None:
        raise ValueError("--ssl-cafile needs --ssl-keyfile and --ssl-certfile")
    authenticator = None
    if ssl_keyfile is not None:
        import ssl

        from rpyc.utils.authenticators import SSLAuthenticator

        # Fail now, not at the first client, if the files are wrong.
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ssl_cafile)
        ctx.load_cert_chain(ssl_certfile, ssl_keyfile)  # type: ignore[arg-type]
        authenticator = _logged(
            SSLAuthenticator(ssl_keyfile, ssl_certfile, ssl_cafile),
            logger or logging.getLogger("papy.remote.server"),
        )
    factory = _capped(ForkingServer if mode == "forking" else ThreadedServer)
    server = factory(
        _service_class(),
        hostname=host,
        port=port,
        reuse_addr=True,
        authenticator=authenticator,
        protocol_config=dict(_SERVICE_CONFIG),
        logger=logger or logging.getLogger("papy.remote.server"),
        auto_register=False,
    )
    server.papy_mode = mode
    server.max_connections = max_connections
    server.handshake_timeout = float(handshake_timeout)
    # small replies must not wait for delayed ACKs (accepted sockets inherit this)
    server.listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # listen now (rpyc would at start()), so clients may connect as soon as this returns
    server.listener.listen(server.backlog)
    return server


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    mode: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_certfile: str | None = None,
    ssl_cafile: str | None = None,
    ready: Callable[[Any], None] | None = None,
    preload: Sequence[str] = (),
    max_connections: int | None = None,
    handshake_timeout: float | None = None,
) -> None:
    """Serve papy's worker service until interrupted (Ctrl-C or SIGTERM).

    ``preload`` names modules imported once, before serving: in forking mode
    every connection's process then starts with them loaded, instead of
    importing them when a task's function is defined. ``max_connections`` and
    ``handshake_timeout`` (default :data:`DEFAULT_HANDSHAKE_TIMEOUT` seconds):
    see :func:`make_server` (``papy-worker --max-connections`` and
    ``--handshake-timeout``).
    """
    _serve(
        host,
        port,
        mode,
        ssl_keyfile,
        ssl_certfile,
        ssl_cafile,
        ready,
        preload,
        max_connections,
        handshake_timeout,
    )


def _serve(
    host: str,
    port: int,
    mode: str | None,
    ssl_keyfile: str | None,
    ssl_certfile: str | None,
    ssl_cafile: str | None,
    ready: Callable[[Any], None] | None,
    preload: Sequence[str],
    max_connections: int | None,
    handshake_timeout: float | None,
) -> None:
    import importlib
    import signal

    for module in preload:
        importlib.import_module(module)
    server = make_server(
        host,
        port,
        mode,
        ssl_keyfile,
        ssl_certfile,
        ssl_cafile,
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
    )
    if ready is not None:
        ready(server)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # rpyc's start() closes the listener on it

    def in_child() -> None:
        # a forked connection process dies on SIGTERM/SIGINT (its client sees
        # the worker lost) instead of reporting them as the function's error
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    if hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)  # (only the main thread may set it)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=in_child)
    server.start()


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"interface to listen on (default: {DEFAULT_HOST}, this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port (default: {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--mode",
        choices=("forking", "threaded"),
        default=None,
        help="one process per connection (default on POSIX) or one thread per connection",
    )
    parser.add_argument("--ssl-keyfile", help="TLS: this server's private key (PEM)")
    parser.add_argument("--ssl-certfile", help="TLS: this server's certificate (PEM)")
    parser.add_argument(
        "--ssl-cafile",
        help="TLS: CA certificates (PEM); clients must present a certificate signed by one",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help="clients served at once; the next ones are told the server is full "
        f"(default: 4 per CPU, at least 16; here {default_max_connections()}). A connection "
        "takes a slot only once its client asks for the service",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="close a connection that has not finished its handshake (TLS, RPyC and papy's "
        "first call) this long after it was accepted; until then it takes no slot "
        f"(default: {DEFAULT_HANDSHAKE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE before serving, so that each connection starts with it loaded "
        "(repeatable; e.g. the modules your functions live in, numpy, ...)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log connections and refused clients to stderr"
    )


def run_from_args(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s papy-worker[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not _is_loopback(args.host) and args.ssl_cafile is None:
        print(
            f"papy-worker: WARNING: listening on {args.host or 'every interface'} without "
            "TLS client certificates: anyone who can reach this port can run any code "
            "as this user. Use --ssl-keyfile/--ssl-certfile/--ssl-cafile, or a trusted network only.",
            file=sys.stderr,
            flush=True,
        )

    def ready(server: Any) -> None:
        tls = (
            "TLS, client certificates required"
            if args.ssl_cafile
            else ("TLS" if args.ssl_keyfile else "no TLS")
        )
        print(
            f"papy-worker serving on {server.host}:{server.port} ({server.papy_mode}, {tls}, "
            f"at most {server.max_connections} connections, pid {os.getpid()})",
            flush=True,
        )

    try:
        _serve(
            args.host,
            args.port,
            args.mode,
            args.ssl_keyfile,
            args.ssl_certfile,
            args.ssl_cafile,
            ready,
            args.preload,
            args.max_connections,
            args.handshake_timeout,
        )
    except (OSError, ValueError, ImportError) as exc:
        print(f"papy-worker: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``papy-worker [serve] [options]``: serve papy's worker service."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(
        prog="papy-worker",
        description="Serve papy's remote worker (RPyC) for IMap(worker_remote=[(host, n)]).",
    )
    add_serve_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
