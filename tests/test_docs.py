"""The documentation is true: its code runs and its signatures are the code's.

Code blocks: every ``python`` block of ``docs/*.md`` runs, each in a fresh
interpreter, as a file in a temporary directory (so process workers work),
with ``PAPY_NO_EXTENSIONS=1`` (the pure core: the docs do not depend on the
core, and are run once). When the next block is a ``text`` block, the output
must be that text. The README's blocks are run by ``tests/test_readme.py``.

An HTML comment on the line before a block (invisible on the site and on
GitHub) changes that:

* ``<!-- fragment: why -->`` before a ``python`` block: a fragment that cannot
  run on its own (names defined elsewhere, hosts that do not exist, ``...``);
  it is not run. The reason is required.
* ``<!-- slow: why -->`` before a ``python`` block: run only with ``-m slow``.
* ``<!-- output: numbers vary -->`` before a ``text`` block: the output depends
  on the machine (timings, a CPU count); every number in the text matches any
  number, everything else must be equal.

A block that uses papy's worker servers at ``127.0.0.1:PORT`` gets servers
started on those ports (``python -m papy.remote serve``), as the README test
does; it is skipped if a port is taken.

Signatures: every signature written in the docs and the README (the blocks of
``docs/api.md``, and each code span ``name(param, param=default, ...)`` whose
name is a documented function or method, whose first parameter is the real
first one, that has two parameters or more and gives at least one default)
must name the real parameters in their real order, kinds and defaults
(``inspect.signature``). A trailing ``...`` means "and more": the parameters
written must then be the real ones' beginning. Calls in prose
(``imap(..., progress=True)``, ``NuMap(stride=3)``, ``stop(forced=...,
ends=[0])``) are not signatures.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
_MARK = re.compile(r"<!--\s*([\w-]+)\s*:\s*(.*?)\s*-->\s*\Z", re.S)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


class Block(NamedTuple):
    doc: str  # file name
    line: int  # line of the opening fence
    lang: str
    code: str
    mark: tuple[str, str] | None  # (kind, text) of the comment right before it
    expected: str | None  # the text block that follows a python block
    expected_mark: tuple[str, str] | None


def _blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip()
        mark = _MARK.search(before[-300:])
        found.append(
            (
                text.count("\n", 0, m.start()) + 1,
                m.group(1).strip(),
                m.group(2),
                (mark.group(1), mark.group(2)) if mark else None,
                m.start(),
                m.end(),
            )
        )
    blocks = []
    for i, (line, lang, code, mark, _start, end) in enumerate(found):
        expected = expected_mark = None
        if lang == "python" and i + 1 < len(found):
            _, next_lang, next_code, next_mark, next_start, _ = found[i + 1]
            between = text[end:next_start]
            # the output belongs to the block when only a comment separates them
            if next_lang == "text" and not re.sub(r"<!--.*?-->", "", between, flags=re.S).strip():
                expected, expected_mark = next_code, next_mark
        blocks.append(Block(path.name, line, lang, code, mark, expected, expected_mark))
    return blocks


DOC_FILES = sorted(DOCS.glob("*.md"))
ALL_BLOCKS = [b for path in DOC_FILES for b in _blocks(path)]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "python"]
RUN = [b for b in PYTHON_BLOCKS if not (b.mark and b.mark[0] == "fragment")]


def _param(block: Block) -> Any:
    marks = [pytest.mark.slow] if block.mark and block.mark[0] == "slow" else []
    return pytest.param(block, id=f"{block.doc}:{block.line}", marks=marks)


# -- servers for the blocks that use remote workers ----------------------------


def _env() -> dict[str, str]:
    """This environment, with the papy under test importable from any directory."""
    import papy

    root = os.path.dirname(os.path.dirname(os.path.abspath(papy.__file__)))
    path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, PAPY_NO_EXTENSIONS="1")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _server_ports(code: str) -> list[int]:
    if "worker_remote" not in code:
        return []
    return sorted({int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", code)})


@pytest.fixture(scope="module")
def servers():
    """Starts papy servers on the ports a block needs, once per port."""
    procs: dict[int, subprocess.Popen[str]] = {}

    def ensure(ports: list[int]) -> None:
        for port in ports:
            if port in procs:
                continue
            if not _port_free(port):
                pytest.skip(f"port {port} is taken")
            procs[port] = subprocess.Popen(
                [sys.executable, "-m", "papy.remote", "serve", "--host", "127.0.0.1"]
                + ["--port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=_env(),
            )
            deadline = time.monotonic() + 30
            while _port_free(port):
                assert procs[port].poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)

    try:
        yield ensure
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(10)


# -- the code blocks ------------------------------------------------------------


def _same(lines: list[str], expected: list[str], numbers_vary: bool) -> bool:
    if len(lines) != len(expected):
        return False
    for line, want in zip(lines, expected):
        if numbers_vary:
            pattern = "".join(
                _NUMBER.pattern if part is None else re.escape(part)
                for part in _split_numbers(want)
            )
            if not re.fullmatch(pattern, line):
                return False
        elif line != want:
            return False
    return True


def _split_numbers(text: str) -> list[str | None]:
    """``text`` cut into its literal parts, with None where a number was."""
    parts: list[str | None] = []
    last = 0
    for m in _NUMBER.finditer(text):
        parts += [text[last : m.start()], None]
        last = m.end()
    parts.append(text[last:])
    return parts


@pytest.mark.timeout(120)
@pytest.mark.parametrize("block", [_param(b) for b in RUN])
def test_doc_block_runs_and_prints_what_the_page_says(
    block, tmp_path, servers, sched_implementation
):
    if str(sched_implementation) == "c":
        pytest.skip("runs once, in the [py] instance: it does not depend on the core")
    servers(_server_ports(block.code))
    script = tmp_path / "snippet.py"
    script.write_text(block.code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    if block.expected is not None:
        numbers_vary = block.expected_mark == ("output", "numbers vary")
        lines, want = proc.stdout.splitlines(), block.expected.splitlines()
        assert _same(lines, want, numbers_vary), (
            f"{block.doc}:{block.line} printed\n{proc.stdout}\nthe page says\n{block.expected}"
        )


def test_every_python_block_is_run_or_a_fragment_with_a_reason():
    kinds = {"fragment", "slow"}
    for b in PYTHON_BLOCKS:
        if b.mark is not None:
            assert b.mark[0] in kinds, f"{b.doc}:{b.line}: unknown mark {b.mark}"
            assert b.mark[1], f"{b.doc}:{b.line}: a {b.mark[0]} mark needs its reason"
    for b in ALL_BLOCKS:
        if b.mark is not None and b.mark[0] in kinds:
            assert b.lang == "python", f"{b.doc}:{b.line}: a {b.mark[0]} mark on a {b.lang} block"
        if b.mark is not None and b.mark[0] == "output":
            assert b.lang == "text" and b.mark[1] == "numbers vary", f"{b.doc}:{b.line}: {b.mark}"
            assert any(o.expected == b.code for o in PYTHON_BLOCKS), (
                f"{b.doc}:{b.line}: an output mark on a block that is no block's output"
            )
    # the pages whose snippets all run say so
    assert len(RUN) >= 30
    assert sum(b.doc == "migration.md" and b.expected is not None for b in RUN) >= 7


def test_the_deadlock_message_in_the_user_guide_is_the_one_papy_raises():
    # (the block itself runs above; this pins which text the guide shows)
    from papy import _sched_py

    message = _sched_py._MSG_DEADLOCK.format(task=0, buffer=2, need=4)
    (block,) = [
        b for b in RUN if b.doc == "user-guide.md" and "then DeadlockError" in (b.expected or "")
    ]
    assert message in block.expected.splitlines()


def test_tracked_holds_the_results_handed_out_and_nothing_else():
    """api.md: ``tracked[task]`` is every result handed out, ``{index: result}``;
    reading a task to its end records nothing more (the end is not a result)."""
    from papy import IMap

    with IMap(worker_type="thread", worker_num=2) as m:
        squares = m.add_task(pow, range(4), args=(2,), track=True)
        m.start()
        assert list(squares) == [0, 1, 4, 9]
        assert m.tracked == {0: {0: 0, 1: 1, 2: 4, 3: 9}}


# -- docstrings ---------------------------------------------------------------


def _documented_args(doc: str) -> list[str]:
    """The names in the ``Args:`` section of a Google-style docstring."""
    lines = inspect.cleandoc(doc).splitlines()
    names: list[str] = []
    inside = False
    for line in lines:
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            inside = True
            continue
        if inside:
            if line and not line.startswith(" "):
                break
            m = re.match(r"^    (\*{0,2}\w+)( \(.*\))?:", line)
            if m:
                names.append(m.group(1).lstrip("*"))
    return names


def _api_callables() -> list[Any]:
    import papy

    methods = ("add_task", "get_task", "pop_task", "start", "next", "stop", "stats")
    return [
        papy.IMap,
        *(getattr(papy.IMap, name) for name in methods),
        papy.imap,
        papy.TaskIterator.next,
        papy.MapIterator.stats,
        papy.MapIterator.close,
    ]


@pytest.mark.parametrize("obj", _api_callables(), ids=lambda o: o.__qualname__)
def test_help_documents_every_argument(obj, sched_implementation):
    if str(sched_implementation) == "c":
        pytest.skip("runs once, in the [py] instance: it does not depend on the core")
    doc = inspect.getdoc(obj)
    assert doc, f"{obj.__qualname__} has no docstring"
    real = [name for name, _, _ in _real_params(obj)]
    assert _documented_args(doc) == real, (
        f"{obj.__qualname__}: the docstring's Args must be {real}, in that order"
    )


def test_numap_taskiterator_mapiterator_say_what_they_are_for():
    import papy

    for obj in (papy.NuMap, papy.TaskIterator, papy.MapIterator, papy.imap):
        doc = inspect.getdoc(obj) or ""
        assert len(doc.split()) >= 30, f"{obj.__qualname__}: a docstring of a few words"


# -- signatures ----------------------------------------------------------------


def _registry() -> dict[str, list[Any]]:
    """Documented name -> the objects it may stand for (a method's name may be
    several classes')."""
    import papy
    import papy.graph
    import papy.pipeline
    import papy.pipeline.script
    import papy.pipeline.util
    import papy.remote

    names: dict[str, list[Any]] = {}

    def add(name: str, obj: Any) -> None:
        names.setdefault(name, []).append(obj)

    for obj in (papy.IMap, papy.NuMap, papy.TaskIterator, papy.MapIterator, papy.imap):
        add(obj.__name__, obj)
    add("imports", papy.imports)
    for cls in (papy.IMap, papy.TaskIterator, papy.MapIterator):
        for attr, value in vars(cls).items():
            if not attr.startswith("_") and callable(value):
                add(attr, getattr(cls, attr))
    for module in (papy.pipeline, papy.graph):
        for attr in module.__all__:
            cls = getattr(module, attr)
            add(attr, cls)
            if inspect.isclass(cls) and cls.__module__.startswith("papy"):
                for name in dir(cls):
                    value = getattr(cls, name, None)
                    if not name.startswith("_") and callable(value):
                        add(name, value)
    for module in (papy.pipeline.util, papy.pipeline.script):
        for attr in module.__all__:
            add(attr, getattr(module, attr))
    for attr in ("ping", "serve"):
        add(attr, getattr(papy.remote, attr))
    return names


def _real_params(obj: Any) -> list[tuple[str, str, Any]]:
    """``(name, kind, default)`` of each parameter, ``self`` left out; NuMap has
    IMap's parameters with ``chunksize=1``."""
    import papy

    if obj is papy.NuMap:
        return [(n, k, 1 if n == "chunksize" else d) for n, k, d in _real_params(papy.IMap)]
    sig = inspect.signature(obj)
    out = []
    for p in sig.parameters.values():
        if p.name == "self" or p.name.startswith("_"):
            continue
        kind = {
            p.VAR_POSITIONAL: "*",
            p.VAR_KEYWORD: "**",
            p.KEYWORD_ONLY: "kw",
        }.get(p.kind, "pos")
        out.append((p.name, kind, p.default))
    return out


class Written(NamedTuple):
    where: str
    name: str
    params: list[tuple[str, str, Any]]
    prefix: bool  # ends with "...": the real parameters begin with these
    error: str = ""  # why the text is not a valid signature


_SPAN = re.compile(r"(?<!`)`([^`]+?)`(?!`)")
_CALL = re.compile(r"^(?:[\w.]+\.)?(\w+)\((.*)\)(?:\s*->\s*.+)?$", re.S)


def _parse(where: str, name: str, text: str) -> Written:
    text = " ".join(text.split())
    prefix = False
    if text == "..." or text.endswith(", ..."):
        prefix = True
        text = text[: -len("...")].rstrip().rstrip(",").rstrip()
        text = text[: -len(", *")] if text.endswith(", *") else text
        text = "" if text == "*" else text
    try:
        node = ast.parse(f"def f({text}): pass").body[0]
        assert isinstance(node, ast.FunctionDef)
        a = node.args
        for d in [*a.defaults, *a.kw_defaults]:
            if d is not None:
                ast.literal_eval(d)
    except (SyntaxError, ValueError) as exc:
        return Written(where, name, [], prefix, f"not a signature with literal defaults: {exc}")
    positional = a.posonlyargs + a.args
    defaults: list[Any] = [inspect.Parameter.empty] * (len(positional) - len(a.defaults))
    defaults += [ast.literal_eval(d) for d in a.defaults]
    params = [(p.arg, "pos", d) for p, d in zip(positional, defaults)]
    if a.vararg:
        params.append((a.vararg.arg, "*", inspect.Parameter.empty))
    for p, d in zip(a.kwonlyargs, a.kw_defaults):
        default = inspect.Parameter.empty if d is None else ast.literal_eval(d)
        params.append((p.arg, "kw", default))
    if a.kwarg:
        params.append((a.kwarg.arg, "**", inspect.Parameter.empty))
    return Written(where, name, params, prefix)


def _top_level_commas(text: str) -> list[int]:
    depth, found = 0, []
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            found.append(i)
    return found


def _candidates(text: str, where: str, registry: dict[str, list[Any]], block: bool) -> Any:
    """The signature ``text`` states, or None if it is not one (a call, prose)."""
    m = _CALL.match(" ".join(text.split()))
    if not m or m.group(1) not in registry:
        return None
    name, inner = m.group(1), m.group(2).strip()
    if not block:
        if inner.startswith("...") or ("=" not in inner and inner != "..."):
            return None  # a call, or a list of names
        first = re.match(r"\*?\*?(\w+)", inner)
        firsts = {(_real_params(o) or [("",)])[0][0] for o in registry[name]}
        if not first or first.group(1) not in firsts:
            return None  # a call with keyword arguments
        if re.search(r"=\s*\.\.\.", inner) or len(_top_level_commas(inner)) < 1:
            return None  # a call shape (`stop(forced=...)`), or one argument
    return _parse(where, name, inner)


def _written_signatures() -> list[Written]:
    registry = _registry()
    found = []
    for path in [*DOC_FILES, README]:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        for b in _blocks(path) if path.name == "api.md" else []:
            if b.lang == "" and b.code.strip():
                where = f"{rel}:{b.line}"
                got = _candidates(b.code.strip(), where, registry, block=True)
                if got is not None:
                    found.append(got)
        prose = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for m in _SPAN.finditer(prose):
            where = f"{rel}:{prose.count(chr(10), 0, m.start()) + 1}"
            got = _candidates(m.group(1), where, registry, block=False)
            if got is not None:
                found.append(got)
    return found


WRITTEN = _written_signatures()


def _matches(written: Written, obj: Any) -> bool:
    real = _real_params(obj)
    if written.prefix:
        real = real[: len(written.params)]
    return written.params == real


@pytest.mark.parametrize("written", WRITTEN, ids=[f"{w.where}:{w.name}" for w in WRITTEN])
def test_written_signature_is_the_real_one(written, sched_implementation):
    if str(sched_implementation) == "c":
        pytest.skip("runs once, in the [py] instance: it does not depend on the core")
    assert not written.error, f"{written.where}: {written.name}: {written.error}"
    objects = _registry()[written.name]
    if not any(_matches(written, obj) for obj in objects):
        real = [
            f"{o.__qualname__}{inspect.signature(o)}" if callable(o) else repr(o) for o in objects
        ]
        pytest.fail(
            f"{written.where}: {written.name} is written with {written.params}, the code has "
            + " or ".join(real)
        )


def test_the_signatures_that_must_be_checked_are_found():
    where = {(w.where.split(":")[0], w.name) for w in WRITTEN}
    api = {name for doc, name in where if doc == "docs/api.md"}
    assert {"IMap", "add_task", "get_task", "pop_task", "start", "next", "stop", "stats"} <= api
    assert {"TaskIterator", "imap", "Worker", "Piper", "Dagger", "Plumber", "script"} <= api
    assert ("README.md", "IMap") in where
    assert ("README.md", "add_task") in where
