"""Original PaPy code keeps working: call shapes, early type errors, loggers.

Each test is a piece of code written for the original PaPy (converted to
Python 3 only where the language requires it) and what it must do here.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from papy import IMap, NuMap
from papy.pipeline import Dagger, DaggerError, Piper, PiperError, Plumber, Worker

pytestmark = pytest.mark.timeout(60)


def l33t(inbox):
    return inbox[0].replace("e", "3").replace("o", "0")


def upper(inbox):
    return inbox[0].upper()


WORDS = ["hello", "world", "hi", "folks"]


def threads_end(before: set[threading.Thread], timeout: float = 5.0) -> bool:
    """True once every thread started since ``before`` was taken has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not set(threading.enumerate()) - before:
            return True
        time.sleep(0.05)
    return False


# -- 3. call shapes ---------------------------------------------------------------
@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_staged_start_of_pipers_sharing_a_numap(worker_type):
    numap = NuMap(worker_type=worker_type, worker_num=2)
    up = Piper(l33t, parallel=numap)
    down = Piper(upper, parallel=numap)
    up([WORDS])
    down([up])
    for piper in (up, down):
        piper.start(stages=(0, 1))
    assert not numap.started  # stages 0 and 1 only mark the Pipers started
    for piper in (up, down):
        piper.start(stages=(2,))
    assert numap.started
    assert list(down) == ["H3LL0", "W0RLD", "HI", "F0LKS"]
    up.stop(ends=[1])
    down.stop(ends=[1])
    assert not numap.started and not up.started and not down.started


def test_piper_stop_with_ends_drains_gracefully():
    numap = NuMap(worker_type="thread", worker_num=1, stride=2)
    piper = Piper(l33t, parallel=numap)
    piper([iter(WORDS)])
    piper.start()
    assert next(piper) == "h3ll0"
    piper.stop(forced=True, ends=[0])
    assert not numap.started and not piper.started


def test_linear_piper_accepts_stages_and_ends():
    piper = Piper(l33t)
    piper([WORDS])
    piper.start(stages=(0,))
    assert list(piper) == ["h3ll0", "w0rld", "hi", "f0lks"]
    piper.stop(ends=[0])  # no map: ends has nothing to drain
    assert not piper.started


@pytest.mark.parametrize("stages", [(1,), (1, 2), (2,), [1, 2]])
def test_numap_start_stages(stages):
    numap = NuMap(worker_type="thread", worker_num=1)
    out = numap.add_task(abs, [-1, -2])
    numap.start(stages=stages)
    if 2 not in stages:
        assert not numap.started  # papy starts workers and evaluation together
        numap.add_task(abs, [-3])  # so tasks may still be added
        numap.start(stages=(2,))
    assert numap.started
    assert list(out) == [1, 2]
    numap.stop()


@pytest.mark.parametrize(
    ("stages", "error", "match"),
    [
        ("12", TypeError, "stages"),
        (3, TypeError, "stages"),
        ((0,), ValueError, "stages 1 and 2"),
        ((True,), ValueError, "stages 1 and 2"),
    ],
)
def test_numap_start_refuses_bad_stages(stages, error, match):
    numap = NuMap(worker_type="thread", worker_num=1)
    numap.add_task(abs, [1])
    with pytest.raises(error, match=match):
        numap.start(stages=stages)
    assert not numap.started


@pytest.mark.parametrize(
    ("stages", "error"), [((3,), ValueError), ("0", TypeError), ((False,), ValueError)]
)
def test_piper_start_refuses_bad_stages(stages, error):
    piper = Piper(l33t)
    piper([WORDS])
    with pytest.raises(error, match="stages"):
        piper.start(stages=stages)
    assert not piper.started


def test_loggers_of_piper_dagger_and_plumber(caplog):
    piper = Piper(l33t, name="leet")
    dagger = Dagger([piper])
    plumber = Plumber()
    for obj in (piper, dagger, plumber):
        assert isinstance(obj.log, logging.Logger)
        assert obj.log.name.startswith("papy")
    with caplog.at_level(logging.DEBUG, logger="papy"):
        plumber.add_pipe((Piper(l33t, name="a"), Piper(upper, name="b")))
        plumber.start([WORDS])
        plumber.run()
        assert plumber.wait(10)
        plumber.stop()
    text = caplog.text
    assert "started" in text and "stopped" in text


# -- 5. type errors at once -------------------------------------------------------------
def test_a_piper_is_not_a_worker_function():
    piper = Piper(l33t)
    for bad in (piper, [piper], (l33t, piper), [Worker(l33t), piper]):
        with pytest.raises(TypeError, match="is a Piper, not a worker function"):
            Worker(bad)
    with pytest.raises(DaggerError, match="is a Piper, not a worker function"):
        Dagger().add_piper([piper])
    with pytest.raises(TypeError, match="is a Piper, not a worker function"):
        Piper([piper])
    assert Piper(piper).worker == piper.worker  # a Piper made from a Piper reuses its Worker


def test_a_piper_added_twice_or_to_two_daggers_is_refused():
    a, b = Piper(l33t, name="a"), Piper(upper, name="b")
    dagger = Dagger([a])
    with pytest.raises(DaggerError, match="already in this Dagger"):
        dagger.add_piper(a)
    with pytest.raises(DaggerError, match="already in this Dagger"):
        Dagger([b, b])
    other = Dagger()
    with pytest.raises(DaggerError, match="another Dagger"):
        other.add_piper(a)
    with pytest.raises(DaggerError, match="another Dagger"):
        other.add_pipe((b, a))
    assert b not in other and len(other) == 0  # a refused pipe leaves nothing behind
    dagger.add_pipe((a, b))  # pipes may name Pipers already in the Dagger
    assert dagger.pipes == [(a, b)]
    dagger.del_piper(b)
    dagger.del_piper(a)
    other.add_pipe((a, b))  # removed from the first Dagger: free again
    assert other.pipes == [(a, b)]


def test_a_dropped_dagger_frees_its_pipers():
    a = Piper(l33t, name="a")
    Dagger([a])  # not kept
    import gc

    gc.collect()
    assert Dagger([a]).pipers == [a]


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("upstream_parallel", [True, False])
def test_reading_a_piper_whose_upstream_was_never_started_raises(shared, upstream_parallel):
    before = set(threading.enumerate())
    down_map = IMap(worker_type="thread", worker_num=1)
    up_map = down_map if shared else IMap(worker_type="thread", worker_num=1)
    up = Piper(l33t, parallel=up_map if upstream_parallel else False, name="up")
    down = Piper(upper, parallel=down_map, name="down")
    up.connect([WORDS])
    down.connect([up])
    down.start()
    with pytest.raises(PiperError, match="'up' of 'down' is connected but not started"):
        next(down)
    down.stop(forced=True)
    if upstream_parallel:
        up_map.stop()
    assert threads_end(before)  # no input thread left waiting for the unstarted Piper


def test_linear_piper_with_unstarted_upstream_raises_too():
    up = Piper(l33t, name="up")
    down = Piper(upper, name="down")
    up.connect([WORDS])
    down.connect([up])
    down.start()
    with pytest.raises(PiperError, match="not started"):
        next(down)
    up.start()
    assert list(down) == ["H3LL0", "W0RLD", "HI", "F0LKS"]  # started late: it runs


# -- 2. the Dagger is a graph ---------------------------------------------------------------
def diamond():
    top = Piper(l33t, name="top")
    left = Piper(upper, name="left", branch=1)
    right = Piper(upper, name="right", branch=2)
    bottom = Piper(Worker(lambda inbox: inbox), name="bottom")
    dag = Dagger(pipes=[(top, left, bottom), (top, right, bottom)])
    return dag, top, left, right, bottom


def test_the_dagger_is_a_dict_graph_with_dependency_edges():
    from papy.graph import DictGraph, DictNode

    dag, top, left, right, bottom = diamond()
    assert isinstance(dag, DictGraph) and isinstance(dag[bottom], DictNode)
    assert dag.nodes() == [top, left, bottom, right] == list(dag.iter_nodes())
    # edges point from a Piper to the Pipers it depends on (the reverse of a pipe)
    assert dag[bottom].nodes() == [left, right] and dag[top].nodes() == []
    assert dag[left][top] is dag[top]
    assert dag.edges() == ((left, top), (bottom, left), (bottom, right), (right, top))
    assert dag.outgoing_edges(bottom) == ((bottom, left), (bottom, right))
    assert dag.incoming_edges(top) == ((left, top), (right, top))
    assert set(dag.deep_nodes(bottom)) == {left, right, top}
    assert dag.deep_nodes(top) == []
    assert dag.node_rank() == {top: 0, left: 1, right: 1, bottom: 2}
    assert dag.node_width() == {top: 1, left: 1, right: 1, bottom: 2}
    assert dag.rank_width() == {0: 1, 1: 2, 2: 1}
    # dfs visits the higher branch first (the original's order) and leaves its flags set
    assert dag.dfs(bottom) == [top, right, left, bottom]
    assert dag.dfs(bottom) == []  # every node is discovered already
    dag.clear_nodes()
    assert not any(node.discovered or node.examined for node in dag.values())
    assert dag[left].branch == 1 and dag[right].branch == 2


def test_dfs_and_children_after_parents_as_in_the_original():
    import functools

    dbl1, dbl2, total = (
        Piper(upper, name="dbl1"),
        Piper(upper, name="dbl2"),
        Piper(l33t, name="sum"),
    )
    dag = Dagger(pipes=[(dbl1, dbl2), (dbl1, total), (dbl2, total)])
    assert dag.children_after_parents(dbl1, dbl2) == 1  # dbl1 is upstream of dbl2
    assert dag.children_after_parents(dbl2, dbl1) == -1
    assert dag.children_after_parents(dbl2, dbl2) == 0
    ups = sorted([dbl1, dbl2], key=functools.cmp_to_key(dag.children_after_parents))
    assert ups == [dbl2, dbl1]  # the original's test: sum's inputs come as [dbl2, dbl1]
    bucket = dag.dfs(total, [])
    dag.clear_nodes()
    assert bucket.index(dbl1) < bucket.index(dbl2) < bucket.index(total)


def test_graph_edits_through_the_graph_api_keep_the_dagger_consistent():
    a, b, c = Piper(l33t, name="a"), Piper(upper, name="b"), Piper(upper, name="c")
    dag = Dagger()
    assert dag.add_node(a) is True and dag.add_node(a) is False  # graph semantics
    dag.add_nodes([b, c])
    dag.add_edge((b, a))  # b depends on a: the pipe a -> b
    dag.add_edges([(c, b)])
    assert dag.pipes == [(a, b), (b, c)] and dag.postorder() == [a, b, c]
    with pytest.raises(DaggerError, match="cycle"):
        dag.add_edge((a, c))  # c -> a would close a cycle
    with pytest.raises(DaggerError, match="acyclic"):
        dag.add_edge((c, a), double=True)
    with pytest.raises(DaggerError, match="Pipers"):
        dag.add_node("not a piper")
    dag.del_edge((c, b))
    assert dag.pipes == [(a, b)] and c in dag
    dag.del_edges([(b, a)])
    assert dag.pipes == []
    dag.del_nodes([c])
    dag.del_node(b)
    assert dag.nodes() == [a]
    assert dag.resolve(id(a)) is a  # the original resolved Pipers by id() too
    other = Dagger()
    with pytest.raises(DaggerError, match="another Dagger"):
        other.add_node(a)
    dag.del_node(a)
    assert other.add_node(a) is True


# -- 6. @imports ---------------------------------------------------------------------------
def test_imports_binds_modules_into_the_functions_globals():
    import papy

    namespace: dict = {}
    exec("def f(inbox):\n    return domreg.__name__, ysy.platform, nope_xyz.dumps(1)", namespace)
    f = namespace["f"]
    assert papy.imports(["xml.dom.domreg", "ysy,sys", "nope_xyz,json"])(f) is f
    assert f([None]) == ("xml.dom.domreg", __import__("sys").platform, "1")
    assert f.imports == ["xml.dom.domreg", "ysy,sys", "nope_xyz,json"]
    assert namespace["ysy"] is __import__("sys")  # bound under the first alternative's name
    assert namespace["nope_xyz"] is __import__("json")


def test_imports_failures():
    import papy

    def g(inbox):
        return inbox

    with pytest.raises(ImportError, match="none of X.Y, multiprocessing.forking"):
        papy.imports(["X.Y,multiprocessing.forking"])(g)
    with pytest.warns(ImportWarning, match="nope_xyz"):
        assert papy.imports(["nope_xyz"], forgive=True)(g) is g
    for bad in ("os", [1], [""]):
        with pytest.raises(TypeError, match="module names"):
            papy.imports(bad)
    with pytest.raises(TypeError, match="Python function"):
        papy.imports(["os"])(len)


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_a_function_decorated_with_imports_runs_in_workers(worker_type):
    from papy import imports

    @imports(["os"])
    def pid(inbox):
        return os.getpid()  # noqa: F821 - bound by @imports (this module imports no os)

    piper = Piper(pid, parallel=NuMap(worker_type=worker_type, worker_num=1))
    piper.connect([range(3)])
    piper.start()
    pids = list(piper)
    piper.stop()
    assert len(pids) == 3 and all(isinstance(p, int) for p in pids)
