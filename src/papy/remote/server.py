"""papy's remote worker server: ``python -m papy.remote serve`` or ``papy-worker``.

An RPyC server whose service (``PAPYWORKER``) exposes three calls and nothing
else: ``hello()``, ``define(task, payload)`` (a task's pickled function, once per
connection) and ``run(batch)`` (pickled tasklets in, pickled results out). The
evaluation itself is :class:`papy._pools._remote_worker.Worker`, one per connection.

By default each connection is served by its own forked process (``--mode
forking``, POSIX), so ``worker_remote=[(host, n)]`` gives ``n`` processes running
in parallel; ``--mode threaded`` serves every connection from a thread of one
process (fine for I/O-bound functions or code that releases the GIL).

Security: a client sends pickled functions, so whoever can connect can run any
code as the server's user. The server binds to 127.0.0.1 unless told
otherwise; on any other interface use TLS with client certificates
(``--ssl-keyfile``, ``--ssl-certfile`` and ``--ssl-cafile``), so that only clients
holding a certificate signed by that CA are accepted.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .._pools._remote_worker import Worker

__all__ = ["DEFAULT_PORT", "add_serve_arguments", "main", "make_server", "serve"]

DEFAULT_PORT = 18812
DEFAULT_HOST = "127.0.0.1"
#: the service a client meets when the server is at its connection limit
FULL_SERVICE = "PAPYWORKERFULL"


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
        """The calls a papy client needs, and nothing else."""

        ALIASES = ("PAPYWORKER",)

        def on_connect(self, conn: Any) -> None:
            self._conn = conn
            self._worker = Worker()

        def exposed_hello(self) -> tuple[Any, ...]:
            return self._worker.hello()  # type: ignore[no-any-return]

        def exposed_define(self, task: int, payload: bytes) -> None:
            if type(task) is not int or type(payload) is not bytes:
                raise TypeError("define(task, payload) takes an int and bytes")
            self._worker.define(task, payload)

        def exposed_run(self, data: bytes) -> bytes:
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


def _capped(base: type) -> type:
    """``base`` (rpyc's ForkingServer or ThreadedServer) serving at most
    ``max_connections`` clients at once; the next one meets the ``FULL_SERVICE``,
    which only says why, in a short-lived thread."""

    forking = base.__name__ == "ForkingServer"

    class CappedServer(base):  # type: ignore[misc]
        max_connections = 1 << 30

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._children: set[int] = set()  # the connections' processes (forking)
            if forking:  # replaces rpyc's handler, which only reaps
                signal.signal(signal.SIGCHLD, self._reap)

        def _active(self) -> int:
            if forking:
                return len(self._children)
            return max(0, len(self.clients) - 1)  # accept() added the new socket already

        def _accept_method(self, sock: Any) -> None:
            if self._active() >= self.max_connections:
                self.clients.discard(sock)
                threading.Thread(target=self._refuse, args=(sock,), daemon=True).start()
                return
            if not forking:
                super()._accept_method(sock)
                return
            pid = os.fork()
            if pid == 0:  # the connection's process
                code = 0
                try:
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    self.listener.close()
                    self.clients.clear()
                    self._authenticate_and_serve_client(sock)
                except Exception:
                    self.logger.exception("the connection's process failed")
                    code = 1
                finally:
                    os._exit(code)
            self._children.add(pid)
            sock.close()
            self.clients.discard(sock)

        def _reap(self, signum: int, frame: Any) -> None:
            try:
                while True:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                    if pid <= 0:
                        return
                    self._children.discard(pid)
            except ChildProcessError:
                return

        def _refuse(self, sock: Any) -> None:
            """Tell a client beyond the limit why it is turned away, then close."""
            import time

            from rpyc.core.stream import SocketStream
            from rpyc.utils.factory import connect_stream

            why = (
                f"it serves {self.max_connections} connections already, its limit "
                "(papy-worker --max-connections)"
            )
            self.logger.warning("refused a client from %s: %s", _peer(sock), why)
            try:
                sock.settimeout(10.0)
                if self.authenticator is not None:
                    sock, _ = self.authenticator(sock)
                conn = connect_stream(SocketStream(sock), _full_service(why), dict(_SERVICE_CONFIG))
                deadline = time.monotonic() + 10.0
                while not conn.closed and time.monotonic() < deadline:
                    conn.serve(0.5)
            except Exception:  # noqa: BLE001, S110 - a refused client may vanish at any time
                pass
            finally:
                try:
                    sock.close()
                except OSError:
                    pass

    return CappedServer


def _full_service(why: str) -> type:
    import rpyc

    class FullService(rpyc.Service):  # type: ignore[misc]
        ALIASES = (FULL_SERVICE,)

        def exposed_why(self) -> str:
            return why

    return FullService


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
) -> Any:
    """Build (and bind) the server; ``server.start()`` serves until interrupted.

    ``port=0`` picks a free port (``server.port`` tells which). ``mode`` is
    ``'forking'`` (default on POSIX) or ``'threaded'``. At most
    ``max_connections`` clients are served at once (default
    :func:`default_max_connections`); a client beyond that is told so and
    closed, instead of getting a process or thread of its own. Without rpyc
    (the ``remote`` extra), raises :class:`~papy.remote.RemoteDependencyError`.
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
) -> None:
    """Serve papy's worker service until interrupted (Ctrl-C or SIGTERM).

    ``preload`` names modules imported once, before serving: in forking mode
    every connection's process then starts with them loaded, instead of
    importing them when a task's function is defined.
    """
    import importlib
    import signal

    for module in preload:
        importlib.import_module(module)
    server = make_server(
        host, port, mode, ssl_keyfile, ssl_certfile, ssl_cafile, max_connections=max_connections
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

    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, stop)
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
        f"(default: 4 per CPU, at least 16; here {default_max_connections()})",
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
        serve(
            args.host,
            args.port,
            args.mode,
            args.ssl_keyfile,
            args.ssl_certfile,
            args.ssl_cafile,
            ready,
            args.preload,
            args.max_connections,
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
