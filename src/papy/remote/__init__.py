"""Remote workers: papy's RPyC worker server and the client's connection errors.

Start a server on each machine that should evaluate tasklets::

    python -m papy.remote serve --host 127.0.0.1 --port 18812     # or: papy-worker ...

then give an IMap ``worker_remote=[("host:18812", n)]`` (``n`` connections,
``worker_num=0`` for a purely remote map). A stock RPyC classic server
(``rpyc_classic``) works too, on trusted networks only. See ``docs/remote.md``.

Importing this package is cheap: rpyc is imported only when a server is
started or a remote pool connects. rpyc is the optional ``remote`` extra
(``pip install "papy2[remote]"``); without it those raise
:class:`RemoteDependencyError` (an ``ImportError``) saying so.
"""

from __future__ import annotations

from typing import Any

from .._pools.remote import INSTALL_HINT, RemoteConnectionError, RemoteDependencyError

__all__ = [
    "DEFAULT_PORT",
    "INSTALL_HINT",
    "RemoteConnectionError",
    "RemoteDependencyError",
    "make_server",
    "ping",
    "serve",
]

DEFAULT_PORT = 18812


def ping(address: str, remote_ssl: Any = None, timeout: float = 10.0) -> dict[str, Any]:
    """Connect to the remote worker at ``'host[:port]'``; return who answered.

    Raises :class:`RemoteConnectionError` if it cannot be used (down, refused,
    TLS mismatch, not a papy or classic RPyC server), and
    :class:`RemoteDependencyError` if rpyc is not installed.
    """
    from .._pools.remote import connect, ssl_context

    host, _, port_text = address.rpartition(":") if ":" in address else (address, "", "")
    port = int(port_text) if port_text else DEFAULT_PORT
    ctx = ssl_context(remote_ssl) if remote_ssl is not None else None
    server_hostname = (remote_ssl or {}).get("server_hostname")
    link = connect(host, port, ctx, server_hostname, timeout)
    try:
        return {
            "address": link.label,
            "kind": link.kind,
            "pid": link.pid,
            "hostname": link.hostname,
            "python": ".".join(map(str, link.python)),
        }
    finally:
        link.close()


def __getattr__(name: str) -> Any:
    if name in ("serve", "make_server"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'papy.remote' has no attribute {name!r}")
