"""Property, random-DAG and soak tests: papy against a plain sequential evaluation.

The soak test with 1,000,000 items is marked ``slow`` (run it with ``-m slow``);
the default run does a shorter version of it.
"""

from __future__ import annotations

import gc
import random
import threading

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import papy
from papy import IMap

pytestmark = pytest.mark.timeout(300)

ITEM_TIMEOUT = 20.0  # a hard limit per item: a hang fails the example, it never blocks

#: these tests choose start_method="fork" on purpose; a thread that another test
#: module leaves running (dask's offload thread) makes Python 3.12+ warn about
#: that fork
FORKS_ON_PURPOSE = pytest.mark.filterwarnings("ignore:This process:DeprecationWarning")


def inc(x):
    return x + 1


def double(x):
    return x * 2


def fails_on(x, k):
    if isinstance(x, int) and k and x % k == 0:
        raise ValueError(f"item {x} is divisible by {k}")
    return x + 1


def expected(func, items, args=()):
    out = []
    for x in items:
        if isinstance(x, BaseException):
            out.append(type(x))
            continue
        try:
            out.append(func(x, *args))
        except Exception as exc:  # noqa: BLE001
            out.append(type(exc))
    return out


def drain(it, ordered=True):
    out = []
    while True:
        try:
            out.append(it.next(timeout=ITEM_TIMEOUT))
        except StopIteration:
            break
        except papy.TimeoutError:
            raise AssertionError("an item took longer than the hard limit: a hang")
        except Exception as exc:  # noqa: BLE001
            out.append(type(exc))
    return out


# -- bad input: random argument combinations and item types ------------------------
class Opaque:
    """Picklable, compares by value."""

    def __init__(self, v):
        self.v = v

    def __eq__(self, other):
        return isinstance(other, Opaque) and other.v == self.v

    def __hash__(self):
        return hash(self.v)

    def __add__(self, n):
        return Opaque(self.v + n)


items_strategy = st.lists(
    st.one_of(
        st.integers(-5, 5),
        st.text(max_size=3),
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.builds(Opaque, st.integers(0, 3)),
        st.just(threading.Lock()),  # cannot be pickled
    ),
    max_size=12,
)
arg = lambda *values: st.one_of(st.just(None), *[st.just(v) for v in values])  # noqa: E731
options_strategy = st.fixed_dictionaries(
    {},
    optional={
        "worker_type": st.sampled_from(["thread", "thread", "process", "bogus", 3]),
        "worker_num": arg(0, 1, 2, -1, 2.5, "2"),
        "stride": arg(0, 1, 2, 3, "x"),
        "buffer": arg(0, 1, 2, 5, 8),
        "ordered": st.booleans(),
        "chunksize": st.sampled_from([1, 2, 3, 0]),
        "name": arg("m", 7),
        "worker_remote": arg("host", [("h", 0)], [(1, 1)]),
    },
)


def _map_reference(func, items):
    return expected(func, items)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(options=options_strategy, items=items_strategy, use_imap=st.booleans())
def test_random_arguments_and_items(options, items, use_imap):
    """A clear exception at the call, per item, or the same results as ``map``."""
    func = inc
    try:
        if use_imap:
            results = papy.imap(func, items, **options)
        else:
            m = IMap(**options)
            task = m.add_task(func, items)
            m.start()
    except (TypeError, ValueError, RuntimeError) as exc:
        assert str(exc)  # says what is wrong
        return
    if use_imap:
        got = []
        try:
            for x in results:
                got.append(x)
        except Exception as exc:  # noqa: BLE001 - imap ends at the first error
            got.append(type(exc))
        want = _map_reference(func, items)
        stop = next((i for i, w in enumerate(want) if isinstance(w, type)), len(want))
        want = want[: stop + 1]
    else:
        try:
            got = drain(task)
        finally:
            m.stop()
        want = _map_reference(func, items)
    ordered = options.get("ordered", True)
    process = options.get("worker_type", "process") == "process"
    if process:  # unpicklable items fail with a SerializationError at their position
        want = [
            papy.SerializationError if isinstance(x, type(threading.Lock())) else w
            for x, w in zip(items, want)
        ][: len(want)]
    if ordered:
        assert got == want
    elif not use_imap:

        def key(x):  # stable across runs: Opaque's repr holds its address
            return (type(x).__name__, repr(x.v) if isinstance(x, Opaque) else repr(x))

        assert sorted(got, key=key) == sorted(want, key=key)


# -- random DAGs of chained and independent tasks -----------------------------------
def build_and_check(seed: int) -> None:
    rng = random.Random(seed)
    worker_type = rng.choice(["thread", "thread", "process"])
    workers = rng.randint(1, 3)
    stride = rng.randint(1, 4)
    ordered = rng.random() < 0.7
    n_tasks = rng.randint(1, 6)
    # task i reads a fresh source or the output of an earlier task nobody reads yet
    plan = []
    free = []
    for i in range(n_tasks):
        k = rng.choice([0, 0, 3, 5, 7])
        if free and rng.random() < 0.6:
            up = free.pop(rng.randrange(len(free)))
            plan.append(("chain", up, k))
        else:
            plan.append(("source", list(range(rng.randint(0, 40))), k))
        free.append(i)
    terminals = free
    buffer = stride * len(terminals) + rng.randint(0, 6)
    with IMap(
        worker_type=worker_type,
        worker_num=workers,
        stride=stride,
        buffer=buffer,
        ordered=ordered,
        start_method="fork" if worker_type == "process" else None,
        deadlock_grace=2.0,
    ) as m:
        outs = []
        for kind, src, k in plan:
            inp = outs[src] if kind == "chain" else src
            outs.append(m.add_task(fails_on, inp, args=(k,)))
        m.start()
        got = {t: [] for t in terminals}
        open_ = list(terminals)
        while open_:  # read in weave order: at most `stride` results of one task in a row
            for t in list(open_):
                for _ in range(stride):
                    try:
                        got[t].append(outs[t].next(timeout=ITEM_TIMEOUT))
                    except StopIteration:
                        open_.remove(t)
                        break
                    except papy.TimeoutError:
                        raise AssertionError(f"seed {seed}: task {t} hung")
                    except Exception as exc:  # noqa: BLE001
                        got[t].append(type(exc))
    # sequential reference
    values: list[list] = []
    for kind, src, k in plan:
        inp = values[src] if kind == "chain" else src
        values.append(
            [x if isinstance(x, type) else (expected(fails_on, [x], (k,))[0]) for x in inp]
        )
    for t in terminals:
        want = values[t]
        if ordered:
            assert got[t] == want, f"seed {seed}, task {t}, plan {plan}"
        else:
            assert sorted(got[t], key=repr) == sorted(want, key=repr), f"seed {seed}, task {t}"


@FORKS_ON_PURPOSE
@pytest.mark.parametrize("seed", range(24))
def test_random_dag_against_sequential_evaluation(seed):
    build_and_check(seed)


# -- soak: bounded memory, no leaks ---------------------------------------------------
def soak(n_items: int) -> None:
    me = psutil.Process()
    gc.collect()
    threads, fds = threading.active_count(), me.num_fds()
    with IMap(worker_num=2, stride=2, buffer=64, chunksize=16, start_method="fork") as m:
        a = m.add_task(inc, iter(range(n_items)))
        b = m.add_task(double, a)
        c = m.add_task(inc, b)
        m.start()
        base = me.memory_info().rss
        peak = base
        total = 0
        for i, x in enumerate(c):
            total += x
            if i % 10_000 == 0:
                peak = max(peak, me.memory_info().rss)
        assert i == n_items - 1
        assert total == sum(2 * (x + 1) + 1 for x in range(n_items))
    growth = (peak - base) / 2**20
    assert growth < 50, f"peak RSS grew by {growth:.1f} MB"
    gc.collect()
    for _ in range(100):
        if threading.active_count() <= threads and me.num_fds() <= fds:
            break
        import time

        time.sleep(0.05)
    assert threading.active_count() <= threads
    assert me.num_fds() <= fds


@FORKS_ON_PURPOSE
def test_soak_short():
    soak(60_000)


@FORKS_ON_PURPOSE
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_one_million_items():
    soak(1_000_000)
