"""Every script under examples/ runs (in a subprocess, with a timeout) and prints what it should.

The scripts re-express the original PaPy's examples; their expected outputs
are the ones the original printed (see docs/pipelines.md for where papy
differs on purpose). Each runs once per scheduler core (PAPY_NO_EXTENSIONS).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def exact(*lines):
    return lambda out: out.splitlines() == list(lines)


def matches(*patterns):
    def check(out):
        lines = out.splitlines()
        return len(lines) == len(patterns) and all(
            re.fullmatch(p, line) for p, line in zip(patterns, lines)
        )

    return check


TRACE_CHAIN = [
    f"{stage} {i}"
    for block in range(3)
    for stage in ("source", "pipe", "sink")
    for i in (2 * block, 2 * block + 1)
]
JOINED = r"joined result from (process:\d+|thread:[\w-]+) and (process:\d+|thread:[\w-]+)"

WORDS_OUTPUT = [  # also shown in docs/pipelines.md
    "0 8/4",
    "1 4/1",
    "2 piper 'length', item 2, function 'length': TypeError: object of type 'NoneType' has no len()",
    "3 6/1",
    "words {'in': 4, 'out': 4, 'errors': 0, 'failed': 0}",
    "length {'in': 4, 'out': 4, 'errors': 1, 'failed': 1}",
    "vowels {'in': 4, 'out': 4, 'errors': 1, 'failed': 1}",
    "report {'in': 4, 'out': 4, 'errors': 1, 'failed': 0}",
]

CASES = {
    "world.py": ([], exact("('element_0', 'element_1', 'element_2', 'element_3', 'element_4')")),
    "args.py": (
        [],
        exact(
            *(
                f"element_{i} ('arg_0', 'arg_1') [('kwarg_0', 'val_0'), ('kwarg_1', 'val_1')]"
                for i in range(3)
            )
        ),
    ),
    "ordered.py": (
        [],
        exact(
            "ordered ('awake', 'sleep', 'awake', 'awake')",
            "unordered ('awake', 'awake', 'awake', 'sleep')",
        ),
    ),
    "skip.py": (
        [],
        exact(
            "skip=False",
            "   awake",
            "   timeout",
            "   sleep",
            "   awake",
            "   awake",
            "skip=True",
            "   awake",
            "   timeout",
            "   awake",
            "   awake",
        ),
    ),
    "stride.py": (
        [],
        exact(
            "evaluation order: L0 L1 R0 R1 L2 L3 R2 R3",
            "results: [('L', 0), ('L', 1), ('R', 0), ('R', 1), ('L', 2), ('L', 3), ('R', 2), ('R', 3)]",
        ),
    ),
    "buffer.py": (
        [],
        exact(
            "before any read: L0 L1 R0 R1 L2 L3",
            "read: 0 1",
            "after two reads: L0 L1 R0 R1 L2 L3 R2 R3",
        ),
    ),
    "chain.py": ([], exact(*TRACE_CHAIN, "result: [0, 1, 2, 3, 4, 5]")),
    "branch.py": (
        [],
        exact("(" + ", ".join(f"('left_{i}', 'right_{i}')" for i in range(5)) + ")"),
    ),
    "worker.py": ([], exact("h3llo", "world")),
    "piper.py": ([], exact("['h3ll0', 'w0rld']")),
    "parallel_piper.py": ([], exact("['h3ll0', 'w0rld']")),
    "consume.py": (
        [],
        exact(
            "inbox: [['hello'], ['world']]",
            "inbox: [['hi'], ['folks']]",
            "['hello world', 'hi folks']",
        ),
    ),
    "produce.py": ([], exact("['h3ll0', 'h3ll0', 'w0rld', 'w0rld']")),
    "produce_consume.py": (
        [],
        exact(
            "inbox: [['h3ll0'], ['yuk'], ['w0rld'], ['yuk']]",
            "inbox: [['hi'], ['yuk'], ['f0lks'], ['yuk']]",
            "['h3ll0 w0rld', 'hi f0lks']",
        ),
    ),
    "produce_spawn_consume.py": ([], exact("['H3LL0 W0RLD', 'HI F0LKS']")),
    "dagger.py": ([], exact("['h3110', 'w0r1d']")),
    "fork.py": ([], exact("['e3', 'o0']", "[('H3LLO', 'HELL0'), ('WORLD', 'W0RLD')]")),
    "join.py": ([], exact("['h3ll0 w0rld', 'hi f0lks']")),
    "dagger_inputs.py": (
        [],
        exact("['one', 'two'] ['one', 'two']", "['hello world', 'world hello']"),
    ),
    "plumber.py": (
        [],
        exact(
            "finished: True",
            "tracked: {0: 'h3110', 1: 'w0r1d'}",
            "counts: {'start': {'in': 2, 'out': 2, 'errors': 0, 'failed': 0}, "
            "'end': {'in': 2, 'out': 2, 'errors': 0, 'failed': 0}}",
        ),
    ),
    "remote.py": ([], exact("('got0', 'got1', 'got2', 'got3', 'got4')")),
    "func.py": ([], matches(r"hello world I am \d+")),
    "grid.py": ([], exact("['hello', 'world', 'hi', 'folks']", "evaluated by the server: True")),
    "ipc.py": (["file"], matches(*[r"\d+->\d+"] * 4)),
    "ipc.py fifo": (["fifo"], matches(*[r"\d+->\d+"] * 4)),
    "ipc.py socket": (["socket"], matches(*[r"\d+->\d+"] * 4)),
    "pipeline.py": ([], matches(*[JOINED] * 4, r"Runtime: [\d.]+ s")),
    "pipeline.py thread": (
        ["--worker-type", "thread", "--items", "3"],
        matches(*[JOINED] * 3, r"Runtime: [\d.]+ s"),
    ),
    "pipeline.py dot": (
        ["--dot"],
        lambda out: out.startswith('digraph "pipeline" {') and out.count("->") == 5,
    ),
    "workflow.py": (
        [],
        matches(
            *(
                line
                for w in ("alpha", "beta", "gamma", "delta")
                # dump_stream writes the original's format: a blank line after each record
                for line in (rf"{w}: in=[\d.]+ start=[\d.]+ out=[\d.]+", "")
            ),
            re.escape("counts: {'in': 4, 'out': 4, 'errors': 0, 'failed': 0}"),
        ),
    ),
    "words.py": ([], exact(*WORDS_OUTPUT)),
    "script_workflow.py": (
        [],
        exact("[{'package': 'Hello, work moar!'}, {'package': 'Hello, nevar give up!'}]"),
    ),
}


def test_the_docs_example_is_examples_words_py_and_its_output_and_graph_are_current():
    doc = (EXAMPLES.parent / "docs" / "pipelines.md").read_text()
    blocks = re.findall(r"```(\w*)\n(.*?)```", doc, re.S)
    python = [text for lang, text in blocks if lang == "python"]
    assert python[0] == (EXAMPLES / "words.py").read_text()
    output = [text for lang, text in blocks if lang == ""][0]
    assert output.splitlines() == WORDS_OUTPUT
    sys.path.insert(0, str(EXAMPLES))
    try:
        from words import build
    finally:
        sys.path.remove(str(EXAMPLES))
    mermaid = [text for lang, text in blocks if lang == "mermaid"][0]
    assert mermaid == build().to_mermaid()


def test_every_example_is_covered():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    covered = {name.split()[0] for name in CASES}
    assert scripts == covered


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(CASES))
def test_example(case, sched_implementation):
    script = case.split()[0]
    args, check = CASES[case]
    env = dict(os.environ)
    if sched_implementation.is_pure_python:
        env["PAPY_NO_EXTENSIONS"] = "1"
    else:
        env.pop("PAPY_NO_EXTENSIONS", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(EXAMPLES.parent),
    )
    assert proc.returncode == 0, proc.stderr
    assert check(proc.stdout), (
        f"unexpected output of {case}:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
