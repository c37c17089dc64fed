"""The "after" snippets of docs/migration.md run as shown and print what the page says.

Each ``python`` block followed by a ``text`` block is run in a fresh
interpreter (as a file, so process workers work) and its output compared with
the text block. Blocks whose output depends on the machine say so below.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "migration.md"
_BLOCKS = re.findall(r"```(\w*)\n(.*?)```", DOC.read_text(), re.S)
PAIRS = [
    (code, out)
    for (lang, code), (next_lang, out) in zip(_BLOCKS, _BLOCKS[1:])
    if lang == "python" and next_lang == "text"
]

# lines that depend on this machine: compared by pattern
_MACHINE = {"2": r"\d+"}  # NuMap(stride=3).worker_num: the CPU count


def _same(line: str, expected: str) -> bool:
    if line == expected:
        return True
    pattern = _MACHINE.get(expected)
    return pattern is not None and re.fullmatch(pattern, line) is not None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_migration_snippet_prints_what_the_page_says(index, tmp_path, sched_implementation):
    if str(sched_implementation) == "c":
        pytest.skip("runs once, in the [py] instance: it does not depend on the core")
    code, expected = PAIRS[index]
    script = tmp_path / f"snippet{index}.py"
    script.write_text(code)
    env = dict(os.environ, PAPY_NO_EXTENSIONS="1")
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines, want = proc.stdout.splitlines(), expected.splitlines()
    assert len(lines) == len(want) and all(map(_same, lines, want)), proc.stdout


def test_every_after_snippet_is_checked():
    assert len(PAIRS) >= 7
