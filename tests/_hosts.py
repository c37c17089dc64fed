"""Virtual hosts for papy's multi-host tests: Linux network namespaces on a private bridge.

``Hosts(n)`` (a context manager) makes ``n`` hosts, each a network namespace
with ``lo`` up and one end of a veth pair; the other ends are ports of a
bridge in the root namespace, which holds the subnet's first address. So the
test process (in the root namespace) reaches every host, and the hosts reach
each other, as machines on one LAN would::

    root namespace: bridge pt<pid>.<seq>b   10.213.K.1/24
        ├─ veth pt<pid>.<seq>h0 ══ pt<pid>.<seq>n0  in netns papyt-<pid>-<seq>-0   10.213.K.11
        ├─ veth pt<pid>.<seq>h1 ══ pt<pid>.<seq>n1  in netns papyt-<pid>-<seq>-1   10.213.K.12
        └─ ...

``K`` is picked from the pid, skipping any 10.213.K.0/24 already routed here,
so concurrent runs do not clash; every name carries the pid of the process
that made it, and nothing without our names is ever touched. The subnet
exists only on this machine: all test traffic stays between the bridge's
address and the namespaces.

A host runs processes (``host.spawn``) and papy servers (``host.serve``):
``ip netns exec NS python -m papy.remote serve --host ADDR --port PORT``, in a
process group of their own, with this test environment (``PYTHONPATH`` with
``src`` and ``tests``, ``PAPY_NO_EXTENSIONS`` when given). A server's handle
has ``address`` ('ADDR:PORT'), ``pid``, ``kill()`` (SIGKILL to its process
group: the server and the processes it forked per connection), ``freeze()``
and ``thaw()`` (SIGSTOP/SIGCONT), ``restart()`` (a new server on the same
address and port). Network faults: ``host.partition()`` sets the root end of
its veth down (the bridge drops every frame to and from it, silently, as a
cut cable would), ``host.heal()`` sets it up again. Latency: ``hosts.relay(
address, delay)``, a delaying TCP relay (``tests/_relay.py``).

Cleanup (``close()``, also at exit, on SIGTERM and when a test fails): every
process in each namespace is killed (``ip netns pids``), then the veths,
namespaces and the bridge are deleted. Objects left by an earlier run of this same pid are
removed first; ``python tests/_hosts.py cleanup`` removes those of runs whose
process is gone.

``python tests/_hosts.py latency`` prints papy's throughput across three hosts
through the relay at 0, 5 and 50 ms each way. Needs root.

Not a test module (leading underscore).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _papy_root() -> Path:
    """Where the papy that runs these tests is imported from (an installed copy, or
    the source tree of an editable install): the servers must import the same one,
    compiled core included, not the source tree of a regular install."""
    import importlib.util

    spec = importlib.util.find_spec("papy")
    if spec is None or spec.origin is None:
        return HERE.parent / "src"
    return Path(spec.origin).resolve().parent.parent


SRC = _papy_root()
if str(HERE) not in sys.path:  # run as a script: _relay is next to this file
    sys.path.insert(0, str(HERE))

from _relay import Relay, RelayProcess  # noqa: E402

__all__ = [
    "NETNS_PREFIX",
    "Host",
    "Hosts",
    "Proc",
    "Server",
    "cleanup_stale",
    "require_namespaces",
    "host_env",
    "unavailable",
]

NETNS_PREFIX = "papyt"  # network namespaces: papyt-<pid>-<seq>-<i>
IFACE_PREFIX = "pt"  # interfaces: pt<pid>.<seq>b (bridge), pt<pid>.<seq>h<i> / n<i> (veth ends)
SUBNET_BASE = "10.213"  # hosts live on 10.213.K.0/24
FIRST_HOST = 11  # the bridge is .1, the hosts .11, .12, ...
PAPY_PORT = 18812
PAPY_READY = re.compile(r"serving on (\S+):(\d+) \(.*pid (\d+)\)")
START_TIMEOUT = 30.0
_LOCK_FILE = "/tmp/papyt-subnets.lock"
_seq = 0
_seq_lock = threading.Lock()


# -- running ip -------------------------------------------------------------------
class IpError(RuntimeError):
    pass


def ip(*args: str, check: bool = True, json_out: bool = False) -> Any:
    """Run ``ip ARGS``; its output (parsed if ``json_out``); IpError on failure if ``check``."""
    argv = ["ip", *(["-j"] if json_out else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise IpError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    if json_out:
        return json.loads(done.stdout or "[]") if done.returncode == 0 else []
    return done.stdout


def _netns_names() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list", check=False).splitlines() if line]


def _link_names() -> list[str]:
    return [link["ifname"] for link in ip("link", "show", json_out=True, check=False)]


def _netns_pids(ns: str) -> list[int]:
    out = ip("netns", "pids", ns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def _kill_netns_processes(ns: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in namespace ``ns`` (ours by its name), until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in _netns_pids(ns) if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _delete(names_ns: Iterable[str], names_link: Iterable[str]) -> None:
    """Kill what runs in the namespaces, delete the links, then the namespaces."""
    names_ns = list(names_ns)
    for ns in names_ns:
        _kill_netns_processes(ns)
    links = list(names_link)
    # veth ends before bridges: deleting one end deletes its peer (also inside a namespace)
    for name in sorted(links, key=lambda n: n.endswith("b")):
        ip("link", "del", name, check=False)
    for ns in names_ns:
        ip("netns", "del", ns, check=False)


def cleanup_stale(pid: int | None = None, dead_only: bool = False) -> list[str]:
    """Delete namespaces and links named by this scheme: those of ``pid`` (default:
    this process), or with ``dead_only`` those of every pid that no longer runs.
    Returns the names deleted."""
    ns_any = re.compile(rf"^{NETNS_PREFIX}-(\d+)-\d+-(\d+|probe)$")
    link_any = re.compile(rf"^{IFACE_PREFIX}(\d+)\.\d+(b|[hn]\d+)$")

    def chosen(m: re.Match[str] | None) -> bool:
        if m is None:
            return False
        owner = int(m.group(1))
        if dead_only:
            return owner != os.getpid() and not Path(f"/proc/{owner}").exists()
        return owner == (os.getpid() if pid is None else pid)

    nss = [n for n in _netns_names() if chosen(ns_any.match(n))]
    links = [n for n in _link_names() if chosen(link_any.match(n))]
    _delete(nss, links)
    return nss + links


# -- can this machine do it? --------------------------------------------------------
_unavailable: list[str | None] = []


def unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None if they can."""
    if _unavailable:
        return _unavailable[0]
    reason: str | None = None
    if not sys.platform.startswith("linux"):
        reason = "network namespaces are Linux only"
    elif os.geteuid() != 0:
        reason = "needs root (network namespaces, veth pairs and a bridge)"
    elif shutil.which("ip") is None:
        reason = "needs the 'ip' command (iproute2)"
    else:
        probe = f"{NETNS_PREFIX}-{os.getpid()}-0-probe"
        try:
            ip("netns", "add", probe)
        except (IpError, OSError, subprocess.SubprocessError) as exc:
            reason = f"cannot create a network namespace: {exc}"
        else:
            ip("netns", "del", probe, check=False)
    _unavailable.append(reason)
    return reason


def require_namespaces() -> None:
    """``pytest.skip`` the calling test (or module) if namespaces cannot be used."""
    reason = unavailable()
    if reason is not None:
        import pytest

        pytest.skip(f"multi-host tests: {reason}", allow_module_level=True)


# -- environment ----------------------------------------------------------------------
def host_env(**extra: str | None) -> dict[str, str]:
    """This process's environment for a server or worker on a host: ``src`` and
    ``tests`` first on ``PYTHONPATH`` (papy and the test modules, whose functions
    travel by reference), ``PAPY_NO_EXTENSIONS`` and the rest passed through;
    ``extra`` values set (None: removed)."""
    env = dict(os.environ)
    paths = [str(SRC), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("PYTEST_CURRENT_TEST", None)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


# -- processes on a host ----------------------------------------------------------------
class Proc:
    """A process started in a host's namespace, in a process group of its own.

    Its output (stdout and stderr) is kept in ``lines``; ``match`` holds the
    match of ``ready`` in the line that said it was ready.
    """

    def __init__(
        self,
        host: Host,
        argv: Sequence[str],
        ready: re.Pattern[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float = START_TIMEOUT,
    ) -> None:
        self.host = host
        self.argv = list(argv)
        self.ready = ready
        self.env = env if env is not None else host_env()
        self.cwd = cwd
        self.timeout = timeout
        self.lines: list[str] = []
        self.match: re.Match[str] | None = None
        self.proc: subprocess.Popen[str] | None = None
        self._start()

    def _start(self) -> None:
        self.lines = []
        self.match = None
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.host.netns, *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        self.proc = proc
        self.host.hosts._procs.append(self)
        found: queue.Queue[re.Match[str] | None] = queue.Queue()
        lines = self.lines

        def read() -> None:  # drains the pipe, so it never fills
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if self.ready is not None and self.match is None:
                    m = self.ready.search(line)
                    if m:
                        self.match = m
                        found.put(m)
            found.put(None)

        self.reader = threading.Thread(target=read, name="papy-test-proc-output", daemon=True)
        self.reader.start()
        if self.ready is None:
            return
        try:
            got = found.get(timeout=self.timeout)
        except queue.Empty:
            got = None
        if got is None:
            self.kill()
            raise RuntimeError(
                f"{' '.join(self.argv)} on {self.host.netns} did not start:\n{''.join(lines)}"
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process group (the process and what it forked)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL the process group; wait for it; close its output."""
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.reader.join(10)
        if not self.reader.is_alive() and self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()

    def freeze(self) -> None:
        """SIGSTOP the process group: its sockets stay open, nothing answers."""
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def restart(self) -> Proc:
        """Kill it (if it runs) and start the same command again, waiting until ready."""
        self.kill()
        self._start()
        return self


class Server(Proc):
    """papy's worker server on a host: ``address`` is 'ADDR:PORT'; ``pid`` is the
    server's (``os.getppid()`` of a function evaluated by it, in forking mode)."""

    def __init__(
        self,
        host: Host,
        port: int = PAPY_PORT,
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.port = port
        self.address = f"{host.address}:{port}"
        argv = [
            sys.executable,
            "-m",
            "papy.remote",
            "serve",
            "--host",
            host.address,
            "--port",
            str(port),
            *options,
        ]
        super().__init__(host, argv, PAPY_READY, env, cwd)

    @property
    def pid(self) -> int:
        assert self.match is not None
        return int(self.match.group(3))

    def restart(self) -> Server:
        """A new server on the same address and port (the old one killed first)."""
        super().restart()
        return self


class Host:
    """One virtual host: a network namespace with one address on the bridge's subnet."""

    def __init__(self, hosts: Hosts, index: int, address: str) -> None:
        self.hosts = hosts
        self.index = index
        self.address = address
        self.netns = f"{hosts.netns_prefix}-{index}"
        self.veth = f"{hosts.iface_prefix}h{index}"  # root side, a bridge port
        self.peer = f"{hosts.iface_prefix}n{index}"  # inside the namespace
        self.partitioned = False

    def __repr__(self) -> str:
        return f"<Host {self.netns} {self.address}>"

    def _create(self, prefix_len: int) -> None:
        hosts = self.hosts
        ip("netns", "add", self.netns)
        ip("link", "add", self.veth, "type", "veth", "peer", "name", self.peer)
        ip("link", "set", self.peer, "netns", self.netns)
        ip("link", "set", self.veth, "master", hosts.bridge)
        ip("link", "set", self.veth, "up")
        ip("-n", self.netns, "link", "set", "lo", "up")
        ip("-n", self.netns, "addr", "add", f"{self.address}/{prefix_len}", "dev", self.peer)
        ip("-n", self.netns, "link", "set", self.peer, "up")

    # -- processes ---------------------------------------------------------------
    def spawn(
        self,
        argv: Sequence[str],
        ready: re.Pattern[str] | str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float = START_TIMEOUT,
    ) -> Proc:
        """Run ``argv`` in this host's namespace; wait for a line matching ``ready``."""
        if isinstance(ready, str):
            ready = re.compile(ready)
        return Proc(self, argv, ready, env if env is not None else self.hosts.env, cwd, timeout)

    def serve(
        self,
        port: int = PAPY_PORT,
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Server:
        """Start papy's worker server here; returns once it listens."""
        return Server(self, port, options, env if env is not None else self.hosts.env)

    def pids(self) -> list[int]:
        """Every process running in this host's namespace."""
        return _netns_pids(self.netns)

    def kill_all(self) -> None:
        """SIGKILL everything running in this host's namespace."""
        _kill_netns_processes(self.netns)

    # -- network faults -------------------------------------------------------------
    def partition(self) -> None:
        """Cut this host off: its bridge port goes down, frames to and from it are dropped."""
        ip("link", "set", self.veth, "down")
        self.partitioned = True

    def heal(self) -> None:
        """Undo :meth:`partition`."""
        ip("link", "set", self.veth, "up")
        self.partitioned = False


class Hosts:
    """``n`` virtual hosts on a private bridge (see the module's docstring).

    ``env`` is the environment of every process started on them (default:
    :func:`host_env`). Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, n: int, env: dict[str, str] | None = None) -> None:
        global _seq
        if not 1 <= n <= 200:
            raise ValueError(f"1 to 200 hosts, not {n}")
        self.n = n
        self.env = env if env is not None else host_env()
        pid = os.getpid()
        with _seq_lock:
            self.seq = _seq
            _seq += 1
        self.netns_prefix = f"{NETNS_PREFIX}-{pid}-{self.seq}"
        self.iface_prefix = f"{IFACE_PREFIX}{pid}.{self.seq}"
        self.bridge = f"{self.iface_prefix}b"
        if len(f"{self.iface_prefix}h{n - 1}") > 15:
            raise ValueError(f"interface names would exceed 15 characters: {self.iface_prefix}")
        self.hosts: list[Host] = []
        self._procs: list[Proc] = []
        self._relays: list[Relay | RelayProcess] = []
        self.subnet: ipaddress.IPv4Network | None = None
        self.gateway = ""
        self._closed = True
        self._old_sigterm: Any = None

    # -- setting up -------------------------------------------------------------------
    def __enter__(self) -> Hosts:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def open(self) -> Hosts:
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(f"cannot make virtual hosts: {reason}")
        if self.seq == 0:
            cleanup_stale()  # an earlier process with our pid left something behind
        self._closed = False
        atexit.register(self.close)
        self._catch_sigterm()
        import fcntl  # POSIX only: imported here, so that importing this module works anywhere

        try:
            with open(_LOCK_FILE, "a") as lock:  # two runs must not take the same subnet
                fcntl.flock(lock, fcntl.LOCK_EX)
                self.subnet = self._free_subnet()
                self.gateway = str(self.subnet.network_address + 1)
                ip("link", "add", self.bridge, "type", "bridge")
                ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
                ip("link", "set", self.bridge, "up")
            for i in range(self.n):
                address = str(self.subnet.network_address + FIRST_HOST + i)
                host = Host(self, i, address)
                self.hosts.append(host)
                host._create(self.subnet.prefixlen)
        except BaseException:
            self.close()
            raise
        return self

    def _catch_sigterm(self) -> None:
        """A SIGTERM (``timeout``, a CI runner) would end this process without cleaning
        up: while the hosts exist, it first kills what runs on them and deletes them,
        then ends the process as SIGTERM would."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def terminated(signum: int, frame: Any) -> None:
            with contextlib.suppress(BaseException):
                self.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        self._old_sigterm = signal.signal(signal.SIGTERM, terminated)

    def _free_subnet(self) -> ipaddress.IPv4Network:
        """A 10.213.K.0/24 that nothing on this machine uses yet, K from our pid."""
        used: list[ipaddress.IPv4Network] = []
        for route in ip("-4", "route", "show", "table", "all", json_out=True, check=False):
            dst = route.get("dst", "")
            with contextlib.suppress(ValueError):
                if dst and dst != "default":
                    used.append(ipaddress.ip_network(dst, strict=False))
        for link in ip("-4", "addr", "show", json_out=True, check=False):
            for a in link.get("addr_info", []):
                with contextlib.suppress(ValueError, KeyError):
                    used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", False))
        start = os.getpid() + 7 * self.seq
        for k in range(254):
            third = 1 + (start + k) % 254
            net = ipaddress.ip_network(f"{SUBNET_BASE}.{third}.0/24")
            if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                return net
        raise RuntimeError(f"no free /24 left in {SUBNET_BASE}.0.0/16")

    # -- using them ---------------------------------------------------------------------
    def serve_all(
        self,
        hosts: Sequence[Host] | None = None,
        port: int = PAPY_PORT,
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> list[Server]:
        """One papy server on each host (all of them by default), started in parallel."""
        chosen = list(self.hosts if hosts is None else hosts)
        out: list[Server | BaseException | None] = [None] * len(chosen)

        def start(i: int) -> None:
            try:
                out[i] = chosen[i].serve(port, options, env)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                out[i] = exc

        threads = [threading.Thread(target=start, args=(i,)) for i in range(len(chosen))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed = [x for x in out if isinstance(x, BaseException)]
        if failed:
            for x in out:
                if isinstance(x, Server):
                    x.kill()
            raise failed[0]
        return out  # type: ignore[return-value]

    def relay(
        self, target: str | Server, delay: float, process: bool = True
    ) -> Relay | RelayProcess:
        """A delaying TCP relay in the root namespace, listening on the bridge's address
        (a free port) and forwarding to ``target`` ('ADDR:PORT' or a server): every
        chunk ``delay`` seconds later, each way. ``process``: in a subprocess (default,
        keeps the GIL of this process for the map), else in a thread here."""
        address = target.address if isinstance(target, Server) else target
        listen = (self.gateway, 0)
        relay: Relay | RelayProcess = (
            RelayProcess(address, delay, listen) if process else Relay(address, delay, listen)
        )
        self._relays.append(relay)
        return relay

    def reset(self) -> None:
        """Between tests: close relays, kill everything on every host, heal every link."""
        for relay in self._relays:
            with contextlib.suppress(Exception):
                relay.close()
        self._relays.clear()
        for proc in self._procs:
            with contextlib.suppress(Exception):
                proc.kill()
        self._procs.clear()
        for host in self.hosts:
            host.kill_all()
            if host.partitioned:
                host.heal()

    def close(self) -> None:
        """Kill every process on the hosts and delete namespaces, veths and the bridge."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        with contextlib.suppress(Exception):
            self.reset()
        mine_ns = re.compile(rf"^{re.escape(self.netns_prefix)}-\d+$")
        mine_link = re.compile(rf"^{re.escape(self.iface_prefix)}(b|[hn]\d+)$")
        _delete(
            [n for n in _netns_names() if mine_ns.match(n)],
            [n for n in _link_names() if mine_link.match(n)],
        )


# -- command line: the latency curve ---------------------------------------------------------
def _square(x: int) -> int:
    return x * x


def _timed_map(
    addresses: Sequence[str], slots: int, items: int, chunksize: int
) -> tuple[float, float]:
    """One map of a trivial function: seconds to start (connections and handshakes)
    and seconds from then until the last result."""
    from papy import IMap

    t = time.perf_counter()
    with IMap(
        worker_num=0, worker_remote=[(a, slots) for a in addresses], chunksize=chunksize
    ) as m:
        m.add_task(_square, range(items))
        m.start()
        started = time.perf_counter()
        n = 0
        for i, r in enumerate(m):
            if r != i * i:
                raise AssertionError(f"item {i}: {r!r}")
            n += 1
        ended = time.perf_counter()
    if n != items:
        raise AssertionError(f"{n} results for {items} items")
    return started - t, ended - started


def _calibrate(addresses: Sequence[str], slots: int, chunksize: int, seconds: float) -> int:
    """How many items make a map of about ``seconds`` (after a first, untimed one)."""
    _timed_map(addresses, slots, 2000, chunksize)  # the first map at a delay is slower
    n, took = 2000, 0.0
    while n < 4_000_000:
        took = _timed_map(addresses, slots, n, chunksize)[1]
        if took >= seconds / 2:
            break
        n *= 4
    return max(1000, int(n / took * seconds) // chunksize * chunksize)


def latency(
    n_hosts: int = 3,
    slots: int = 2,
    chunksize: int = 32,
    delays: Sequence[float] = (0.0, 0.005, 0.05),
    seconds: float = 1.0,
    repeat: int = 3,
    items: int | None = None,
    out: Callable[[str], None] = print,
) -> list[tuple[float, float]]:
    """Items/s of a trivial function at ``chunksize`` through the relay at each delay
    (0: direct), from the end of ``start()`` (connections made) to the last result.
    Each map runs about ``seconds`` (its item count calibrated at that delay), or has
    ``items`` items. Returns ``[(delay, items/s)]``."""
    import papy

    results: list[tuple[float, float]] = []
    with Hosts(n_hosts) as hosts:
        servers = hosts.serve_all()
        direct = [s.address for s in servers]
        _timed_map(direct, slots, 2000, chunksize)  # warm-up
        out(
            f"papy {papy.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs: "
            f"{n_hosts} hosts x {slots} slots, chunksize={chunksize}, x*x, "
            f"best of {repeat} maps of ~{seconds:g} s each; items/s counted from start() "
            f"(connected) to the last result, 'start s' is start() itself"
        )
        out(
            f"{'delay each way':>15} {'RTT':>7} {'start s':>7} {'items/map':>10} {'items/s':>10} "
            f"{'vs direct':>10} {'1 batch/RTT/slot':>17} {'items/s of each map':>24}"
        )
        base = 0.0
        for delay in delays:
            if delay:
                relays = [hosts.relay(s, delay) for s in servers]
                addresses = [r.address for r in relays]
            else:
                relays, addresses = [], direct
            try:
                n = items or _calibrate(addresses, slots, chunksize, seconds)
                runs = [_timed_map(addresses, slots, n, chunksize) for _ in range(repeat)]
            finally:
                for r in relays:
                    r.close()
            start = min(r[0] for r in runs)
            best = min(r[1] for r in runs)
            ips = n / best
            base = base or ips
            results.append((delay, ips))
            label = "direct" if not delay else f"{delay * 1000:g} ms"
            # what one batch in flight per slot allows: slots x chunksize per round trip
            bound = f"{n_hosts * slots * chunksize / (2 * delay):,.0f}" if delay else "-"
            out(
                f"{label:>15} {2 * delay * 1000:>5g}ms {start:>7.2f} {n:>10,} {ips:>10,.0f} "
                f"{ips / base:>10.4f} {bound:>17} "
                f"{' '.join(f'{n / r[1]:,.0f}' for r in runs):>24}"
            )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python tests/_hosts.py")
    commands = parser.add_subparsers(dest="command", required=True)
    lat = commands.add_parser("latency", help="papy's throughput across hosts vs latency")
    lat.add_argument("--hosts", type=int, default=3)
    lat.add_argument("--slots", type=int, default=2, help="connections per host")
    lat.add_argument("--chunksize", type=int, default=32)
    lat.add_argument("--seconds", type=float, default=1.0, help="length of each map")
    lat.add_argument("--items", type=int, default=None, help="items per map (default: calibrated)")
    lat.add_argument("--repeat", type=int, default=3)
    lat.add_argument(
        "--delays", default="0,5,50", help="milliseconds each way, comma-separated (0: direct)"
    )
    commands.add_parser("cleanup", help="delete namespaces and links of runs whose process is gone")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"_hosts.py: {reason}", file=sys.stderr)
        return 2
    if args.command == "cleanup":
        gone = cleanup_stale(dead_only=True)
        print("\n".join(gone) if gone else "nothing to clean")
        return 0
    latency(
        args.hosts,
        args.slots,
        args.chunksize,
        [float(d) / 1000 for d in args.delays.split(",")],
        args.seconds,
        args.repeat,
        args.items,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
