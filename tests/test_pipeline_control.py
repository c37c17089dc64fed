"""A Plumber stays in control: pause() and stop() return whatever the input and the
workers do; stopped Pipers end; failures are counted, logged, and can end a run."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
import time

import pytest

from _timing import within
from papy import IMap, NuMap
from papy.pipeline import Dagger, DaggerError, Piper, Plumber, PlumberError, Worker, WorkerError
from papy.pipeline.util import ipasser

pytestmark = pytest.mark.timeout(60)

#: what "about a second" may take on a busy machine
PROMPT = 2.0


def inc(inbox):
    return inbox[0] + 1


def power2(inbox):
    return inbox[0] ** 2


def slow_ms(inbox):
    time.sleep(0.001)
    return inbox[0]


def sleepy(inbox):
    time.sleep(4)  # longer than pause() and stop() may take
    return inbox[0]


def slow_at_3(inbox):
    if inbox[0] == 3:
        time.sleep(3)
    return inbox[0]


def fail_at_5(inbox):
    if inbox[0] == 5:
        raise ValueError("five")
    return inbox[0]


def always_fails(inbox):
    raise ValueError(f"bad {inbox[0]}")


def children():
    return {p.pid for p in multiprocessing.active_children()}


def no_new_children(before):
    deadline = time.monotonic() + 1.0
    while children() - before and time.monotonic() < deadline:
        time.sleep(0.02)
    return not (children() - before)


MAPS = {
    "linear": lambda: False,
    "thread1": lambda: IMap(worker_type="thread", worker_num=2, chunksize=1),
    "thread": lambda: IMap(worker_type="thread", worker_num=2),
    "process": lambda: IMap(worker_type="process", worker_num=2),
    "numap": lambda: NuMap(worker_type="process", worker_num=2),
}


@pytest.fixture
def release():
    """An event the blocking inputs wait for; set at the end, so their threads end."""
    event = threading.Event()
    yield event
    event.set()


def blocking_source(release):
    yield 1
    release.wait()  # blocks until the test is over


# -- A: pause() and stop() stay in control -------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "thread", "process", "numap"])
def test_pause_and_stop_return_when_the_input_blocks(kind, release):
    before = children()
    p = Piper(inc, parallel=MAPS[kind](), name="p", track=True)
    pl = Plumber(pipes=[(Piper(ipasser, name="src"), p)])
    pl.start([blocking_source(release)])
    pl.run()
    deadline = time.monotonic() + 10
    while p.stats["out"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.stats["out"] == 1
    assert within(PROMPT, pl.pause) < PROMPT
    assert not pl.running and not pl.finished
    assert within(PROMPT, pl.stop) < PROMPT
    assert not pl.started
    assert no_new_children(before)
    assert p.tracked == {0: 2}
    assert pl.stats["pipers"][p]["out"] == 1


@pytest.mark.parametrize("kind", ["linear", "thread", "process", "numap"])
def test_pause_and_stop_return_while_a_worker_is_slow(kind):
    before = children()
    p = Piper(sleepy, parallel=MAPS[kind](), name="p", track=True)
    pl = Plumber(pipes=[(Piper(ipasser, name="src"), p)])
    pl.start([itertools.count()])
    pl.run()
    time.sleep(0.3)
    assert within(PROMPT, pl.pause) < PROMPT
    assert within(PROMPT, pl.stop) < PROMPT
    assert no_new_children(before)
    stats = pl.stats["pipers"][p]
    assert stats["out"] == len(p.tracked) == 0


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_stop_after_pause_on_an_endless_input_is_prompt_and_counts_are_exact(kind):
    before = children()
    m = MAPS[kind]()
    a = Piper(slow_ms, parallel=m, name="a", track=True)
    b = Piper(sleepy, parallel=m, name="b", track=True)
    pl = Plumber(pipes=[(Piper(ipasser, name="src"), a, b)])
    pl.start([itertools.count()])
    pl.run()
    time.sleep(0.5)
    within(PROMPT, pl.pause)
    assert within(PROMPT, pl.stop) < PROMPT
    assert no_new_children(before)
    stats = pl.stats["pipers"]
    # what came out of each Piper, exactly; what was read and did not come out was discarded
    assert stats[a]["out"] == len(a.tracked) and list(a.tracked) == list(range(len(a.tracked)))
    assert stats[b]["out"] == len(b.tracked) == 0
    assert stats[a]["in"] >= stats[a]["out"] >= stats[b]["in"]


def running_at_slow_item(kind):
    """A running Plumber whose plunger waits for item 3 (slow) of range(8)."""
    p = Piper(slow_at_3, parallel=MAPS[kind](), name="p", track=True)
    pl = Plumber(pipes=[(Piper(ipasser, name="src"), p)])
    pl.start([range(8)])
    pl.run()
    deadline = time.monotonic() + 10
    while p.stats["out"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the plunger waits for item 3
    return p, pl


@pytest.mark.parametrize("kind", ["linear", "thread1"])
def test_pause_during_a_slow_item_keeps_it_for_the_next_run(kind):
    p, pl = running_at_slow_item(kind)
    assert within(PROMPT, pl.pause) < 1.5
    assert not pl.running
    pl.run()
    assert pl.wait(20)
    pl.stop()
    assert p.tracked == {i: i for i in range(8)}
    assert pl.stats["pipers"][p] == {"in": 8, "out": 8, "errors": 0, "failed": 0}


@pytest.mark.parametrize("kind", ["linear", "thread1"])
def test_stop_without_drain_discards_what_is_not_out(kind):
    p, pl = running_at_slow_item(kind)
    within(PROMPT, pl.pause)
    assert within(PROMPT, pl.stop, timeout=0) < 1.0
    assert p.tracked == {0: 0, 1: 1, 2: 2}
    assert pl.stats["pipers"][p]["out"] == 3


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_stop_invents_no_item_when_a_map_shared_upstream_stops_first(kind, release):
    # s0 and s1 share one IMap, s2 (linear) reads s1; the input blocks before its
    # first item. Stopping the shared map under s1 while s2 waited in it handed s2
    # the map's error as an item: out == 1 for an item that never existed.
    m = MAPS[kind]()
    s0 = Piper(ipasser, parallel=m, name="s0")
    s1 = Piper(inc, parallel=m, name="s1")
    s2 = Piper(inc, name="s2", track=True)
    pl = Plumber(pipes=[(s0, s1, s2)])
    pl.start([blocking_source_at_once(release)])
    pl.run()
    time.sleep(0.05)
    within(PROMPT, pl.pause)
    assert within(PROMPT, pl.stop) < PROMPT
    assert [pl.stats["pipers"][p]["out"] for p in (s0, s1, s2)] == [0, 0, 0]
    assert s2.tracked == {}


def blocking_source_at_once(release):
    release.wait()  # blocks until the test is over
    yield 1


# -- B: a stopped Piper has ended; the Dagger's refusals say what to do -------------------
@pytest.mark.parametrize("kind", ["linear", "thread"])
def test_next_on_a_stopped_piper_raises_stop_iteration(kind):
    m = MAPS[kind]()
    p = Piper(inc, parallel=m, name="p")
    p.connect([range(10)])
    p.start()
    assert next(p) == 1
    p.stop(forced=True)
    with pytest.raises(StopIteration):
        next(p)
    assert list(p) == []
    p.disconnect()


def test_dagger_connect_without_datas_needs_connected_inputs():
    a, b = Piper(power2, name="a"), Piper(inc, name="b")
    d = Dagger(pipes=[(a, b)])
    with pytest.raises(DaggerError, match=r"'a'.*connect\(datas\).*a\.connect"):
        d.connect()
    a.connect([[1, 2, 3]])  # an input connected by hand
    d.connect()
    d.start()
    assert list(b) == [2, 5, 10]
    d.stop()
    d.disconnect()


def test_add_pipe_takes_pipers_and_says_how_to_make_one():
    d = Dagger()
    a = Piper(power2, name="a")
    for what in (inc, Worker(inc)):
        with pytest.raises(DaggerError, match=r"Piper\(.*add_piper"):
            d.add_pipe((a, what))
    assert len(d) == 0
    created, b = d.add_piper(Worker(inc))
    assert created and d.add_pipe((a, b)) == [a, b]
    assert d.add_pipe(("a", b.name)) == [a, b]  # names of Pipers already added


# -- C: failures are seen -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "thread"])
def test_every_item_failing_is_counted_and_logged(kind, caplog):
    a = Piper(always_fails, parallel=MAPS[kind](), name="a")
    b = Piper(inc, name="b")
    pl = Plumber(pipes=[(a, b)])
    with caplog.at_level(logging.INFO, logger="papy.pipeline"):
        pl.start([range(6)])
        pl.run()
        assert pl.wait(20) is True  # errors are values by default
        pl.stop()
    stats = pl.stats
    assert (stats["out"], stats["errors"], stats["failed"]) == (6, 6, 6)
    assert stats["pipers"][a]["failed"] == 6 and stats["pipers"][b]["errors"] == 6
    first = stats["first_failure"]
    assert isinstance(first, WorkerError) and first.piper == "a"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "6 failed" in text and "a: 6" in text and "ValueError: bad" in text


def test_a_clean_run_logs_its_summary_at_info(caplog):
    pl = Plumber(pipes=[(Piper(power2, name="a"), Piper(inc, name="b"))])
    with caplog.at_level(logging.INFO, logger="papy.pipeline"):
        pl.start([range(4)])
        pl.run()
        assert pl.wait(10)
        pl.stop()
    records = [r for r in caplog.records if r.name == "papy.pipeline" and r.levelno >= logging.INFO]
    assert [r.levelno for r in records] == [logging.INFO]
    assert "4 items out" in records[0].getMessage() and "0 failed" in records[0].getMessage()
    assert (pl.stats["out"], pl.stats["failed"], pl.stats["first_failure"]) == (4, 0, None)


@pytest.mark.parametrize("kind", ["linear", "thread", "process"])
def test_fail_fast_ends_the_run_at_the_first_failure(kind):
    before = children()
    a = Piper(fail_at_5, parallel=MAPS[kind](), name="a")
    b = Piper(inc, name="b", track=True)
    pl = Plumber(pipes=[(a, b)], fail_fast=True)
    pl.start([itertools.count()])
    pl.run()
    with pytest.raises(WorkerError) as info:
        within(10, pl.wait, 10)
    assert (info.value.piper, info.value.index) == ("a", 5)
    assert isinstance(info.value.exception, ValueError)
    assert pl.finished and pl.error is info.value
    with pytest.raises(PlumberError):
        pl.run()
    assert within(PROMPT, pl.stop) < PROMPT
    assert no_new_children(before)
    assert pl.stats["failed"] == 1
    assert all(b.tracked[i] == i + 1 for i in range(5))
