"""``python -m papy.remote serve|ping ...``: run papy's worker server, or check one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from .server import add_serve_arguments, run_from_args

    parser = argparse.ArgumentParser(
        prog="python -m papy.remote",
        description="papy's remote workers (RPyC).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve papy's worker for IMap(worker_remote=...)")
    add_serve_arguments(serve)
    ping = commands.add_parser("ping", help="connect to a worker server and say who answered")
    ping.add_argument("address", help="host or host:port (default port 18812)")
    ping.add_argument("--ssl-keyfile", help="TLS: this client's private key (PEM)")
    ping.add_argument("--ssl-certfile", help="TLS: this client's certificate (PEM)")
    ping.add_argument("--ssl-cafile", help="TLS: the CA that signed the server's certificate (PEM)")
    ping.add_argument(
        "--server-hostname",
        metavar="NAME",
        help="TLS: the name the server's certificate must carry (default: the host connected to)",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_from_args(args)

    from . import RemoteConnectionError
    from . import ping as do_ping

    remote_ssl = None
    if args.ssl_keyfile or args.ssl_certfile or args.ssl_cafile or args.server_hostname:
        remote_ssl = {
            k: v
            for k, v in (
                ("keyfile", args.ssl_keyfile),
                ("certfile", args.ssl_certfile),
                ("ca_certs", args.ssl_cafile),
                ("server_hostname", args.server_hostname),
            )
            if v
        }
    try:
        info = do_ping(args.address, remote_ssl)
    except (RemoteConnectionError, OSError, ValueError, ImportError) as exc:
        print(f"papy.remote ping: {exc}", file=sys.stderr)
        return 1
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
