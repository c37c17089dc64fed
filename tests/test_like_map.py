"""``papy.imap`` is like the builtin ``map``: several iterables zipped, ``starmap``,
a context manager, an initializer per worker, clear errors for unknown keywords.
Real thread and process pools and papy's server; both cores."""

from __future__ import annotations

import itertools
import os

import pytest

import papy
from papy import IMap

pytestmark = pytest.mark.timeout(120)

WORKER_TYPES = ["thread", "process"]


def add3(a, b, c=0):
    return a + b + c


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_several_iterables_are_zipped_like_map(worker_type):
    xs, ys = [1, 2, 3, 4], [10, 20, 30]
    # (was: the second iterable became the constant `args`, or failed in the worker)
    assert list(papy.imap(pow, xs, [2, 2, 2, 2], worker_type=worker_type, worker_num=2)) == list(
        map(pow, xs, [2, 2, 2, 2])
    )
    assert list(papy.imap(add3, xs, ys, worker_type=worker_type)) == [11, 22, 33]  # shortest
    assert list(papy.imap(add3, xs, ys, [100] * 3, worker_type=worker_type)) == [111, 122, 133]
    assert list(papy.imap(pow, xs, [5], worker_type=worker_type)) == [1]  # not a constant 5
    endless = papy.imap(add3, itertools.count(), itertools.count(), worker_type=worker_type)
    assert [next(endless) for _ in range(3)] == [0, 2, 4]
    endless.close()
    assert list(papy.imap(add3, xs, ys, kwargs={"c": 1000}, worker_type=worker_type)) == [
        1011,
        1022,
        1033,
    ]


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_starmap(worker_type):
    pairs = [(2, 3), (3, 2), (10, 0)]
    assert list(papy.starmap(pow, pairs, worker_type=worker_type)) == list(
        itertools.starmap(pow, pairs)
    )
    assert list(papy.starmap(add3, [(1, 2)], args=(3,), worker_type=worker_type)) == [6]
    with pytest.raises(TypeError, match="arguments"):
        list(papy.starmap(pow, [(1, 2, 3, 4)], worker_type=worker_type))


def test_the_iterator_is_a_context_manager():
    with papy.imap(abs, range(-5, 5), worker_type="thread", worker_num=2) as results:
        assert next(results) == 5
        m = results.imap
        assert m.started
    assert not m.started  # leaving the block stopped the workers
    with pytest.raises(StopIteration):
        next(results)
    assert papy.imap.__doc__ and papy.starmap.__doc__


def test_bad_calls_name_what_is_wrong():
    with pytest.raises(TypeError, match="at least one iterable"):
        papy.imap(abs)
    with pytest.raises(TypeError, match=r"imap\(\) got an unexpected keyword argument 'workers'"):
        papy.imap(abs, [1], workers=2)
    with pytest.raises(TypeError, match=r"starmap\(\) got an unexpected keyword argument 'cores'"):
        papy.starmap(pow, [(1, 2)], cores=2)
    with pytest.raises(TypeError, match="initargs must be a tuple or list"):
        IMap(worker_type="thread", initializer=print, initargs="x")
    with pytest.raises(TypeError, match="initializer must be callable"):
        IMap(worker_type="thread", initializer="setup")


# -- initializer / initargs -------------------------------------------------------------
_state: dict[str, object] = {}


def remember(tag):
    _state["tag"] = (tag, os.getpid())


def tagged(x):
    tag, pid = _state.get("tag", (None, None))
    return (x, tag, pid == os.getpid())


def refuse():
    raise OSError("no database")


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_the_initializer_runs_once_in_each_worker(worker_type):
    if worker_type == "thread":
        _state.clear()
    got = list(
        papy.imap(
            tagged, range(20), worker_type=worker_type, worker_num=2, initializer=remember,
            initargs=("ready",), chunksize=1,
        )
    )  # fmt: skip
    assert [g[0] for g in got] == list(range(20))
    assert all(g[1] == "ready" and g[2] for g in got)


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_an_initializer_that_raises_fails_the_items_of_its_worker(worker_type):
    m = IMap(tagged, range(3), worker_type=worker_type, worker_num=1, initializer=refuse)
    with m:
        for _ in range(3):
            with pytest.raises(papy.InitializerError, match="OSError: no database"):
                next(m)
        with pytest.raises(StopIteration):
            next(m)


def test_the_initializer_reaches_papys_server(tmp_path):
    from test_remote import papy_server

    server = papy_server(tmp_path)
    try:
        got = list(
            papy.imap(
                tagged, range(6), worker_num=0, worker_remote=[(server.address, 2)],
                initializer=remember, initargs=("remote",),
            )
        )  # fmt: skip
        assert [g[1] for g in got] == ["remote"] * 6
        with pytest.raises(papy.InitializerError, match="no database"):
            list(papy.imap(tagged, [1], worker_num=0, worker_remote=[(server.address, 1)],
                           initializer=refuse))  # fmt: skip
    finally:
        server.kill()


def test_an_executor_takes_its_own_initializer():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex, pytest.raises(ValueError, match="its own initializer"):
        IMap(executor=ex, initializer=remember)
