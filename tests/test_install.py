"""The distribution people install: ``papy2`` (import name ``papy``).

* ``pip install papy2`` needs nothing but cloudpickle: ``import papy`` and local
  thread and process maps work without rpyc, and remote workers without rpyc fail
  with an error that says ``pip install "papy2[remote]"``. A child interpreter
  shows it, with every import of rpyc refused as if it were not installed (this
  environment has rpyc: the ``test`` extra needs it).
* The installed distribution's metadata: name, Python versions, classifiers,
  project URLs, rpyc only in the ``remote`` (and ``test``) extra, the version.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import papy

pytestmark = pytest.mark.timeout(60)

DIST = "papy2"
HINT = 'pip install "papy2[remote]"'
PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14"]
CLASSIFIERS = {
    "Development Status :: 4 - Beta",
    "Intended Audience :: Developers",
    "Operating System :: POSIX :: Linux",
    "Operating System :: MacOS",
    "Operating System :: Microsoft :: Windows",
    "Programming Language :: Python :: 3",
    "Programming Language :: Python :: 3 :: Only",
    *(f"Programming Language :: Python :: {v}" for v in PYTHONS),
    "Programming Language :: Cython",
    "Topic :: System :: Distributed Computing",
    "Typing :: Typed",
}
URL_LABELS = {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# Run first in the child: rpyc (and any rpyc.* module) cannot be imported, with the
# error Python gives for a module that is not installed.
NO_RPYC = """\
import sys

class _NoRpyc:
    def find_spec(self, name, path=None, target=None):
        if name == "rpyc" or name.startswith("rpyc."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoRpyc())
for _name in [n for n in sys.modules if n == "rpyc" or n.startswith("rpyc.")]:
    del sys.modules[_name]
"""


def run_without_rpyc(code: str, tmp_path: Path, pure: bool) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter (as a file: process workers need one)
    where rpyc cannot be imported, on the pure core if ``pure``."""
    script = tmp_path / "no_rpyc.py"
    script.write_text(NO_RPYC + textwrap.dedent(code))
    env = dict(os.environ, PAPY_NO_EXTENSIONS="1" if pure else "0")
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,
        env=env,
    )


def test_papy_and_local_maps_work_without_rpyc(tmp_path, sched_module):
    proc = run_without_rpyc(
        """
        import math

        import papy
        from papy import IMap, imap

        if __name__ == "__main__":
            print("core", papy._scheduler.IMPLEMENTATION)
            print("thread", list(imap(math.sqrt, [1, 4, 9], worker_type="thread", worker_num=2)))
            with IMap(worker_type="process", worker_num=2) as m:
                roots = m.add_task(math.sqrt, [16, 25, 36])
                m.start()
                print("process", list(roots))
            import papy.pipeline, papy.remote, papy.remote.server  # importable as well

            print("rpyc", [n for n in sys.modules if n.split(".")[0] == "rpyc"])
        """,
        tmp_path,
        pure=sched_module.IMPLEMENTATION != "cython",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        f"core {sched_module.IMPLEMENTATION}",
        "thread [1.0, 2.0, 3.0]",
        "process [4.0, 5.0, 6.0]",
        "rpyc []",
    ], proc.stdout + proc.stderr[-2000:]


def test_remote_workers_without_rpyc_say_what_to_install(tmp_path, sched_module):
    proc = run_without_rpyc(
        """
        import math

        from papy import IMap, PapyError
        from papy.remote import RemoteDependencyError, ping

        def attempt(what, make):
            try:
                m = make()
                if not getattr(m, "started", True):  # the constructor did not start it
                    m.add_task(math.sqrt, [1.0])
                    m.start()
            except ImportError as exc:
                assert isinstance(exc, RemoteDependencyError) and isinstance(exc, PapyError)
                assert exc.name == "rpyc" and isinstance(exc.__cause__, ModuleNotFoundError)
                print(what, "|", exc)
            else:
                print(what, "| started without rpyc")

        if __name__ == "__main__":
            attempt("IMap()", lambda: IMap(worker_remote=[("127.0.0.1:1", 1)]))
            attempt(
                "IMap(func)",
                lambda: IMap(math.sqrt, [1.0], worker_num=0, worker_remote=[("127.0.0.1:1", 2)]),
            )
            attempt("ping", lambda: ping("127.0.0.1:1"))
        """,
        tmp_path,
        pure=sched_module.IMPLEMENTATION != "cython",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["IMap()", "IMap(func)", "ping"], lines
    for line in lines:
        assert HINT in line, line
        assert "rpyc" in line.split(" | ")[1], line


@pytest.mark.parametrize(
    "command",
    [
        "import runpy; sys.argv = ['papy.remote', 'serve', '--port', '0']; "
        "runpy.run_module('papy.remote', run_name='__main__')",
        "import runpy; sys.argv = ['papy.remote', 'ping', '127.0.0.1:1']; "
        "runpy.run_module('papy.remote', run_name='__main__')",
        "from papy.remote.server import main; sys.exit(main(['--port', '0']))",  # papy-worker
    ],
    ids=["python -m papy.remote serve", "python -m papy.remote ping", "papy-worker"],
)
def test_remote_commands_without_rpyc_say_what_to_install(tmp_path, command, sched_implementation):
    if str(sched_implementation) == "c":
        pytest.skip("runs once, in the [py] instance: it does not depend on the core")
    proc = run_without_rpyc(command + "\n", tmp_path, pure=True)
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    assert HINT in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


# -- the installed distribution ------------------------------------------------
def metadata() -> importlib.metadata.PackageMetadata:
    return importlib.metadata.metadata(DIST)


def test_import_name_papy_comes_from_papy2():
    assert importlib.metadata.version(DIST) == papy.__version__
    # the original PaPy ("papy" on PyPI) would install the same import name (a
    # source checkout on sys.path may list papy2 twice: its papy2.egg-info)
    assert set(importlib.metadata.packages_distributions().get("papy", [])) == {DIST}


def test_metadata_name_python_license_classifiers():
    md = metadata()
    assert md["Name"] == DIST
    assert md["Version"] == papy.__version__
    assert md["Requires-Python"] == ">=3.10"
    assert md["License-Expression"] == "MIT"
    classifiers = set(md.get_all("Classifier") or [])
    assert not CLASSIFIERS - classifiers, sorted(CLASSIFIERS - classifiers)
    assert not [c for c in classifiers if c.startswith("License ::")], "use the license expression"
    versions = sorted(
        (c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r".*Python :: 3\.\d+", c)),
        key=lambda v: tuple(map(int, v.split("."))),
    )
    assert versions == PYTHONS
    assert len([c for c in classifiers if c.startswith("Development Status ::")]) == 1


def test_metadata_rpyc_is_only_in_the_remote_and_test_extras():
    from packaging.requirements import Requirement

    md = metadata()
    requires = [Requirement(r) for r in md.get_all("Requires-Dist") or []]
    assert [r.name for r in requires if r.marker is None] == ["cloudpickle"]
    extras = set(md.get_all("Provides-Extra") or [])
    assert {"progress", "remote", "test"} <= extras
    rpyc_in = {
        extra
        for r in requires
        if r.name == "rpyc"
        for extra in extras | {""}
        if r.marker is not None and r.marker.evaluate({"extra": extra})
    }
    assert rpyc_in == {"remote", "test"}
    tqdm_in = {
        extra
        for r in requires
        if r.name == "tqdm"
        for extra in extras | {""}
        if r.marker is not None and r.marker.evaluate({"extra": extra})
    }
    assert tqdm_in == {"progress", "test"}


def test_metadata_project_urls():
    urls = dict(u.split(", ", 1) for u in metadata().get_all("Project-URL") or [])
    if not urls:
        pytest.skip(
            "pyproject.toml has no [project.urls] yet: the project's public repository "
            "address is not recorded (the release workflow refuses to publish without it)"
        )
    assert URL_LABELS <= set(urls), sorted(URL_LABELS - set(urls))
    assert all(u.startswith("https://") for u in urls.values()), urls


def test_pyproject_classifiers_match_the_wheels_built():
    """The Python versions and operating systems claimed are those cibuildwheel builds for."""
    tomllib = pytest.importorskip("tomllib")
    if not PYPROJECT.exists():
        pytest.skip("no pyproject.toml next to the tests")
    config = tomllib.loads(PYPROJECT.read_text())
    classifiers = config["project"]["classifiers"]
    cibw = config["tool"]["cibuildwheel"]
    built = sorted(
        (f"3.{m[3:]}" for m in re.findall(r"cp3\d+", cibw["build"])),
        key=lambda v: int(v.split(".")[1]),
    )
    assert built == PYTHONS
    assert config["project"]["requires-python"] == f">={PYTHONS[0]}"
    systems = {c for c in classifiers if c.startswith("Operating System ::")}
    platforms = {"linux", "macos", "windows"} & set(cibw)
    assert systems == {
        {
            "linux": "Operating System :: POSIX :: Linux",
            "macos": "Operating System :: MacOS",
            "windows": "Operating System :: Microsoft :: Windows",
        }[p]
        for p in platforms
    }
