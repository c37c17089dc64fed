"""papy's worker server stays in control of its connections.

Hostile or broken clients must not lock others out, and a client's death ends
its work on the server:

* connections that never speak, or stall in the middle of the handshake, are
  closed after the handshake deadline (``--handshake-timeout``, 5 s by
  default) and never count against ``--max-connections`` meanwhile;
* a client that dies (SIGKILL) or stops its map while the server runs a long
  function for it ends that connection's process within a moment, freeing
  its slot.

Real servers run in subprocesses (``test_remote.papy_server``); none of this
depends on the scheduler core, so each test runs once.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

import papy
from papy import IMap
from papy.remote import RemoteConnectionError
from test_remote import papy_server, server_env, square

pytestmark = pytest.mark.timeout(60)

#: the server's default handshake deadline, in seconds
DEADLINE = 5.0


@pytest.fixture(autouse=True)
def _once(sched_implementation):
    if sched_implementation.is_pure_python:
        pytest.skip("independent of the core: runs once, in the [c] instance")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def live_children(server) -> list[psutil.Process]:
    """The server's connection processes (zombies excluded)."""
    out = []
    for child in psutil.Process(server.proc.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


def closed_after(sock: socket.socket, t0: float, limit: float) -> float | None:
    """Seconds from ``t0`` until the server closed ``sock`` (None: still open at ``limit``)."""
    sock.settimeout(max(0.05, t0 + limit - time.monotonic()))
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - t0


def wait_for(predicate, limit: float, step: float = 0.02) -> float | None:
    """Seconds until ``predicate()`` is true (None: not within ``limit``)."""
    t0 = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            return None
        time.sleep(step)


def usable(server, slots: int = 1, limit: float = 3.0) -> float:
    """Seconds until a real map with ``slots`` connections ran on ``server``."""
    t0 = time.monotonic()
    while True:
        try:
            with IMap(square, range(6), worker_num=0, worker_remote=[(server.address, slots)]) as m:
                assert list(m) == [x * x for x in range(6)]
            return time.monotonic() - t0
        except RemoteConnectionError:
            if time.monotonic() - t0 > limit:
                raise
            time.sleep(0.1)


# -- (a) connections that never speak ---------------------------------------------
@pytest.mark.parametrize("mode", ["forking", "threaded"])
def test_silent_connections_lock_nobody_out_and_are_closed_at_the_deadline(workdir, mode):
    server = papy_server(workdir, "--mode", mode, "--max-connections", "16")
    silent: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        for _ in range(20):  # more than the connection limit
            silent.append(socket.create_connection((server.host, server.port), timeout=5))
        time.sleep(0.3)  # the server accepted them all
        # a real client gets its slots at once, not when the silent ones are gone
        t1 = time.monotonic()
        with IMap(square, range(20), worker_num=0, worker_remote=[(server.address, 2)]) as m:
            assert list(m) == [x * x for x in range(20)]
        assert time.monotonic() - t1 < 3.0
        assert papy.remote.ping(server.address)["kind"] == "papy"
        # none of them got a process of its own (the map's and the ping's end)
        assert wait_for(lambda: not live_children(server), 2.0) is not None
        # and the server closes every one of them after its deadline, not before
        closed = [closed_after(s, t0, DEADLINE + 5) for s in silent]
        assert None not in closed, f"{closed.count(None)} silent connections still open"
        assert DEADLINE - 0.5 <= min(closed) and max(closed) <= DEADLINE + 3, closed
    finally:
        for s in silent:
            s.close()
        server.kill()


# -- (b) a client killed while the server runs its function ------------------------
CLIENT = """\
import sys, time
from papy import IMap

def nap(path):
    open(path, "w").close()  # the server runs the function now
    time.sleep(60)
    return path

if __name__ == "__main__":
    with IMap(nap, [sys.argv[2]], worker_num=0, worker_remote=[(sys.argv[1], 1)]) as m:
        list(m)
"""


def test_a_killed_clients_function_ends_on_the_server_and_frees_its_slot(workdir):
    server = papy_server(workdir, "--max-connections", "1")
    client = None
    try:
        script, marker = workdir / "client.py", workdir / "running"
        script.write_text(CLIENT)
        client = subprocess.Popen(
            [sys.executable, str(script), server.address, str(marker)], env=server_env()
        )
        assert wait_for(marker.exists, 20) is not None, "the function never started"
        busy = live_children(server)
        assert len(busy) == 1  # the client's connection process, in its 60 s function
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        gone = wait_for(lambda: not live_children(server), 5.0)
        assert gone is not None, "the dead client's process still runs on the server after 5 s"
        assert gone < 3.0, f"the dead client's process ran {gone:.1f} s more"
        usable(server)  # the only slot is free again
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(10)
        server.kill()


# -- (c) what else a client can do -------------------------------------------------
def test_connections_that_stall_mid_handshake_lock_nobody_out(workdir):
    """Each sends a few bytes of a message and nothing more."""
    server = papy_server(workdir, "--max-connections", "16")
    stalled: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        for _ in range(20):
            s = socket.create_connection((server.host, server.port), timeout=5)
            s.sendall(b"\x00\x01")
            stalled.append(s)
        time.sleep(0.5)
        assert usable(server, slots=2, limit=0) < 3.0
        closed = [closed_after(s, t0, DEADLINE + 5) for s in stalled]
        assert None not in closed, f"{closed.count(None)} stalled connections still open"
        assert max(closed) <= DEADLINE + 3, closed
        assert wait_for(lambda: not live_children(server), 3.0) is not None
    finally:
        for s in stalled:
            s.close()
        server.kill()


def test_stalled_tls_handshakes_lock_nobody_out(workdir):
    """Under TLS: each sends the start of a TLS record and nothing more."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(workdir / "ca.pem")
    for name, identity in (("server", "127.0.0.1"), ("client", "papy-client@example.org")):
        cert = ca.issue_cert(identity)
        cert.private_key_pem.write_to_path(workdir / f"{name}.key")
        cert.cert_chain_pems[0].write_to_path(workdir / f"{name}.pem")
    tls = ["--ssl-keyfile", str(workdir / "server.key"), "--ssl-certfile"]
    tls += [str(workdir / "server.pem"), "--ssl-cafile", str(workdir / "ca.pem")]
    server = papy_server(workdir, "--max-connections", "2", *tls)
    remote_ssl = {
        "keyfile": str(workdir / "client.key"),
        "certfile": str(workdir / "client.pem"),
        "ca_certs": str(workdir / "ca.pem"),
    }
    stalled: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        for _ in range(6):
            s = socket.create_connection((server.host, server.port), timeout=5)
            s.sendall(b"\x16\x03\x01")  # a TLS handshake record begins
            stalled.append(s)
        time.sleep(0.5)
        t1 = time.monotonic()
        with IMap(
            square,
            range(6),
            worker_num=0,
            worker_remote=[(server.address, 2)],
            remote_ssl=remote_ssl,
        ) as m:
            assert list(m) == [x * x for x in range(6)]
        assert time.monotonic() - t1 < 3.0
        closed = [closed_after(s, t0, DEADLINE + 5) for s in stalled]
        assert None not in closed, f"{closed.count(None)} stalled connections still open"
        assert max(closed) <= DEADLINE + 3, closed
    finally:
        for s in stalled:
            s.close()
        server.kill()


def test_a_client_that_stops_after_the_service_name_frees_the_last_slot(workdir):
    """It asked who serves (what takes a slot), then went quiet before hello."""
    import rpyc

    server = papy_server(workdir, "--max-connections", "1")
    try:
        conn = rpyc.connect(server.host, server.port, config={"sync_request_timeout": 10})
        t0 = time.monotonic()
        assert conn.root.get_service_name() == "PAPYWORKER"
        with pytest.raises(RemoteConnectionError, match="its limit"):
            papy.remote.ping(server.address)  # the slot is taken, for now
        closed = closed_after(conn._channel.stream.sock, t0, DEADLINE + 5)
        assert closed is not None and closed <= DEADLINE + 3, closed
        conn.close()
        usable(server)
    finally:
        server.kill()


def test_stopping_a_map_ends_the_servers_function(workdir):
    server = papy_server(workdir)
    marker = workdir / "running"

    def nap(path):
        open(path, "w").close()
        time.sleep(60)
        return path

    try:
        m = IMap(nap, [str(marker)], worker_num=0, worker_remote=[(server.address, 1)])
        assert wait_for(marker.exists, 20) is not None
        assert len(live_children(server)) == 1
        m.stop()
        gone = wait_for(lambda: not live_children(server), 5.0)
        assert gone is not None and gone < 3.0, gone
    finally:
        server.kill()


def test_the_handshake_deadline_is_an_option(workdir):
    from papy.remote.server import main, make_server

    server = papy_server(workdir, "--handshake-timeout", "1")
    try:
        s = socket.create_connection((server.host, server.port), timeout=5)
        t0 = time.monotonic()
        closed = closed_after(s, t0, 5)
        s.close()
        assert closed is not None and 0.5 <= closed <= 3.0, closed
        assert papy.remote.ping(server.address)["kind"] == "papy"
    finally:
        server.kill()
    with pytest.raises(ValueError, match="handshake_timeout"):
        make_server(port=0, mode="threaded", handshake_timeout=0)
    assert main(["--port", "0", "--handshake-timeout", "-1"]) == 1


def test_serve_takes_the_handshake_deadline(workdir):
    """serve(handshake_timeout=) reaches the server: a bad value fails at the
    call, a good one closes a silent connection at that deadline."""
    from papy.remote import serve

    for bad in (0, -1, float("nan"), "5"):
        with pytest.raises((TypeError, ValueError), match="handshake_timeout must"):
            serve(port=0, mode="threaded", handshake_timeout=bad)
    servers = []
    thread = threading.Thread(
        target=serve,
        kwargs={"port": 0, "mode": "threaded", "handshake_timeout": 1, "ready": servers.append},
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not servers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert servers, "serve() did not start"
    server = servers[0]
    try:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        closed = closed_after(s, time.monotonic(), 5)
        s.close()
        assert closed is not None and 0.5 <= closed <= 3.0, closed
    finally:
        server.close()
    thread.join(5)
