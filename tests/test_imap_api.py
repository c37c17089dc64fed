"""IMap's public API: argument validation, lifecycle, iteration protocols."""

from __future__ import annotations

import builtins
import multiprocessing
import os

import pytest

import papy
from papy import IMap, NuMap, TaskIterator

pytestmark = pytest.mark.timeout(60)


def inc(x):
    return x + 1


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"func": inc}, ValueError, "iterable"),
        ({"iterable": [1]}, ValueError, "func"),
        ({"worker_type": "fiber"}, ValueError, "worker_type"),
        ({"worker_num": 0}, ValueError, "worker_num"),
        ({"worker_num": -1}, ValueError, "worker_num"),
        ({"worker_num": 1.5}, TypeError, "worker_num"),
        ({"stride": 0}, ValueError, "stride"),
        ({"stride": "2"}, TypeError, "stride"),
        ({"stride": 4, "buffer": 3}, ValueError, "buffer"),
        ({"worker_num": 2, "buffer": 1}, ValueError, "buffer"),
        ({"buffer": 0}, ValueError, "buffer"),
        ({"name": 3}, TypeError, "name"),
        ({"worker_remote": "host"}, TypeError, "worker_remote"),
        ({"worker_remote": [("host",)]}, TypeError, "worker_remote"),
        ({"worker_remote": [("host:notaport", 1)]}, ValueError, "worker_remote"),
        ({"worker_remote": [("host", 0)]}, ValueError, "worker_remote"),
        ({"chunksize": 0}, ValueError, "chunksize"),
        ({"start_method": "teleport"}, ValueError, "start_method"),
        ({"deadlock_grace": -1}, ValueError, "deadlock_grace"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        IMap(**kwargs)


def test_numap_defaults_follow_the_seed():
    m = NuMap()
    assert m.worker_type == "process"
    assert m.worker_num == os.cpu_count()
    assert m.stride == m.worker_num and m.chunksize == 1 and not m.auto_chunksize
    assert m.buffer is None  # number of tasks x stride, fixed at start()
    assert m._buffer_for(3) == 3 * m.stride
    assert m.ordered and not m.skip
    m2 = NuMap(worker_num=3, worker_remote=[("h1", 1), ("h2:18813", 4)])
    assert m2.stride == 8
    assert m2.worker_remote == [("h1:18812", 1), ("h2:18813", 4)]
    assert NuMap(worker_num=0, worker_remote=[("localhost", 2)]).stride == 2


def test_imap_defaults_are_fast():
    m = IMap(worker_num=2)
    assert m.worker_type == "process" and m.ordered and not m.skip
    assert m.auto_chunksize  # batches sized from the measured cost of an item
    # a turn of the weave is one batch per worker; batches start at one tasklet
    # and follow the measured cost of an item while the map runs
    assert m.stride == 2
    assert m._buffer_for(1) == 2 * 8192 and m._buffer_for(9000) == 9000 * m.stride
    assert IMap(worker_num=0, worker_remote=[("localhost", 2)]).stride == 2
    # a stride or buffer given explicitly follows the seed's rules
    assert IMap(worker_num=2, stride=3)._buffer_for(2) == 6
    assert IMap(worker_num=2, buffer=5).stride == 2
    assert IMap(worker_num=2, chunksize=100).stride == 200
    assert IMap(worker_num=2, chunksize=100, buffer=50).stride == 50


def test_a_remote_server_that_is_down_fails_start_with_its_address():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    m = IMap(worker_num=0, worker_remote=[(f"127.0.0.1:{port}", 1)])
    m.add_task(inc, [1])
    with pytest.raises(Exception, match=f"127.0.0.1:{port}"):
        m.start()
    assert not m.started


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((1, [1]), {}, TypeError, "func"),
        ((inc, 5), {}, TypeError, "iterable"),
        ((inc, [1]), {"args": 5}, TypeError, "args"),
        ((inc, [1]), {"args": "ab"}, TypeError, "args"),
        ((inc, [1]), {"kwargs": [1]}, TypeError, "kwargs"),
        ((inc, [1]), {"kwargs": {1: 2}}, TypeError, "kwargs"),
        ((inc, [1]), {"timeout": -1}, ValueError, "timeout"),
        ((inc, [1]), {"timeout": "1"}, TypeError, "timeout"),
    ],
)
def test_add_task_rejects_bad_arguments(args, kwargs, exc, match):
    m = IMap(worker_type="thread", worker_num=1)
    with pytest.raises(exc, match=match):
        m.add_task(*args, **kwargs)
    assert m.n_tasks == 0


def test_unpicklable_function_fails_at_add_task_for_process_workers():
    import threading

    lock = threading.Lock()
    m = IMap(worker_num=1)
    with pytest.raises(TypeError, match="func"):
        m.add_task(inc, [1], args=(lock,))


def test_lifecycle_errors():
    m = IMap(worker_type="thread", worker_num=1)
    with pytest.raises(RuntimeError, match="start"):
        m.next()
    with pytest.raises(RuntimeError, match="add_task"):
        m.start()
    m.add_task(inc, [1, 2])
    m.start()
    with pytest.raises(RuntimeError, match="add_task"):
        m.add_task(inc, [1])
    with pytest.raises(RuntimeError, match="pop_task"):
        m.pop_task(1)
    with pytest.raises(IndexError, match="task"):
        m.next(task=3)
    with pytest.raises(TypeError, match="task"):
        m.next(task="0")
    assert [m.next(), m.next()] == [2, 3]
    for _ in range(3):
        with pytest.raises(StopIteration):
            m.next()
    m.stop()
    with pytest.raises(RuntimeError, match="not started"):
        m.next()


def test_pop_task():
    m = IMap(worker_type="thread", worker_num=1)
    for _ in range(3):
        m.add_task(inc, [1])
    m.pop_task(2)
    assert m.n_tasks == 1
    with pytest.raises(ValueError, match="number"):
        m.pop_task(2)
    m.pop_task(True)
    assert m.n_tasks == 0


def test_restart_after_stop():
    m = IMap(worker_type="thread", worker_num=2)
    out = m.add_task(inc, range(100))
    m.start()
    assert next(out) == 1
    m.stop(ends=[0])
    m.add_task(lambda x: x * 2, [9])
    m.start()
    assert m.next() == 18
    m.stop()


def test_func_and_iterable_start_at_once_and_empty_inputs_are_fine():
    with IMap(inc, [], worker_type="thread", worker_num=1) as m:
        assert m.started
        for _ in range(3):
            with pytest.raises(StopIteration):
                next(m)
    with IMap(inc, iter(()), worker_type="thread", worker_num=1) as m:
        assert list(m) == []


def test_iteration_protocols():
    with IMap(inc, range(5), worker_type="thread", worker_num=2) as m:
        it = iter(m)
        assert isinstance(it, TaskIterator)
        assert next(it) == 1
        assert m.next() == 2
        assert it.next(timeout=5) == 3
        assert m.get_task(0).next() == 4
        assert list(m) == [5]


def test_multistop():
    with IMap(inc, [1, 2], worker_type="thread", worker_num=1) as m:
        assert [next(m), next(m)] == [2, 3]
        for _ in range(3):
            with pytest.raises(StopIteration):
                next(m)


def test_numap_and_public_api():
    assert issubclass(NuMap, IMap)
    for name in papy.__all__:
        assert getattr(papy, name) is not None
    assert issubclass(papy.TimeoutError, builtins.TimeoutError)
    assert issubclass(papy.TimeoutError, multiprocessing.TimeoutError)


def test_call_is_add_task_and_get_task():
    m = IMap(worker_type="thread", worker_num=1)
    t = m(inc, [1, 2, 3])
    m.start()
    assert list(m.get_task(0)) == [2, 3, 4]
    assert list(t) == []
    m.stop()


def test_imap_function_validates_at_call_and_runs():
    with pytest.raises(TypeError, match="func"):
        papy.imap(5, [1])
    with pytest.raises(ValueError, match="worker_type"):
        papy.imap(inc, [1], worker_type="nope")
    assert list(papy.imap(inc, range(20), worker_type="thread", worker_num=3)) == list(range(1, 21))
    assert list(papy.imap(pow, range(5), args=(2,), worker_type="thread")) == [0, 1, 4, 9, 16]


def test_context_manager_stops_on_exception():
    with pytest.raises(KeyError):
        with IMap(inc, range(10**6), worker_type="thread", worker_num=2) as m:
            next(m)
            raise KeyError("boom")
    assert not m.started
