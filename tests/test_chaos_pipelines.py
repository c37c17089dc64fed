"""A randomized stress test of pipelines: poison items, blocking inputs, control.

hypothesis draws the graph (a chain of one to three Pipers, or a fork and a
join), how each Piper runs (linear, on a thread or process IMap of its own, or
on one IMap shared by several Pipers), the items and what goes wrong at each
(an exception, a worker process killed, a result that cannot be pickled, a
slow item, an input that breaks), the input (a list, a generator, one that
blocks after some items) and what the caller does (run to the end, pause and
resume, pause and stop, ``fail_fast``).

Every example must end (each wait has a hard limit), ``pause()`` and
``stop()`` must return promptly, every position that comes out must be the
right outcome - the value, or the ``WorkerError`` of the Piper where the item
failed - with no position lost, invented or repeated, and no worker process
may be left behind. ``PAPY_CHAOS_EXAMPLES=500`` makes it a soak.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _timing import within
from papy import IMap
from papy.pipeline import Piper, Plumber, Worker, WorkerError

pytestmark = pytest.mark.timeout(600)

HARD_LIMIT = 30.0  # seconds for any one wait: a hang fails the example, never blocks the run
PROMPT = 2.0  # what pause() and stop() may take on a busy machine ("about a second")


# -- the worker functions (module level: process workers import them) ---------------
def stage(inbox, k, main_pid):
    """Stage ``k``: applies the item's fault if it is meant for this stage, then
    appends ``k`` to the item's path. Kills and unpicklable results only happen in
    a worker process (never in the test's own process)."""
    i, fault, where, *path = inbox[0]
    hops = path[0] if path else ()
    if where == k:
        if fault == "raise":
            raise ValueError(f"item {i} at stage {k}")
        if fault == "slow":
            time.sleep(0.01)
        if os.getpid() != main_pid:
            if fault == "kill":
                os._exit(7)
            if fault == "unpicklable":
                return (i, threading.Lock())
    return (i, fault, where, (*hops, k))


def join(inbox, k):
    """The join: both branches' paths, then ``k``."""
    left, right = inbox
    assert left[0] == right[0], "a join got two different items"
    return (left[0], left[1], left[2], (left[3], right[3], k))


# -- what each example should give -------------------------------------------------------
def fails_at(kind: str, fault: str) -> str | None:
    """The exception an item with ``fault`` gets on a stage run as ``kind``."""
    if fault == "raise":
        return "ValueError"
    if kind == "process":
        return {"kill": "WorkerLostError", "unpicklable": "SerializationError"}.get(fault)
    return None


def expected_outcome(shape: str, kinds: list[str], item: tuple) -> Any:
    """The output Piper's outcome for ``item``: a value, or (piper name, exception type)."""
    i, fault, where = item
    if shape == "chain":
        path: Any = ()
        for k, kind in enumerate(kinds):
            if where == k and fails_at(kind, fault):
                return (f"s{k}", fails_at(kind, fault))
            path = (*path, k)
        return (i, fault, where, path)
    # fork and join: s0 -> s1, s0 -> s2, (s1, s2) -> s3
    if where == 0 and fails_at(kinds[0], fault):
        return ("s0", fails_at(kinds[0], fault))
    for k in (1, 2):  # the join's inbox order: s1 first
        if where == k and fails_at(kinds[k], fault):
            return (f"s{k}", fails_at(kinds[k], fault))
    return (i, fault, where, ((0, 1), (0, 2), 3))


def outcome(value: Any) -> Any:
    if isinstance(value, WorkerError):
        return (value.piper, type(value.exception).__name__)
    return value


# -- building and feeding an example --------------------------------------------------
def build(ex: dict[str, Any]) -> tuple[Plumber, Piper, list[Piper], list[IMap]]:
    shared: dict[str, IMap] = {}
    imaps: list[IMap] = []

    def parallel(kind: str, share: bool) -> Any:
        if kind == "linear":
            return False
        if share and kind in shared:
            return shared[kind]
        m = IMap(worker_type=kind, **ex["imap"])
        imaps.append(m)
        if share:
            shared[kind] = m
        return m

    pid = os.getpid()
    pipers = []
    for k, (kind, share) in enumerate(zip(ex["kinds"], ex["share"])):
        function = join if ex["shape"] == "fork" and k == 3 else stage
        args = (k,) if function is join else (k, pid)
        last = k == len(ex["kinds"]) - 1
        worker = Worker(function, args)
        pipers.append(Piper(worker, parallel=parallel(kind, share), name=f"s{k}", track=last))
    out = pipers[-1]
    if len(pipers) == 1:
        return Plumber(pipers=pipers, fail_fast=ex["fail_fast"]), out, pipers, imaps
    if ex["shape"] == "chain":
        pipes = [tuple(pipers)]
    else:
        s0, s1, s2, s3 = pipers
        pipes = [(s0, s1, s3), (s0, s2, s3)]
    return Plumber(pipes=pipes, fail_fast=ex["fail_fast"]), out, pipers, imaps


def source(items, breaks_at, blocks_after, release):
    for position, item in enumerate(items):
        if position == blocks_after:
            release.wait(HARD_LIMIT * 2)  # waits like a socket with no data
            return
        if position == breaks_at:
            raise OSError("the input broke")
        yield item


@st.composite
def examples(draw):
    shape = draw(st.sampled_from(["chain", "chain", "fork"]))
    n_pipers = draw(st.integers(1, 3)) if shape == "chain" else 4
    kinds = [draw(st.sampled_from(["linear", "thread", "process"])) for _ in range(n_pipers)]
    share = [draw(st.booleans()) for _ in range(n_pipers)]
    faults = ["ok", "ok", "ok", "raise", "slow", "kill", "unpicklable"]
    n = draw(st.integers(0, 16))
    items = [
        (i, draw(st.sampled_from(faults)), draw(st.integers(0, n_pipers - 1))) for i in range(n)
    ]
    imap: dict[str, Any] = {"worker_num": draw(st.integers(1, 2))}
    chunksize = draw(st.sampled_from([None, 1, 3]))
    if chunksize is not None:
        imap["chunksize"] = chunksize
    if draw(st.booleans()):
        imap["buffer"] = draw(st.integers(8, 64))
    action = draw(st.sampled_from(["run", "run", "pause", "stop", "block"]))
    fail_fast = action in ("run", "pause") and draw(st.booleans())
    breaks_at = None
    blocks_after = None
    if action == "block":
        blocks_after = draw(st.integers(0, n))
    elif n and draw(st.booleans()):
        breaks_at = draw(st.integers(0, n - 1))
    return {
        "shape": shape,
        "kinds": kinds,
        "share": share,
        "items": items,
        "imap": imap,
        "action": action,
        "fail_fast": fail_fast,
        "breaks_at": breaks_at,
        "blocks_after": blocks_after,
        "pause_after": draw(st.sampled_from([0.0, 0.005, 0.05])),
        "stop_timeout": draw(st.sampled_from([0, 0.5])),
    }


def timed(func, *args, **kwargs) -> float:
    """Call ``func``; fail the example if it has not returned in ``HARD_LIMIT`` s."""
    return within(HARD_LIMIT, func, *args, **kwargs)


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + HARD_LIMIT
    while not predicate():
        assert time.monotonic() < deadline, f"{what} after {HARD_LIMIT} s"
        time.sleep(0.005)


def run_example(ex: dict[str, Any], release: threading.Event) -> None:
    items = ex["items"]
    n = len(items)
    if ex["breaks_at"] is not None:
        n = ex["breaks_at"] + 1  # the input ends at the position where it broke
    if ex["blocks_after"] is not None:
        n = ex["blocks_after"]
    want = {}
    for position in range(n):
        if position == ex["breaks_at"]:
            want[position] = ("s0", "OSError")
        else:
            want[position] = expected_outcome(ex["shape"], ex["kinds"], items[position])
    plumber, out, pipers, _ = build(ex)
    data = source(items, ex["breaks_at"], ex["blocks_after"], release)
    plumber.start([data])
    stopped = False
    try:
        plumber.run()
        action = ex["action"]
        if action == "block":
            # everything read before the input blocked comes out while it blocks
            wait_for(lambda: out.stats["out"] >= n, "the items read before the input blocked")
            time.sleep(0.02)
            assert timed(plumber.pause) < PROMPT
            assert timed(plumber.stop) < PROMPT
            stopped = True
            assert out.stats["out"] == n
        elif action == "stop":
            time.sleep(ex["pause_after"])
            assert timed(plumber.pause) < PROMPT
            assert timed(plumber.stop, timeout=ex["stop_timeout"]) < PROMPT + ex["stop_timeout"]
            stopped = True
        else:
            if action == "pause":
                time.sleep(ex["pause_after"])
                assert timed(plumber.pause) < PROMPT
                assert plumber.finished or not plumber.running
                if not plumber.finished:
                    plumber.run()
            failed = any(isinstance(w, tuple) and len(w) == 2 for w in want.values())
            if ex["fail_fast"] and failed:
                with pytest.raises(WorkerError) as info:
                    timed(plumber.wait, HARD_LIMIT)
                assert plumber.stats["first_failure"] is info.value
            else:
                timed(plumber.wait, HARD_LIMIT)
                assert plumber.finished
                assert out.stats["out"] == n
            assert timed(plumber.stop) < PROMPT
            stopped = True
    finally:
        release.set()
        if not stopped:  # the example failed: leave nothing running
            if plumber.running:
                plumber.pause()
            plumber.stop(timeout=0)
    # the positions that came out: a prefix (pipelines are ordered), each one right
    got = {position: outcome(value) for position, value in out.tracked.items()}
    assert sorted(got) == list(range(len(got))), "a position is missing or repeated"
    assert len(got) == out.stats["out"], "the count says something else"
    if ex["action"] in ("run", "pause", "block") and not ex["fail_fast"]:
        assert len(got) == n, "a position is missing or invented"
    assert len(got) <= n, "a position was invented"
    for position, value in got.items():
        assert value == want[position], (
            position,
            items[position] if position < len(items) else None,
        )
    failed_total = sum(1 for w in got.values() if isinstance(w, tuple) and len(w) == 2)
    assert plumber.stats["errors"] == failed_total
    for piper in pipers:
        stats = piper.stats
        assert stats["in"] >= stats["out"] >= 0, piper.name


def no_children_left(before: set[int]) -> None:
    deadline = time.monotonic() + 5
    while True:
        left = {p.pid for p in multiprocessing.active_children()} - before
        if not left:
            return
        assert time.monotonic() < deadline, f"worker processes left behind: {left}"
        time.sleep(0.02)


@settings(
    max_examples=int(os.environ.get("PAPY_CHAOS_EXAMPLES", "20")),  # more: a soak
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ex=examples())
def test_random_pipelines_with_faults_stay_in_control_and_exact(ex):
    before = {p.pid for p in multiprocessing.active_children()}
    release = threading.Event()
    try:
        run_example(ex, release)
    finally:
        release.set()
    no_children_left(before)
