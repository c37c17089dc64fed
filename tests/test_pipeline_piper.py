"""Piper: lifecycle, error values, debug, timeouts, consume/produce/spawn, tees."""

from __future__ import annotations

import time

import pytest

import papy
from papy import IMap
from papy.pipeline import Piper, PiperError, Worker, WorkerError
from papy.pipeline.util import ipasser, npasser

pytestmark = pytest.mark.timeout(60)


def power2(inbox):
    return inbox[0] ** 2


def mul2(inbox):
    return inbox[0] * 2


def sum_consumed(inbox):
    return sum(row[0] for row in inbox)


def sleeper(inbox):
    time.sleep(inbox[0])
    return inbox[0]


def pair(inbox):
    return (inbox[0], inbox[0] + 1)


def fail_on_3(inbox):
    if inbox[0] == 3:
        raise ValueError("three")
    return inbox[0]


def run(piper, data):
    piper.connect([data])
    piper.start()
    try:
        return list_items(piper)
    finally:
        piper.stop(forced=True)
        piper.disconnect()


def list_items(piper):
    out = []
    while True:
        try:
            out.append(next(piper))
        except StopIteration:
            return out


@pytest.fixture(params=["linear", "thread", "process"])
def parallel(request):
    if request.param == "linear":
        yield False
        return
    m = IMap(worker_type=request.param, worker_num=2)
    yield m
    m.stop()


# -- lifecycle ----------------------------------------------------------------------
def test_lifecycle_errors():
    p = Piper(power2)
    with pytest.raises(PiperError):
        next(p)  # not started
    with pytest.raises(PiperError):
        p.start()  # not connected
    with pytest.raises(PiperError):
        p.disconnect()
    p.connect([[1, 2]])
    with pytest.raises(PiperError):
        p.connect([[1, 2]])
    with pytest.raises(PiperError):
        p.stop()  # not started
    p.start()
    with pytest.raises(PiperError):
        p.disconnect()  # started
    assert next(p) == 1
    with pytest.raises(PiperError):
        p.stop()  # not finished
    assert list_items(p) == [4]
    assert p.finished
    p.stop()
    p.disconnect()
    p.connect([[3]]).start()
    assert list_items(p) == [9]


def test_connect_checks_its_arguments_and_the_imap_state():
    with pytest.raises(TypeError):
        Piper(power2).connect("abc")
    with pytest.raises(TypeError):
        Piper(power2).connect([1])
    with pytest.raises(TypeError):
        Piper(power2, parallel=True)
    with pytest.raises(ValueError):
        Piper(power2, timeout=1)  # a linear Piper cannot time out
    with pytest.raises(ValueError):
        Piper(power2, consume=0)
    m = IMap(worker_type="thread", worker_num=1)
    a = Piper(power2, parallel=m).connect([[1]])
    a.start()
    try:
        with pytest.raises(PiperError, match="already started"):
            Piper(mul2, parallel=m).connect([[1]])
    finally:
        m.stop()


def test_worker_forms():
    assert Piper(Piper(power2)).worker == Worker(power2)
    assert Piper([power2, Worker(mul2)]).worker.__name__ == "power2>mul2"
    assert Piper(power2, name="sq").name == "sq"
    with pytest.raises(TypeError):
        Piper(1)


def test_disconnect_pops_the_tasks_of_the_last_piper_only():
    m = IMap(worker_type="thread", worker_num=1)
    a = Piper(power2, parallel=m, spawn=2).connect([[1]])
    b = Piper(mul2, parallel=m).connect([a])
    assert m.n_tasks == 3
    with pytest.raises(PiperError, match="not the last"):
        a.disconnect()
    b.disconnect()
    assert m.n_tasks == 2
    a.disconnect()
    assert m.n_tasks == 0


# -- error values (reference section 6, case 18) ------------------------------------
def test_a_failed_item_is_an_error_value_at_its_position(parallel):
    out = run(Piper(power2, parallel=parallel, name="sq"), [1, "a", 3])
    assert out[0] == 1 and out[2] == 9 and len(out) == 3
    err = out[1]
    assert isinstance(err, WorkerError) and isinstance(err.exception, TypeError)
    assert (err.piper, err.index, err.function) == ("sq", 1, "power2")
    assert "power2" in err.traceback  # formatted where it was raised, also in a worker process


def test_debug_raises_and_iteration_goes_on(parallel):
    p = Piper(power2, parallel=parallel, debug=True)
    p.connect([[1, "a", 3]]).start()
    try:
        assert next(p) == 1
        with pytest.raises(WorkerError) as info:
            next(p)
        assert isinstance(info.value.exception, TypeError)
        assert next(p) == 9
        with pytest.raises(StopIteration):
            next(p)
    finally:
        p.stop(forced=True)


def test_errors_travel_downstream_without_nesting(parallel):
    sq = Piper(power2, parallel=parallel, name="sq")
    db = Piper(mul2, parallel=parallel, name="db")
    sq.connect([[1, "a", 3]])
    db.connect([sq])
    sq.start()
    db.start()
    out = list_items(db)
    assert out[0] == 2 and out[2] == 18
    err = out[1]
    assert type(err) is WorkerError and isinstance(err.exception, TypeError)
    assert (err.piper, err.index) == ("sq", 1)
    assert db.stats == {"in": 3, "out": 3, "errors": 1, "failed": 0}
    assert sq.stats == {"in": 3, "out": 3, "errors": 1, "failed": 1}
    db.stop(forced=True)
    sq.stop(forced=True)


def test_an_exception_raised_by_an_input_iterable_becomes_an_error_value(parallel):
    def source():
        yield 1
        raise KeyError("source broke")

    out = run(Piper(power2, parallel=parallel, name="in"), source())
    assert out[0] == 1
    assert isinstance(out[1], WorkerError) and out[1].piper == "in" and out[1].index == 1
    assert len(out) == 2


def test_a_debug_raise_upstream_is_raised_again_downstream(parallel):
    up = Piper(power2, debug=True, name="up")
    down = Piper(mul2, parallel=parallel, name="down")
    up.connect([[1, "a", 3]])
    down.connect([up])
    up.start()
    down.start()
    try:
        assert next(down) == 2
        with pytest.raises(WorkerError) as info:
            next(down)
        assert info.value.piper == "up"
        assert next(down) == 18
        with pytest.raises(StopIteration):
            next(down)
    finally:
        down.stop(forced=True)


# -- timeouts (case 19) ---------------------------------------------------------------
@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_timeout_skips_the_late_item_and_keeps_counts_aligned(worker_type):
    # two workers: the late item keeps one busy (a worker cannot be interrupted); the
    # timeout leaves room for starting the workers (a forkserver may take a second)
    m = IMap(worker_type=worker_type, worker_num=2)
    p = Piper(sleeper, parallel=m, timeout=2.0, name="slow")
    out = run(p, [0.05, 3.0, 0.05, 0.05])
    assert m.skip is False  # the Piper's own tasks skip; the map's setting is untouched
    assert len(out) == 4
    assert out[0] == 0.05 and out[2] == 0.05 and out[3] == 0.05
    assert isinstance(out[1], WorkerError)
    assert isinstance(out[1].exception, papy.TimeoutError)
    assert (out[1].piper, out[1].index, out[1].function) == ("slow", 1, "<timeout>")


# -- produce / consume / spawn (case 20) --------------------------------------------------
def stride3():
    return IMap(worker_type="thread", worker_num=1, stride=3)


def test_produce_interleaving_with_stride_3_keeps_the_trailing_items():
    m = stride3()
    data = [(x * 10 + 1, x * 10 + 2) for x in range(1, 8)]
    out = run(Piper(ipasser, parallel=m, produce=2), data)
    assert out == [11, 21, 31, 12, 22, 32, 41, 51, 61, 42, 52, 62, 71, 72]


def test_repeat_interleaving_with_stride_3():
    out = run(Piper(ipasser, parallel=stride3(), produce=2, repeat=True), list(range(7)))
    assert out == [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 6]


def test_consume_interleaving_with_stride_3_regroups_what_produce_split():
    data = [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 6]
    out = run(Piper(npasser, parallel=stride3(), consume=2), data)
    assert [[row[0] for row in batch] for batch in out] == [[i, i] for i in range(7)]


def test_consume_without_stride_gives_contiguous_groups():
    out = run(
        Piper(lambda inbox: " ".join(r[0] for r in inbox), consume=2),
        ["hello", "world", "hi", "folks"],
    )
    assert out == ["hello world", "hi folks"]


def test_produce_a_failed_item_yields_error_values_not_data():
    def two(inbox):
        if inbox[0] == 2:
            raise ValueError("two")
        return (inbox[0], -inbox[0])

    for parallel in (False, stride3()):
        out = run(Piper(two, parallel=parallel, produce=2, name="two"), [1, 2, 3, 4])
        errors = [o for o in out if isinstance(o, WorkerError)]
        values = [o for o in out if not isinstance(o, WorkerError)]
        assert len(out) == 8 and len(errors) == 2
        assert sorted(values) == [-4, -3, -1, 1, 3, 4]
        assert all(
            e.piper == "two" and e.index == 1 and isinstance(e.exception, ValueError)
            for e in errors
        )


def test_produce_needs_a_long_enough_sequence():
    out = run(Piper(ipasser, produce=2, name="p"), [(1, 2), (3,), 5])
    assert out[:2] == [1, 2]
    assert all(isinstance(e, WorkerError) and isinstance(e.exception, ValueError) for e in out[2:])
    assert [e.index for e in out[2:]] == [1, 1, 2, 2]


@pytest.mark.parametrize("n", [6, 7])
def test_produce_spawn_consume(n):
    m = stride3()
    data = [(x * 10 + 1, x * 10 + 2) for x in range(1, n + 1)]
    prod = Piper(ipasser, parallel=m, produce=2)
    dbl = Piper(mul2, parallel=m, spawn=2)
    cons = Piper(sum_consumed, parallel=m, consume=2)
    prod.connect([data])
    dbl.connect([prod])
    cons.connect([dbl])
    for p in (prod, dbl, cons):
        p.start()
    out = list_items(cons)
    m.stop()
    expected = [46, 86, 126, 166, 206, 246, 286][:n]
    assert out == expected


def test_produce_consume_linear():
    prod = Piper(ipasser, produce=2)
    cons = Piper(sum_consumed, consume=2)
    prod.connect([[(11, 12), (21, 22), (31, 32)]])
    cons.connect([prod])
    prod.start()
    cons.start()
    assert list_items(cons) == [23, 43, 63]


def test_spawn_keeps_the_order(parallel):
    out = run(Piper(mul2, parallel=parallel, spawn=3), list(range(11)))
    assert out == [2 * x for x in range(11)]


# -- tees and fan-out (case 21) -----------------------------------------------------------
def test_one_source_feeding_two_pipers(parallel):
    src = Piper(ipasser, name="src")
    sq = Piper(power2, parallel=parallel)
    db = Piper(mul2, parallel=parallel)
    src.connect([range(1, 7)])
    sq.connect([src])
    db.connect([src])
    for p in (src, sq, db):
        p.start()
    assert list(zip(sq, db)) == [(1, 2), (4, 4), (9, 6), (16, 8), (25, 10), (36, 12)]
    assert src.stats["out"] == 6


def test_tracking():
    p = Piper(power2, track=True)
    out = run(p, [1, "a", 3])
    assert list(p.tracked) == [0, 1, 2] and p.tracked[2] == 9 and p.tracked[1] is out[1]


def test_a_consumer_that_would_make_its_shared_imap_wait_for_itself_is_refused():
    m = stride3()
    up = Piper(mul2, parallel=m, name="up").connect([range(4)])
    with pytest.raises(PiperError, match="wait for itself"):
        Piper(sum_consumed, parallel=m, consume=2).connect([up])
    via_linear = Piper(mul2, name="linear", consume=2).connect([up])
    with pytest.raises(PiperError, match="wait for itself"):
        Piper(mul2, parallel=m).connect([via_linear])
    ok = Piper(sum_consumed, parallel=IMap(worker_type="thread", worker_num=1, stride=3), consume=2)
    ok.connect([up])  # another IMap: another feeder thread, no problem
    up.start()
    ok.start()
    assert list(ok) == [0 + 4, 2 + 6]  # a short last block (4 rows) is dealt with stride 2
    m.stop()
    ok.imap.stop()
