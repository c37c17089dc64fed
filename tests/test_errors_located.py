"""An exception raised at an item names the task, the input position and the argument.

The exception keeps its type (``except ValueError`` still works) and gets a
note ``papy: raised by item i of task t (argument: ...)``; its cause, the
worker's traceback, starts with the same line and shows the user's frame.
Errors are shown under their public names (``papy.WorkerLostError``).
"""

from __future__ import annotations

import concurrent.futures
import pickle
import re
import sys
import traceback

import pytest

import papy
from papy import IMap
from papy.pipeline import Piper, WorkerError

pytestmark = pytest.mark.timeout(60)


def parse(text):
    return int(text)


def stop_at(x):
    raise StopIteration(x)


class BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr")

    def __reduce__(self):
        return (BadRepr, ())


def fail_bad(x):
    raise ValueError("bad item")


KINDS = [
    pytest.param({"worker_type": "thread"}, id="thread"),
    # fork on purpose; a thread another test module leaves running (dask's offload
    # thread) makes Python 3.12+ warn about that fork
    pytest.param(
        {"worker_type": "process", "start_method": "fork"},
        id="fork",
        marks=pytest.mark.filterwarnings("ignore:This process:DeprecationWarning"),
    ),
    pytest.param({"worker_type": "process", "start_method": "spawn"}, id="spawn"),
    pytest.param("executor", id="executor"),
]


def make(kind, **more):
    if kind == "executor":
        pool = concurrent.futures.ThreadPoolExecutor(2)
        return IMap(executor=pool, **more), pool
    return IMap(worker_num=2, **kind, **more), None


def raised(m, n):
    """The outcome of each of the first n results: a value or the exception."""
    out = []
    for _ in range(n):
        try:
            out.append(next(m))
        except StopIteration:
            break
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


def notes(exc):
    return getattr(exc, "__notes__", [])


@pytest.mark.parametrize("kind", KINDS)
def test_an_items_exception_names_task_position_and_argument(kind):
    m, pool = make(kind)
    try:
        m.add_task(abs, [0])
        results = m.add_task(parse, ["1", "two", "3", "x" * 500])
        m.start()
        got = raised(results, 5)
    finally:
        m.stop()
        if pool is not None:
            pool.shutdown()
    assert got[0] == 1 and got[2] == 3
    two, long = got[1], got[3]
    assert type(two) is ValueError and "invalid literal" in str(two)  # the type is kept
    assert notes(two) == ["papy: raised by item 1 of task 1 (argument: 'two')"]
    note = notes(long)[0]
    assert note.startswith("papy: raised by item 3 of task 1 (argument: 'xxx")
    assert "..." in note and len(note) < 200  # a long argument is cut short
    cause = two.__cause__
    assert isinstance(cause, papy.RemoteTraceback)
    assert cause.tb.startswith("raised by item 1 of task 1 (argument: 'two'):\nTraceback")
    assert "in parse" in cause.tb and "return int(text)" in cause.tb  # the user's frame
    text = "".join(traceback.format_exception(type(two), two, two.__traceback__))
    assert "papy.RemoteTraceback" in text
    if sys.version_info >= (3, 11):
        assert "papy: raised by item 1 of task 1 (argument: 'two')" in text


@pytest.mark.parametrize("kind", KINDS)
def test_an_argument_whose_repr_fails_and_stop_iteration(kind):
    m, pool = make(kind)
    try:
        bad = m.add_task(fail_bad, [BadRepr()])
        stop = m.add_task(stop_at, ["s"])
        m.start()
        (bad_exc,) = raised(bad, 1)
        (stop_exc,) = raised(stop, 1)
    finally:
        m.stop()
        if pool is not None:
            pool.shutdown()
    (note,) = notes(bad_exc)  # reprlib's placeholder for a repr that fails
    assert re.fullmatch(r"papy: raised by item 0 of task 0 \(argument: <BadRepr .*>\)", note)
    assert isinstance(stop_exc, RuntimeError)
    assert "item 0 of task 1 (argument: 's')" in str(stop_exc) and "StopIteration" in str(stop_exc)


def test_a_pipeline_error_names_the_piper_and_the_position():
    # a Worker turns the exception into a WorkerError value, which carries the place
    piper = Piper(
        lambda inbox: int(inbox[0]), parallel=IMap(worker_type="thread", worker_num=1), name="ints"
    )
    piper.connect([["7", "seven"]])
    piper.start()
    out = list(piper)
    piper.stop()
    assert out[0] == 7 and isinstance(out[1], WorkerError)
    err = out[1]
    assert type(err.exception) is ValueError and (err.piper, err.index) == ("ints", 1)
    assert "piper 'ints', item 1" in str(err)


def test_a_note_is_added_once():
    exc = ValueError("x")
    for _ in range(2):
        papy._serialize.wrap_base_exception(exc, "item 0 of task 0 (argument: 1)")
    assert notes(exc) == ["papy: raised by item 0 of task 0 (argument: 1)"]


def test_public_names_of_errors():
    for name in (
        "PapyError",
        "DeadlockError",
        "SchedulerClosed",
        "WorkerLostError",
        "SerializationError",
        "TaskletAbortedError",
        "InputError",
        "RemoteTraceback",
        "TimeoutError",
    ):
        cls = getattr(papy, name)
        assert cls.__module__ == "papy" and cls.__qualname__ == name
        assert pickle.loads(pickle.dumps(cls)) is cls
    for name in ("WorkerError", "PiperError", "DaggerError", "PlumberError"):
        cls = getattr(papy.pipeline, name)
        assert cls.__module__ == "papy.pipeline"
        assert pickle.loads(pickle.dumps(cls)) is cls
    err = papy.WorkerLostError("lost")
    text = "".join(traceback.format_exception_only(type(err), err))
    assert text == "papy.WorkerLostError: lost\n"
    assert pickle.loads(pickle.dumps(err)).args == ("lost",)


SCRIPT = """
import sys
import papy

def parse(text):
    value = int(text)  # the failing line
    return value

if __name__ == "__main__":
    import traceback
    func = parse if sys.argv[2] == "def" else (lambda t: int(t) + 0)  # a lambda's line
    try:
        list(papy.imap(func, ["1", "x"], start_method=sys.argv[1], worker_num=1))
    except ValueError as exc:
        print("".join(traceback.format_exception(exc)))
"""


@pytest.mark.parametrize("kind", ["def", "lambda"])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_traceback_shows_the_users_file_line_and_source(
    tmp_path, method, kind, sched_implementation
):
    """(was: ``File "<dynamic-code>", line 4`` without a path or a source line for a
    function sent by value: spawn, forkserver, remote servers, executors)"""
    import subprocess

    if sched_implementation.is_pure_python:
        pytest.skip("runs once, in the [c] instance: a fresh interpreter picks its own core")
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), method, kind], capture_output=True, text=True, timeout=60
    ).stdout
    assert "<dynamic-code>" not in out
    assert f'File "{script}", line' in out
    assert ("value = int(text)  # the failing line" if kind == "def" else "a lambda's line") in out


def test_source_lines_travel_where_the_file_is_not(tmp_path, sched_implementation):
    """A function sent by value to a machine without its file (a remote server)
    shows its source lines anyway: the payload carries them."""
    import subprocess

    from papy._serialize import dumps_portable

    if sched_implementation.is_pure_python:
        pytest.skip("independent of the core: runs once, in the [c] instance")
    path = tmp_path / "gone.py"
    path.write_text("f = lambda x: 1 // x  # divides\n")
    space: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), space)
    blob = dumps_portable((space["f"], (), {}), located=True)
    path.unlink()
    code = (
        "import pickle, sys, traceback\n"
        "f, _, _ = pickle.loads(sys.stdin.buffer.read())\n"
        "try:\n    f(0)\nexcept ZeroDivisionError as exc:\n"
        "    print(''.join(traceback.format_exception(exc)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=blob, capture_output=True, timeout=60
    ).stdout.decode()
    assert f'File "{path}", line 1' in out and "# divides" in out


class StrFails(Exception):
    def __str__(self):
        raise RuntimeError("no str")


def raise_str_fails(x):
    raise StrFails(x)


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_an_exception_whose_str_fails_is_delivered_as_it_is(kind):
    with IMap(raise_str_fails, [1, 2], worker_type=kind, worker_num=1) as m:
        for _ in range(2):
            with pytest.raises(StrFails) as info:
                next(m)
            assert "str() failed" in "".join(traceback.format_exception_only(info.value)) or (
                "raised by item" in "".join(traceback.format_exception_only(info.value))
            )


def os_exit_on_three(x):
    import os

    if x == 3:
        os._exit(1)
    return x


def test_a_broken_process_pool_executor_says_so_at_its_items():
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        got = []
        with IMap(os_exit_on_three, range(6), executor=ex, chunksize=1) as m:
            while True:
                try:
                    got.append(next(m))
                except StopIteration:
                    break
                except papy.WorkerLostError as exc:
                    got.append(str(exc))
    # One outcome per position: its value, or the loss (CPython fails every
    # item not finished when the pool broke, so which ones besides 3 is a race).
    assert len(got) == 6 and isinstance(got[3], str)
    assert all(g == i or isinstance(g, str) for i, g in enumerate(got))
    lost = [g for g in got if isinstance(g, str)]
    assert all("broken for good" in g and "papy's own process workers" in g for g in lost)
