"""The compiled core behaves exactly like its pure-Python twin (the specification).

A hypothesis state machine drives random sequences of *non-blocking* core
operations against one ``papy._sched.Scheduler`` and one
``papy._sched_py.Scheduler`` side by side, and asserts identical observable
results: return values, exception types and messages, ``stats()`` (but for
the wait-time counters, which measure real time), properties, ``repr``,
``turn_left()`` and ``task_finished()`` after every step.

Most rules make valid calls (so that runs reach deep states: skips, pre-skips,
bulk submissions, finished tasks); one rule makes a call with bad arguments.

The comparison needs both cores, so it is marked ``c_extension`` (deselected by
``--no-c-extensions``) and runs once, in the ``[c]`` instance of the autouse
core fixture.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import papy._sched_py as py_core

pytestmark = pytest.mark.c_extension

WAIT_KEYS = ("feeder_wait", "consumer_wait")

# a valid task once reduced modulo n_tasks
TASK = st.integers(0, 2)
# non-blocking timeouts: expired or negative
TIMEOUTS = st.sampled_from([0, 0.0, -1, -0.5])
COUNTS = st.integers(1, 4)

# bad arguments, for the one rule that makes invalid calls
BAD_TASKS = st.one_of(st.integers(-2, 5), st.sampled_from(["0", 1.0, True, None, 10**30]))
BAD_INDICES = st.one_of(st.integers(-1, 6), st.sampled_from([True, 0.0, "0", None, (), []]))
BAD_COUNTS = st.one_of(st.integers(1, 4), st.sampled_from([0, -1, 10**30, 2.0, True, None]))
BAD_TIMEOUTS = st.sampled_from([0, -1, "soon", b"0"])
MALFORMED = st.sampled_from([(0, 0, True), (0, 0, True, 1, 2), [0, 1, True, -7], 5, "abcd"])


def outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """("ok", value) or ("raise", (type, message)) - comparable across cores."""
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return ("raise", (type(exc), str(exc)))


def split_stats(stats: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    stats = dict(stats)
    waits = {k: stats.pop(k) for k in WAIT_KEYS}
    return stats, waits


class CoreEquivalence(RuleBasedStateMachine):
    c_core: Any = None  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.c: Any = None
        self.py: Any = None
        self.in_flight: list[tuple[int, int]] = []  # a hint for useful deliveries
        self.values = itertools.count()

    def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[str, Any]:
        got_c = outcome(getattr(self.c, method), *args, **kwargs)
        got_py = outcome(getattr(self.py, method), *args, **kwargs)
        assert got_c == got_py, (method, args, kwargs)
        return got_py

    def task(self, drawn: int) -> int:
        return drawn % self.py.n_tasks

    def turn_task(self) -> int:
        return self.both("next_task")[1]  # type: ignore[no-any-return]

    @initialize(
        n=st.integers(1, 2) | st.just(3),
        stride=st.integers(1, 3),
        extra=st.integers(0, 4),
        ordered=st.booleans(),
        skip=st.booleans(),
        grace=st.sampled_from([0, 0.5, None]),
    )
    def create(
        self, n: int, stride: int, extra: int, ordered: bool, skip: bool, grace: Any
    ) -> None:
        args = (n, stride, stride + extra)
        kwargs = {"ordered": ordered, "skip": skip, "deadlock_grace": grace}
        self.c = self.c_core.Scheduler(*args, **kwargs)
        self.py = py_core.Scheduler(*args, **kwargs)

    # -- feeder ---------------------------------------------------------------
    @rule(task=TASK)
    def input_done(self, task: int) -> None:
        self.both("input_done", self.task(task))

    @rule(timeout=TIMEOUTS)
    def acquire_slot(self, timeout: Any) -> None:
        self.both("acquire_slot", timeout=timeout)

    @rule(n=COUNTS, timeout=TIMEOUTS)
    def acquire_slots(self, n: int, timeout: Any) -> None:
        self.both("acquire_slots", n, timeout=timeout)

    @rule()
    def submit(self) -> None:
        task = self.turn_task()
        kind, index = self.both("submit", task)
        if kind == "ok":
            self.in_flight.append((task, index))

    @rule(n=COUNTS)
    def submit_many(self, n: int) -> None:
        task = self.turn_task()
        kind, first = self.both("submit_many", task, n)
        if kind == "ok":
            self.in_flight.extend((task, first + k) for k in range(n))

    @rule()
    def feed(self) -> None:
        """The feeder's usual step: next_task, acquire_slot(0), submit."""
        task = self.turn_task()
        if task >= 0 and self.both("acquire_slot", timeout=0)[1] is True:
            self.in_flight.append((task, self.both("submit", task)[1]))

    @rule()
    def feed_bulk(self) -> None:
        """The feeder's bulk step: next_task, turn_left, acquire_slots(0), submit_many."""
        task = self.turn_task()
        if task < 0:
            return
        got = self.both("acquire_slots", self.both("turn_left")[1], timeout=0)[1]
        if got:
            first = self.both("submit_many", task, got)[1]
            self.in_flight.extend((task, first + k) for k in range(got))

    @rule()
    def end_turn(self) -> None:
        """The weave that follows the work gives up a turn with nothing ready."""
        self.both("end_turn")

    @rule(stride=st.integers(1, 4) | st.sampled_from([0, -1, True, 2.0, "2"]))
    def set_stride(self, stride: Any) -> None:
        self.both("set_stride", stride)

    @rule(buffer=st.integers(1, 8) | st.sampled_from([0, -3, False, 1.5, None]))
    def set_buffer(self, buffer: Any) -> None:
        """The default buffer follows the bytes of the work, up or down."""
        self.both("set_buffer", buffer)

    # -- delivery ---------------------------------------------------------------
    @rule(data=st.data(), ok=st.booleans())
    def put_result(self, data: st.DataObject, ok: bool) -> None:
        if not self.in_flight:
            return
        task, index = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        value = next(self.values) if ok else ValueError(next(self.values))
        self.both("put_result", task, index, ok, value)

    @rule(data=st.data())
    def put_many(self, data: st.DataObject) -> None:
        items = []
        for _ in range(data.draw(st.integers(0, min(4, len(self.in_flight))), label="count")):
            task, index = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
            ok = data.draw(st.booleans(), label="ok")
            items.append((task, index, ok, next(self.values) if ok else KeyError("e")))
        self.both("put_many", items)

    @rule(ok=st.booleans())
    def deliver_all(self, ok: bool) -> None:
        """Every tasklet believed in flight arrives, in one put_many."""
        items = [(t, i, ok, next(self.values)) for t, i in self.in_flight]
        self.in_flight.clear()
        self.both("put_many", items)

    @rule(data=st.data())
    def put_range(self, data: st.DataObject) -> None:
        """A batch of consecutive tasklets arrives at once (a run of what is in flight,
        or - rarely - a run that is not, which must fail alike)."""
        if not self.in_flight:
            return
        task, first = self.in_flight[data.draw(st.integers(0, len(self.in_flight) - 1))]
        n = data.draw(st.integers(1, 4), label="n")
        run = [(task, first + k) for k in range(n)]
        if all(pair in self.in_flight for pair in run) or data.draw(st.integers(0, 9)) == 0:
            for pair in run:
                if pair in self.in_flight:
                    self.in_flight.remove(pair)
        values = [next(self.values) for _ in range(n)]
        bad = data.draw(st.sets(st.integers(-1, n)), label="errors")
        errors = {k: KeyError(k) for k in bad} or None
        # each core keeps the list it is given: give each its own
        got_c = outcome(self.c.put_range, task, first, list(values), errors)
        got_py = outcome(self.py.put_range, task, first, list(values), errors)
        assert got_c == got_py

    # -- consumer ---------------------------------------------------------------
    @rule(task=TASK)
    def try_result(self, task: int) -> None:
        self.both("try_result", self.task(task))

    @rule(task=TASK, n=st.integers(1, 6))
    def try_values(self, task: int, n: int) -> None:
        self.both("try_values", self.task(task), n)

    @rule(
        task=TASK,
        ahead=st.integers(0, 3) | st.sampled_from([-1, None, 1.0]),
        skip=st.sampled_from([None, True, False]),
    )
    def timed_out(self, task: int, ahead: Any, skip: Any) -> None:
        """A driver's wait timed out: the core skips (or not: a position past the
        submitted ones only if the feeder says it exists; the task's own skip, or
        the map's) and builds the error."""
        task = self.task(task)
        got_c = outcome(self.c.timed_out, task, 0.0, ahead, skip)
        got_py = outcome(self.py.timed_out, task, 0.0, ahead, skip)
        if got_c[0] == got_py[0] == "ok":
            got_c = ("ok", (type(got_c[1]), str(got_c[1]), got_c[1].index))
            got_py = ("ok", (type(got_py[1]), str(got_py[1]), got_py[1].index))
        assert got_c == got_py

    @rule(waiting=st.booleans())
    def set_feeder_waiting(self, waiting: bool) -> None:
        self.both("set_feeder_waiting", waiting)
        self.both("stuck")

    @rule()
    def poke(self) -> None:
        self.both("poke")

    @rule(task=TASK, timeout=TIMEOUTS)
    def get_result(self, task: int, timeout: Any) -> None:
        self.both("get_result", self.task(task), timeout=timeout)

    @rule(task=TASK, n=COUNTS, timeout=TIMEOUTS)
    def get_many(self, task: int, n: int, timeout: Any) -> None:
        self.both("get_many", self.task(task), n, timeout=timeout)

    @rule(task=TASK)
    def drain(self, task: int) -> None:
        """Take everything a task has ready (a timeout is a valid outcome too)."""
        self.both("get_many", self.task(task), 100, timeout=0)

    # -- bad arguments ----------------------------------------------------------
    @rule(data=st.data())
    def bad_call(self, data: st.DataObject) -> None:
        method = data.draw(
            st.sampled_from(
                ["input_done", "acquire_slot", "acquire_slots", "submit", "submit_many",
                 "put_result", "put_many", "get_result", "get_many", "task_finished",
                 "try_result", "try_values", "put_range"]
            ),
            label="method",
        )  # fmt: skip
        draw = data.draw
        if method in ("input_done", "submit", "task_finished"):
            args: tuple = (draw(BAD_TASKS),)
        elif method == "acquire_slot":
            args = (draw(BAD_TIMEOUTS),)
        elif method == "acquire_slots":
            args = (draw(BAD_COUNTS), draw(BAD_TIMEOUTS))
        elif method == "submit_many":
            args = (draw(BAD_TASKS), draw(BAD_COUNTS))
        elif method == "put_result":
            args = (draw(BAD_TASKS), draw(BAD_INDICES), draw(st.booleans()), "bad")
        elif method == "put_many":
            items: list = [(draw(BAD_TASKS), draw(BAD_INDICES), True, "bad")]
            items.insert(draw(st.integers(0, 1)), draw(MALFORMED))
            args = (items,)
        elif method in ("get_result", "try_result"):
            args = (draw(BAD_TASKS), draw(BAD_TIMEOUTS))[: 2 if method == "get_result" else 1]
        elif method == "try_values":
            args = (draw(BAD_TASKS), draw(BAD_COUNTS))
        elif method == "put_range":
            args = (draw(BAD_TASKS), draw(BAD_INDICES))
            # each core keeps the list it is given (it may be stored): one each
            got_c = outcome(self.c.put_range, *args, ["bad"])
            got_py = outcome(self.py.put_range, *args, ["bad"])
            assert got_c == got_py, (method, args)
            return
        else:
            args = (draw(BAD_TASKS), draw(BAD_COUNTS), draw(BAD_TIMEOUTS))
        self.both(method, *args)

    # -- lifecycle ----------------------------------------------------------------
    @precondition(lambda self: self.c is not None)
    @rule(roll=st.integers(0, 15))
    def close(self, roll: int) -> None:
        if roll == 0:  # rare: a closed map is not very interesting
            self.both("close")

    @invariant()
    def same_state(self) -> None:
        if self.c is None:
            return
        stats_c, waits_c = split_stats(self.c.stats())
        stats_py, waits_py = split_stats(self.py.stats())
        assert stats_c == stats_py
        for waits in (waits_c, waits_py):
            assert all(type(v) is float and v >= 0 for v in waits.values())
        for name in ("n_tasks", "stride", "buffer", "ordered", "skip", "round", "closed",
                     "buffer_used", "in_flight", "changes"):  # fmt: skip
            assert getattr(self.c, name) == getattr(self.py, name), name
        assert repr(self.c).replace(" cython ", " python ") == repr(self.py)
        assert self.c.turn_left() == self.py.turn_left()
        for task in range(self.py.n_tasks):  # exposes the hidden "live" counters
            assert self.c.task_finished(task) == self.py.task_finished(task), task
            assert self.c.outstanding(task) == self.py.outstanding(task), task
            assert self.py.outstanding(task) >= 0


@pytest.fixture
def c_core(sched_implementation: Any) -> Any:
    if sched_implementation.is_pure_python:
        pytest.skip("compares both cores: runs once, in the [c] instance")
    import papy._sched

    return papy._sched


def test_cores_are_equivalent(c_core: Any) -> None:
    CoreEquivalence.c_core = c_core
    try:
        run_state_machine_as_test(
            CoreEquivalence,
            settings=settings(
                max_examples=int(os.environ.get("PAPY_EQUIVALENCE_EXAMPLES", "250")),
                stateful_step_count=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        CoreEquivalence.c_core = None


ARGS = st.one_of(
    st.integers(-2, 4),
    st.sampled_from([True, False, 1.0, "2", None, 10**30, float("nan")]),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=ARGS,
    stride=ARGS,
    buffer=ARGS,
    grace=st.sampled_from([0, 0.5, None, -1, -0.1, float("nan"), float("inf"), "x"]),
)
def test_constructor_equivalent(c_core: Any, n: Any, stride: Any, buffer: Any, grace: Any) -> None:
    def make(core: Any) -> tuple[str, Any]:
        kind, value = outcome(core.Scheduler, n, stride, buffer, deadlock_grace=grace)
        if kind == "ok":
            value = (repr(value).replace(" cython ", " python "), split_stats(value.stats())[0])
        return kind, value

    assert make(c_core) == make(py_core)
