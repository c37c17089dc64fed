"""Faults end in a clear error at the right position, never in a hang or a leak.

Numbers refer to the cases of the "What happens when things fail" section of
the README. Every test runs under a hard timeout, on both scheduler cores.
"""

from __future__ import annotations

import _thread
import ctypes
import faulthandler
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import psutil
import pytest

import papy
from papy import DeadlockError, IMap, TaskletAbortedError, WorkerLostError

pytestmark = pytest.mark.timeout(60)

WORKER_TYPES = ["thread", "process"]


# -- helpers ----------------------------------------------------------------
def collect(it):
    """Drain an iterator, recording each exception in place as its type."""
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


class NoLeaks:
    """Snapshot of children, threads and fds; ``check()`` waits for them to return."""

    def __init__(self):
        self.me = psutil.Process()
        self.threads = threading.active_count()
        self.fds = self.me.num_fds()
        # multiprocessing's forkserver and resource tracker may already run: not ours
        self.baseline = {c.pid for c in self.me.children()}

    def check(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            gc.collect()
            children = [
                c
                for c in self.me.children()
                if c.pid not in self.baseline and c.status() != psutil.STATUS_ZOMBIE
            ]
            if (
                not children
                and threading.active_count() <= self.threads
                and self.me.num_fds() <= self.fds
            ):
                return
            time.sleep(0.05)
        children = [c for c in self.me.children() if c.pid not in self.baseline]
        raise AssertionError(
            f"leak: children={children} threads={threading.active_count()}>{self.threads} "
            f"fds={self.me.num_fds()}>{self.fds}"
        )


@pytest.fixture
def no_leaks():
    return NoLeaks()


def inc(x):
    return x + 1


def nap(x):
    time.sleep(x)
    return x


# -- 1. a worker process dies --------------------------------------------------
def die(x):
    if x == 2:
        os._exit(3)
    if x == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    if x == 6:
        # a real SIGSEGV; the worker inherits pytest's faulthandler, whose
        # traceback dump on the terminal would only be noise here
        faulthandler.disable()
        ctypes.string_at(0)  # segfault
    return x


def test_1_dead_workers_fail_their_item_and_are_replaced(no_leaks):
    start = time.monotonic()
    with IMap(die, range(9), worker_num=2) as m:
        got = collect(m)
        assert m._run.pool.alive() == 2
        assert m._run.pool.lost == 3
    assert kinds(got) == [0, 1, "WorkerLostError", 3, "WorkerLostError", 5, "WorkerLostError", 7, 8]
    assert "exited with code 3" in str(got[2])
    assert "SIGKILL" in str(got[4]) and "item 4" in str(got[4])
    assert "SIGSEGV" in str(got[6])
    assert time.monotonic() - start < 20
    no_leaks.check()


def kill_me(x):
    if x == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_1_worker_loss_is_detected_within_about_a_second():
    with IMap(worker_num=1, stride=1) as m:
        out = m.add_task(kill_me, [0, 1, 2])
        m.start()
        assert next(out) == 0
        t0 = time.monotonic()
        with pytest.raises(WorkerLostError):
            next(out)
        assert time.monotonic() - t0 < 1.5
        assert next(out) == 2


def flaky_kill(x, marker):
    """Kills its worker the first time it sees item 1 (the marker file remembers)."""
    if x == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def test_1_retries_rerun_the_item_of_a_lost_worker(tmp_path):
    marker = str(tmp_path / "killed")
    with IMap(flaky_kill, range(4), args=(marker,), worker_num=2, retries=1) as m:
        assert list(m) == [0, 10, 20, 30]


def test_1_worker_loss_on_a_chain_keeps_counts_aligned():
    with IMap(worker_num=2) as m:
        a = m.add_task(die, range(8))
        b = m.add_task(inc, a)
        m.start()
        got = kinds(collect(b))
    assert got == [1, 2, "WorkerLostError", 4, "WorkerLostError", 6, "WorkerLostError", 8]


# -- 2. things that cannot be pickled ----------------------------------------
class Unpicklable:
    def __reduce__(self):
        raise TypeError("I refuse to be pickled")


def _define_needs_two_args():
    """Define, at test time, an exception that pickles but cannot be unpickled.

    Defined late on purpose: importing dask.distributed registers reducers for
    every exception class that exists at that moment, which would fix it.
    """

    class NeedsTwoArgs(Exception):
        def __init__(self, a, b):
            super().__init__(a)
            self.b = b

    NeedsTwoArgs.__qualname__ = "NeedsTwoArgs"
    globals()["NeedsTwoArgs"] = NeedsTwoArgs


def bad_result(x):
    if x == 1:
        return Unpicklable()
    if x == 2:
        err = ValueError("holds a lock")
        err.lock = threading.Lock()
        raise err
    if x == 3:
        raise NeedsTwoArgs("a", "b")  # noqa: F821 - defined by _define_needs_two_args
    return x


def test_2_unpicklable_results_exceptions_and_arguments_on_processes(no_leaks):
    _define_needs_two_args()  # defined late: only a forked worker has it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        with IMap(bad_result, range(5), worker_num=2, start_method="fork") as m:
            got = collect(m)
    assert kinds(got) == [0, "SerializationError", "SerializationError", "SerializationError", 4]
    assert "result of item 1" in str(got[1])
    assert "ValueError" in str(got[2]) and "holds a lock" in str(got[2])
    assert "NeedsTwoArgs" in str(got[3])
    with IMap(repr, [1, Unpicklable(), 3], worker_num=2) as m:
        got = collect(m)
    assert kinds(got) == ["1", "SerializationError", "3"]
    assert "item 1" in str(got[1])
    no_leaks.check()


def test_2_thread_workers_need_no_pickling():
    _define_needs_two_args()
    with IMap(bad_result, range(5), worker_type="thread", worker_num=2) as m:
        got = collect(m)
    assert isinstance(got[1], Unpicklable)
    assert kinds(got)[2:] == ["ValueError", "NeedsTwoArgs", 4]


# -- 3. BaseException inside the function -------------------------------------
def base_exceptions(x):
    if x == 1:
        raise SystemExit(3)
    if x == 2:
        raise KeyboardInterrupt
    return x


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_3_base_exceptions_are_reported_at_their_position(worker_type, no_leaks):
    with IMap(base_exceptions, range(4), worker_type=worker_type, worker_num=2) as m:
        got = []
        while True:
            try:
                got.append(next(m))
            except StopIteration:
                break
            except TaskletAbortedError as exc:
                got.append(str(exc))
    assert got[0] == 0 and got[3] == 3
    assert "SystemExit" in got[1] and "item 1" in got[1]
    assert "KeyboardInterrupt" in got[2]
    no_leaks.check()


# -- 4. the source iterable raises --------------------------------------------
def broken_source():
    yield 1
    yield 2
    raise OSError("disk on fire")


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_4_input_errors_reach_every_dependent_task(worker_type):
    with IMap(worker_type=worker_type, worker_num=2) as m:
        a = m.add_task(inc, broken_source())
        b = m.add_task(inc, a)
        c = m.add_task(inc, b)
        m.start()
        got = collect(c)
    assert kinds(got) == [4, 5, "InputError"]
    assert isinstance(got[2].__cause__, OSError)
    assert "disk on fire" in str(got[2])


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_4_upstream_function_errors_flow_downstream_at_their_position(worker_type):
    with IMap(worker_type=worker_type, worker_num=2) as m:
        a = m.add_task(inc, [1, "x", 3])
        b = m.add_task(inc, a)
        m.start()
        assert kinds(collect(b)) == [3, "TypeError", 5]


# -- 5. a consumer order that can never progress --------------------------------
@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_5_deadlock_is_detected_and_explained(worker_type):
    with IMap(worker_type=worker_type, worker_num=1, stride=1, buffer=2, deadlock_grace=0.3) as m:
        t0 = m.add_task(inc, range(10))
        t1 = m.add_task(inc, range(10))
        m.start()
        assert [next(t0), next(t0)] == [1, 2]
        with pytest.raises(DeadlockError, match="stride") as info:
            next(t0)
        assert "weave order" in str(info.value)
        # The map is still usable: reading task 1 frees the buffer.
        assert next(t1) == 1
        assert next(t0) == 3
        # A timeout shorter than the grace period wins.
        m.deadlock_grace = 5
    with IMap(worker_type=worker_type, worker_num=1, stride=1, buffer=2, deadlock_grace=5) as m:
        t0 = m.add_task(inc, range(10))
        m.add_task(inc, range(10))
        m.start()
        next(t0), next(t0)
        with pytest.raises(papy.TimeoutError):
            t0.next(timeout=0.2)


# -- 6. the consumer stops early -------------------------------------------------
def slow(x):
    time.sleep(0.01)
    return x


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_6_break_out_of_papy_imap(worker_type, no_leaks):
    for x in papy.imap(slow, range(10**6), worker_type=worker_type, worker_num=2):
        if x == 3:
            break
    no_leaks.check()


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_6_garbage_collected_imap_stops_its_workers(worker_type, no_leaks):
    m = IMap(slow, range(10**6), worker_type=worker_type, worker_num=2)
    assert next(m) == 0
    del m
    no_leaks.check()


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_6_stop_mid_stream_and_context_manager_exit(worker_type, no_leaks):
    m = IMap(slow, range(10**6), worker_type=worker_type, worker_num=2)
    next(m)
    t0 = time.monotonic()
    m.stop()
    assert time.monotonic() - t0 < 3
    with pytest.raises(RuntimeError, match="not started"):
        next(m)
    with pytest.raises(ZeroDivisionError):
        with IMap(slow, range(10**6), worker_type=worker_type, worker_num=2) as m2:
            next(m2)
            1 / 0
    no_leaks.check()


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_6_graceful_stop_evaluates_every_item_read(worker_type):
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    src = endless()
    with IMap(worker_type=worker_type, worker_num=2, stride=2) as m:
        a = m.add_task(inc, src, track=True)
        b = m.add_task(inc, a, track=True)
        m.start()
        assert next(b) == 2
        tracked = m.tracked
        m.stop(ends=[1])
    consumed = next(src)
    assert len(tracked[0]) == len(tracked[1]) == consumed
    assert consumed <= 2 + 2 * 2 + 2 * 2  # the first read plus at most two strides


# -- 7. Ctrl-C while waiting for a result ----------------------------------------
@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_7_keyboard_interrupt_while_waiting_shuts_down_and_propagates(worker_type, no_leaks):
    m = IMap(
        nap, [100.0] if worker_type == "process" else [3.0], worker_type=worker_type, worker_num=1
    )
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        next(m)
    assert time.monotonic() - t0 < 2.5
    timer.join()
    assert m._run is not None and m._run.shut
    m.stop()
    if worker_type == "process":
        no_leaks.check()


# -- 8. the interpreter exits while a map runs -------------------------------------
@pytest.mark.parametrize("worker_type", WORKER_TYPES)
@pytest.mark.parametrize("how", ["running", "blocked-in-function"])
def test_8_interpreter_exits_promptly_with_a_running_map(worker_type, how):
    script = textwrap.dedent(
        f"""
        import time, papy
        def work(x):
            time.sleep(60 if {how == "blocked-in-function"} else 0.01)
            return x
        m = papy.IMap(work, iter(range(10**9)), worker_type={worker_type!r}, worker_num=2)
        if {how != "blocked-in-function"}:
            next(m)
        print("exiting", flush=True)
        """
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert "exiting" in proc.stdout
    assert time.monotonic() - t0 < 15


# -- 9. timeouts and skipping on chains ----------------------------------------------


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
@pytest.mark.parametrize("skip", [False, True])
def test_9_timeouts_on_a_chain_never_hang_and_keep_counts(worker_type, skip):
    data = [0.3, 0.01, 0.3, 0.01, 0.01]
    with IMap(worker_type=worker_type, worker_num=2, stride=1, skip=skip) as m:
        a = m.add_task(nap, data, timeout=0.1)
        b = m.add_task(inc, a)
        m.start()
        got = []
        while True:
            try:
                got.append(b.next(timeout=0.1))
            except papy.TimeoutError:
                got.append("T")
            except StopIteration:
                break
    values = [g for g in got if g != "T"]
    if skip:
        # every position of the input is accounted for exactly once downstream:
        # a value, or a timeout (upstream or downstream)
        assert len(values) + got.count("T") == len(data)
        it = iter(data)
        assert all(any(v == x + 1 for x in it) for v in values)  # an ordered subsequence
    else:
        assert values == [x + 1 for x in data]
