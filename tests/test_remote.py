"""Remote workers over RPyC: papy's own server and the stock classic server.

Real servers are started on 127.0.0.1 in subprocesses (once per module; a
server that a test kills is started by that test). TLS certificates are made
by trustme. Servers get ``src`` and this directory on their ``PYTHONPATH``, as
a real deployment installs papy and the user's modules on every server;
lambdas and closures travel by value.
"""

from __future__ import annotations

import math
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import papy
from papy import IMap, RemoteTraceback, TaskletAbortedError, WorkerLostError
from papy.remote import RemoteConnectionError

pytestmark = pytest.mark.timeout(60)

SRC = Path(papy.__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
PAPY_READY = re.compile(r"serving on (\S+):(\d+)")
CLASSIC_READY = re.compile(r"server started on \[(\S+)\]:(\d+)")


# -- servers -------------------------------------------------------------------
def server_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(SRC), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("PYTEST_CURRENT_TEST", None)
    env.update(extra)
    return env


class Server:
    """A server subprocess in its own process group; ``address`` is 'host:port'."""

    def __init__(self, argv: list[str], ready: re.Pattern[str], cwd: Path, **env: str) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
            env=server_env(**env),
            start_new_session=True,
        )
        self.lines: list[str] = []
        found: queue.Queue[tuple[str, int] | None] = queue.Queue()

        def read() -> None:  # keeps draining, so the pipe never fills
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                m = ready.search(line)
                if m:
                    found.put((m.group(1), int(m.group(2))))
            found.put(None)

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        try:
            got = found.get(timeout=30)
        except queue.Empty:
            got = None
        if got is None:
            self.kill()
            raise RuntimeError(f"server {argv} did not start: {''.join(self.lines)}")
        self.host, self.port = got
        self.address = f"{self.host}:{self.port}"

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        # the group is gone: the reader sees the end of the pipe, which is then closed
        self.reader.join(10)
        if not self.reader.is_alive():
            assert self.proc.stdout is not None
            self.proc.stdout.close()


def papy_server(cwd: Path, *options: str, **env: str) -> Server:
    argv = [
        sys.executable,
        "-m",
        "papy.remote",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *options,
    ]
    server = Server(argv, PAPY_READY, cwd, **env)
    server.kind = "papy"
    return server


def classic_server(cwd: Path, **env: str) -> Server:
    # the stock rpyc_classic script's own entry point
    argv = [
        sys.executable,
        "-c",
        "from rpyc.cli.rpyc_classic import main; main()",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--mode",
        "forking",
    ]
    server = Server(argv, CLASSIC_READY, cwd, **env)
    server.kind = "classic"
    return server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="module")
def papy_servers(workdir: Path):
    servers = [papy_server(workdir), papy_server(workdir, "--preload", "colorsys")]
    yield servers
    for s in servers:
        s.kill()


@pytest.fixture(scope="module")
def classic(workdir: Path):
    s = classic_server(workdir)
    yield s
    s.kill()


@pytest.fixture(params=["papy", "classic"])
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "papy":
        return request.getfixturevalue("papy_servers")[0]
    return request.getfixturevalue("classic")


@pytest.fixture(scope="module")
def certs(workdir: Path) -> dict[str, str]:
    trustme = pytest.importorskip("trustme")
    d = workdir / "certs"
    d.mkdir()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(d / "ca.pem")
    for name, identity, issuer in (
        ("server", "127.0.0.1", ca),
        ("client", "papy-client@example.org", ca),
        ("rogue", "intruder@example.org", trustme.CA()),  # signed by another CA
    ):
        cert = issuer.issue_cert(identity)
        cert.private_key_pem.write_to_path(d / f"{name}.key")
        cert.cert_chain_pems[0].write_to_path(d / f"{name}.pem")
    other_ca = trustme.CA()
    other_ca.cert_pem.write_to_path(d / "other-ca.pem")
    return {p.stem if p.suffix == ".pem" else p.name: str(p) for p in d.iterdir()}


@pytest.fixture(scope="module")
def tls_server(workdir: Path, certs: dict[str, str]):
    s = papy_server(
        workdir,
        "--ssl-keyfile",
        certs["server.key"],
        "--ssl-certfile",
        certs["server"],
        "--ssl-cafile",
        certs["ca"],
    )
    yield s
    s.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collect(it):
    out = []
    while True:
        try:
            out.append(next(it))
        except StopIteration:
            return out
        except Exception as exc:  # noqa: BLE001
            out.append(exc)


def kinds(results):
    return [type(r).__name__ if isinstance(r, BaseException) else r for r in results]


# -- functions (module level: by reference; the servers can import this module)
def square(x):
    return x * x


def pid_of(x):
    time.sleep(0.02)
    return os.getpid()


def nap(x):
    time.sleep(x)
    return x


def fail_on_two(x):
    if x == 2:
        raise ValueError(f"no twos here ({x})")
    if x == 3:
        raise SystemExit(3)
    return x


def returns_lock(x):
    return threading.Lock()


def die_on_doomed(x):
    """Kills its whole server (the process group) when run on the doomed one."""
    if os.environ.get("PAPY_TEST_DOOMED"):
        os.killpg(os.getpgid(0), signal.SIGKILL)
    time.sleep(0.02)
    return x * 10


# -- basics ---------------------------------------------------------------------
def test_purely_remote_map_on_both_kinds_of_server(server):
    offset = 100
    with IMap(worker_num=0, worker_remote=[(server.address, 2)]) as m:
        assert m.stride == 2  # remote slots count in the default stride: a batch each
        sq = m.add_task(square, range(12))
        shifted = m.add_task(lambda y: y + offset, sq)  # a closure: travels by value
        roots = m.add_task(math.sqrt, shifted, kwargs={})
        pids = m.add_task(pid_of, range(4))
        m.start()
        assert list(roots) == [math.sqrt(x * x + offset) for x in range(12)]
        assert os.getpid() not in set(pids)
        assert {s["kind"] for s in m._run.pool.servers()} == {server.kind}


def test_server_kind_is_detected(papy_servers, classic):
    for s, kind in ((papy_servers[0], "papy"), (classic, "classic")):
        info = papy.remote.ping(s.address)
        assert info["kind"] == kind and info["address"] == s.address
        assert info["pid"] != os.getpid()


def test_two_servers_keep_order_and_share_work(papy_servers):
    delays = [0.06, 0.0, 0.03, 0.0, 0.05, 0.01, 0.0, 0.02]
    remote = [(s.address, 1) for s in papy_servers]
    with IMap(nap, delays, worker_remote=remote) as m:
        assert list(m) == delays
    with IMap(worker_remote=remote, ordered=False, chunksize=1) as m:
        pids = m.add_task(pid_of, range(10))
        m.start()
        assert len(set(pids)) == 2  # both servers evaluated something
    with IMap(nap, delays, worker_remote=remote, ordered=False, chunksize=3) as m:
        assert sorted(m) == sorted(delays)


def test_remote_errors_arrive_at_their_position_with_the_remote_traceback(server):
    with IMap(fail_on_two, range(5), worker_remote=[(server.address, 1)]) as m:
        got = collect(m)
    assert kinds(got) == [0, 1, "ValueError", "TaskletAbortedError", 4]
    cause = got[2].__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "fail_on_two" in cause.tb and "no twos here (2)" in cause.tb
    assert f"on remote worker {server.address}" in cause.tb
    assert isinstance(got[3], TaskletAbortedError) and "SystemExit" in str(got[3])


def test_serialization_failures_stay_at_their_item(server):
    items = [1, threading.Lock(), 3]
    with IMap(square, items, worker_remote=[(server.address, 1)], chunksize=3) as m:
        assert kinds(collect(m)) == [1, "SerializationError", 9]
    with IMap(returns_lock, range(2), worker_remote=[(server.address, 1)]) as m:
        got = collect(m)
    assert kinds(got) == ["SerializationError"] * 2
    assert "could not be pickled" in str(got[0])


def test_function_missing_on_the_server_fails_each_item_clearly(
    papy_servers, tmp_path, monkeypatch
):
    (tmp_path / "papy_client_only.py").write_text("def triple(x):\n    return 3 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import papy_client_only

    try:
        with IMap(
            papy_client_only.triple, range(3), worker_remote=[(papy_servers[0].address, 1)]
        ) as m:
            got = collect(m)
    finally:
        sys.modules.pop("papy_client_only", None)
    assert kinds(got) == ["SerializationError"] * 3
    assert "papy_client_only" in str(got[0]) and "could not be unpickled" in str(got[0])


def test_the_function_is_sent_once_per_connection_not_with_items(papy_servers, monkeypatch):
    from papy._pools import _io, remote

    sent: dict[str, list[int]] = {"define": [], "run": []}
    real_connect = remote.connect

    def recording_connect(*args, **kwargs):
        link = real_connect(*args, **kwargs)
        define = link.define
        link.define = lambda task, payload: (
            sent["define"].append(len(payload)),
            define(task, payload),
        )[1]
        return link

    real_send = _io.SocketChannel.send

    def recording_send(self, data):  # the framed messages: one per batch of items
        sent["run"].append(len(data))
        return real_send(self, data)

    monkeypatch.setattr(remote, "connect", recording_connect)
    monkeypatch.setattr(_io.SocketChannel, "send", recording_send)
    big = b"x" * 200_000  # a constant argument: part of the function's payload
    with IMap(worker_remote=[(papy_servers[0].address, 2)], chunksize=1) as m:
        out = m.add_task(lambda x, blob: x + len(blob), range(10), args=(big,))
        m.start()
        assert list(out) == [x + len(big) for x in range(10)]
    assert len(sent["define"]) == 2 and min(sent["define"]) > len(big)  # once per connection
    assert 1 <= len(sent["run"]) <= 10 and max(sent["run"]) < 1000  # items only


def test_preloaded_modules_are_there_before_any_function_needs_them(papy_servers):
    def loaded(name):
        return name in sys.modules  # a closure: travels by value, imports nothing

    with IMap(loaded, ["colorsys"], worker_remote=[(papy_servers[1].address, 1)]) as m:
        assert list(m) == [True]
    with IMap(loaded, ["colorsys"], worker_remote=[(papy_servers[0].address, 1)]) as m:
        assert list(m) == [False]


# -- timeouts, skip, long items ----------------------------------------------------
def test_long_items_outlive_rpycs_request_timeout(papy_servers):
    gate = threading.Event()

    def items():
        gate.wait(10)  # nothing is sent before the connections' timeout is lowered
        yield from [1.0, 0.0]

    with IMap(worker_remote=[(papy_servers[0].address, 1)]) as m:
        out = m.add_task(nap, items())
        m.start()
        for w in m._run.pool._workers:  # rpyc's default is 30 s
            w.link.conn._config["sync_request_timeout"] = 0.3
        gate.set()
        assert list(out) == [1.0, 0.0]  # papy's framed stream has no request timeout


def test_timeout_and_skip_semantics_hold_for_remote_slots(papy_servers):
    Timeout = papy.TimeoutError
    one_slot = [(papy_servers[0].address, 1)]
    with IMap(nap, [0.0, 0.4, 0.0], worker_remote=one_slot, skip=False, chunksize=1) as m:
        assert m.next() == 0.0
        with pytest.raises(Timeout):
            m.next(timeout=0.1)
        assert m.next() == 0.4  # the late result, not skipped
        assert m.next() == 0.0
    with IMap(nap, [0.0, 0.4, 0.0], worker_remote=one_slot, skip=True, chunksize=1) as m:
        assert m.next() == 0.0
        with pytest.raises(Timeout):
            m.next(timeout=0.1)
        assert m.next() == 0.0  # item 1 dropped for good
        with pytest.raises(StopIteration):
            m.next()


def test_stopping_mid_run_is_prompt_and_the_server_stays_usable(papy_servers):
    threads = threading.active_count()
    m = IMap(nap, [1.5] * 4, worker_remote=[(papy_servers[0].address, 2)])
    time.sleep(0.2)
    t0 = time.monotonic()
    m.stop()
    assert time.monotonic() - t0 < 1.0
    with IMap(square, range(3), worker_remote=[(papy_servers[0].address, 2)]) as m2:
        assert list(m2) == [0, 1, 4]
    deadline = time.monotonic() + 5
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads


# -- local + remote ------------------------------------------------------------------
@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_local_and_remote_workers_share_one_map(papy_servers, worker_type):
    with IMap(
        worker_type=worker_type,
        worker_num=1,
        worker_remote=[(papy_servers[0].address, 1)],
        chunksize=1,
    ) as m:
        assert m.stride == 2  # one batch (of one tasklet) per worker
        pids = m.add_task(pid_of, range(12))
        squares = m.add_task(square, pids)  # chained: read through the map itself
        m.start()
        seen = {math.isqrt(v) for v in squares}
        remote_pid = m._run.pool.servers()[0]["pid"]  # the server's connection process
    assert len(seen) == 2 and remote_pid in seen
    assert (os.getpid() in seen) == (worker_type == "thread")


# -- failures ------------------------------------------------------------------------
def test_a_server_that_is_down_at_start_is_named():
    port = free_port()
    m = IMap(worker_remote=[(f"127.0.0.1:{port}", 1)])
    m.add_task(square, range(3))
    with pytest.raises(RemoteConnectionError) as info:
        m.start()
    assert f"127.0.0.1:{port}" in str(info.value)
    assert isinstance(info.value, ConnectionError)
    assert (info.value.host, info.value.port) == ("127.0.0.1", port)
    assert not m.started
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        IMap(square, range(3), worker_remote=[(f"127.0.0.1:{port}", 1)])


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "local, retries",
    [(0, 0), (0, 1), (1, 0)],
    ids=["remote-only", "remote-only-retried", "with-local-thread"],
)
def test_a_server_dying_mid_run_fails_or_reruns_its_item_and_the_map_carries_on(
    papy_servers, workdir, local, retries
):
    doomed = papy_server(workdir, PAPY_TEST_DOOMED="1")
    try:
        remote = [(doomed.address, 1)] + ([] if local else [(papy_servers[1].address, 1)])
        with IMap(
            die_on_doomed,
            range(8),
            worker_type="thread",
            worker_num=local,
            worker_remote=remote,
            retries=retries,
            chunksize=1,
        ) as m:
            got = collect(m)
            pool = m._run.pool
            remote_pool = pool.remote if local else pool
            assert remote_pool.lost == 1
            assert remote_pool.alive() == (0 if local else 1)
    finally:
        doomed.kill()
    lost = [r for r in got if isinstance(r, WorkerLostError)]
    if retries:
        assert got == [x * 10 for x in range(8)]
    else:
        assert len(lost) == 1, got
        assert doomed.address in str(lost[0])
        assert all(isinstance(r, WorkerLostError) or r == x * 10 for x, r in enumerate(got)), got


# -- TLS -------------------------------------------------------------------------------
def test_tls_with_a_client_certificate(tls_server, certs):
    remote_ssl = {
        "keyfile": certs["client.key"],
        "certfile": certs["client"],
        "ca_certs": certs["ca"],
    }
    with IMap(
        square, range(6), worker_remote=[(tls_server.address, 2)], remote_ssl=remote_ssl
    ) as m:
        assert list(m) == [x * x for x in range(6)]
    assert papy.remote.ping(tls_server.address, remote_ssl)["kind"] == "papy"


@pytest.mark.parametrize(
    "case", ["no-client-cert", "rogue-client-cert", "untrusted-server", "plaintext"]
)
def test_tls_refuses_clients_without_the_right_certificate(tls_server, certs, case):
    remote_ssl = {
        "no-client-cert": {"ca_certs": certs["ca"]},
        "rogue-client-cert": {
            "keyfile": certs["rogue.key"],
            "certfile": certs["rogue"],
            "ca_certs": certs["ca"],
        },
        "untrusted-server": {
            "keyfile": certs["client.key"],
            "certfile": certs["client"],
            "ca_certs": certs["other-ca"],
        },
        "plaintext": None,
    }[case]
    m = IMap(worker_remote=[(tls_server.address, 1)], remote_ssl=remote_ssl)
    m.add_task(square, range(3))
    with pytest.raises(RemoteConnectionError, match=re.escape(tls_server.address)) as info:
        m.start()
    # the message says why, in the user's terms
    why = {
        "no-client-cert": r"requires a client certificate: give remote_ssl\['certfile'\]",
        "rogue-client-cert": r"refused this client's certificate",
        "untrusted-server": r"certificate could not be verified .*remote_ssl\['ca_certs'\]",
        "plaintext": r"if the server requires TLS .*give remote_ssl=",
    }[case]
    assert re.search(why, str(info.value)), str(info.value)
    if case in ("no-client-cert", "rogue-client-cert"):  # and the server's log says it too
        deadline = time.monotonic() + 5
        while not any("TLS handshake failed" in line for line in tls_server.lines):
            assert time.monotonic() < deadline, "".join(tls_server.lines[-5:])
            time.sleep(0.05)


def test_tls_to_a_server_without_tls_says_so(papy_servers, certs):
    remote_ssl = {
        "keyfile": certs["client.key"],
        "certfile": certs["client"],
        "ca_certs": certs["ca"],
    }
    with pytest.raises(RemoteConnectionError, match="no TLS handshake with the server"):
        papy.remote.ping(papy_servers[0].address, remote_ssl, timeout=2)


def test_ping_checks_the_server_hostname(tls_server, certs, capsys):
    from papy.remote.__main__ import main

    tls = ["--ssl-keyfile", certs["client.key"], "--ssl-certfile", certs["client"]]
    tls += ["--ssl-cafile", certs["ca"]]
    assert main(["ping", tls_server.address, *tls, "--server-hostname", "127.0.0.1"]) == 0
    assert "kind=papy" in capsys.readouterr().out
    assert main(["ping", tls_server.address, *tls, "--server-hostname", "worker.example"]) == 1
    err = capsys.readouterr().err
    assert "does not name the host connected to" in err and "server_hostname" in err


@pytest.mark.parametrize("mode", ["forking", "threaded"])
def test_a_server_at_its_connection_limit_refuses_with_a_clear_message(workdir, mode):
    server = papy_server(workdir, "--mode", mode, "--max-connections", "2")
    try:
        assert "at most 2 connections" in "".join(server.lines)
        with IMap(square, range(20), worker_num=0, worker_remote=[(server.address, 2)]) as m:
            assert list(m) == [x * x for x in range(20)]  # two connections: served
            with pytest.raises(RemoteConnectionError) as info:  # a third while they are open
                papy.remote.ping(server.address)
        assert re.search(
            r"refused the connection: it serves 2 connections already, its limit "
            r"\(papy-worker --max-connections\)",
            str(info.value),
        ), str(info.value)
        deadline = time.monotonic() + 10  # the two connections end with the map
        while True:
            try:
                assert papy.remote.ping(server.address)["kind"] == "papy"
                break
            except RemoteConnectionError:
                assert time.monotonic() < deadline, "the server never took clients again"
                time.sleep(0.1)
        m = IMap(worker_num=0, worker_remote=[(server.address, 3)])
        m.add_task(square, range(3))
        with pytest.raises(RemoteConnectionError, match="its limit"):
            m.start()  # three slots cannot all connect: nothing is left running
        assert not m.started
        assert any("refused a client" in line for line in server.lines)
    finally:
        server.kill()


def test_many_idle_clients_do_not_fork_a_process_each(workdir):
    import psutil

    server = papy_server(workdir, "--max-connections", "4")
    socks = []
    try:
        for _ in range(40):
            socks.append(socket.create_connection((server.host, server.port), timeout=5))
        time.sleep(0.5)
        children = psutil.Process(server.proc.pid).children(recursive=True)
        assert len(children) <= 4, f"{len(children)} processes for 40 idle clients"
    finally:
        for sock in socks:
            sock.close()
        server.kill()


def test_bad_remote_ssl_options_are_rejected_at_start(tls_server, certs):
    m = IMap(worker_remote=[(tls_server.address, 1)], remote_ssl={"cafile": certs["ca"]})
    m.add_task(square, range(3))
    with pytest.raises(ValueError, match="ca_certs"):
        m.start()


# -- server and package ----------------------------------------------------------------
def test_server_binds_to_loopback_by_default():
    from papy.remote.server import DEFAULT_HOST, make_server

    server = make_server(port=0, mode="threaded")
    try:
        assert DEFAULT_HOST == "127.0.0.1" and server.host == "127.0.0.1" and server.port > 0
    finally:
        server.close()


def test_cli_ping_and_lazy_imports(papy_servers):
    env = server_env()
    ping = subprocess.run(
        [sys.executable, "-m", "papy.remote", "ping", papy_servers[0].address],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert ping.returncode == 0, ping.stderr
    assert "kind=papy" in ping.stdout
    down = subprocess.run(
        [sys.executable, "-m", "papy.remote", "ping", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert down.returncode == 1 and "127.0.0.1" in down.stderr
    lazy = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys, papy, papy.remote; "
                "assert not {'rpyc', 'dask', 'distributed', 'loky'} & set(sys.modules), sorted(sys.modules)"
            ),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert lazy.returncode == 0, lazy.stderr


def test_without_posix_pipes_papy_servers_are_driven_over_rpyc(papy_servers, monkeypatch):
    """Where process workers cannot run (Windows: no poll() on pipes), papy's servers
    are still usable, over RPyC calls, and local process workers fail at the call."""
    from papy import _imap, _pools

    monkeypatch.setattr(_pools, "PROCESS_WORKERS", False)
    monkeypatch.setattr(_imap, "PROCESS_WORKERS", False)
    with pytest.raises(ValueError, match="worker_type='process'"):
        IMap(worker_num=2)
    with IMap(square, range(20), worker_num=0, worker_remote=[(papy_servers[0].address, 2)]) as m:
        assert list(m) == [x * x for x in range(20)]
        assert m._run.pool.kind == "remote"
    with IMap(square, range(5), worker_type="thread", worker_num=1) as m:
        assert list(m) == [x * x for x in range(5)]
