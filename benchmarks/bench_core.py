"""Micro-benchmark of the scheduling core alone: compiled vs pure Python.

One thread plays feeder, worker and consumer: N tasklets go through
``acquire_slot`` / ``next_task`` / ``submit`` / ``put_result`` / ``get_result``
with a buffer of 64 slots (two tasks, stride 1, read in weave order), so the
numbers are the per-tasklet bookkeeping cost of papy, with no threads, pools
or pickling. Run::

    python -m pytest benchmarks/bench_core.py -p no:cacheprovider

and compare the ``cython`` and ``python`` rows of the one group.
"""

from __future__ import annotations

import importlib
from collections import deque
from types import ModuleType

import pytest

N = 20_000
BUFFER = 64


def _core(name: str) -> ModuleType:
    if name == "papy._sched":
        return pytest.importorskip(name, reason="compiled core not built")
    return importlib.import_module(name)


def roundtrip(core: ModuleType, n: int = N, buffer: int = BUFFER) -> object:
    s = core.Scheduler(2, 1, buffer)
    next_task, acquire_slot, submit = s.next_task, s.acquire_slot, s.submit
    put_result, get_result = s.put_result, s.get_result
    order: deque[int] = deque()  # tasks in submission (= weave) order
    pop, push = order.popleft, order.append
    for _ in range(n):
        if not acquire_slot(0):  # buffer full: hand out the oldest result first
            get_result(pop())
            acquire_slot(0)
        task = next_task()
        index = submit(task)
        put_result(task, index, True, index)
        push(task)
    while order:
        get_result(pop())
    s.input_done(0)
    s.input_done(1)
    return s


@pytest.mark.parametrize("module", ["papy._sched", "papy._sched_py"], ids=["cython", "python"])
def test_core_roundtrip(benchmark: pytest.FixtureRequest, module: str) -> None:
    core = _core(module)
    benchmark.group = f"core: feed, deliver and take {N} tasklets (buffer {BUFFER})"
    benchmark.extra_info["implementation"] = core.IMPLEMENTATION
    s = benchmark(roundtrip, core)
    stats = s.stats()  # type: ignore[attr-defined]
    assert sum(t["returned"] for t in stats["tasks"]) == N
    assert stats["buffer_used"] == 0 and stats["in_flight"] == 0
    assert s.get_result(0) == (core.FINISHED, -1, None)  # type: ignore[attr-defined]
