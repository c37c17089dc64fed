"""Dagger: the graph of Pipers, its deterministic orders, and its lifecycle."""

from __future__ import annotations

import itertools
import random

import pytest

from papy import IMap
from papy.pipeline import Dagger, DaggerError, Piper, Worker
from papy.pipeline.util import ipasser, njoiner

pytestmark = pytest.mark.timeout(60)


def power2(inbox):
    return inbox[0] ** 2


def mul2(inbox):
    return inbox[0] * 2


def add(inbox):
    return inbox[0] + inbox[1]


def names(pipers):
    return [p.name for p in pipers]


def drain(piper):
    return list(piper)


def test_add_and_delete_pipers():
    d = Dagger()
    created, p = d.add_piper(power2)
    assert created and isinstance(p, Piper) and p in d
    w = Worker(mul2)
    _, a = d.add_piper(w)
    _, b = d.add_piper(w)
    assert a is not b and len(d) == 3  # a Worker (or function) makes a new Piper each time
    with pytest.raises(DaggerError, match="already in this Dagger"):
        d.add_piper(a)  # a Piper is one node: adding it again is a mistake, refused
    with pytest.raises(DaggerError):
        d.add_piper(Piper(mul2, name=a.name))  # names are unique in a Dagger
    with pytest.raises(DaggerError):
        d.add_piper(1)
    assert d.resolve(a.name) is a and d.resolve("nope", forgive=True) is False
    with pytest.raises(DaggerError):
        d.resolve(Piper(mul2))
    d.del_piper(b)
    assert b not in d and len(d) == 2


def test_add_pipe_and_del_piper_with_downstream():
    a, b, c = Piper(power2, name="a"), Piper(mul2, name="b"), Piper(mul2, name="c")
    d = Dagger()
    assert d.add_pipe((a, b, c)) == [a, b, c]
    assert d.pipes == [(a, b), (b, c)]
    assert d.get_inputs() == [a] and d.get_outputs() == [c]
    with pytest.raises(DaggerError, match="downstream"):
        d.del_piper(b)
    d.del_piper(b, forced=True)
    assert d.pipes == [] and names(d.pipers) == ["a", "c"]


def test_a_refused_cycle_stays_refused_and_leaves_the_graph_unchanged():
    a, b, c = (Piper(power2, name=n) for n in "abc")
    d = Dagger(pipes=[(a, b, c)])
    before = d.pipes
    for _ in range(3):
        with pytest.raises(DaggerError, match="cycle"):
            d.add_pipe((c, a))
        assert d.pipes == before
    with pytest.raises(DaggerError, match="cycle"):
        d.add_pipe((c, Piper(mul2, name="x"), b))
    assert "x" not in names(d.pipers) and d.pipes == before
    with pytest.raises(DaggerError):
        d.add_pipe((a, a))
    d.add_pipe((a, c))  # not a cycle: a shortcut
    assert (a, c) in d.pipes


def test_del_pipes_works_and_removes_pipers_left_alone():
    a, b, c, x = (Piper(power2, name=n) for n in "abcx")
    d = Dagger(pipes=[(a, b, c), (a, x)])
    d.del_pipes([(b, c)])
    assert c not in d and d.pipes == [(a, b), (a, x)]
    d.del_pipes([(a, b), (a, x)])
    assert len(d) == 0
    with pytest.raises(DaggerError):
        d.del_pipe((a, b))


def test_del_pipers_does_not_change_the_callers_list():
    pipers = [Piper(power2, name=n) for n in "abc"]
    d = Dagger(pipers)
    arg = list(pipers)
    d.del_pipers(arg)
    assert arg == pipers and len(d) == 0


def test_postorder_with_branches_case_22():
    p = {i: Piper(power2, name=str(i)) for i in range(1, 8)}
    branches = {2: "C", 3: "D", 4: "A", 5: "B", 7: 0, 6: 1}
    for i, b in branches.items():
        p[i].branch = b
    d = Dagger()
    for i in range(1, 8):
        d.add_piper(p[i])
    for up, down in [(1, 2), (1, 3), (3, 4), (3, 5), (4, 6), (4, 7), (5, 6)]:
        d.add_pipe((p[up], p[down]))
    assert names(d.postorder()) == ["1", "2", "3", "4", "7", "5", "6"]
    assert names(d.get_inputs()) == ["1"]
    assert names(d.get_outputs()) == ["7", "6", "2"]  # by type name (int < str), then value


def test_inbox_order_follows_pipe_order_then_branches():
    dbl1, dbl2, total = Piper(mul2, name="dbl1"), Piper(mul2, name="dbl2"), Piper(add, name="sum")
    d = Dagger()
    d.add_pipe((dbl1, dbl2, total))
    d.add_pipe((dbl1, total))
    assert d.upstream(total) == [dbl2, dbl1]  # in the order the pipes were added
    dbl1.branch, dbl2.branch = 1, 2
    del d  # a Piper is a node of one Dagger at a time
    d2 = Dagger(pipes=[(dbl1, dbl2, total), (dbl1, total)])
    assert d2.upstream(total) == [dbl1, dbl2]  # branches first


def test_join_inbox_order_and_input_order_are_deterministic():
    # two inputs; branch decides which data each gets and the join's inbox order
    results = set()
    for _ in range(5):
        first = Piper(ipasser, branch=2, name="first")
        second = Piper(ipasser, branch=1, name="second")
        join = Piper(Worker(njoiner, kwargs={"join": " "}), name="join")
        d = Dagger(pipes=[(first, join), (second, join)])
        assert d.get_inputs() == [second, first]
        d.connect([["hello", "world"], ["world", "hello"]])
        d.start()
        results.add(tuple(join))
        d.stop()
        d.disconnect()
    assert results == {("hello world", "world hello")}  # inbox: [second, first]


def test_connect_needs_datas_for_every_input():
    a, b = Piper(power2, name="a"), Piper(mul2, name="b")
    d = Dagger(pipes=[(a, b)])
    with pytest.raises(DaggerError):
        d.connect()
    with pytest.raises(DaggerError):
        d.connect([[1], [2]])
    with pytest.raises(DaggerError):
        d.start()  # not connected


def diamond(i, stride, seed):
    rng = random.Random(seed)
    imaps = [IMap(worker_type="thread", worker_num=2, stride=stride) for _ in range(2)]
    choice = lambda: rng.choice([False, *imaps])  # noqa: E731
    pwr = Piper(power2, parallel=choice(), name="pwr")
    dbl1 = Piper(mul2, parallel=choice(), name="dbl1")
    dbl2 = Piper(mul2, parallel=choice(), name="dbl2")
    total = Piper(add, parallel=choice(), name="sum")
    d = Dagger(pipes=[(pwr, dbl1, total), (pwr, dbl2, total)])
    d.connect([range(i)])
    d.start()
    out = list(total)
    d.stop()
    d.disconnect()
    return out


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_diamond_start_stop_case_21(stride):
    for i, seed in zip([0, 1, 5, 11], itertools.count(stride * 10)):
        assert diamond(i, stride, seed) == [4 * x * x for x in range(i)]


def test_stop_on_an_endless_input_evaluates_every_item_read():
    m = IMap(worker_type="thread", worker_num=2)
    source = itertools.count()
    p1 = Piper(power2, parallel=m, track=True, name="p1")
    p2 = Piper(mul2, parallel=m, track=True, name="p2")
    d = Dagger(pipes=[(p1, p2)])
    d.connect([source])
    d.start()
    for _ in range(5):
        next(p2)
    d.stop()
    consumed = next(source)
    assert len(p1.tracked) == len(p2.tracked) == consumed
    assert p2.tracked == {i: 2 * i * i for i in range(consumed)}
    assert not m.started


def test_deadlock_grace_is_switched_off_only_for_imaps_read_by_several_threads_and_restored():
    a_map = IMap(worker_type="thread", worker_num=1, deadlock_grace=0.5)
    b_map = IMap(worker_type="thread", worker_num=1, deadlock_grace=0.5)
    a = Piper(power2, parallel=a_map, name="a")
    b = Piper(mul2, parallel=b_map, name="b")
    c = Piper(mul2, name="c")
    d = Dagger(pipes=[(a, b), (a, c)])  # a is read by b_map's feeder and by the output reader
    d.connect([range(4)])
    d.start()
    assert a_map.deadlock_grace is None and b_map.deadlock_grace == 0.5
    assert list(zip(b, c)) == [(0, 0), (2, 2), (8, 8), (18, 18)]
    d.stop()
    assert a_map.deadlock_grace == 0.5


def test_restart_after_stop_and_disconnect():
    m = IMap(worker_type="thread", worker_num=2)
    a, b = Piper(power2, parallel=m, name="a"), Piper(mul2, parallel=m, name="b")
    d = Dagger(pipes=[(a, b)])
    for data in ([1, 2], [3]):
        d.connect([data])
        d.start()
        out = list(b)
        d.stop()
        d.disconnect()
        assert out == [2 * x * x for x in data]
