"""papy's remote worker server: ``python -m papy.remote serve`` or ``papy-worker``.

An RPyC server whose service (``PAPYWORKER``) exposes three calls and nothing
else: ``hello()``, ``define(task, payload)`` (a task's pickled function, once per
connection) and ``run(batch)`` (pickled tasklets in, pickled results out). The
evaluation itself is :class:`papy.remote._worker.Worker`, one per connection.

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
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._worker import Worker

__all__ = ["DEFAULT_PORT", "add_serve_arguments", "main", "make_server", "serve"]

DEFAULT_PORT = 18812
DEFAULT_HOST = "127.0.0.1"

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

        def exposed_stream(self) -> None:
            """Leave RPyC: from here on the connection carries papy's own framed
            messages (those of a local worker's pipes), until the client closes it."""
            from .._pools._child import _Endpoint, serve

            sock = self._conn._channel.stream.sock
            serve(_Endpoint(sock=sock), self._worker.runnable())

    return PapyWorkerService


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
) -> Any:
    """Build (and bind) the server; ``server.start()`` serves until interrupted.

    ``port=0`` picks a free port (``server.port`` tells which). ``mode`` is
    ``'forking'`` (default on POSIX) or ``'threaded'``. Without rpyc (the
    ``remote`` extra), raises :class:`~papy.remote.RemoteDependencyError`.
    """
    from .._pools.remote import import_rpyc

    import_rpyc()
    from rpyc.utils.server import ForkingServer, ThreadedServer

    if mode is None:
        mode = "forking" if hasattr(os, "fork") else "threaded"
    if mode not in ("forking", "threaded"):
        raise ValueError(f"mode must be 'forking' or 'threaded', got {mode!r}")
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
        authenticator = SSLAuthenticator(ssl_keyfile, ssl_certfile, ssl_cafile)
    factory = ForkingServer if mode == "forking" else ThreadedServer
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
    server = make_server(host, port, mode, ssl_keyfile, ssl_certfile, ssl_cafile)
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
            f"papy-worker serving on {server.host}:{server.port} ({server.papy_mode}, {tls}, pid {os.getpid()})",
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
