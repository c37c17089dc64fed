"""What hostile use finds: each case a regression test of a hang, a lost item or a leak.

Every case counts outcomes exactly: one per input position, none lost, none
invented. Cases that involve the scheduler core run on both cores (the
autouse fixture); pools are real (threads, processes, papy's remote server).
"""

from __future__ import annotations

import pytest

import papy
from papy import IMap
from test_remote import papy_server

pytestmark = pytest.mark.timeout(60)

WORKER_TYPES = ["thread", "process"]


def outcomes(it) -> list:
    """Every outcome of an iterator: a value, or the type name of the error raised there."""
    out = []
    while True:
        try:
            out.append(next(it))
        except StopIteration:
            return out
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out.append(type(exc).__name__)


# -- 1. a task function that raises StopIteration ------------------------------------
def stops_at_three(x):
    if x == 3:
        return next(iter([]))  # a common bug: StopIteration escapes the function
    return x * 10


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = papy_server(tmp_path_factory.mktemp("hostile-server"))
    yield s
    s.kill()


@pytest.mark.parametrize("chunksize", [1, 4])
@pytest.mark.parametrize("where", ["thread", "process", "remote"])
def test_1_stop_iteration_is_an_error_at_its_item(where, chunksize, request):
    options = {"worker_type": where, "worker_num": 2}
    if where == "remote":
        options = {
            "worker_num": 0,
            "worker_remote": [(request.getfixturevalue("server").address, 2)],
        }
    with IMap(stops_at_three, range(8), chunksize=chunksize, **options) as m:
        got = outcomes(iter(m))
    assert got == [0, 10, 20, "RuntimeError", 40, 50, 60, 70]
    # the builtin-like generator ends at the error, as map() would with a RuntimeError
    it = papy.imap(stops_at_three, range(8), chunksize=chunksize, **options)
    assert [next(it) for _ in range(3)] == [0, 10, 20]
    with pytest.raises(RuntimeError, match="StopIteration"):
        next(it)


def test_1_stop_iteration_says_which_item():
    with IMap(stops_at_three, range(5), worker_type="process", worker_num=1, chunksize=5) as m:
        for _ in range(3):
            next(m)
        with pytest.raises(RuntimeError, match="item 3 of task 0") as info:
            next(m)
        assert "PEP 479" in str(info.value)
        assert next(m) == 40
