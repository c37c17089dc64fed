"""Unit tests of the scheduling core, run on both cores by the ``sched_module`` fixture.

The core is driven directly (no IMap, no pools): the test plays the feeder
(``next_task``/``acquire_slot``/``submit``), the workers (``put_result``) and
the consumer (``get_result``), with threads where a wait must be observed.
"""

from __future__ import annotations

import _thread
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import papy
from papy._errors import DeadlockError, SchedulerClosed

HANG_GUARD = 10.0  # seconds: "it returned at all", never a performance claim


# -- helpers ------------------------------------------------------------------
def feed(s: Any, expect_task: int | None = None) -> tuple[int, int]:
    """Play the feeder once: take the turn's task, a slot, and submit."""
    task = s.next_task()
    assert task >= 0
    if expect_task is not None:
        assert task == expect_task
    assert s.acquire_slot(timeout=0) is True
    return task, s.submit(task)


def deliver(s: Any, task: int, index: int, value: Any = None, ok: bool = True) -> None:
    s.put_result(task, index, ok, ("v", task, index) if value is None else value)


class Runner(threading.Thread):
    """Runs ``fn`` in a daemon thread, keeping its return value or exception."""

    def __init__(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.result: Any = None
        self.error: BaseException | None = None
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def finish(self, timeout: float = HANG_GUARD) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "thread still blocked (hang guard)"
        if self.error is not None:
            raise self.error
        return self.result


# -- module surface -----------------------------------------------------------
def test_module_surface(sched_module: ModuleType, sched_implementation: Any) -> None:
    expected = "python" if sched_implementation.is_pure_python else "cython"
    assert sched_module.IMPLEMENTATION == expected
    assert (sched_module.RESULT, sched_module.ERROR, sched_module.FINISHED) == (0, 1, 2)
    assert sched_module.WAIT_SLICE == 0.05
    assert sorted(sched_module.__all__) == sorted(
        ["Scheduler", "Outlet", "RESULT", "ERROR", "FINISHED", "WAIT_SLICE", "IMPLEMENTATION"]
    )
    public = {n for n in dir(sched_module.Scheduler) if not n.startswith("_")}
    assert public == {
        "n_tasks", "stride", "buffer", "ordered", "skip", "round", "closed",
        "buffer_used", "in_flight", "next_task", "input_done", "acquire_slot",
        "acquire_slots", "turn_left", "submit", "submit_many", "put_result",
        "put_many", "put_range", "get_result", "get_many", "task_finished", "close", "stats",
        "try_result", "try_values", "set_feeder_waiting", "stuck", "deadlock_error",
        "timed_out", "wait_change", "poke", "changes", "end_turn", "set_stride",
        "set_buffer", "outstanding",
    }  # fmt: skip


def test_properties_and_repr(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(3, 2, 5, ordered=False, skip=1)
    assert (s.n_tasks, s.stride, s.buffer) == (3, 2, 5)
    assert s.ordered is False and s.skip is True and s.closed is False
    assert (s.round, s.buffer_used, s.in_flight) == (0, 0, 0)
    impl = sched_module.IMPLEMENTATION
    assert repr(s) == f"<Scheduler {impl} open tasks=3 stride=2 buffer=0/5 in_flight=0>"
    feed(s)
    assert repr(s) == f"<Scheduler {impl} open tasks=3 stride=2 buffer=1/5 in_flight=1>"
    s.close()
    assert s.closed is True
    assert repr(s) == f"<Scheduler {impl} closed tasks=3 stride=2 buffer=1/5 in_flight=1>"


# -- argument validation ------------------------------------------------------
@pytest.mark.parametrize(
    "args, kwargs, exc, message",
    [
        ((0, 1, 1), {}, ValueError, "n_tasks must be >= 1, got 0"),
        ((1.0, 1, 1), {}, TypeError, "n_tasks must be an int, got float"),
        ((True, 1, 1), {}, TypeError, "n_tasks must be an int, got bool"),
        (("2", 1, 1), {}, TypeError, "n_tasks must be an int, got str"),
        ((1, 0, 1), {}, ValueError, "stride must be >= 1, got 0"),
        ((1, None, 1), {}, TypeError, "stride must be an int, got NoneType"),
        ((1, 1, -3), {}, ValueError, "buffer must be >= 1, got -3"),
        ((1, 1, 2.5), {}, TypeError, "buffer must be an int, got float"),
        ((1, 3, 2), {}, ValueError, "buffer must be >= stride (3), got 2"),
        ((1, 1, 1), {"deadlock_grace": -1}, ValueError,
         "deadlock_grace must be >= 0 or None, got -1"),
        ((1, 1, 1), {"deadlock_grace": float("nan")}, ValueError,
         "deadlock_grace must be >= 0 or None, got nan"),
    ],
)  # fmt: skip
def test_constructor_validation(
    sched_module: ModuleType, args: tuple, kwargs: dict, exc: type, message: str
) -> None:
    with pytest.raises(exc) as info:
        sched_module.Scheduler(*args, **kwargs)
    assert type(info.value) is exc
    assert str(info.value) == message


def test_constructor_accepts_edge_values(sched_module: ModuleType) -> None:
    class MyInt(int):
        pass

    s = sched_module.Scheduler(MyInt(2), 3, 3, deadlock_grace=0)
    assert (s.n_tasks, s.stride, s.buffer) == (2, 3, 3)
    s = sched_module.Scheduler(1, 1, 10**30, deadlock_grace=None)
    assert s.buffer == 10**30
    assert s.stats()["buffer_size"] == 10**30
    for _ in range(5):
        feed(s)
    assert s.buffer_used == 5


TASK_METHODS = [
    ("input_done", ()),
    ("submit", ()),
    ("put_result", (0, True, None)),
    ("get_result", ()),
    ("task_finished", ()),
]


@pytest.mark.parametrize("method, extra", TASK_METHODS, ids=[m for m, _ in TASK_METHODS])
@pytest.mark.parametrize(
    "task, exc, message",
    [
        ("0", TypeError, "task must be an int, got str"),
        (0.0, TypeError, "task must be an int, got float"),
        (True, TypeError, "task must be an int, got bool"),
        (None, TypeError, "task must be an int, got NoneType"),
        (2, IndexError, "task 2 out of range (the map has 2 tasks)"),
        (-1, IndexError, "task -1 out of range (the map has 2 tasks)"),
        (10**40, IndexError, f"task {10**40} out of range (the map has 2 tasks)"),
    ],
)
def test_task_argument_validation(
    sched_module: ModuleType, method: str, extra: tuple, task: Any, exc: type, message: str
) -> None:
    s = sched_module.Scheduler(2, 1, 4)
    assert s.acquire_slot()
    with pytest.raises(exc) as info:
        getattr(s, method)(task, *extra)
    assert type(info.value) is exc
    assert str(info.value) == message
    assert s.stats()["in_flight"] == 0


def test_put_many_checks_every_task_before_storing(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 1, 4)
    _, i = feed(s, 0)
    with pytest.raises(TypeError, match="^task must be an int, got str$"):
        s.put_many([(0, i, True, "a"), ("1", 0, True, "b")])
    assert s.stats()["tasks"][0]["ready"] == 0
    with pytest.raises(IndexError, match=r"^task 7 out of range \(the map has 2 tasks\)$"):
        s.put_many([(0, i, True, "a"), (7, 0, True, "b")])
    assert s.stats()["in_flight"] == 1


def test_submit_needs_slot_and_turn(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 1, 4)
    with pytest.raises(RuntimeError) as info:
        s.submit(0)
    assert type(info.value) is RuntimeError
    assert str(info.value) == "submit() needs a buffer slot from acquire_slot()"
    assert s.acquire_slot()
    with pytest.raises(ValueError) as info2:
        s.submit(1)
    assert type(info2.value) is ValueError
    assert str(info2.value) == "task 1 is not the task whose turn it is (0)"
    s.input_done(1)  # not the turn's task: the weave does not move yet
    assert s.submit(0) == 0  # now it is task 1's turn, whose input is done
    assert s.acquire_slot()
    with pytest.raises(ValueError, match=r"^task 1 is not the task whose turn it is \(1\)$"):
        s.submit(1)
    assert s.next_task() == 0
    assert s.submit(0) == 1
    assert s.round == 1


def test_put_result_not_in_flight(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 1, 4)
    with pytest.raises(ValueError) as info:
        s.put_result(0, 0, True, "x")
    assert str(info.value) == "tasklet 0 of task 0 is not in flight"
    t, i = feed(s, 0)
    with pytest.raises(ValueError, match="^tasklet 0 of task 1 is not in flight$"):
        s.put_result(1, i, True, "x")
    with pytest.raises(ValueError, match="^tasklet 1 of task 0 is not in flight$"):
        s.put_result(0, 1, True, "x")
    s.put_result(t, i, True, "x")
    with pytest.raises(ValueError, match="^tasklet 0 of task 0 is not in flight$"):
        s.put_result(t, i, True, "again")  # delivered twice
    assert s.get_result(0) == (sched_module.RESULT, 0, "x")


@pytest.mark.parametrize("method", ["acquire_slots", "submit_many", "get_many"])
@pytest.mark.parametrize(
    "n, exc, message",
    [
        (0, ValueError, "n must be >= 1, got 0"),
        (-5, ValueError, "n must be >= 1, got -5"),
        (2.0, TypeError, "n must be an int, got float"),
        (True, TypeError, "n must be an int, got bool"),
        (None, TypeError, "n must be an int, got NoneType"),
    ],
)
def test_bulk_n_validation(
    sched_module: ModuleType, method: str, n: Any, exc: type, message: str
) -> None:
    s = sched_module.Scheduler(1, 2, 4)
    assert s.acquire_slot()
    call = {
        "acquire_slots": lambda: s.acquire_slots(n, timeout=0),
        "submit_many": lambda: s.submit_many(0, n),
        "get_many": lambda: s.get_many(0, n, timeout=0),
    }[method]
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc
    assert str(info.value) == message
    assert s.buffer_used == 1 and s.in_flight == 0


# -- weave --------------------------------------------------------------------
def test_weave_order_with_stride_and_rounds(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(3, 2, 100)
    order = []
    rounds = []
    for _ in range(13):
        task, index = feed(s)
        order.append((task, index))
        rounds.append(s.round)
    assert order == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1),
        (0, 2), (0, 3), (1, 2), (1, 3), (2, 2), (2, 3),
        (0, 4),
    ]  # fmt: skip
    assert rounds == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2]
    assert s.in_flight == 13 and s.buffer_used == 13


def test_weave_skips_tasks_whose_input_is_done(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(3, 2, 100)
    s.input_done(1)
    s.input_done(1)  # repeated: no-op
    seq = [feed(s)[0] for _ in range(6)]
    assert seq == [0, 0, 2, 2, 0, 0]
    # the current task's input ends mid-stride: the weave moves on at once
    assert s.next_task() == 2
    feed(s, 2)
    s.input_done(2)
    assert s.next_task() == 0
    s.input_done(0)
    assert s.next_task() == -1
    assert s.stats()["tasks"][1]["input_done"] is True


def test_turn_left(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 3, 100)
    assert s.turn_left() == 3
    feed(s, 0)
    assert s.turn_left() == 2
    feed(s, 0)
    feed(s, 0)
    assert s.next_task() == 1 and s.turn_left() == 3  # the weave moved on
    feed(s, 1)
    assert s.turn_left() == 2
    s.input_done(1)  # the current task ends mid-stride: a fresh turn for task 0
    assert s.next_task() == 0 and s.turn_left() == 3


def test_end_turn_moves_the_weave_on(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(3, 4, 100)
    feed(s, 0)
    s.end_turn()  # task 0 has nothing ready: task 1 gets a whole turn
    assert s.next_task() == 1 and s.turn_left() == 4
    s.end_turn()
    s.end_turn()
    assert (s.next_task(), s.round) == (0, 1)
    s.input_done(1)
    s.end_turn()
    assert s.next_task() == 2  # a finished task is passed over
    s.input_done(0)
    s.input_done(2)
    s.end_turn()  # nothing left to feed: a no-op
    assert s.next_task() == -1
    s.close()
    s.end_turn()


def test_set_stride_follows_the_work(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 2, 100)
    feed(s, 0)
    s.set_stride(5)  # longer turns: the current one goes on
    assert (s.stride, s.turn_left()) == (5, 4)
    for _ in range(4):
        feed(s, 0)
    assert s.next_task() == 1
    feed(s, 1)
    feed(s, 1)
    s.set_stride(2)  # the current turn already had 2: it ends now
    assert (s.next_task(), s.turn_left()) == (0, 2)
    for bad, error in ((0, ValueError), (-1, ValueError), (True, TypeError), (2.0, TypeError)):
        with pytest.raises(error, match="stride"):
            s.set_stride(bad)
    assert s.stride == 2


def test_set_buffer_moves_the_free_slots(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 4)
    for _ in range(3):
        feed(s)
    s.set_buffer(2)  # below the slots taken: none is free until enough are handed out
    assert (s.buffer, s.buffer_used, s.acquire_slot(timeout=0)) == (2, 3, False)
    for index in range(3):
        deliver(s, 0, index)
    s.get_result(0)
    s.get_result(0)
    assert s.buffer_used == 1 and s.acquire_slots(5, timeout=0) == 1
    waiter = Runner(s.acquire_slot, timeout=HANG_GUARD)
    waiter.start()
    time.sleep(0.05)
    assert waiter.is_alive()
    s.set_buffer(3)  # more room wakes a feeder waiting for a slot
    assert waiter.finish() is True
    assert s.stats()["buffer_size"] == 3
    for bad, error in ((0, ValueError), (None, TypeError), (1.5, TypeError)):
        with pytest.raises(error, match="buffer"):
            s.set_buffer(bad)


def test_submit_many(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 3, 10)
    assert s.acquire_slots(2, timeout=0) == 2
    with pytest.raises(RuntimeError) as info:
        s.submit_many(0, 3)
    assert str(info.value) == "submit_many() needs n buffer slots from acquire_slots()"
    with pytest.raises(ValueError) as info2:
        s.submit_many(1, 2)
    assert str(info2.value) == "task 1 is not the task whose turn it is (0)"
    assert s.submit_many(0, 2) == 0
    assert (s.in_flight, s.buffer_used, s.turn_left(), s.next_task()) == (2, 2, 1, 0)
    assert s.acquire_slots(5, timeout=0) == 5
    with pytest.raises(ValueError) as info3:
        s.submit_many(0, 2)
    assert str(info3.value) == "n must be <= turn_left() (1), got 2"
    assert s.submit_many(0, 1) == 2  # completes the stride: the weave moves on
    assert s.next_task() == 1 and s.turn_left() == 3
    assert s.submit_many(1, 3) == 0
    assert s.next_task() == 0 and s.round == 1
    assert s.submit(0) == 3
    st = s.stats()
    assert [t["submitted"] for t in st["tasks"]] == [4, 3]
    assert [t["in_flight"] for t in st["tasks"]] == [4, 3]
    assert st["buffer_used"] == 7
    for index in (3, 1, 0, 2):  # every index is really in flight
        deliver(s, 0, index)
    assert [s.get_result(0)[1] for _ in range(4)] == [0, 1, 2, 3]


@pytest.mark.parametrize("ordered", [True, False])
def test_timeout_before_a_position_exists_skips_nothing(
    sched_module: ModuleType, ordered: bool
) -> None:
    s = sched_module.Scheduler(1, 4, 4, ordered=ordered, skip=True)
    for _ in range(3):
        with pytest.raises(TimeoutError) as info:
            s.get_result(0, timeout=0)  # position 0 was not read from the input yet
        assert info.value.index is None
        assert str(info.value) == "no result of task 0 within 0 s"
    assert s.stats()["tasks"][0]["skipped"] == 0
    assert s.acquire_slots(4, timeout=0) == 4
    assert s.submit_many(0, 3) == 0
    for index in range(3):
        deliver(s, 0, index, ("r", index))
    got = s.get_many(0, 10, timeout=0)
    assert [r[1] for r in got] == [0, 1, 2]  # every position has its outcome
    s.input_done(0)
    assert s.task_finished(0) is True
    assert s.get_many(0, 10, timeout=0) == [(sched_module.FINISHED, -1, None)]
    assert s.get_result(0, timeout=0) == (sched_module.FINISHED, -1, None)  # past the end
    assert s.buffer_used == 1  # the slot still held by the feeder


def test_acquire_slots_takes_what_is_free(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 5)
    assert s.acquire_slots(3, timeout=0) == 3
    assert s.acquire_slots(1, timeout=0) == 1
    assert s.acquire_slots(10**30, timeout=0) == 1  # only one left
    assert s.buffer_used == 5
    assert s.acquire_slots(2, timeout=0) == 0
    assert s.acquire_slots(2, timeout=0.05) == 0
    for _ in range(5):
        assert s.next_task() == 0
        s.submit(0)
    with pytest.raises(RuntimeError):
        s.submit(0)  # all 5 slots were used


@pytest.mark.timeout(30)
def test_acquire_slots_waits_only_when_none_is_free(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 3)
    for _ in range(3):
        feed(s)
    for index in range(3):
        deliver(s, 0, index)
    feeder = Runner(s.acquire_slots, 3, timeout=HANG_GUARD)
    feeder.start()
    time.sleep(0.1)
    assert feeder.is_alive()
    assert [r[1] for r in s.get_many(0, 2)] == [0, 1]  # frees two slots at once
    assert feeder.finish() in (1, 2)  # woken after the first or the second was freed
    s.close()
    with pytest.raises(SchedulerClosed):
        s.acquire_slots(1)


def test_next_task_after_close(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 1, 2)
    assert s.next_task() == 0
    s.close()
    assert s.next_task() == -1


# -- buffer accounting --------------------------------------------------------
def test_slot_taken_at_acquire_freed_at_hand_out(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 2)
    assert s.acquire_slot(timeout=0) is True
    assert s.buffer_used == 1 and s.in_flight == 0
    assert s.submit(0) == 0
    assert s.buffer_used == 1 and s.in_flight == 1
    feed(s)
    assert s.buffer_used == 2
    assert s.acquire_slot(timeout=0) is False
    assert s.acquire_slot(timeout=-1) is False
    deliver(s, 0, 0)
    deliver(s, 0, 1)
    assert s.buffer_used == 2 and s.in_flight == 0  # computed is not handed out
    assert s.acquire_slot(timeout=0) is False
    assert s.get_result(0)[1] == 0
    assert s.buffer_used == 1
    assert s.acquire_slot(timeout=0) is True
    assert s.buffer_used == 2


@pytest.mark.timeout(30)
def test_acquire_slot_timeout_returns_false(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 1)
    feed(s)
    t0 = time.monotonic()
    assert s.acquire_slot(timeout=0.1) is False
    assert time.monotonic() - t0 >= 0.09
    assert s.stats()["feeder_wait"] >= 0.09
    assert s.buffer_used == 1


@pytest.mark.timeout(30)
def test_acquire_slot_blocks_until_a_result_is_taken(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 1)
    _, i = feed(s)
    deliver(s, 0, i)
    feeder = Runner(s.acquire_slot, timeout=HANG_GUARD)
    feeder.start()
    time.sleep(0.2)
    assert feeder.is_alive(), "acquire_slot returned while the buffer was full"
    assert s.buffer_used == 1
    assert s.get_result(0) == (sched_module.RESULT, 0, ("v", 0, 0))
    assert feeder.finish() is True
    assert s.buffer_used == 1  # the freed slot was taken by the feeder
    assert s.stats()["feeder_wait"] > 0


@pytest.mark.timeout(30)
def test_get_result_blocks_until_delivered(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 1, 4)
    _, i = feed(s, 0)
    consumer = Runner(s.get_result, 0, timeout=HANG_GUARD)
    consumer.start()
    time.sleep(0.1)
    assert consumer.is_alive()
    deliver(s, 0, i, "late")
    assert consumer.finish() == (sched_module.RESULT, 0, "late")
    assert s.stats()["consumer_wait"] > 0


@pytest.mark.timeout(30)
def test_input_done_wakes_waiting_consumer(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 1, 4, ordered=False)
    consumer = Runner(s.get_result, 1, timeout=HANG_GUARD)
    consumer.start()
    time.sleep(0.1)
    assert consumer.is_alive()
    s.input_done(1)
    assert consumer.finish() == (sched_module.FINISHED, -1, None)


# -- hand-out order and statuses ---------------------------------------------
def test_ordered_hand_out_waits_for_index_order(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 4, ordered=True)
    for _ in range(3):
        feed(s)
    deliver(s, 0, 2)
    deliver(s, 0, 1)
    with pytest.raises(TimeoutError):
        s.get_result(0, timeout=0)
    assert s.stats()["tasks"][0]["ready"] == 2
    deliver(s, 0, 0)
    assert [s.get_result(0)[1] for _ in range(3)] == [0, 1, 2]


def test_unordered_hand_out_by_arrival(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 4, ordered=False)
    for _ in range(3):
        feed(s)
    deliver(s, 0, 2)
    assert s.get_result(0) == (sched_module.RESULT, 2, ("v", 0, 2))
    deliver(s, 0, 0)
    deliver(s, 0, 1)
    assert [s.get_result(0)[1] for _ in range(2)] == [0, 1]


def test_tasks_have_separate_queues(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 1, 4)
    a = feed(s, 0)
    b = feed(s, 1)
    deliver(s, *b, value="b0")
    with pytest.raises(TimeoutError):
        s.get_result(0, timeout=0)
    assert s.get_result(1) == (sched_module.RESULT, 0, "b0")
    deliver(s, *a, value="a0")
    assert s.get_result(0) == (sched_module.RESULT, 0, "a0")


@pytest.mark.parametrize("ordered", [True, False])
def test_error_status(sched_module: ModuleType, ordered: bool) -> None:
    s = sched_module.Scheduler(1, 1, 4, ordered=ordered)
    feed(s)
    feed(s)
    exc = ZeroDivisionError("boom")
    s.put_result(0, 0, False, exc)
    s.put_result(0, 1, True, 7)
    status, index, value = s.get_result(0)
    assert (status, index) == (sched_module.ERROR, 0) and value is exc
    assert s.get_result(0) == (sched_module.RESULT, 1, 7)
    task_stats = s.stats()["tasks"][0]
    assert task_stats["returned"] == 2 and task_stats["failed"] == 1


@pytest.mark.parametrize("ordered", [True, False])
def test_finished_is_repeated(sched_module: ModuleType, ordered: bool) -> None:
    s = sched_module.Scheduler(2, 1, 4, ordered=ordered)
    _, i = feed(s, 0)
    s.input_done(0)
    assert s.task_finished(0) is False  # one result still to hand out
    with pytest.raises(TimeoutError):
        s.get_result(0, timeout=0)
    deliver(s, 0, i)
    assert s.get_result(0)[0] == sched_module.RESULT
    assert s.task_finished(0) is True
    for _ in range(3):
        assert s.get_result(0) == (sched_module.FINISHED, -1, None)
        assert s.get_result(0, timeout=0) == (sched_module.FINISHED, -1, None)
    assert s.task_finished(1) is False


@pytest.mark.parametrize("ordered", [True, False])
def test_empty_task_finishes_immediately(sched_module: ModuleType, ordered: bool) -> None:
    s = sched_module.Scheduler(2, 1, 2, ordered=ordered)
    s.input_done(1)
    assert s.task_finished(1) is True
    assert s.get_result(1) == (sched_module.FINISHED, -1, None)
    assert s.get_result(1, timeout=0) == (sched_module.FINISHED, -1, None)
    assert s.stats()["consumer_wait"] == 0.0  # never waited


@pytest.mark.parametrize("ordered", [True, False])
def test_get_many(sched_module: ModuleType, ordered: bool) -> None:
    s = sched_module.Scheduler(1, 1, 8, ordered=ordered)
    for _ in range(5):
        feed(s)
    with pytest.raises(TimeoutError, match="^no result of task 0 within 0 s$"):
        s.get_many(0, 3, timeout=0)
    for index in (0, 1, 3):
        deliver(s, 0, index)
    assert [r[1] for r in s.get_many(0, 2)] == [0, 1]  # no more than n
    assert s.buffer_used == 3
    if ordered:
        with pytest.raises(TimeoutError):
            s.get_many(0, 10, timeout=0)  # 3 is there, but 2 comes first
    else:
        assert [r[1] for r in s.get_many(0, 10, timeout=0)] == [3]
    deliver(s, 0, 2, ok=False, value=KeyError("k"))
    deliver(s, 0, 4)
    s.input_done(0)
    got = s.get_many(0, 10)  # FINISHED is not appended to results
    assert [r[1] for r in got] == ([2, 3, 4] if ordered else [2, 4])
    assert got[0][0] == sched_module.ERROR and isinstance(got[0][2], KeyError)
    assert all(r[0] == sched_module.RESULT for r in got[1:])
    assert s.get_many(0, 10) == [(sched_module.FINISHED, -1, None)]
    assert s.get_many(0, 1) == [(sched_module.FINISHED, -1, None)]
    assert s.buffer_used == 0


# -- timeouts and skipping ----------------------------------------------------
def test_timeout_error_types_and_message(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 1, 2)
    with pytest.raises(TimeoutError) as info:
        s.get_result(1, timeout=0.01)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert isinstance(err, multiprocessing.TimeoutError)
    assert type(err) is papy._errors.timeout_error_class()
    assert str(err) == "no result of task 1 within 0.01 s"
    assert s.stats()["consumer_wait"] >= 0.009
    with pytest.raises(TimeoutError, match=r"^no result of task 0 within 0 s$"):
        s.get_result(0, timeout=0)


def test_no_skip_timeout_then_result_still_returned(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 4, skip=False)
    feed(s)
    feed(s)
    for _ in range(2):
        with pytest.raises(TimeoutError):
            s.get_result(0, timeout=0.01)
    assert s.stats()["tasks"][0]["skipped"] == 0
    assert s.buffer_used == 2
    deliver(s, 0, 1)
    deliver(s, 0, 0)
    assert [s.get_result(0)[1] for _ in range(2)] == [0, 1]


def test_skip_ordered_drops_late_result(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 4, ordered=True, skip=True)
    feed(s)
    feed(s)
    with pytest.raises(TimeoutError):
        s.get_result(0, timeout=0.01)
    st = s.stats()
    assert st["tasks"][0]["skipped"] == 1
    assert st["buffer_used"] == 1  # the skipped position's slot is freed at once
    assert st["in_flight"] == 2  # ... but its tasklet is still computing
    deliver(s, 0, 0, "late")  # dropped on arrival
    assert s.stats()["tasks"][0]["ready"] == 0
    assert s.buffer_used == 1
    deliver(s, 0, 1, "next")
    assert s.get_result(0) == (sched_module.RESULT, 1, "next")
    s.input_done(0)
    assert s.get_result(0) == (sched_module.FINISHED, -1, None)
    st = s.stats()
    assert st["buffer_used"] == 0 and st["in_flight"] == 0
    assert st["tasks"][0]["returned"] == 1


def test_skip_ordered_result_ready_behind_skipped_position(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 4, ordered=True, skip=True)
    for _ in range(3):
        feed(s)
    deliver(s, 0, 1)
    deliver(s, 0, 2)
    with pytest.raises(TimeoutError):
        s.get_result(0, timeout=0)
    assert [s.get_result(0, timeout=0)[1] for _ in range(2)] == [1, 2]
    deliver(s, 0, 0)
    with pytest.raises(TimeoutError) as info:
        s.get_result(0, timeout=0)  # position 3: not submitted, so nothing is skipped
    assert info.value.index is None


def test_skip_unordered_drops_oldest_pending(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 4, ordered=False, skip=True)
    for _ in range(3):
        feed(s)
    with pytest.raises(TimeoutError):
        s.get_result(0, timeout=0.01)
    assert s.buffer_used == 2
    deliver(s, 0, 0, "late")  # the skipped one: dropped
    deliver(s, 0, 2)
    deliver(s, 0, 1)
    got = [s.get_result(0, timeout=0)[1] for _ in range(2)]
    assert got == [2, 1]
    s.input_done(0)
    assert s.get_result(0) == (sched_module.FINISHED, -1, None)
    st = s.stats()
    assert st["tasks"][0]["skipped"] == 1 and st["tasks"][0]["returned"] == 2
    assert st["buffer_used"] == 0


@pytest.mark.parametrize("ordered", [True, False])
def test_skip_past_the_submitted_positions_skips_nothing(
    sched_module: ModuleType, ordered: bool
) -> None:
    s = sched_module.Scheduler(1, 1, 4, ordered=ordered, skip=True)
    feed(s)  # index 0
    with pytest.raises(TimeoutError) as info:
        s.get_result(0, timeout=0)
    assert info.value.index == 0  # the one position that exists is skipped
    assert str(info.value) == "no result of task 0 within 0 s (position 0 skipped)"
    for _ in range(5):  # polling past it consumes nothing
        with pytest.raises(TimeoutError) as info:
            s.get_result(0, timeout=0)
        assert info.value.index is None
    assert s.stats()["tasks"][0]["skipped"] == 1 and s.buffer_used == 0
    feed(s)  # index 1
    deliver(s, 0, 0, "dropped")
    deliver(s, 0, 1, "kept")
    assert s.get_result(0, timeout=0) == (sched_module.RESULT, 1, "kept")
    s.input_done(0)
    assert s.get_result(0) == (sched_module.FINISHED, -1, None)
    assert s.buffer_used == 0


# -- deadlock -----------------------------------------------------------------
def _deadlocked_map(sched_module: ModuleType, **kwargs: Any) -> tuple[Any, Runner]:
    """Buffer full of task 0's results; the feeder blocks wanting a slot for task 1."""
    s = sched_module.Scheduler(2, 2, 2, **kwargs)
    for _ in range(2):
        t, i = feed(s, 0)
        deliver(s, t, i)
    assert s.next_task() == 1

    def feeder() -> Any:
        try:
            return s.acquire_slot()
        except SchedulerClosed as exc:
            return exc

    runner = Runner(feeder)
    runner.start()
    return s, runner


@pytest.mark.timeout(30)
def test_deadlock_detected_after_grace(sched_module: ModuleType) -> None:
    s, feeder = _deadlocked_map(sched_module, deadlock_grace=0.3)
    t0 = time.monotonic()
    with pytest.raises(DeadlockError) as info:
        s.get_result(1, timeout=HANG_GUARD)
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < HANG_GUARD
    assert isinstance(info.value, RuntimeError)
    msg = str(info.value)
    assert msg.startswith("deadlock: task 1 waits for its next result, but the buffer (2 slots)")
    assert msg.endswith("needs a buffer that holds the other tasks' results.")
    assert "number of tasks x stride (4)" in msg
    s.close()
    assert isinstance(feeder.finish(), SchedulerClosed)
    # task 0's results are still there: reading in weave order was the way out
    assert s.stats()["tasks"][0]["ready"] == 2


@pytest.mark.timeout(30)
def test_deadlock_grace_zero(sched_module: ModuleType) -> None:
    s, feeder = _deadlocked_map(sched_module, deadlock_grace=0)
    t0 = time.monotonic()
    with pytest.raises(DeadlockError):
        s.get_result(1, timeout=HANG_GUARD)  # as soon as the feeder waits
    assert time.monotonic() - t0 < HANG_GUARD
    s.close()
    feeder.finish()


@pytest.mark.timeout(30)
def test_timeout_shorter_than_grace_wins(sched_module: ModuleType) -> None:
    s, feeder = _deadlocked_map(sched_module, deadlock_grace=HANG_GUARD)
    with pytest.raises(TimeoutError) as info:
        s.get_result(1, timeout=0.2)
    assert not isinstance(info.value, DeadlockError)
    s.close()
    feeder.finish()


@pytest.mark.timeout(30)
def test_deadlock_grace_none_disables_detection(sched_module: ModuleType) -> None:
    s, feeder = _deadlocked_map(sched_module, deadlock_grace=None)
    time.sleep(0.1)  # let the feeder start waiting
    with pytest.raises(TimeoutError):
        s.get_result(1, timeout=0.5)
    s.close()
    feeder.finish()


@pytest.mark.timeout(30)
def test_no_deadlock_while_something_is_computing(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 2, 2, deadlock_grace=0)
    t, i = feed(s, 0)
    deliver(s, t, i)
    t, j = feed(s, 0)  # in flight: its arrival does not help task 1 but may be read
    feeder = Runner(s.acquire_slot, timeout=HANG_GUARD)
    feeder.start()
    time.sleep(0.1)
    with pytest.raises(TimeoutError):
        s.get_result(1, timeout=0.2)
    s.close()
    with pytest.raises(SchedulerClosed):
        feeder.finish()


# -- close --------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_close_wakes_blocked_get_result(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 1, deadlock_grace=None)
    consumer = Runner(s.get_result, 0)
    consumer.start()
    time.sleep(0.1)
    assert consumer.is_alive()
    s.close()
    with pytest.raises(SchedulerClosed) as info:
        consumer.finish()
    assert str(info.value) == "the map was stopped"


@pytest.mark.timeout(30)
def test_close_wakes_blocked_acquire_slot(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 1, deadlock_grace=None)
    feed(s)
    feeder = Runner(s.acquire_slot)
    feeder.start()
    time.sleep(0.1)
    assert feeder.is_alive()
    s.close()
    with pytest.raises(SchedulerClosed, match="^the map was stopped$"):
        feeder.finish()


def test_after_close(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 1, 2)
    _, i = feed(s)
    _, j = feed(s)
    deliver(s, 0, i)
    s.close()
    s.close()  # idempotent
    before = s.stats()
    deliver(s, 0, j)  # ignored
    s.put_many([(0, j, True, "x")])  # ignored
    s.put_result(0, 99, True, "not in flight, but ignored once closed")
    assert s.stats() == before
    with pytest.raises(SchedulerClosed, match="^the map was stopped$"):
        s.get_result(0)  # even though a result is ready
    with pytest.raises(SchedulerClosed, match="^the map was stopped$"):
        s.acquire_slot(timeout=0)
    assert s.next_task() == -1
    assert before["closed"] is True


# -- stats, put_many ----------------------------------------------------------
def test_stats_contents(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 1, 8)
    empty = s.stats()
    assert empty == {
        "tasks": [
            {"submitted": 0, "returned": 0, "failed": 0, "skipped": 0,
             "in_flight": 0, "ready": 0, "input_done": False},
        ] * 2,
        "buffer_used": 0,
        "buffer_size": 8,
        "in_flight": 0,
        "feeder_wait": 0.0,
        "consumer_wait": 0.0,
        "round": 0,
        "closed": False,
    }  # fmt: skip
    for _ in range(5):
        feed(s)  # 0,1,0,1,0
    s.put_many([(0, 0, True, "a"), (0, 1, False, ValueError()), (1, 0, True, "b")])
    s.get_result(0)
    s.input_done(1)
    st = s.stats()
    assert st["tasks"][0] == {"submitted": 3, "returned": 1, "failed": 0, "skipped": 0,
                              "in_flight": 1, "ready": 1, "input_done": False}  # fmt: skip
    assert st["tasks"][1] == {"submitted": 2, "returned": 0, "failed": 0, "skipped": 0,
                              "in_flight": 1, "ready": 1, "input_done": True}  # fmt: skip
    # input_done(1) came on task 1's turn: the weave went back to task 0 once more
    assert (st["buffer_used"], st["in_flight"], st["round"]) == (4, 2, 3)
    assert isinstance(st["feeder_wait"], float) and isinstance(st["consumer_wait"], float)
    st["tasks"][0]["submitted"] = 99  # a snapshot: mutating it changes nothing
    assert s.stats()["tasks"][0]["submitted"] == 3


def test_put_many_delivers_all(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(2, 2, 8, ordered=False)
    pairs = [feed(s) for _ in range(4)]
    s.put_many([(t, i, True, (t, i)) for t, i in reversed(pairs)])
    assert s.in_flight == 0
    assert [s.get_result(0)[2] for _ in range(2)] == [(0, 1), (0, 0)]
    assert [s.get_result(1)[2] for _ in range(2)] == [(1, 1), (1, 0)]
    s.put_many([])


# -- threads: a small end-to-end run -----------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("ordered", [True, False])
def test_threaded_pipeline_delivers_everything(sched_module: ModuleType, ordered: bool) -> None:
    n_tasks, per_task = 3, 300
    s = sched_module.Scheduler(n_tasks, 2, 8, ordered=ordered, deadlock_grace=None)
    work: list[tuple[int, int]] = []
    work_cv = threading.Condition()

    def feeder() -> None:
        fed = [0] * n_tasks
        while True:
            task = s.next_task()
            if task < 0:
                return
            if fed[task] == per_task:
                s.input_done(task)
                continue
            if not s.acquire_slot(timeout=HANG_GUARD):
                raise AssertionError("feeder starved")
            index = s.submit(task)
            fed[task] += 1
            with work_cv:
                work.append((task, index))
                work_cv.notify()

    def worker() -> None:
        while True:
            with work_cv:
                while not work:
                    work_cv.wait()
                item = work.pop(0)
            if item[0] < 0:
                return
            s.put_result(item[0], item[1], item[1] % 7 != 3, item[1])

    threads = [Runner(feeder)] + [Runner(worker) for _ in range(3)]
    for th in threads:
        th.start()
    got: dict[int, list[int]] = {t: [] for t in range(n_tasks)}
    errors = 0
    done = set()
    while len(done) < n_tasks:  # one consumer reading in weave order
        for t in range(n_tasks):
            if t in done:
                continue
            for _ in range(2):
                status, index, value = s.get_result(t, timeout=HANG_GUARD)
                if status == sched_module.FINISHED:
                    done.add(t)
                    break
                assert value == index
                errors += status == sched_module.ERROR
                got[t].append(index)
    threads[0].finish()
    with work_cv:
        work.extend([(-1, -1)] * 3)
        work_cv.notify_all()
    for th in threads[1:]:
        th.finish()
    for t in range(n_tasks):
        if ordered:
            assert got[t] == list(range(per_task))
        else:
            assert sorted(got[t]) == list(range(per_task))
    assert errors == n_tasks * sum(1 for i in range(per_task) if i % 7 == 3)
    st = s.stats()
    assert st["buffer_used"] == 0 and st["in_flight"] == 0


# -- signals ------------------------------------------------------------------
def _blocked_get_result(s: Any) -> Any:
    return s.get_result(0, timeout=HANG_GUARD)


def _blocked_acquire_slot(s: Any) -> Any:
    feed(s)
    return s.acquire_slot(timeout=HANG_GUARD)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["interrupt_main", "sigint"])
@pytest.mark.parametrize("wait", [_blocked_get_result, _blocked_acquire_slot],
                         ids=["get_result", "acquire_slot"])  # fmt: skip
def test_keyboard_interrupt_while_waiting(sched_module: ModuleType, how: str, wait: Any) -> None:
    if how == "sigint" and signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not handled by Python's default handler here")
    s = sched_module.Scheduler(1, 1, 1, deadlock_grace=None)

    def interrupt() -> None:
        if how == "interrupt_main":
            _thread.interrupt_main()
        else:
            os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.2, interrupt)
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            wait(s)
    finally:
        timer.join()
    assert time.monotonic() - t0 < HANG_GUARD / 2  # it propagated, the wait did not end
    # the scheduler is still usable afterwards
    if wait is _blocked_get_result:
        with pytest.raises(TimeoutError):
            s.get_result(0, timeout=0)
        _, i = feed(s)
        deliver(s, 0, i, "after")
        assert s.get_result(0, timeout=HANG_GUARD) == (sched_module.RESULT, 0, "after")
    else:
        assert s.acquire_slot(timeout=0) is False
        s.put_result(0, 0, True, "x")
        assert s.get_result(0)[2] == "x"
        assert s.acquire_slot(timeout=HANG_GUARD) is True


# -- the selector (papy._scheduler) ------------------------------------------
def _run_selector(env_update: dict[str, str], tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PAPY_NO_EXTENSIONS"}
    env.update(env_update)
    # import the same papy as this session (a source tree via PYTHONPATH, or installed)
    papy_parent = str(Path(papy.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (papy_parent, env.get("PYTHONPATH", "")) if p)
    out = subprocess.run(
        [sys.executable, "-c", "import papy._scheduler as s; print(s.IMPLEMENTATION)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.c_extension
def test_normal_install_selects_compiled_core(tmp_path: Path, sched_implementation: Any) -> None:
    if sched_implementation.is_pure_python:
        pytest.skip("independent of the core under test: checked once, in the [c] run")
    assert _run_selector({}, tmp_path) == "cython"


def test_no_extensions_env_selects_pure_core(tmp_path: Path, sched_implementation: Any) -> None:
    if not sched_implementation.is_pure_python:
        pytest.skip("independent of the core under test: checked once, in the [py] run")
    assert _run_selector({"PAPY_NO_EXTENSIONS": "1"}, tmp_path) == "python"


def test_put_range_delivers_values_and_errors_at_their_positions(sched_module: ModuleType) -> None:
    s = sched_module.Scheduler(1, 4, 4)
    assert s.next_task() == 0
    assert s.acquire_slots(4, 0) == 4
    assert s.submit_many(0, 4) == 0
    err = ValueError("bad")
    s.put_range(0, 1, ["b", None, "d"], {1: err})
    s.put_range(0, 0, ["a"])
    got = [s.get_result(0, 0) for _ in range(4)]
    assert got == [(0, 0, "a"), (0, 1, "b"), (1, 2, err), (0, 3, "d")]
    with pytest.raises(ValueError, match="not in flight"):
        s.put_range(0, 0, ["again"])
    with pytest.raises(ValueError, match="first"):
        s.put_range(0, -1, [])
    with pytest.raises(IndexError):
        s.put_range(3, 0, [])


def test_try_values_spans_consecutive_batches_in_order(sched_module: ModuleType) -> None:
    """Ordered, one call hands out a run of arrived batches (of one, or more):
    it stops at a gap, before a failure (which comes alone) and at ``n``."""
    s = sched_module.Scheduler(1, 10, 10)
    assert s.next_task() == 0
    assert s.acquire_slots(10, 0) == 10
    assert s.submit_many(0, 10) == 0
    err = ValueError("bad")
    for i in (0, 1, 2):
        s.put_range(0, i, [i])
    s.put_range(0, 3, [3, 4])
    s.put_range(0, 6, [6, 7], {1: err})  # 5 has not arrived
    s.put_range(0, 8, [8])
    s.put_range(0, 9, [9])
    assert s.try_values(0, 4) == (0, 0, [0, 1, 2, 3])  # n ends it inside a batch
    assert s.buffer_used == 6
    assert s.try_values(0, 10) == (0, 4, [4])  # the gap at 5
    assert s.try_values(0, 10) is None
    s.put_range(0, 5, [5])
    assert s.try_values(0, 10) == (0, 5, [5, 6])  # stops before the failure at 7
    assert s.try_values(0, 10) == (1, 7, err)
    assert s.try_values(0, 10) == (0, 8, [8, 9])
    assert s.buffer_used == 0
    s.input_done(0)
    assert s.try_values(0, 10) == (2, -1, None)


def test_try_values_unordered_takes_one_batch(sched_module: ModuleType) -> None:
    """Unordered, a call takes from one batch only (the values' positions are
    consecutive from the index it returns)."""
    s = sched_module.Scheduler(1, 4, 4, ordered=False)
    assert s.next_task() == 0
    assert s.acquire_slots(4, 0) == 4
    assert s.submit_many(0, 4) == 0
    s.put_range(0, 2, [2, 3])
    s.put_range(0, 0, [0])
    s.put_range(0, 1, [1])
    assert s.try_values(0, 10) == (0, 2, [2, 3])
    assert s.try_values(0, 10) == (0, 0, [0])
    assert s.try_values(0, 10) == (0, 1, [1])


# -- Outlet: the base of the result iterators ----------------------------------------
def test_outlet_hands_out_a_shared_deque_then_refills(sched_module: ModuleType) -> None:
    from collections import deque

    ready: deque[int] = deque([1, 2])
    calls = []

    def refill(outlet: Any) -> int:
        calls.append(outlet)
        if len(calls) == 1:
            ready.extend([4, 5])
            return 3
        raise StopIteration

    a, b = sched_module.Outlet(), sched_module.Outlet()
    assert list(a) == []  # unbound: empty
    a.bind(ready, refill)
    b.bind(ready, refill)
    assert iter(a) is a
    assert [next(a), next(b)] == [1, 2]  # one deque, each result handed out once
    assert next(b) == 3 and calls == [b]
    assert list(a) == [4, 5]
    assert list(b) == []

    def fail(outlet: Any) -> int:
        raise KeyError("item")

    c = sched_module.Outlet()
    c.bind(deque(), fail)
    with pytest.raises(KeyError):
        next(c)
    with pytest.raises(KeyError):  # still usable: the refill decides
        next(c)
