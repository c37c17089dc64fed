"""The README's quick start, run verbatim in a fresh clone: the first block a
reader copies must work (slow: it builds papy; .ci/run runs it with -m slow)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = pathlib.Path(__file__).resolve().parent.parent


def quick_start_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Use papy", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "the quick start has no bash block"
    return match.group(1)


def test_the_quick_start_works_in_a_fresh_clone(tmp_path, sched_implementation):
    if sched_implementation.is_pure_python:
        pytest.skip("runs once, in the [c] instance: it builds papy itself")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    clone = tmp_path / "papy"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    block = quick_start_block()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    python_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p != python_dir
    )
    proc = subprocess.run(
        ["bash", "-e", "-c", block],
        cwd=clone, env=env, capture_output=True, text=True, timeout=800,
    )  # fmt: skip
    assert proc.returncode == 0, (block, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "papy demo" in proc.stdout and "evaluation order" in proc.stdout
