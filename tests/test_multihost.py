"""papy's remote workers across hosts: real servers in network namespaces, real faults.

Every host is a Linux network namespace on a private bridge (``tests/_hosts.py``),
running papy's worker server (``python -m papy.remote serve``) on its own
address, port 18812, as separate machines would. The faults are real: a
server's process group SIGKILLed (a crashed host), SIGSTOPped (a hung one:
its kernel still acknowledges every byte), or its link cut at the bridge (a
partition: nothing answers, nothing is refused). Latency comes from a
delaying TCP relay (``tests/_relay.py``). Needs root; skipped otherwise.

Functions are module-level, so they travel by reference: the servers import
this module (``tests`` is on their ``PYTHONPATH``). In forking mode each
connection is a process forked by the server, so ``os.getppid()`` in a
function names the server that evaluated it.

The remote heartbeat (``IMap(remote_heartbeat=seconds)``, default 10) is what
notices a server that is frozen or cut off while a connection is open; the
tests that need it pass ``remote_heartbeat=HEARTBEAT``.

``python tests/_hosts.py latency`` measures throughput against latency; the
tests here only check correctness at each delay.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import _hosts
from _hosts import Hosts, Server, host_env
from _relay import Relay
from papy import IMap, WorkerLostError

pytestmark = pytest.mark.timeout(120)

#: the heartbeat the liveness tests ask for (seconds)
HEARTBEAT = 2.0
#: a frozen or cut-off server must be noticed this soon (a missed beat, the next one, slack)
LIVENESS_BOUND = 2 * HEARTBEAT + 2.0
#: a map that loses a host to a partition must complete within this
FAILOVER_BOUND = 30.0
#: how long a map keeps going after a killed server is restarted, waiting for it to be used
RECONNECT_BUDGET = 15.0
#: seconds one item of the slow functions takes
ITEM_SECONDS = 0.015
SLOTS = 2  # connections per host


# -- functions (module level: by reference) -------------------------------------------------
def whose(x: int) -> tuple[int, int]:
    """``x`` and the pid of the server that evaluated it (its forked child's parent)."""
    return x, os.getppid()


def slow_whose(x: int) -> tuple[int, int]:
    time.sleep(ITEM_SECONDS)
    return x, os.getppid()


def dask_whose(x: int) -> tuple[int, int]:
    """``x`` and the pid of the Dask worker process (tasks run in its threads)."""
    time.sleep(0.02)
    return x, os.getpid()


def square(x: int) -> int:
    return x * x


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    _hosts.require_namespaces()
    with Hosts(3) as made:
        yield made


@pytest.fixture
def env(sched_implementation: Any) -> dict[str, str]:
    """The servers' environment, with the scheduler core under test."""
    if sched_implementation.is_pure_python:
        return host_env(PAPY_NO_EXTENSIONS="1")
    return host_env()


@pytest.fixture
def servers(hosts: Hosts, env: dict[str, str], tmp_path: Path) -> Iterator[list[Server]]:
    """A fresh papy server on every host; afterwards everything on the hosts is killed
    and every link healed, whatever the test did to them."""
    try:
        yield hosts.serve_all(env=env)
    finally:
        hosts.reset()


@pytest.fixture
def clean_hosts(hosts: Hosts) -> Iterator[Hosts]:
    try:
        yield hosts
    finally:
        hosts.reset()


# -- helpers ---------------------------------------------------------------------------------------
def remote(servers: list[Server], slots: int = SLOTS) -> list[tuple[str, int]]:
    return [(s.address, slots) for s in servers]


def outcomes(
    m: IMap, each: Callable[[int, Any], bool | None] | None = None
) -> tuple[list[Any], list[float]]:
    """Every outcome of ``m`` in order (a result, or the exception raised at its
    position) and when it was obtained. ``each(count, outcome)`` is called after
    each one; it returns True to stop reading there."""
    got: list[Any] = []
    times: list[float] = []
    while True:
        try:
            r = next(m)
        except StopIteration:
            return got, times
        except Exception as exc:  # noqa: BLE001 - an outcome at its position
            r = exc
        got.append(r)
        times.append(time.monotonic())
        if each is not None and each(len(got), r):
            return got, times


def assert_exact(got: list[Any], n: int, pids: set[int]) -> Counter[int]:
    """One correct outcome per input position, in order, each evaluated by one of
    ``pids``; returns how many items each pid evaluated."""
    failed = [(i, r) for i, r in enumerate(got) if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of {n} items failed, the first: {failed[:3]!r}"
    assert len(got) == n, f"{len(got)} outcomes for {n} items"
    positions = [r[0] for r in got]
    assert positions == list(range(n)), "items lost, duplicated or out of order"
    by_pid = Counter(r[1] for r in got)
    assert set(by_pid) <= pids, f"evaluated by unknown processes {set(by_pid) - pids}"
    return by_pid


class Watchdog:
    """Runs ``action`` once after ``seconds`` unless cancelled (by leaving the ``with``):
    undoes a fault that papy should have noticed by then, so that a test fails with
    a message instead of hanging until the timeout."""

    def __init__(self, seconds: float, action: Callable[[], None]) -> None:
        self.seconds = seconds
        self.fired = False
        self._action = action
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        self._action()

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._timer.join()


def cut_off_and_kill(server: Server) -> Callable[[], None]:
    """The watchdog's way out of a fault: reconnect the host and kill its server, so that
    the client sees the connections closed."""

    def action() -> None:
        if server.host.partitioned:
            server.host.heal()
        server.kill()

    return action


# -- 1. a map across three hosts ----------------------------------------------------------------------
def test_a_map_across_three_hosts_uses_every_host(servers: list[Server]) -> None:
    n = 2000
    with IMap(worker_num=0, worker_remote=remote(servers)) as m:
        m.add_task(whose, range(n))
        m.start()
        got = list(m)
    by_pid = assert_exact(got, n, {s.pid for s in servers})
    assert set(by_pid) == {s.pid for s in servers}, f"not every host did work: {by_pid}"


# -- 2. failover ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["kill", "partition"])
def test_a_lost_host_fails_over_without_losing_an_item(servers: list[Server], fault: str) -> None:
    """A host lost mid-map (server killed, or its link cut): with ``retries=2`` its items
    run again on the others; every position gets exactly one correct result. A
    partition closes nothing: only the heartbeat can notice it, within the bound."""
    n = 600
    victim = servers[0]
    options: dict[str, Any] = {"remote_heartbeat": HEARTBEAT} if fault == "partition" else {}
    before: set[int] = set()
    faulted_at = [0.0]

    def inject(count: int, r: Any) -> None:
        if count <= 100 and not isinstance(r, BaseException):
            before.add(r[1])
        if count == 100:
            faulted_at[0] = time.monotonic()
            if fault == "kill":
                victim.kill()
            else:
                victim.host.partition()

    with Watchdog(FAILOVER_BOUND, cut_off_and_kill(victim)) as dog:
        with IMap(worker_num=0, worker_remote=remote(servers), retries=2, **options) as m:
            m.add_task(slow_whose, range(n))
            m.start()
            got, _ = outcomes(m, inject)
        took = time.monotonic() - faulted_at[0]
    assert not dog.fired, (
        f"the map did not get past the {fault} of {victim.address} within {FAILOVER_BOUND} s: "
        f"the watchdog had to heal the link and kill the server"
    )
    assert victim.pid in before, "the victim did no work before the fault: not a mid-map fault"
    assert_exact(got, n, {s.pid for s in servers})
    assert took < FAILOVER_BOUND


# -- 3. reconnect ------------------------------------------------------------------------------------
def test_a_restarted_server_is_used_again_within_the_same_map(servers: list[Server]) -> None:
    """A server killed mid-map and restarted on the same address while the map runs:
    the map connects to it again and it evaluates items (its new pid shows), and
    every position read gets exactly one correct result."""
    victim = servers[0]
    old_pid = victim.pid
    new_pid = [0]
    restarted_at = [0.0]

    def inject(count: int, r: Any) -> bool:
        """Kill and restart at the 100th result; then read until the restarted server's
        first result, or for RECONNECT_BUDGET seconds (papy reads input far ahead)."""
        if count == 100:
            victim.kill()
            victim.restart()
            new_pid[0] = victim.pid
            restarted_at[0] = time.monotonic()
        elif new_pid[0]:
            if not isinstance(r, BaseException) and r[1] == new_pid[0]:
                return True
            return time.monotonic() > restarted_at[0] + RECONNECT_BUDGET
        return False

    # a small buffer keeps work waiting in the map, not all queued on the live slots,
    # so that a reconnected slot has something to take
    with IMap(worker_num=0, worker_remote=remote(servers), retries=2, buffer=384) as m:
        m.add_task(slow_whose, range(100_000))
        m.start()
        got, _ = outcomes(m, inject)
    assert new_pid[0] and new_pid[0] != old_pid
    pids = {s.pid for s in servers} | {old_pid}
    by_pid = assert_exact(got, len(got), pids)
    assert by_pid[new_pid[0]] > 0, (
        f"the server restarted on {victim.address} (pid {new_pid[0]}) evaluated nothing in "
        f"the {RECONNECT_BUDGET} s the map kept running after it was back: no reconnect "
        f"(items per server pid: {dict(by_pid)})"
    )


# -- 4. liveness: a server that neither answers nor closes ----------------------------------------------
@pytest.mark.parametrize("fault", ["freeze", "partition"])
def test_a_silent_server_is_detected_within_the_heartbeat(
    servers: list[Server], fault: str
) -> None:
    """A frozen (SIGSTOPped) or cut-off server keeps its connections open and silent.
    With ``remote_heartbeat`` and ``retries=0`` the items in flight on it fail with
    WorkerLostError, each at its position, within about the heartbeat, without the
    caller passing ``next(timeout=...)``; every other result is correct."""
    n = 600
    at = 60  # results read before the fault
    victim = servers[0]
    faulted_at = [0.0]

    def inject(count: int, r: Any) -> None:
        if count == at:
            faulted_at[0] = time.monotonic()
            if fault == "freeze":
                victim.freeze()
            else:
                victim.host.partition()

    with Watchdog(FAILOVER_BOUND, cut_off_and_kill(victim)) as dog:
        with IMap(
            worker_num=0, worker_remote=remote(servers), retries=0, remote_heartbeat=HEARTBEAT
        ) as m:
            m.add_task(slow_whose, range(n))
            m.start()
            got, times = outcomes(m, inject)
    silent = "frozen" if fault == "freeze" else "cut-off"
    assert not dog.fired, (
        f"the {silent} server {victim.address} was not noticed within {FAILOVER_BOUND} s "
        f"(heartbeat {HEARTBEAT} s): the watchdog had to kill it"
    )
    strange = [(i, r) for i, r in enumerate(got) if isinstance(r, BaseException)]
    strange = [(i, r) for i, r in strange if not isinstance(r, WorkerLostError)]
    assert not strange, f"{len(strange)} outcomes are not WorkerLostError: {strange[:5]!r}"
    assert len(got) == n, f"{len(got)} outcomes for {n} items"
    lost = [i for i, r in enumerate(got) if isinstance(r, BaseException)]
    by_pid = Counter(r[1] for r in got if not isinstance(r, BaseException))
    assert lost, (
        f"no item failed with retries=0, though {victim.address} (pid {victim.pid}) was "
        f"{silent} with work in flight (items per server pid: {dict(by_pid)}; before the "
        f"fault: {dict(Counter(r[1] for r in got[:at] if isinstance(r, tuple)))})"
    )
    for i in lost:
        assert victim.address in str(got[i]), f"item {i}: {got[i]}"
    noticed = times[lost[0]] - faulted_at[0]
    assert noticed <= LIVENESS_BOUND, (
        f"the {silent} server was noticed after {noticed:.1f} s, heartbeat {HEARTBEAT} s"
    )
    pids = {s.pid for s in servers}
    for i, r in enumerate(got):
        if i not in lost:
            assert r[0] == i and r[1] in pids, f"item {i}: {r!r}"


# -- 5. latency ---------------------------------------------------------------------------------------------
def test_the_relay_delays_each_way_and_keeps_every_byte() -> None:
    """The relay itself: bytes intact and in order both ways, half-close passed on,
    and a round trip never shorter than twice the delay."""
    delay = 0.05
    listener = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(1 << 16):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    server = threading.Thread(target=echo, daemon=True)
    server.start()
    payload = os.urandom(3_000_000)
    with listener, Relay(listener.getsockname(), delay) as relay:
        with socket.create_connection((relay.host, relay.port), timeout=30) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = time.monotonic()
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            assert time.monotonic() - t >= 2 * delay
            sender = threading.Thread(
                target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR))
            )
            sender.start()
            back = bytearray()
            while data := s.recv(1 << 20):
                back += data
            sender.join()
        assert bytes(back) == payload
        assert relay.connections == 1
    server.join(10)


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.05], ids=["direct", "5ms", "50ms"])
def test_a_map_behind_latency_is_correct(hosts: Hosts, servers: list[Server], delay: float) -> None:
    """Chunks of 32 items through a relay adding ``delay`` each way (0: direct): every
    result correct and in order. (The throughput curve: ``python tests/_hosts.py
    latency``.)"""
    n = 3000
    if delay:
        addresses = [hosts.relay(s, delay).address for s in servers]
    else:
        addresses = [s.address for s in servers]
    with IMap(worker_num=0, worker_remote=[(a, SLOTS) for a in addresses], chunksize=32) as m:
        m.add_task(square, range(n))
        m.start()
        got = list(m)
    assert got == [x * x for x in range(n)]


# -- 6. Dask across hosts ---------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_dask_across_hosts_survives_a_killed_worker(
    clean_hosts: Hosts, env: dict[str, str], tmp_path: Path
) -> None:
    """A Dask scheduler on one host, a worker on each of two others, the client here:
    a Dask worker killed mid-map, Dask reschedules its tasks, and every position
    still gets exactly one correct result."""
    distributed = pytest.importorskip("distributed")
    hosts = clean_hosts
    sched_host, *worker_hosts = hosts[:3]
    port = 8786
    scheduler_address = f"tcp://{sched_host.address}:{port}"
    sched_host.spawn(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            sched_host.address,
            "--port",
            str(port),
            "--no-dashboard",
        ],
        ready=r"Scheduler at:\s+tcp://",
        env=env,
        cwd=tmp_path,
    )
    workers = [
        h.spawn(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                scheduler_address,
                "--host",
                h.address,
                "--nworkers",
                "1",
                "--nthreads",
                "2",
                "--no-nanny",
                "--no-dashboard",
                "--local-directory",
                str(tmp_path / f"worker-{h.index}"),
            ],
            ready=r"Registered to:",
            env=env,
            cwd=tmp_path,
        )
        for h in worker_hosts
    ]
    n = 400
    victim = workers[0]
    before: set[int] = set()

    def inject(count: int, r: Any) -> None:
        if count <= 100 and not isinstance(r, BaseException):
            before.add(r[1])
        if count == 100:
            victim.kill()

    client = distributed.Client(scheduler_address, timeout=30)
    try:
        client.wait_for_workers(2, timeout=30)
        t = time.monotonic()
        with IMap(executor=client.get_executor(), worker_num=4, chunksize=4, buffer=64) as m:
            m.add_task(dask_whose, range(n))
            m.start()
            got, _ = outcomes(m, inject)
        took = time.monotonic() - t
    finally:
        client.close(timeout=10)
    assert victim.pid in before, "the killed worker did no work before it was killed"
    by_pid = assert_exact(got, n, {w.pid for w in workers})
    assert by_pid[workers[1].pid] > 0
    assert took < 60, f"the map took {took:.0f} s"
