"""The seed's evaluation traces and buffer rules, recorded on one thread worker.

With a single worker, tasklets are evaluated exactly in submission order, so
the recorded order *is* the scheduler's weave. The same rules are then checked
on one process worker (recording through a file).
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest

from papy import DeadlockError, IMap, TimeoutError

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """A thread-safe log of evaluation events, usable as a worker function factory."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def tag(self, name: str):
        def f(x):
            with self.lock:
                self.events.append(f"{name}{x}")
            return x

        return f

    def wait_for(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            time.sleep(0.005)

    def settled(self, n: int) -> list[str]:
        """Wait for ``n`` events, give the map time to do more (it must not), return them."""
        self.wait_for(n)
        time.sleep(0.15)
        return list(self.events)


class Source:
    """An endless generator that counts how far it was read."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self):
        for i in itertools.count():
            self.pulled = i + 1
            yield i


def one_thread(**kw) -> IMap:
    return IMap(worker_type="thread", worker_num=1, **kw)


def test_weave_two_independent_tasks_stride_2():
    rec = Recorder()
    with one_thread(stride=2) as m:
        left = m.add_task(rec.tag("L"), range(4))
        right = m.add_task(rec.tag("R"), range(4))
        m.start()
        out = []
        for _ in range(2):
            out += [next(left), next(left), next(right), next(right)]
        assert out == [0, 1, 0, 1, 2, 3, 2, 3]
        assert rec.events == ["L0", "L1", "R0", "R1", "L2", "L3", "R2", "R3"]
        with pytest.raises(StopIteration):
            next(left)
        with pytest.raises(StopIteration):
            next(right)


def test_chain_of_three_stride_2_evaluation_order():
    rec = Recorder()
    with one_thread(stride=2, buffer=6) as m:
        a = m.add_task(rec.tag("A"), range(5))
        b = m.add_task(rec.tag("B"), a)
        c = m.add_task(rec.tag("C"), b)
        m.start()
        assert list(c) == [0, 1, 2, 3, 4]
    assert rec.events == "A0 A1 B0 B1 C0 C1 A2 A3 B2 B3 C2 C3 A4 B4 C4".split()


def test_buffer_6_stride_2_six_evaluations_then_one_per_read():
    rec = Recorder()
    with one_thread(stride=2, buffer=6) as m:
        left = m.add_task(rec.tag("L"), range(6))
        right = m.add_task(rec.tag("R"), range(6))
        m.start()
        assert rec.settled(6) == ["L0", "L1", "R0", "R1", "L2", "L3"]
        next(left)
        assert rec.settled(7)[6:] == ["R2"]
        next(left)
        assert rec.settled(8)[6:] == ["R2", "R3"]
        next(right)
        assert rec.settled(9)[8:] == ["L4"]


def test_one_task_reads_at_most_buffer_plus_one_ahead():
    src = Source()
    rec = Recorder()
    with one_thread(stride=2) as m:
        out = m.add_task(rec.tag("A"), src)
        m.start()
        rec.settled(2)
        assert src.pulled <= 2 + 1
        for k in range(1, 6):
            assert next(out) == k - 1
            rec.settled(2 + k)
            assert src.pulled <= k + 2 + 1
        assert len(rec.events) == 7


def test_chain_stride_3_buffer_3_waits_for_the_consumer():
    rec = Recorder()
    with one_thread(stride=3, buffer=3) as m:
        a = m.add_task(rec.tag("A"), range(9))
        b = m.add_task(rec.tag("B"), a)
        m.start()
        assert rec.settled(6) == ["A0", "A1", "A2", "B0", "B1", "B2"]
        assert next(b) == 0
        assert rec.settled(7)[6:] == ["A3"]
        assert list(b) == list(range(1, 9))


@pytest.mark.parametrize("stride", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("extra", [0, 1, 5])
def test_chains_need_only_buffer_equal_stride(stride, extra):
    with IMap(worker_type="thread", worker_num=2, stride=stride, buffer=stride + extra) as m:
        t = m.add_task(abs, range(50))
        for _ in range(3):
            t = m.add_task(abs, t)
        m.start()
        assert list(t) == list(range(50))


def test_two_chained_two_chained():
    # t0 = x+1(inp), t1 = x-1(t0), t2 = x+1(inp), t3 = x-1(t1), t4 = x-1(t2)
    inc, dec = (lambda x: x + 1), (lambda x: x - 1)
    for stride, workers in [(1, 1), (2, 3), (5, 2), (8, 8)]:
        with IMap(worker_type="thread", worker_num=workers, stride=stride) as m:
            t0 = m.add_task(inc, range(30))
            t1 = m.add_task(dec, t0)
            t2 = m.add_task(inc, range(30))
            t3 = m.add_task(dec, t1)
            t4 = m.add_task(dec, t2)
            m.start()
            pairs = [(next(t3), next(t4)) for _ in range(30)]
            assert pairs == [(x - 1, x) for x in range(30)]
            for t in (t4, t3, t2, t1, t0):
                with pytest.raises(StopIteration):
                    next(t)


@pytest.mark.parametrize("stride", [1, 2, 3, 7, 8, 9])
def test_three_way_join(stride):
    with IMap(worker_type="thread", worker_num=2, stride=stride, buffer=4 * stride) as m:
        t0 = m.add_task(abs, range(100))
        t1 = m.add_task(abs, range(100))
        t2 = m.add_task(abs, range(100))
        t3 = m.add_task(tuple, zip(t0, t1, t2))
        m.start()
        assert list(t3) == [(i, i, i) for i in range(100)]


def test_reading_out_of_weave_order_is_a_deadlock_error_not_a_hang():
    rec = Recorder()
    with one_thread(stride=1, buffer=2, deadlock_grace=0.2) as m:
        t0 = m.add_task(rec.tag("L"), range(10))
        m.add_task(rec.tag("R"), range(10))
        m.start()
        assert next(t0) == 0
        assert next(t0) == 1
        start = time.monotonic()
        with pytest.raises(DeadlockError, match="buffer"):
            next(t0)
        assert time.monotonic() - start < 5


def test_a_shorter_timeout_wins_over_deadlock_detection():
    with one_thread(stride=1, buffer=2, deadlock_grace=2.0) as m:
        t0 = m.add_task(abs, range(10))
        m.add_task(abs, range(10))
        m.start()
        next(t0), next(t0)
        with pytest.raises(TimeoutError):
            t0.next(timeout=0.1)


def test_reading_all_of_task_0_is_fine_with_a_buffer_for_all_results():
    with one_thread(stride=1, buffer=20) as m:
        t0 = m.add_task(abs, range(10))
        t1 = m.add_task(abs, range(10))
        m.start()
        assert list(t0) == list(range(10))
        assert list(t1) == list(range(10))


def _file_tag(x, tag, path):
    with open(path, "a") as fh:
        fh.write(f"{tag}{x} ")
    return x


@pytest.mark.timeout(120)
def test_weave_and_chain_on_one_process_worker(tmp_path):
    log = str(tmp_path / "log")
    with IMap(worker_type="process", worker_num=1, stride=2) as m:
        left = m.add_task(_file_tag, range(4), args=("L", log))
        right = m.add_task(_file_tag, range(4), args=("R", log))
        m.start()
        out = []
        for _ in range(2):
            out += [next(left), next(left), next(right), next(right)]
    assert out == [0, 1, 0, 1, 2, 3, 2, 3]
    assert Path(log).read_text().split() == ["L0", "L1", "R0", "R1", "L2", "L3", "R2", "R3"]

    log = str(tmp_path / "chain")
    with IMap(worker_type="process", worker_num=1, stride=2, buffer=6) as m:
        a = m.add_task(_file_tag, range(5), args=("A", log))
        b = m.add_task(_file_tag, a, args=("B", log))
        c = m.add_task(_file_tag, b, args=("C", log))
        m.start()
        assert list(c) == [0, 1, 2, 3, 4]
    assert Path(log).read_text().split() == "A0 A1 B0 B1 C0 C1 A2 A3 B2 B3 C2 C3 A4 B4 C4".split()
