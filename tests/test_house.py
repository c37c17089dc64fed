"""The house: the layering the module docstrings draw, one argument checker, public
names in errors, and a pool interface every pool implements.

Static checks read the source (``ast``): no two subpackages of papy import each
other, and no two modules import each other; the pipeline drives IMap through
public names only.
"""

from __future__ import annotations

import ast
import inspect
import math
import pathlib

import pytest

import papy
from papy import IMap
from papy.pipeline import Piper, Worker
from papy.pipeline.script import script

SRC = pathlib.Path(papy.__file__).parent


def _modules() -> dict[str, tuple[pathlib.Path, bool]]:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        mods[".".join(parts)] = (path, is_pkg)
    return mods


def _imports() -> dict[str, set[str]]:
    """Module -> the papy modules it imports, anywhere in its code (lazy imports too)."""
    mods = _modules()
    edges: dict[str, set[str]] = {}
    for mod, (path, is_pkg) in mods.items():
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                here = base[: len(base) - node.level + 1] if node.level else []
                target = ".".join(here + ([node.module] if node.module else []))
                for alias in node.names:
                    name = f"{target}.{alias.name}"
                    targets.append(name if name in mods else target)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target.startswith("papy") and target != mod:
                    edges.setdefault(mod, set()).add(target)
    return edges


@pytest.fixture(autouse=True)
def _once(sched_implementation):
    if sched_implementation.is_pure_python:
        pytest.skip("independent of the core: runs once, in the [c] instance")


def test_no_two_subpackages_import_each_other():
    unit = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    between: dict[str, set[str]] = {}
    for a, targets in _imports().items():
        for b in targets:
            if unit(a) != unit(b) and "papy" not in (unit(a), unit(b)):
                between.setdefault(unit(a), set()).add(unit(b))
    circles = sorted((a, b) for a, bs in between.items() for b in bs if a in between.get(b, ()))
    assert not circles, circles


def test_no_two_modules_import_each_other():
    mods, edges = _modules(), _imports()
    circles = sorted(
        (a, b)
        for a, bs in edges.items()
        for b in bs
        if a in edges.get(b, ()) and not mods[a][1] and not mods[b][1]
    )
    assert not circles, circles


def test_the_pipeline_uses_no_private_name_of_imap():
    private = {
        name for name, _ in inspect.getmembers(IMap) if name.startswith("_") and "__" not in name
    } | {"_run", "_tasks", "_payloads", "_pool_options", "_default_stride", "_stride"}
    for path in (SRC / "pipeline").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in private:
                base = ast.unparse(node.value)
                assert "imap" not in base.lower() and "task" not in base, (
                    f"{path.name}:{node.lineno}: {base}.{node.attr}"
                )
            if isinstance(node, ast.ImportFrom) and node.module and "_scheduler" in node.module:
                pytest.fail(f"{path.name}:{node.lineno} imports the scheduling core")


def test_remote_errors_show_their_public_module():
    from papy.remote import RemoteConnectionError, RemoteDependencyError

    for cls in (RemoteConnectionError, RemoteDependencyError):
        assert cls.__module__ == "papy.remote"
    assert "papy.remote.RemoteConnectionError" in repr(
        f"{RemoteConnectionError.__module__}.{RemoteConnectionError.__qualname__}"
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda t: IMap(worker_type="thread").add_task(abs, [1], timeout=t),
        lambda t: Piper(Worker(abs), parallel=IMap(worker_type="thread"), timeout=t),
        lambda t: script(["x"], ["cat"], timeout=t),
    ],
    ids=["add_task", "Piper", "script"],
)
def test_one_checker_one_error_type(call):
    with pytest.raises(TypeError, match="timeout must be a number of seconds"):
        call("1")
    with pytest.raises(TypeError, match="timeout must be a number of seconds"):
        call(True)
    with pytest.raises(ValueError, match="timeout must be"):
        call(-1)
    with pytest.raises(ValueError, match="timeout must be .*nan"):
        call(math.nan)  # (was: accepted, and a wait without end)


def test_a_nan_timeout_of_next_fails_at_the_call():
    with IMap(abs, [1, 2], worker_type="thread") as m:
        for call in (
            lambda: m.next(timeout=math.nan),
            lambda: m.get_task(0).next(math.nan),
            lambda: m.get_task(0).outcome(math.nan),
        ):
            with pytest.raises(ValueError, match="nan"):
                call()
        assert list(m) == [1, 2]  # nothing was consumed


def test_every_pool_implements_the_whole_interface():
    from papy._pools.composite import CompositePool
    from papy._pools.executor import ExecutorPool
    from papy._pools.process import ProcessPool
    from papy._pools.remote import RemotePool
    from papy._pools.thread import ThreadPool

    wanted = (
        "start", "submit_range", "flush", "pump", "shutdown", "cost", "depth", "load", "alive",
        "worker_stats",
    )  # fmt: skip
    for cls in (ProcessPool, ThreadPool, ExecutorPool, RemotePool, CompositePool):
        missing = [name for name in wanted if not callable(getattr(cls, name, None))]
        assert not missing, (cls.__name__, missing)
        assert isinstance(cls.kind, str)
    for pool in (ThreadPool(1), ProcessPool(1)):
        assert pool.measures is True and pool.fallback is None
        assert pool.cost() is None  # not measured yet
        assert pool.depth() == 2


def test_stop_with_a_bad_end_changes_nothing():
    """(was: IndexError after the map had been stopped and its results discarded)"""
    with IMap(worker_type="thread", worker_num=1) as m:
        a = m.add_task(abs, range(5))
        m.add_task(abs, range(5))
        m.start()
        assert next(a) == 0
        for bad, error in (([7], IndexError), ([0, "x"], TypeError), ("0", TypeError)):
            with pytest.raises(error):
                m.stop(ends=bad)
            assert m.started
        assert list(a) == [1, 2, 3, 4]


def test_a_map_reading_a_stopped_map_gets_one_error_then_ends():
    """(was: an endless stream of InputErrors, one per read of the stopped task)"""
    up = IMap(worker_type="thread", worker_num=1)
    task = up.add_task(abs, range(1000))
    up.start()
    assert next(task) == 0
    never = IMap(worker_type="thread").add_task(abs, range(3))  # its map never starts
    for source, stop_first in ((task, True), (never, False)):
        down = IMap(worker_type="thread", worker_num=1)
        out = down.add_task(abs, source)
        if stop_first:
            up.stop()
        down.start()
        got = []
        while len(got) < 10:
            try:
                got.append(next(out))
            except StopIteration:
                break
            except RuntimeError as exc:  # papy.SchedulerClosed is a RuntimeError
                got.append(str(exc))
        down.stop()
        assert got == ["the IMap is not started; call start() first"]
