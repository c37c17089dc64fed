"""Results: values, exceptions at their position, ordering, timeouts and skipping,
tracking, on thread and process workers and every start method."""

from __future__ import annotations

import functools
import multiprocessing
import time

import pytest

import papy
from papy import IMap, RemoteTraceback

pytestmark = pytest.mark.timeout(90)

WORKER_TYPES = ["thread", "process"]


def inc(x):
    return x + 1


def inverse(x):
    return 1 / x


def nap(x):
    time.sleep(x)
    return x


def sleep_then(x):
    time.sleep(0.1 / x)
    return x


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_exception_is_raised_at_its_position_and_iteration_continues(worker_type, workers):
    with IMap(inc, [1, "a", 3], worker_type=worker_type, worker_num=workers) as m:
        assert next(m) == 2
        with pytest.raises(TypeError) as info:
            next(m)
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "in inc" in str(info.value.__cause__)
        assert next(m) == 4
        with pytest.raises(StopIteration):
            next(m)
    with IMap(inverse, [1.0, 0.0, 3.0], worker_type=worker_type, worker_num=workers) as m:
        assert next(m) == 1.0
        with pytest.raises(ZeroDivisionError):
            next(m)
        assert next(m) == 1 / 3


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_args_and_kwargs_are_appended_to_each_call(worker_type):
    def show(x, *args, **kwargs):
        return (x, args, kwargs)

    if worker_type == "process":
        show = functools.partial(_show)
    with IMap(worker_type=worker_type, worker_num=2) as m:
        out = m.add_task(show, range(3), args=("arg_0", "arg_1"), kwargs={"kwarg_0": "val_0"})
        m.start()
        assert list(out) == [(i, ("arg_0", "arg_1"), {"kwarg_0": "val_0"}) for i in range(3)]


def _show(x, *args, **kwargs):
    return (x, args, kwargs)


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_ordered_and_unordered(worker_type):
    data = [0.5, 1, 2, 3, 4]
    with IMap(sleep_then, data, worker_type=worker_type, worker_num=4, stride=4) as m:
        assert list(m) == data
    with IMap(
        sleep_then, data, worker_type=worker_type, worker_num=4, stride=4, ordered=False
    ) as m:
        got = list(m)
    assert sorted(got) == sorted(data) and got != data
    for kw in ({"worker_num": 1}, {"worker_num": 4, "stride": 1, "buffer": 1}):
        with IMap(sleep_then, data, worker_type=worker_type, ordered=False, **kw) as m:
            assert list(m) == data


# "fork" is chosen on purpose here; a thread that another test module leaves running
# (dask's offload thread) makes Python 3.12+ warn about that fork
START_METHODS = [
    pytest.param(method, marks=pytest.mark.filterwarnings("ignore:This process:DeprecationWarning"))
    if method == "fork"
    else method
    for method in multiprocessing.get_all_start_methods()
]


@pytest.mark.parametrize("method", START_METHODS)
def test_process_workers_under_every_start_method(method):
    offset = 10
    closure = lambda x: x + offset  # noqa: E731 - a lambda closing over a local
    with IMap(worker_num=2, start_method=method) as m:
        a = m.add_task(closure, range(20))
        b = m.add_task(functools.partial(pow, exp=2), a)
        c = m.add_task(inc, b)
        m.start()
        assert list(c) == [(x + offset) ** 2 + 1 for x in range(20)]


class CountedPickles:
    """A callable that counts how often the parent pickles it."""

    pickled = 0

    def __call__(self, x):
        return x * 2

    def __reduce__(self):
        CountedPickles.pickled += 1
        return (CountedPickles, ())


def test_function_is_pickled_once_not_per_item():
    CountedPickles.pickled = 0
    with IMap(worker_num=2) as m:
        out = m.add_task(CountedPickles(), range(200))
        m.start()
        assert list(out) == [2 * x for x in range(200)]
    assert CountedPickles.pickled == 1


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_timeout_error_is_both_builtin_and_multiprocessing(worker_type):
    with IMap(nap, [1.0], worker_type=worker_type, worker_num=1) as m:
        with pytest.raises(TimeoutError) as info:
            m.next(timeout=0.05)
        assert isinstance(info.value, multiprocessing.TimeoutError)
        assert isinstance(info.value, papy.TimeoutError)
        with pytest.raises(multiprocessing.TimeoutError):
            m.next(block=False)
        assert m.next() == 1.0


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_timeout_without_skip_returns_the_late_result_later(worker_type):
    data = [0.3, 0.01, 0.3, 0.01]
    with IMap(nap, data, worker_type=worker_type, worker_num=1, stride=1) as m:
        got = []
        while True:
            try:
                got.append(m.next(timeout=0.1))
            except papy.TimeoutError:
                got.append("T")
            except StopIteration:
                break
    assert [x for x in got if x != "T"] == data
    assert "T" in got


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
@pytest.mark.parametrize("ordered", [True, False])
def test_timeout_with_skip_drops_the_late_item_for_good(worker_type, ordered):
    data = [0.01, 0.6, 0.01, 0.01]
    with IMap(
        nap, data, worker_type=worker_type, worker_num=1, stride=1, skip=True, ordered=ordered
    ) as m:
        assert m.next(timeout=5) == 0.01
        with pytest.raises(papy.TimeoutError):
            m.next(timeout=0.1)
        rest = list(m)
    assert rest == [0.01, 0.01]  # 0.6 is never returned, and nothing hangs


def test_skip_bug_of_the_original_is_fixed():
    # Original: [.5, .01, .52, .53], 3 workers, stride 4, two skips while a later
    # result was queued returned a skipped value and then hung.
    data = [0.5, 0.01, 0.52, 0.53]
    with IMap(nap, data, worker_type="thread", worker_num=3, stride=4, skip=True) as m:
        got = []
        while True:
            try:
                got.append(m.next(timeout=0.2))
            except papy.TimeoutError:
                got.append("T")
            except StopIteration:
                break
    values = [x for x in got if x != "T"]
    assert got.count("T") >= 1
    assert 0.5 not in values  # the skipped item never comes back
    assert len(values) + got.count("T") == len(data)


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_track_records_every_result_handed_out(worker_type):
    with IMap(worker_type=worker_type, worker_num=2) as m:
        out = m.add_task(inc, [1, "x", 3], track=True)
        m.start()
        assert next(out) == 2
        with pytest.raises(TypeError):
            next(out)
        assert next(out) == 4
        tracked = m.tracked[0]
    assert tracked[0] == 2 and tracked[2] == 4 and isinstance(tracked[1], TypeError)


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_chained_timeouts_keep_counts_aligned(worker_type):
    # skip=False: the upstream's late item still flows downstream in order.
    data = [0.4, 0.01, 0.01]
    with IMap(worker_type=worker_type, worker_num=1, stride=1) as m:
        a = m.add_task(nap, data, timeout=0.05)
        b = m.add_task(inc, a)
        m.start()
        assert list(b) == [x + 1 for x in data]
    # skip=True: the late upstream item becomes a timeout error at its position.
    data = [1.5, 0.01, 0.01]
    with IMap(worker_type=worker_type, worker_num=2, stride=1, skip=True) as m:
        a = m.add_task(nap, data, timeout=0.7)
        b = m.add_task(inc, a)
        m.start()
        got = []
        while True:
            try:
                got.append(next(b))
            except papy.TimeoutError:
                got.append("T")
            except StopIteration:
                break
    assert got == ["T", 1.01, 1.01]


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_many_items_many_tasks(worker_type):
    with IMap(worker_type=worker_type, worker_num=2, stride=3) as m:
        a = m.add_task(inc, range(500))
        b = m.add_task(inc, a)
        c = m.add_task(inc, range(300))
        m.start()
        assert [(next(b), next(c)) for _ in range(300)] == [(x + 2, x + 1) for x in range(300)]
        assert list(b) == [x + 2 for x in range(300, 500)]


def test_unordered_chain_delivers_everything():
    with IMap(worker_type="thread", worker_num=3, stride=2, ordered=False) as m:
        a = m.add_task(inc, range(200))
        b = m.add_task(inc, a)
        m.start()
        assert sorted(b) == [x + 2 for x in range(200)]


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
@pytest.mark.parametrize("chunksize", [2, 7])
def test_chunksize_keeps_results_and_errors_in_place(worker_type, chunksize):
    data = [1, 2, "x", 4] * 20
    with IMap(
        inc, data, worker_type=worker_type, worker_num=2, buffer=32, chunksize=chunksize
    ) as m:
        got = []
        while True:
            try:
                got.append(next(m))
            except TypeError:
                got.append("E")
            except StopIteration:
                break
    assert got == [2, 3, "E", 5] * 20


def test_input_error_reaches_the_consumer_and_every_dependent_task():
    def source():
        yield 1
        yield 2
        raise ValueError("bad source")

    with IMap(worker_type="thread", worker_num=2) as m:
        a = m.add_task(inc, source())
        b = m.add_task(inc, a)
        m.start()
        assert next(b) == 3
        assert next(b) == 4
        with pytest.raises(papy.InputError) as info:
            next(b)
        assert isinstance(info.value.__cause__, ValueError)
        with pytest.raises(StopIteration):
            next(b)


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_chunksize_auto_picks_a_batch_from_the_buffer(worker_type):
    m = IMap(worker_type=worker_type, worker_num=2, buffer=64, chunksize="auto")
    assert m._chunk_for(64) == 16 and m.stride == 2  # one batch per worker to begin with
    data = list(range(300)) + ["x"] + list(range(5))
    got = []
    with m:
        out = m.add_task(inc, data)
        m.start()
        while True:
            try:
                got.append(next(out))
            except TypeError:
                got.append("E")
            except StopIteration:
                break
    assert got == [x + 1 for x in range(300)] + ["E"] + [x + 1 for x in range(5)]
    assert list(
        papy.imap(inc, range(100), worker_type=worker_type, chunksize="auto", buffer=32)
    ) == [x + 1 for x in range(100)]
    with pytest.raises(ValueError, match="chunksize"):
        IMap(chunksize="big")
