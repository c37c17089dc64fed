"""Plumber: the run-time state machine, stats, error flow, drawing."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time

import pytest

from papy import IMap
from papy.pipeline import Piper, Plumber, PlumberError, WorkerError
from papy.pipeline.util import ipasser

pytestmark = pytest.mark.timeout(60)


def l33t(inbox):
    return inbox[0].replace("e", "3").replace("o", "0")


def l1(inbox):
    return inbox[0].replace("l", "1")


def power2(inbox):
    return inbox[0] ** 2


def inc(inbox):
    return inbox[0] + 1


def dec(inbox):
    return inbox[0] - 1


def fail_on_5(inbox):
    if inbox[0] == 5**2:
        raise ValueError("five")
    return inbox[0]


def tag(inbox, side):
    return f"{side}{inbox[0]}:{os.getpid()}"


def joined(inbox):
    return (inbox[0], inbox[1])


def slow(inbox):
    time.sleep(0.05)
    return inbox[0]


def test_states_case_23():
    a = Piper(ipasser, name="a")
    pl = Plumber(pipes=[(a, Piper(l33t, name="b"))])
    with pytest.raises(PlumberError):
        pl.run()  # not started
    with pytest.raises(PlumberError):
        pl.pause()  # not running
    with pytest.raises(PlumberError):
        pl.stop()  # not started
    pl.start([["hello", "world"]])
    with pytest.raises(PlumberError):
        pl.start([["hello"]])  # started twice
    with pytest.raises(PlumberError):
        pl.wait()  # not running
    pl.run()
    assert pl.wait(10) is True and pl.finished
    with pytest.raises(PlumberError):
        pl.run()  # finished
    pl.stop()  # no pause needed after a finished run
    assert not pl.started


def test_start_run_pause_run_pause_stop_on_an_endless_input():
    m = IMap(worker_type="thread", worker_num=2)
    source = itertools.count()
    p1 = Piper(power2, parallel=m, track=True, name="p1")
    p2 = Piper(inc, parallel=m, track=True, name="p2")
    pl = Plumber(pipes=[(p1, p2)])
    pl.start([source])
    pl.run()
    time.sleep(0.05)
    with pytest.raises(PlumberError):
        pl.stop()  # running
    assert pl.wait(0.01) is False
    pl.pause()
    assert not pl.running and not pl.finished
    pl.run()
    time.sleep(0.05)
    pl.pause()
    pl.stop(timeout=None)  # drain every item read, however long it takes (default: 0.5 s)
    consumed = next(source)
    assert consumed > 0
    assert len(p1.tracked) == len(p2.tracked) == consumed
    assert p2.tracked == {i: i * i + 1 for i in range(consumed)}
    stats = pl.stats
    assert stats["pipers"][p1]["in"] == stats["pipers"][p2]["out"] == consumed
    assert stats["run_time"] > 0.05


def test_plumber_example_tracked_dict():
    m = IMap(worker_type="thread", worker_num=2)
    start = Piper(l33t, parallel=m, name="start")
    end = Piper(l1, parallel=m, track=True, name="end")
    pl = Plumber(pipes=[(start, end)])
    pl.start([["hello", "world"]])
    pl.run()
    assert pl.wait(10)
    pl.stop()
    assert pl.stats["pipers_tracked"][end] == {0: "h3110", 1: "w0r1d"}


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_one_failing_item_in_a_three_stage_pipeline(worker_type):
    m = IMap(worker_type=worker_type, worker_num=2)
    a = Piper(power2, parallel=m, name="a")
    b = Piper(fail_on_5, parallel=m, name="b")
    c = Piper(inc, parallel=m, name="c", track=True)
    pl = Plumber(pipes=[(a, b, c)])
    pl.start([range(10)])
    pl.run()
    assert pl.wait(20)
    pl.stop()
    out = c.tracked
    assert list(out) == list(range(10))
    errors = [i for i, v in out.items() if isinstance(v, WorkerError)]
    assert errors == [5]
    err = out[5]
    assert (err.piper, err.index, err.function) == ("b", 5, "fail_on_5")
    assert isinstance(err.exception, ValueError) and "five" in err.traceback
    assert all(out[i] == i * i + 1 for i in range(10) if i != 5)
    stats = pl.stats["pipers"]
    assert stats[a] == {"in": 10, "out": 10, "errors": 0, "failed": 0}
    assert stats[b] == {"in": 10, "out": 10, "errors": 1, "failed": 1}
    assert stats[c] == {"in": 10, "out": 10, "errors": 1, "failed": 0}


def test_debug_output_piper_ends_wait_with_the_error():
    a = Piper(power2, name="a")
    b = Piper(fail_on_5, name="b", debug=True)
    pl = Plumber(pipes=[(a, b)])
    pl.start([range(10)])
    pl.run()
    with pytest.raises(WorkerError) as info:
        pl.wait(10)
    assert info.value.index == 5 and pl.finished and isinstance(pl.error, WorkerError)
    pl.stop()


def test_a_debug_error_upstream_reaches_the_plunger_through_parallel_pipers():
    m = IMap(worker_type="thread", worker_num=2)
    a = Piper(fail_on_5, parallel=m, name="a", debug=True)
    b = Piper(inc, parallel=m, name="b")
    pl = Plumber(pipes=[(Piper(power2, name="sq"), a, b)])
    pl.start([range(10)])
    pl.run()
    with pytest.raises(WorkerError):
        pl.wait(10)
    pl.stop()


def test_a_broken_imap_ends_wait_with_the_error_never_a_hang():
    m = IMap(worker_type="thread", worker_num=1)
    a = Piper(slow, parallel=m, name="a")
    pl = Plumber(pipes=[(Piper(ipasser, name="src"), a)])
    pl.start([range(1000)])
    pl.run()
    time.sleep(0.1)
    m.stop()  # from outside, behind the Plumber's back
    with pytest.raises(RuntimeError):
        pl.wait(10)
    pl.stop()


def test_outputs_of_different_lengths_all_run_to_their_end():
    src = Piper(ipasser, name="src")
    short = Piper(lambda inbox: inbox[0][:1], name="short", produce=1, track=True)
    long_ = Piper(ipasser, name="long", produce=3, track=True)
    pl = Plumber(pipes=[(src, short), (src, long_)])
    pl.start([[(1, 2, 3), (4, 5, 6)]])
    pl.run()
    assert pl.wait(10)
    pl.stop()
    assert list(short.tracked.values()) == [(1,), (4,)]
    assert list(long_.tracked.values()) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_workflow_shape_fork_two_parallel_pipers_sharing_an_imap_join(worker_type):
    # doc/workflows/pipeline.py: fork -> (left, right on one IMap) -> join -> output
    m = IMap(worker_type=worker_type, worker_num=2)
    fork = Piper(ipasser, name="fork")
    left = Piper(tag, parallel=m, name="left")
    left.worker.args = (("L",),)
    right = Piper(tag, parallel=m, name="right")
    right.worker.args = (("R",),)
    join = Piper(joined, name="join", track=True)
    pl = Plumber(pipes=[(fork, left, join), (fork, right, join)])
    pl.start([range(20)])
    pl.run()
    assert pl.wait(20)
    pl.stop()
    out = join.tracked
    assert list(out) == list(range(20))
    pids = set()
    for i, (lt, rt) in out.items():
        assert lt.startswith(f"L{i}:") and rt.startswith(f"R{i}:")
        pids.add(int(lt.split(":")[1]))
    if worker_type == "process":
        assert os.getpid() not in pids
    else:
        assert pids == {os.getpid()}


def drawing_plumber():
    m = IMap(worker_type="process", worker_num=2, name="pool")
    fork = Piper(ipasser, name="fork")
    left = Piper(l33t, parallel=m, name="left")
    right = Piper(l1, parallel=m, name="right", consume=2)
    join = Piper(joined, name="join")
    return Plumber(pipes=[(fork, left, join), (fork, right, join)])


def test_to_dot_and_to_mermaid():
    pl = drawing_plumber()
    dot = pl.to_dot()
    assert dot.startswith('digraph "pipeline" {') and dot.rstrip().endswith("}")
    for text in (
        '"fork\\nipasser\\nlinear"',
        "process x2 (pool)",
        "consume=2",
        'label="inbox[0]"',
        "rounded",
    ):
        assert text in dot
    assert dot.count("->") == 4
    mer = pl.to_mermaid()
    assert mer.startswith("flowchart TD")
    assert 'p0[/"fork<br/>ipasser<br/>linear"/]' in mer and '-->|"inbox[1]"|' in mer
    assert mer.count("-->") == 4
    assert pl.to_dot() == dot  # deterministic


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz dot is not installed")
def test_dot_output_renders(tmp_path):
    out = tmp_path / "g.svg"
    subprocess.run(
        ["dot", "-Tsvg", "-o", str(out)],
        input=drawing_plumber().to_dot(),
        text=True,
        check=True,
        timeout=30,
    )
    assert out.read_text().lstrip().startswith("<?xml")


def test_a_start_that_fails_leaves_the_plumber_reusable():
    m = IMap(worker_type="thread", worker_num=2)
    up = Piper(power2, parallel=m, name="up")
    bad = Piper(joined, parallel=m, consume=2, name="bad")  # would make m wait for itself
    pl = Plumber(pipes=[(up, bad)])
    with pytest.raises(Exception, match="wait for itself"):
        pl.start([range(4)])
    assert not pl.started and not up.connected and m.n_tasks == 0
    pl.del_piper(bad)
    pl.add_pipe((up, Piper(inc, name="ok", track=True)))
    pl.start([range(4)])
    pl.run()
    assert pl.wait(10)
    pl.stop()
    assert list(pl.resolve("ok").tracked.values()) == [1, 2, 5, 10]
