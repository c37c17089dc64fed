"""Shared fixtures: every test runs once per scheduler core (compiled ``c``, pure ``py``).

The autouse ``sched_module`` fixture swaps the core that ``papy._scheduler``
hands to IMap, so the whole behaviour suite is run against both cores
(PEP 399 style). ``--no-c-extensions`` deselects the compiled half, for a
pure-Python build.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
from dataclasses import dataclass
from types import ModuleType

import pytest


@dataclass(frozen=True)
class SchedImplementation:
    is_pure_python: bool

    @property
    def module_name(self) -> str:
        return "papy._sched_py" if self.is_pure_python else "papy._sched"

    @property
    def imported_module(self) -> ModuleType:
        return importlib.import_module(self.module_name)

    def __str__(self) -> str:
        return "py" if self.is_pure_python else "c"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--c-extensions",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the tests of the compiled scheduler core (default: yes)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--c-extensions"):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("c_extension") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """A forkserver's workers import their function's module, here a test module
    and with it pytest (150 ms per worker, which the original's timing windows
    cannot absorb): the forkserver imports the collected test modules once, as
    the user guide advises for an application's slow modules. (papy starts
    process workers with forkserver from Python 3.12 when threads run.)

    The forkserver finds them on ``PYTHONPATH`` only: CPython 3.12 does not
    hand it the parent's ``sys.path``; so their folders are put there."""
    modules = {getattr(item, "module", None) for item in session.items}
    found = [m for m in modules if m is not None and getattr(m, "__file__", None)]
    multiprocessing.set_forkserver_preload(
        ["__main__", "pytest", *sorted(m.__name__ for m in found)]
    )
    folders = sorted({os.path.dirname(os.path.abspath(m.__file__)) for m in found})
    path = [*folders, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))


@pytest.fixture(
    params=[
        pytest.param(SchedImplementation(False), id="c", marks=pytest.mark.c_extension),
        pytest.param(SchedImplementation(True), id="py"),
    ],
    scope="session",
)
def sched_implementation(request: pytest.FixtureRequest) -> SchedImplementation:
    return request.param


@pytest.fixture(autouse=True)
def sched_module(
    sched_implementation: SchedImplementation, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """The scheduler core under test, installed as the one IMap uses."""
    from papy import _scheduler

    module = sched_implementation.imported_module
    for name in ("core", "core_module"):
        monkeypatch.setattr(_scheduler, name, module)
    monkeypatch.setattr(_scheduler, "Scheduler", module.Scheduler)
    monkeypatch.setattr(_scheduler, "IMPLEMENTATION", module.IMPLEMENTATION)
    return module


@pytest.fixture(scope="session", autouse=True)
def _multiprocessing_singletons() -> None:
    """Start Python's forkserver (and with it the resource tracker) before any test:
    they are per-process singletons that live until the end, and papy starts
    workers through the forkserver when the parent already runs threads (Python
    3.12+). Started here, they belong to every leak test's baseline."""
    import multiprocessing.forkserver
    import sys

    if sys.platform != "win32":
        multiprocessing.forkserver.ensure_running()
