"""A randomized stress test that would have found the holes hostile use found.

hypothesis draws the map (worker type, workers, chunksize, buffer, stride,
ordering, skip with polling timeouts), the items (payloads from nothing to
1 MB) and what goes wrong at each item (an exception, StopIteration, a worker
killed, a result that cannot be pickled, a slow or failing input). Every
example must: end (a hard limit per example), give exactly one outcome per
input position - the right one - and leave no process, thread or fd behind.
A call that blocks for good (the limit is checked between calls) is reported
with its example and every thread's stack (``hang_report``), before the
test's timeout ends the run.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import papy
from papy import IMap

pytestmark = pytest.mark.timeout(600)

HARD_LIMIT = 30.0  # seconds per example: a hang fails it, never blocks the run
#: an example still running after this long is blocked inside a call: it is reported
HANG_REPORT = 2 * HARD_LIMIT + 15.0


def chaos(item):
    i, fault, size = item
    if fault == "raise":
        raise ValueError(f"item {i}")
    if fault == "stop":
        raise StopIteration  # becomes a RuntimeError at this item
    if fault == "kill":
        os._exit(7)
    if fault == "unpicklable":
        return threading.Lock()
    if fault == "slow":
        time.sleep(0.01)
    return (i, b"x" * size)


def expected(item, process):
    i, fault, size = item
    if fault == "raise":
        return "ValueError"
    if fault == "stop":
        return "RuntimeError"
    if fault == "kill":
        return "WorkerLostError"
    if fault == "unpicklable":
        return "SerializationError" if process else "lock"
    return (i, size)


def outcome_of(value):
    if isinstance(value, tuple):
        return (value[0], len(value[1]))
    return "lock"


def source(items, kind, fail_at):
    for k, item in enumerate(items):
        if kind == "slow":
            time.sleep(0.002)
        if k == fail_at:
            raise OSError("the input broke")
        yield item


@st.composite
def examples(draw):
    worker_type = draw(st.sampled_from(["thread", "process"]))
    chunksize = draw(st.sampled_from([1, 1, 2, 5, "auto"]))
    faults = ["ok", "ok", "ok", "raise", "stop", "slow"]
    if worker_type == "process":
        faults += ["unpicklable", "kill"]  # a kill fails its item only, batches or not
    n = draw(st.integers(0, 24))
    sizes = st.sampled_from([0, 0, 100, 10_000, 10_000, 1_000_000])
    items = [(i, draw(st.sampled_from(faults)), draw(sizes)) for i in range(n)]
    if sum(size for _, _, size in items) > 3_000_000:  # keep an example short
        items = [(i, f, min(s, 10_000)) for i, f, s in items]
    options = {
        "worker_type": worker_type,
        "worker_num": draw(st.integers(1, 2)),
        "chunksize": chunksize,
        "ordered": draw(st.booleans()),
        "skip": draw(st.booleans()),
    }
    if draw(st.booleans()):
        options["stride"] = draw(st.integers(1, 6))
    if draw(st.booleans()):
        options["buffer"] = draw(st.integers(6, 64))
    return {
        "options": options,
        "items": items,
        "input": draw(st.sampled_from(["list", "generator", "slow"])),
        "fail_at": draw(st.one_of(st.none(), st.integers(0, max(0, n - 1)))),
        "poll": draw(st.sampled_from([None, None, 0.0, 0.001])),
    }


def run_example(ex):
    options, items = ex["options"], ex["items"]
    fail_at = ex["fail_at"] if ex["input"] != "list" and items else None
    inp = items if ex["input"] == "list" else source(items, ex["input"], fail_at)
    n = len(items) if fail_at is None else fail_at + 1  # a failing generator ends there
    process = options["worker_type"] == "process"
    outcomes: dict[int, object] = {}  # position -> outcome
    order: list[int] = []
    with IMap(**options) as m:
        out = m.add_task(chaos, inp, track=True)
        m.start()
        deadline = time.monotonic() + HARD_LIMIT
        while True:
            assert time.monotonic() < deadline, "the example hangs"
            before = set(m.tracked[0])
            try:
                value = out.next(timeout=ex["poll"] if ex["poll"] is not None else HARD_LIMIT)
                got: object = outcome_of(value)
            except StopIteration:
                break
            except papy.TimeoutError as exc:
                if exc.index is None:
                    assert ex["poll"] is not None, "a wait without a timeout timed out"
                    continue  # no position was given up
                assert options["skip"]
                position = exc.index
                assert position not in outcomes, "a position was skipped twice"
                outcomes[position] = "skipped"
                order.append(position)
                continue
            except Exception as exc:  # noqa: BLE001 - an item's error
                got = type(exc).__name__
            new = set(m.tracked[0]) - before
            assert len(new) == 1, "one outcome, one position"
            position = new.pop()
            assert position not in outcomes, "a position came twice"
            outcomes[position] = got
            order.append(position)
    assert sorted(outcomes) == list(range(n)), "a position is missing or invented"
    for position, got in outcomes.items():
        if got == "skipped":
            continue
        if fail_at is not None and position == fail_at:
            assert got == "InputError"
        else:
            assert got == expected(items[position], process), (position, items[position])
    if options["ordered"]:
        assert order == sorted(order)


@contextmanager
def hang_report(ex: object, seconds: float) -> Iterator[None]:
    """If the block still runs after ``seconds``, write ``ex`` and every thread's stack
    to stderr (shown with the test's failure or timeout): the example that hung
    and where, even if hypothesis goes on to run others before the timeout."""

    def report() -> None:
        out = sys.__stderr__ or sys.stderr
        out.write(f"\nexample still running after {seconds:g} s: {ex!r}\n")
        out.flush()
        faulthandler.dump_traceback(file=out, all_threads=True)

    timer = threading.Timer(seconds, report)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()


def no_leaks(baseline_children: set[int], threads: int, fds: int) -> None:
    me = psutil.Process()
    deadline = time.monotonic() + 5
    while True:
        children = {
            c.pid for c in me.children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE
        } - baseline_children
        if not children and threading.active_count() <= threads and me.num_fds() <= fds:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"leak: children={children} threads={threading.active_count()}/{threads} "
                f"fds={me.num_fds()}/{fds}"
            )
        time.sleep(0.05)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ex=examples())
def test_random_maps_with_faults_keep_exact_accounting(ex):
    me = psutil.Process()
    children = {c.pid for c in me.children(recursive=True)}
    threads, fds = threading.active_count(), me.num_fds()
    with hang_report(ex, HANG_REPORT):
        run_example(ex)
    no_leaks(children, threads, fds)


def test_a_blocked_example_is_reported_with_where_it_blocks(capfd: pytest.CaptureFixture[str]):
    blocked = threading.Event()
    with hang_report({"items": [(0, "ok", 0)]}, 0.05):
        blocked.wait(1.0)  # stands for a call that never returns
    err = capfd.readouterr().err
    assert "example still running after 0.05 s: {'items': [(0, 'ok', 0)]}" in err
    assert "test_a_blocked_example_is_reported_with_where_it_blocks" in err  # the stack
