"""script(): an external program per item, with real processes (POSIX)."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import tempfile
import time

import pytest

from papy import IMap
from papy.pipeline import Piper, Worker, WorkerError
from papy.pipeline.script import ScriptError, ScriptTimeout, script

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX programs and process groups"),
]

UPPER = ["tr", "a-z", "A-Z"]


@pytest.fixture
def tmpdir_only(tmp_path, monkeypatch):
    """A private TMPDIR for script's temporary files; checked empty afterwards."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


def open_fds():
    """The open file descriptors, each with what it points at (a pipe's inode, a
    file): a leak is an entry that is new, even if it reuses a number that another
    thread of the test process (an earlier test's leftover) closed meanwhile."""
    if not os.path.isdir("/proc/self/fd"):
        return set()
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:  # closed meanwhile (or the listing's own descriptor)
            pass
    return fds


# -- input and output forms -----------------------------------------------------------
def test_stdin_to_stdout(tmpdir_only):
    assert script(["hello\nworld\n"], UPPER) == "HELLO\nWORLD\n"
    assert script([""], UPPER) == ""
    assert script(["\u00e9t\u00e9\r\n"], ["cat"]) == "\u00e9t\u00e9\r\n"  # newlines untouched
    assert script([b"bytes in"], UPPER) == "BYTES IN"  # bytes are written as they are


def test_bytes_mode(tmpdir_only):
    out = script([b"\x00\xff abc"], UPPER, text=False)
    assert out == b"\x00\xff ABC" and isinstance(out, bytes)
    assert script([bytearray(b"x")], ["cat"], text=False) == b"x"
    assert script([memoryview(b"y")], ["cat"], text=False) == b"y"
    with pytest.raises(TypeError, match="must be bytes"):
        script(["a str"], ["cat"], text=False)
    with pytest.raises(ValueError, match="not UTF-8.*text=False"):
        script([b"\xff"], ["cat"])


def test_input_file_with_and_without_placeholder(tmpdir_only):
    assert script(["hello"], ["wc", "-c", "{in}"], input="file").split()[0] == "5"
    assert script(["hello"], ["wc", "-c"], input="file").split()[0] == "5"  # path appended
    # the file is private and has the suffix
    out = script(
        ["x"], ["sh", "-c", 'stat -c %a "$1"; echo "$1"', "sh"], input="file", suffix=".fa"
    )
    mode, path = out.split()
    assert mode == "600" and path.endswith(".fa") and path.startswith(str(tmpdir_only))
    assert script(["a"], ["echo", "--in={in}!"], input="file").startswith("--in=/")


def test_output_file(tmpdir_only):
    command = ["sh", "-c", 'tr a-z A-Z < "$1" > "$2"', "sh", "{in}", "{out}"]
    assert script(["abc\n"], command, input="file", output="file") == "ABC\n"
    appended = ["sh", "-c", 'tr a-z A-Z < "$1" > "$2"; echo ignored', "sh"]
    assert script(["abc"], appended, input="file", output="file") == "ABC"
    from_stdin = ["sh", "-c", 'tr a-z A-Z > "$1"', "sh", "{out}"]
    assert script([b"\x01z"], from_stdin, output="file", text=False) == b"\x01Z"
    with pytest.raises(ScriptError, match="without writing its output file") as info:
        script(["abc"], ["true"], output="file")
    assert info.value.returncode == 0


def test_input_arg_and_no_input(tmpdir_only):
    assert script(["two words"], ["echo", "-n"], input="arg") == "two words"
    assert script([42], ["echo"], input="arg") == "42\n"
    assert script(["ignored"], ["sh", "-c", "cat; echo done"], input=None) == "done\n"
    with pytest.raises(ValueError, match="NUL"):
        script(["a\0b"], ["echo"], input="arg")


def test_shell(tmpdir_only):
    assert script(["b a\nd c\n"], "awk '{print $2}' | sort", shell=True) == "a\nc\n"
    assert script(["x"], "printf '%s' '{}{{0}}{ in}' {x}", shell=True) == "{}{{0}}{ in}{x}"
    assert script(["hello"], "wc -c < {in}", shell=True, input="file").strip() == "5"
    # appended arguments are quoted: an item cannot inject shell code
    assert script(["a; echo injected"], "printf %s", shell=True, input="arg") == "a; echo injected"


def test_braces_in_arguments_survive(tmpdir_only):
    assert script(["a b\n"], ["awk", "{print $2}"]) == "b\n"
    assert script(["x"], ["echo", "{0}", "{in", "out}", "{{}}", "{IN}"], input=None) == (
        "{0} {in out} {{}} {IN}\n"
    )


def test_cwd_and_env(tmpdir_only, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    assert script([""], ["pwd"], cwd=work).strip() == str(work)
    out = script([""], ["sh", "-c", 'echo "$PAPY_TEST_VAR"'], env={"PAPY_TEST_VAR": "v 1"})
    assert out == "v 1\n"
    assert script([""], ["/usr/bin/env"], env={"ONLY": "this"}) == "ONLY=this\n"


def test_a_10_mb_item_through_cat(tmpdir_only):
    item = "0123456789abcdef\n" * (10 * 1024 * 1024 // 17)
    assert script([item], ["cat"]) == item
    data = os.urandom(10 * 1024 * 1024)
    assert script([data], ["cat"], text=False) == data
    assert script([data], ["cat"], input="file", text=False) == data
    command = ["sh", "-c", 'cat "$1" > "$2"', "sh", "{in}", "{out}"]
    assert script([data], command, input="file", output="file", text=False) == data


# -- failures -------------------------------------------------------------------------
def test_non_zero_exit(tmpdir_only):
    fds = open_fds()
    command = ["sh", "-c", 'echo partial; for i in $(seq 30); do echo "line $i" >&2; done; exit 3']
    with pytest.raises(ScriptError) as info:
        script(["x"], command)
    err = info.value
    assert isinstance(err, RuntimeError) and not isinstance(err, ScriptTimeout)
    assert err.returncode == 3 and err.stdout == "partial\n"
    assert err.stderr == "".join(f"line {i}\n" for i in range(1, 31))
    message = str(err)
    assert "exited with status 3" in message and "sh -c" in message
    assert "line 30" in message and "line 11" in message and "line 10\n" not in message
    assert err.command[:2] == ["sh", "-c"]
    clone = pickle.loads(pickle.dumps(err))  # travels back from process workers
    assert type(clone) is ScriptError and (clone.returncode, clone.stderr) == (3, err.stderr)
    assert str(clone) == message
    assert not open_fds() - fds, "a descriptor was left open"


def test_check_false_returns_the_output(tmpdir_only):
    assert script(["x"], ["sh", "-c", "cat; exit 1"], check=False) == "x"
    command = ["sh", "-c", 'echo out > "$1"; exit 2', "sh", "{out}"]
    assert script([""], command, output="file", check=False) == "out\n"


def test_stderr_is_bounded(tmpdir_only):
    command = ["sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' e >&2; echo last >&2; exit 1"]
    with pytest.raises(ScriptError) as info:
        script([""], command)
    assert len(info.value.stderr) == 64 * 1024 and info.value.stderr.endswith("eelast\n")
    assert len(str(info.value)) < 3000


def test_killed_by_a_signal(tmpdir_only):
    with pytest.raises(ScriptError, match=r"killed by SIGKILL \(signal 9\)") as info:
        script(["x"], ["sh", "-c", "kill -9 $$"])
    assert info.value.returncode == -signal.SIGKILL
    with pytest.raises(ScriptError, match="SIGTERM"):
        script(["x"], "kill -TERM $$", shell=True)


def gone(pid):
    """The process ended (a zombie waiting for an init that reaps is ended too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_timeout_kills_the_process_group(tmpdir_only, tmp_path):
    fds = open_fds()
    pidfile = tmp_path / "pid"
    command = ["sh", "-c", f"sleep 100 & echo $! > {pidfile}; echo started; echo oops >&2; wait"]
    start = time.monotonic()
    with pytest.raises(ScriptTimeout) as info:
        script(["x"], command, timeout=0.5)
    assert time.monotonic() - start < 10
    err = info.value
    assert isinstance(err, ScriptError) and err.timeout == 0.5
    assert err.returncode == -signal.SIGKILL and err.stdout == "started\n"
    assert "timeout of 0.5 s" in str(err) and "oops" in str(err)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)
    assert not open_fds() - fds, "a descriptor was left open"
    assert type(pickle.loads(pickle.dumps(err))) is ScriptTimeout


def test_timeout_with_input_and_output_files(tmpdir_only):
    with pytest.raises(ScriptTimeout):
        script(
            ["x" * 100_000],
            ["sh", "-c", "sleep 30", "sh"],
            input="file",
            output="file",
            timeout=0.3,
        )
    with pytest.raises(ScriptTimeout):  # stdin never read: the writer does not block
        script(["x" * 5_000_000], ["sleep", "30"], timeout=0.3)


def test_no_temporary_files_after_a_failed_input(tmpdir_only):
    with pytest.raises(TypeError, match="not dict"):
        script([{"a": 1}], ["cat"], input="file", output="file")
    with pytest.raises(FileNotFoundError):
        script(["x"], ["/nonexistent/program"], input="file", output="file")


# -- argument checks ------------------------------------------------------------------
@pytest.mark.parametrize(
    "command, kwargs, error, pattern",
    [
        ([], {}, ValueError, "command is empty"),
        ("sort -n", {}, ValueError, "shell=True"),
        (b"sort", {}, ValueError, "list of arguments"),
        (42, {}, TypeError, "command must be a list"),
        (["echo", 1], {}, TypeError, r"command\[1\] must be a str"),
        (["sort"], {"shell": True}, TypeError, "one str"),
        ("  ", {"shell": True}, ValueError, "command is empty"),
        (["cat"], {"input": "stdout"}, ValueError, "input must be one of"),
        (["cat"], {"output": "both"}, ValueError, "output must be one of"),
        (["cat"], {"output": None}, ValueError, "output must be one of"),
        (["cat"], {"timeout": 0}, ValueError, "timeout must be > 0"),
        (["cat"], {"timeout": -1.5}, ValueError, "timeout must be > 0"),
        (["cat"], {"timeout": float("nan")}, ValueError, "timeout must be > 0"),
        (["cat"], {"timeout": "1"}, TypeError, "timeout must be a number"),
        (["cat"], {"timeout": True}, TypeError, "timeout must be a number"),
        (["cat", "{in}"], {}, ValueError, "uses {in}, which needs input='file'"),
        ("cat {in}", {"shell": True, "input": "arg"}, ValueError, "needs input='file'"),
        (["cat", "{out}"], {"input": "file"}, ValueError, "uses {out}, which needs output='file'"),
        (["cat"], {"env": ["A=1"]}, TypeError, "env must be a mapping"),
        (["cat"], {"env": {"A": 1}}, TypeError, "env must map str to str"),
        (["cat"], {"cwd": 1}, TypeError, "cwd must be a path"),
        (["cat"], {"suffix": None}, TypeError, "suffix must be a str"),
        (["cat"], {"suffix": "/x"}, ValueError, "suffix must be a file name ending"),
        (["cat"], {"input": "stdin"}, TypeError, "must be a str or bytes, not list"),
    ],
)
def test_argument_checks(tmpdir_only, command, kwargs, error, pattern):
    item = ["not", "text"] if "must be a str or bytes" in pattern else "x"
    with pytest.raises(error, match=pattern):
        script([item], command, **kwargs)


def test_infinite_timeout_means_none(tmpdir_only):
    assert script(["x"], ["cat"], timeout=float("inf")) == "x"


# -- in a pipeline --------------------------------------------------------------------
SORT_OR_FAIL = [
    "sh",
    "-c",
    'x=$(cat); case "$x" in *oops*) echo bad >&2; exit 3;; esac; printf "%s\\n" "$x" | sort',
]


def run(piper, items):
    piper.connect([items])
    piper.start()
    try:
        return list(piper)
    finally:
        piper.stop()


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_in_a_parallel_pipeline(tmpdir_only, worker_type):
    imap = IMap(worker_type=worker_type, worker_num=2)
    try:
        piper = Piper(Worker(script, (SORT_OR_FAIL,)), parallel=imap, name="sort")
        out = run(piper, ["b\na\n", "oops", "d\nc\n"])
    finally:
        imap.stop()
    assert out[0] == "a\nb\n" and out[2] == "c\nd\n" and len(out) == 3
    err = out[1]
    assert isinstance(err, WorkerError) and (err.piper, err.index) == ("sort", 1)
    assert type(err.exception) is ScriptError and err.exception.returncode == 3
    assert "bad" in str(err.exception) and err.exception.stderr == "bad\n"


def test_keyword_arguments_through_a_worker(tmpdir_only):
    imap = IMap(worker_type="process", worker_num=2)
    try:
        upper_file = ["sh", "-c", 'tr a-z A-Z < "$1"', "sh"]
        worker = Worker(script, (upper_file,), {"timeout": 30, "input": "file"})
        assert run(Piper(worker, parallel=imap), ["ab", "cd"]) == ["AB", "CD"]
    finally:
        imap.stop()
