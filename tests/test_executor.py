"""``IMap(executor=...)``: any concurrent.futures executor under papy's scheduling.

Covered: ThreadPoolExecutor (nothing pickled), ProcessPoolExecutor, loky, and
a real local dask.distributed cluster (started once for the module) through
``Client.get_executor()``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import pytest

import papy
from papy import IMap, RemoteTraceback, WorkerLostError

pytestmark = pytest.mark.timeout(60)

KINDS = ["thread", "process", "loky", "dask"]

#: a ProcessPoolExecutor's processes: started by a forkserver where there is one,
#: since this process runs threads (the fixtures' executors, dask's) and a fork
#: would copy them (Python 3.12+ warns); the default start method elsewhere
MP_CONTEXT = (
    multiprocessing.get_context("forkserver")
    if "forkserver" in multiprocessing.get_all_start_methods()
    else None
)


# -- executors (started once per module) ------------------------------------------
@pytest.fixture(scope="module")
def thread_executor():
    with ThreadPoolExecutor(2) as ex:
        yield ex


@pytest.fixture(scope="module")
def process_executor():
    with ProcessPoolExecutor(2, mp_context=MP_CONTEXT) as ex:
        yield ex


@pytest.fixture(scope="module")
def loky_executor():
    loky = pytest.importorskip("loky")
    ex = loky.get_reusable_executor(max_workers=2)
    yield ex
    ex.shutdown(wait=True)


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    # no dashboard; its HTTP server (which runs anyway) on a free port, not on 8787,
    # which another cluster on this machine may hold (distributed warns then)
    cluster = LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def dask_executor(dask_client):
    return dask_client.get_executor()


@pytest.fixture(params=KINDS)
def executor(request: pytest.FixtureRequest) -> Executor:
    return request.getfixturevalue(f"{request.param}_executor")


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


# -- functions -----------------------------------------------------------------------
def square(x):
    return x * x


def nap(x):
    time.sleep(x)
    return x


def fail_on_two(x):
    if x == 2:
        raise ValueError(f"no twos here ({x})")
    if x == 3:
        raise SystemExit(3)
    return x


def exit_on_one(x):
    if x == 1:
        os._exit(7)
    time.sleep(0.05)
    return x


def roll(x):
    return random.random()


# -- behaviour ---------------------------------------------------------------------
def test_chained_tasks_with_lambdas_and_closures(executor):
    offset = 100
    with IMap(executor=executor, worker_num=2) as m:
        assert m.worker_type == "executor" and m.stride == 2  # a batch per worker
        sq = m.add_task(square, range(10))
        shifted = m.add_task(lambda y: y + offset, sq)  # closures travel via the payload
        roots = m.add_task(math.sqrt, shifted)
        m.start()
        assert list(roots) == [math.sqrt(x * x + offset) for x in range(10)]


def test_default_worker_num_is_the_executors(process_executor):
    m = IMap(executor=process_executor)
    assert m.worker_num == 2 and m.stride == 2


def test_errors_arrive_at_their_position_with_the_workers_traceback(executor):
    with IMap(fail_on_two, range(5), executor=executor, worker_num=2) as m:
        got = collect(m)
    assert kinds(got) == [0, 1, "ValueError", "TaskletAbortedError", 4]
    assert isinstance(got[2].__cause__, RemoteTraceback)
    assert "fail_on_two" in got[2].__cause__.tb and "no twos here (2)" in got[2].__cause__.tb


def test_unpicklable_items_fail_alone(executor):
    items = [1, threading.Lock(), 3]
    with IMap(type, items, executor=executor, worker_num=2, chunksize=3) as m:
        got = collect(m)
    if executor.__class__ is ThreadPoolExecutor:  # nothing is pickled
        assert got == [int, type(items[1]), int]
    else:
        assert kinds(got) == [int, "SerializationError", int]


def test_ordering_timeouts_and_skip_come_from_papy(executor):
    delays = [0.2, 0.0, 0.05, 0.0]
    with IMap(nap, delays, executor=executor, worker_num=2) as m:
        assert list(m) == delays
    with IMap(nap, delays, executor=executor, worker_num=2, ordered=False) as m:
        assert sorted(m) == sorted(delays)
    with IMap(nap, [0.6, 0.0], executor=executor, worker_num=2, skip=True) as m:
        with pytest.raises(papy.TimeoutError):
            m.next(timeout=0.1)
        assert m.next() == 0.0
        with pytest.raises(StopIteration):
            m.next()


def test_dask_evaluates_identical_items_of_an_impure_function_separately(dask_executor):
    with IMap(roll, [0] * 6, executor=dask_executor, worker_num=2) as m:
        first = list(m)
    with IMap(lambda x: random.random(), [0] * 6, executor=dask_executor, worker_num=2) as m:
        second = list(m)
    assert len(set(first)) == 6 and len(set(second)) == 6
    assert not set(first) & set(second)


def test_dask_runs_on_the_clusters_worker_processes(dask_client, dask_executor):
    worker_pids = set(dask_client.run(os.getpid).values())
    with IMap(lambda x: os.getpid(), range(12), executor=dask_executor, worker_num=2) as m:
        pids = set(m)
    assert pids <= worker_pids and os.getpid() not in pids


def test_a_lost_worker_fails_its_items_and_the_map_ends():
    with (
        ProcessPoolExecutor(1, mp_context=MP_CONTEXT) as ex,
        IMap(exit_on_one, range(4), executor=ex, worker_num=1, chunksize=1) as m,
    ):
        got = collect(m)
    assert got[0] == 0
    assert isinstance(got[1], WorkerLostError) and "item 1" in str(got[1])
    assert all(isinstance(r, WorkerLostError) for r in got[1:])  # the pool is broken


class SpyExecutor(Executor):
    """Delegates submit() to a thread pool, refuses map(); not a ThreadPoolExecutor."""

    def __init__(self) -> None:
        self.inner = ThreadPoolExecutor(2)
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return self.inner.submit(fn, *args, **kwargs)

    def map(self, *args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("papy must not use the executor's map()")

    def shutdown(self, wait=True, **kwargs):
        self.inner.shutdown(wait)


def test_only_submit_is_used_and_stopping_leaves_the_executor_alone():
    spy = SpyExecutor()
    try:
        with IMap(lambda x: -x, range(6), executor=spy, worker_num=2, chunksize=2, buffer=4) as m:
            assert list(m) == [-x for x in range(6)]
        assert 3 <= spy.submitted <= 6
        m = IMap(nap, [0.3] * 6, executor=spy, worker_num=2)
        assert m.next() == 0.3
        t0 = time.monotonic()
        m.stop()
        assert time.monotonic() - t0 < 0.5
        assert spy.submit(square, 4).result(timeout=5) == 16  # still usable
    finally:
        spy.shutdown()


class FlakyExecutor(Executor):
    """Loses the first batch it is given (BrokenExecutor), then behaves."""

    def __init__(self) -> None:
        self.inner = ThreadPoolExecutor(1)
        self.calls = 0

    def submit(self, fn, /, *args, **kwargs):
        from concurrent.futures import BrokenExecutor, Future

        self.calls += 1
        if self.calls == 1:
            fut: Future = Future()
            fut.set_exception(BrokenExecutor("worker vanished"))
            return fut
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait=True, **kwargs):
        self.inner.shutdown(wait)


@pytest.mark.parametrize("retries", [0, 1])
def test_batches_of_a_lost_worker_are_retried_while_retries_allow(retries):
    flaky = FlakyExecutor()
    try:
        with IMap(
            square, range(3), executor=flaky, worker_num=1, retries=retries, chunksize=1
        ) as m:
            got = collect(m)
    finally:
        flaky.shutdown()
    if retries:
        assert got == [0, 1, 4]
    else:
        assert kinds(got) == ["WorkerLostError", 1, 4]
        assert "worker vanished" in str(got[0])
