"""What hostile use finds: each case a regression test of a hang, a lost item or a leak.

Every case counts outcomes exactly: one per input position, none lost, none
invented. Cases that involve the scheduler core run on both cores (the
autouse fixture); pools are real (threads, processes, papy's remote server).
"""

from __future__ import annotations

import threading
import time
import warnings

import pytest

import papy
from papy import IMap
from test_faults import collect, kinds
from test_remote import papy_server

pytestmark = pytest.mark.timeout(60)

WORKER_TYPES = ["thread", "process"]


def outcomes(it) -> list:
    """Every outcome of an iterator: a value, or the type name of the error raised there."""
    return kinds(collect(it))


# -- 1. a task function that raises StopIteration ------------------------------------
def stops_at_three(x):
    if x == 3:
        return next(iter([]))  # a common bug: StopIteration escapes the function
    return x * 10


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = papy_server(tmp_path_factory.mktemp("hostile-server"))
    yield s
    s.kill()


@pytest.mark.parametrize("chunksize", [1, 4])
@pytest.mark.parametrize("where", ["thread", "process", "remote"])
def test_1_stop_iteration_is_an_error_at_its_item(where, chunksize, request):
    options = {"worker_type": where, "worker_num": 2}
    if where == "remote":
        options = {
            "worker_num": 0,
            "worker_remote": [(request.getfixturevalue("server").address, 2)],
        }
    with IMap(stops_at_three, range(8), chunksize=chunksize, **options) as m:
        got = outcomes(iter(m))
    assert got == [0, 10, 20, "RuntimeError", 40, 50, 60, 70]
    # the builtin-like generator ends at the error, as map() would with a RuntimeError
    it = papy.imap(stops_at_three, range(8), chunksize=chunksize, **options)
    assert [next(it) for _ in range(3)] == [0, 10, 20]
    with pytest.raises(RuntimeError, match="StopIteration"):
        next(it)


def test_1_stop_iteration_says_which_item():
    with IMap(stops_at_three, range(5), worker_type="process", worker_num=1, chunksize=5) as m:
        for _ in range(3):
            next(m)
        with pytest.raises(RuntimeError, match="item 3 of task 0") as info:
            next(m)
        assert "PEP 479" in str(info.value)
        assert next(m) == 40


def test_1_stop_iteration_on_an_executor():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as ex, IMap(stops_at_three, range(6), executor=ex) as m:
        assert outcomes(iter(m)) == [0, 10, 20, "RuntimeError", 40, 50]


# -- 2. skip=True: one outcome per input position, never more -----------------------
def slow_inc(x):
    time.sleep(0.02)
    return x + 1


def poll_all(m, timeout):
    """Poll a map with tiny timeouts to its end; return (results, skipped positions,
    timeouts that consumed no position)."""
    results, skipped, idle = [], [], 0
    while True:
        try:
            results.append(m.next(timeout=timeout))
        except StopIteration:
            return results, skipped, idle
        except papy.TimeoutError as exc:
            if exc.index is None:
                idle += 1
            else:
                skipped.append(exc.index)


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_2_polling_with_timeout_0_and_skip_counts_every_position_once(worker_type):
    n = 10

    def slow_source():  # positions come into existence one by one
        for x in range(n):
            time.sleep(0.01)
            yield x

    with IMap(slow_inc, slow_source(), worker_type=worker_type, worker_num=2, skip=True) as m:
        results, skipped, idle = poll_all(m, 0)
    assert len(results) + len(skipped) == n  # exactly one outcome per position
    assert len(set(skipped)) == len(skipped)
    assert sorted(results + [s + 1 for s in skipped]) == [x + 1 for x in range(n)]
    assert idle > 0  # polls that came before a position existed consumed nothing


def test_2_many_fast_inputs_polled_on_process_workers():
    n = 20_000
    with IMap(inc, range(n), worker_num=2, skip=True, chunksize=16) as m:
        results, skipped, _ = poll_all(m, 0)
    assert len(results) + len(skipped) == n
    want = {x + 1 for x in range(n)} - {s + 1 for s in skipped}
    assert set(results) == want and len(results) == len(want)


def inc(x):
    return x + 1


# -- 3. workers never outlive a parent that is killed -------------------------------
PARENT_SCRIPT = """
import sys, time
import papy


def work(mode):
    if mode == "sleep":
        time.sleep(120)
    elif mode == "spin":
        while True:
            pass
    return mode


def inputs(mode):
    if mode == "idle":
        yield "idle"
        time.sleep(3600)  # the input blocks: the workers wait for work
    while True:
        yield mode


if __name__ == "__main__":
    mode, method = sys.argv[1], sys.argv[2]
    m = papy.IMap(work, inputs(mode), worker_num=2, start_method=method, chunksize=1)
    if mode == "idle":
        next(m)
    else:
        time.sleep(0.3)  # both workers are in the function now
    print(" ".join(str(p) for p in m._run.pool.pids()), flush=True)
    time.sleep(3600)
"""


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def parent_death_seconds(tmp_path, mode: str, method: str, sig: int) -> float:
    """Start a parent running a map, kill it, return seconds until its last worker is gone."""
    import os
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    with subprocess.Popen(  # leaving the block closes its stdout
        [sys.executable, str(script), mode, method],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    ) as proc:
        try:
            line = proc.stdout.readline()
            pids = [int(p) for p in line.split()]
            assert len(pids) == 2, line
            assert not any(_gone(p) for p in pids)
            t0 = time.monotonic()
            proc.send_signal(sig)
            proc.wait(10)
            while time.monotonic() - t0 < 10:
                if all(_gone(p) for p in pids):
                    return time.monotonic() - t0
                time.sleep(0.02)
            for p in pids:  # do not leave them behind even when the test fails
                try:
                    os.kill(p, 9)
                except OSError:
                    pass
            return float("inf")
        finally:
            proc.kill()
            proc.wait()


CASES_3 = [(mode, method, 9) for mode in ("idle", "sleep", "spin") for method in
           ("fork", "spawn", "forkserver")] + [("spin", m, 15) for m in ("fork", "spawn", "forkserver")]  # fmt: skip


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "mode, method, sig",
    CASES_3,
    ids=[f"{a}-{b}-{'KILL' if c == 9 else 'TERM'}" for a, b, c in CASES_3],
)
def test_3_workers_are_gone_within_3_s_of_the_parents_death(
    tmp_path, mode, method, sig, sched_implementation
):
    if sched_implementation.is_pure_python:
        pytest.skip("independent of the core: runs once, in the [c] instance")
    seconds = parent_death_seconds(tmp_path, mode, method, sig)
    assert seconds < 3.0, f"workers outlived their parent by {seconds:.1f} s"


# -- 4. BaseException while pickling or unpickling a result -------------------------
class ExitsWhenPickled:
    def __reduce__(self):
        raise SystemExit(3)  # in the worker, while its reply is pickled


def _explode_in(pid):
    import os

    if os.getpid() == pid:
        raise SystemExit("unpickled in the parent")  # not an Exception
    return "fine elsewhere"


class ExplodesInParent:
    def __init__(self, parent):
        self.parent = parent

    def __reduce__(self):
        return (_explode_in, (self.parent,))


class UnprintableAndUnpicklable(Exception):
    def __init__(self):
        super().__init__("x")
        self.lock = threading.Lock()

    def __str__(self):
        raise ValueError("no str for you")


def bad_results(x, parent):
    if x == 1:
        return ExitsWhenPickled()
    if x == 2:
        return ExplodesInParent(parent)
    if x == 5:
        raise UnprintableAndUnpicklable()
    return x


@pytest.mark.parametrize("chunksize", [1, 4])
def test_4_a_result_or_error_that_cannot_travel_fails_its_item_only(chunksize):
    import os

    with IMap(worker_num=2, chunksize=chunksize) as m:
        out = m.add_task(bad_results, range(8), args=(os.getpid(),))
        m.start()
        got = outcomes(out)
        pool = m._run.pool
        assert pool.lost == 0  # no worker died
    assert got[0] == 0 and got[3:5] == [3, 4] and got[6:] == [6, 7]
    assert got[1] == got[2] == got[5] == "SerializationError"


def test_4_the_messages_name_the_item_and_the_reason():
    import os

    with IMap(worker_num=1, chunksize=8) as m:
        out = m.add_task(bad_results, range(8), args=(os.getpid(),))
        m.start()
        errors = {}
        for i in range(8):
            try:
                next(out)
            except papy.SerializationError as exc:
                errors[i] = str(exc)
    assert "item 1 of task 0" in errors[1] and "SystemExit" in errors[1]
    assert "item 2 of task 0" in errors[2] and "unpickled" in errors[2]
    assert "UnprintableAndUnpicklable" in errors[5]


# -- 5. a task function that forks ----------------------------------------------------
def forks(x):
    import os
    import sys

    pid = os.fork()
    if pid == 0:
        if x % 2:
            sys.exit(0)  # the child ends with SystemExit
        return -1  # the child returns: papy's loop must not go on in it
    os.waitpid(pid, 0)
    return x * 2


@pytest.mark.parametrize("chunksize", [1, 3])
@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_5_a_process_forked_by_the_function_never_runs_papys_loop(worker_type, chunksize):
    import psutil

    before = {c.pid for c in psutil.Process().children(recursive=True)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() from a threaded process
        with IMap(forks, range(9), worker_type=worker_type, worker_num=2, chunksize=chunksize) as m:
            got = outcomes(iter(m))
            lost = getattr(m._run.pool, "lost", 0)
    assert got == [x * 2 for x in range(9)] and lost == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = {
            c.pid
            for c in psutil.Process().children(recursive=True)
            if c.status() != psutil.STATUS_ZOMBIE
        } - before
        if not left:
            break
        time.sleep(0.05)
    assert not left, f"orphans: {left}"


# -- 6. stop() while an input blocks ----------------------------------------------------
def blocking_input(gate):
    yield 1
    yield 2
    gate.wait(60)  # blocks until the test ends
    yield 3


@pytest.mark.parametrize("how", ["stop", "stop-ends", "exit"])
@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_6_stop_returns_at_once_while_the_input_blocks(worker_type, how):
    import psutil

    gate = threading.Event()
    try:
        m = IMap(worker_type=worker_type, worker_num=2, stride=8)
        out = m.add_task(inc, blocking_input(gate))
        m.start()
        assert [next(out), next(out)] == [2, 3]
        workers = list(m._run.pool.pids()) if worker_type == "process" else []
        t0 = time.monotonic()
        if how == "stop":
            m.stop()
        elif how == "stop-ends":
            m.stop(ends=[0])
        else:
            m.__exit__(None, None, None)
        assert time.monotonic() - t0 < 1.0
        assert not any(psutil.pid_exists(p) and not _gone(p) for p in workers)
    finally:
        gate.set()


# -- 7. exceptions of the consuming thread are not items ---------------------------------
class Alarm(Exception):
    pass


def nap_half(x):
    time.sleep(0.3)
    return x


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_7_a_signal_handler_that_raises_reaches_the_reader_of_a_piper(worker_type):
    import signal

    from papy.pipeline import Piper

    def alarm(signum, frame):
        raise Alarm

    old = signal.signal(signal.SIGALRM, alarm)
    m = IMap(worker_type=worker_type, worker_num=1, chunksize=1)
    p = Piper(lambda inbox: nap_half(inbox[0]), parallel=m)
    try:
        p.connect([[1, 2, 3]])
        p.start()
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Alarm):
            next(p)  # the alarm goes off while the reader waits
        assert [next(p) for _ in range(3)] == [1, 2, 3]  # nothing lost, nothing added
        with pytest.raises(StopIteration):
            next(p)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        p.stop(forced=True)
        m.stop()


# -- 8. a quiet interpreter exit with a map running --------------------------------------
EXIT_SCRIPT = """
import logging, sys, time
import papy

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def work(x):
    time.sleep(0.05)
    return x


if __name__ == "__main__":
    m = papy.IMap(work, range(10**6), worker_num=2, chunksize=1)
    next(m)
    print("exiting", flush=True)
"""


def test_8_exit_with_a_running_process_map_is_quiet(tmp_path, sched_implementation):
    import os
    import subprocess
    import sys

    if sched_implementation.is_pure_python:
        pytest.skip("independent of the core: runs once, in the [c] instance")
    script = tmp_path / "exits.py"
    script.write_text(EXIT_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for _ in range(6):
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=30
        )
        assert done.returncode == 0 and done.stdout == "exiting\n"
        assert done.stderr == "", done.stderr
        assert time.monotonic() - t0 < 10


# -- 10. a task function that starts processes of its own ---------------------------------
def uses_a_pool(x):
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(abs, (-x,))


def uses_an_imap(x):
    return sum(papy.imap(abs, range(-x, 0), worker_num=1, worker_type="process"))


@pytest.mark.parametrize(
    "func, want", [(uses_a_pool, abs), (uses_an_imap, lambda x: x * (x + 1) // 2)]
)
def test_10_a_worker_may_start_processes(func, want):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with IMap(func, range(4), worker_num=2, chunksize=1) as m:
            assert list(m) == [want(x) for x in range(4)]
