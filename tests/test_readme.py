"""The README's code runs: its Python blocks are executed as written.

The remote example needs papy worker servers on 127.0.0.1:18812 and :18813;
this test starts them (and skips that block if those ports are taken).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _runnable(block: str) -> bool:
    # fragments that only show a signature are not meant to run on their own
    return not block.lstrip().startswith("IMap(")


def _env() -> dict[str, str]:
    """This environment, with the papy under test importable from any directory."""
    import papy

    root = os.path.dirname(os.path.dirname(os.path.abspath(papy.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def servers():
    if not (_port_free(18812) and _port_free(18813)):
        pytest.skip("ports 18812/18813 are taken")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "papy.remote",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
        for port in (18812, 18813)
    ]
    try:
        for port in (18812, 18813):
            deadline = time.monotonic() + 30
            while _port_free(port):
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
        yield
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
            p.stdout.close()


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, request, sched_implementation):
    if str(sched_implementation) == "c":
        pytest.skip("runs once, in the [py] instance: it does not depend on the core")
    block = BLOCKS[index]
    if not _runnable(block):
        pytest.skip("a fragment")
    if "worker_remote" in block and "remote_ssl" not in block:
        request.getfixturevalue("servers")
    script = tmp_path / f"block{index}.py"
    script.write_text(block)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=tmp_path,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
