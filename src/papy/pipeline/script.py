"""Run an external program (a command or a shell script) on each item of a pipeline.

``script`` is a worker function: ``Worker(script, (["sort"],))`` runs
``sort`` once per item and passes on what it printed. The item goes in

* on the program's standard input (``input="stdin"``, the default),
* as a temporary file whose path is an argument (``input="file"``),
* as the last argument itself (``input="arg"``, for short items), or
* not at all (``input=None``; the standard input is ``/dev/null``),

and the result comes back from its standard output (``output="stdout"``, the
default) or from a temporary file that the program writes
(``output="file"``). In the arguments, ``{in}`` and ``{out}`` stand for the
paths of these two files. Temporary files live in a private directory (mode
0700, files 0600) that is removed when the call ends, however it ends.

A program that exits with a non-zero status (or is killed by a signal)
raises ``ScriptError``, which carries the command, the exit status, the
output and the tail of the standard error; one that runs longer than
``timeout`` seconds is killed with every process it started (its whole
process group) and raises ``ScriptTimeout``. In a pipeline the failed
item becomes a ``WorkerError`` at its position and the other items go on::

    from papy import IMap
    from papy.pipeline import Piper, Worker
    from papy.pipeline.script import script

    sorter = Piper(Worker(script, (["sort"],)), parallel=IMap(worker_num=2))
    sorter.connect([["b\\na\\n", "d\\nc\\n"]]).start()
    print(list(sorter))  # ['a\\nb\\n', 'c\\nd\\n']
    sorter.stop()

``script`` is a module-level function, so it can run in process workers.
Processes are managed the POSIX way (process groups, ``/bin/sh``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO, Any

from .. import _check

__all__ = ["script", "ScriptError", "ScriptTimeout"]

INPUTS = ("stdin", "file", "arg", None)
OUTPUTS = ("stdout", "file")
_KEEP = 64 * 1024  # bytes of stderr (and of stdout in an error) kept
_TAIL_LINES = 20
_TAIL_CHARS = 2000
_SHOWN_COMMAND = 300
_PLACEHOLDER = re.compile(r"\{(in|out)\}")


class ScriptError(RuntimeError):
    """The external program failed: it exited with a non-zero status, was
    killed by a signal, timed out (``ScriptTimeout``) or did not write its
    output file.

    Attributes: ``command`` (the arguments that were run, or the shell
    string), ``returncode`` (the exit status; ``-N`` when killed by signal
    ``N``; None if it was never reaped normally), ``stdout`` (what it printed,
    its last 64 kB; str when ``text=True``, else bytes; None if unknown) and
    ``stderr`` (the last 64 kB of its standard error, same type).
    """

    def __init__(
        self,
        message: str,
        command: Sequence[str] | str,
        returncode: int | None,
        stdout: str | bytes | None = None,
        stderr: str | bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.args[0], self.command, self.returncode, self.stdout, self.stderr),
        )


class ScriptTimeout(ScriptError):
    """The external program ran longer than ``timeout`` seconds; it was killed
    with its whole process group. ``timeout`` is the limit that expired."""

    def __init__(
        self,
        message: str,
        command: Sequence[str] | str,
        returncode: int | None,
        stdout: str | bytes | None = None,
        stderr: str | bytes | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(message, command, returncode, stdout, stderr)
        self.timeout = timeout

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.args[0], self.command, self.returncode, self.stdout, self.stderr, self.timeout),
        )


# -- argument checks ------------------------------------------------------------------
def _check_command(command: Any, shell: bool) -> list[str] | str:
    if shell:
        if not isinstance(command, str):
            raise TypeError(
                "with shell=True, command must be one str (run by /bin/sh -c), "
                f"not {type(command).__name__}"
            )
        if not command.strip():
            raise ValueError("command is empty: give the shell command to run")
        return command
    if isinstance(command, (str, bytes)):
        raise ValueError(
            f"command is a {type(command).__name__} ({command!r}): pass a list of arguments "
            "(e.g. ['sort', '-n']), or shell=True to run a str with /bin/sh -c"
        )
    if not isinstance(command, Sequence):
        raise TypeError(
            "command must be a list of program arguments (or a str with shell=True), "
            f"not {type(command).__name__}"
        )
    if not command:
        raise ValueError("command is empty: give at least the program to run")
    args = []
    for i, arg in enumerate(command):
        if isinstance(arg, os.PathLike):
            arg = os.fspath(arg)
        if not isinstance(arg, str):
            raise TypeError(f"command[{i}] must be a str, not {type(arg).__name__}")
        args.append(arg)
    return args


def _check_options(
    command: list[str] | str,
    input: Any,  # noqa: A002
    output: Any,
    timeout: Any,
    cwd: Any,
    env: Any,
    suffix: Any,
) -> float | None:
    if input not in INPUTS or not (input is None or isinstance(input, str)):
        raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
    if output not in OUTPUTS or not isinstance(output, str):
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    timeout = _check.seconds("timeout", timeout, positive=True)
    if timeout == float("inf"):
        timeout = None
    if cwd is not None and not isinstance(cwd, (str, os.PathLike)):
        raise TypeError(f"cwd must be a path or None, not {type(cwd).__name__}")
    if env is not None:
        if not isinstance(env, Mapping):
            raise TypeError(
                f"env must be a mapping of str to str or None, not {type(env).__name__}"
            )
        for key, value in env.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"env must map str to str, got {key!r}: {value!r}")
    if not isinstance(suffix, str):
        raise TypeError(f"suffix must be a str, not {type(suffix).__name__}")
    if "/" in suffix or "\0" in suffix:
        raise ValueError(f"suffix must be a file name ending, without '/' or NUL: {suffix!r}")
    parts = [command] if isinstance(command, str) else command
    used = {match for part in parts for match in _PLACEHOLDER.findall(part)}
    if "in" in used and input != "file":
        raise ValueError(f"command uses {{in}}, which needs input='file' (input is {input!r})")
    if "out" in used and output != "file":
        raise ValueError(f"command uses {{out}}, which needs output='file' (output is {output!r})")
    return float(timeout) if timeout is not None else None


def _as_bytes(item: Any, text: bool, input: str) -> bytes:  # noqa: A002
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str) and text:
        return item.encode("utf-8")
    wanted = "a str or bytes" if text else "bytes (text=False)"
    raise TypeError(
        f"input={input!r} writes the item as it is: it must be {wanted}, "
        f"not {type(item).__name__} (convert it in a Worker before this one)"
    )


def _as_argument(item: Any) -> str:
    if isinstance(item, (bytes, bytearray, memoryview)):
        arg = os.fsdecode(bytes(item))
    else:
        arg = str(item)
    if "\0" in arg:
        raise ValueError("input='arg': an argument cannot contain NUL; use input='stdin' or 'file'")
    return arg


# -- running --------------------------------------------------------------------------
def _build(
    command: list[str] | str, shell: bool, paths: dict[str, str], extra: list[str]
) -> list[str] | str:
    """The command with ``{in}``/``{out}`` replaced and ``extra`` appended
    (shell-quoted in a shell string)."""
    if isinstance(command, str):
        quoted = {key: shlex.quote(path) for key, path in paths.items()}
        line = _PLACEHOLDER.sub(lambda m: quoted[m.group(1)], command)
        return " ".join([line, *(shlex.quote(arg) for arg in extra)])
    args = [_PLACEHOLDER.sub(lambda m: paths[m.group(1)], arg) for arg in command]
    return args + extra


def _shown(command: list[str] | str) -> str:
    shown = command if isinstance(command, str) else shlex.join(command)
    if len(shown) > _SHOWN_COMMAND:
        shown = shown[: _SHOWN_COMMAND - 3] + "..."
    return shown


def _tail_of(handle: IO[bytes]) -> bytes:
    handle.flush()
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - _KEEP))
    return handle.read()


def _tail_text(data: bytes) -> str:
    text = data.decode("utf-8", "replace").rstrip("\n")
    lines = text.splitlines()[-_TAIL_LINES:]
    tail = "\n".join(lines)
    if len(tail) > _TAIL_CHARS:
        tail = "..." + tail[-_TAIL_CHARS:]
    return tail


def _status(returncode: int | None) -> str:
    if returncode is None:
        return "did not finish"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} (signal {-returncode})"
    return f"exited with status {returncode}"


def _decoded(data: bytes, text: bool, what: str, shown: str) -> str | bytes:
    if not text:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"the {what} of {shown} is not UTF-8 text ({error}); pass text=False to get bytes"
        ) from None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process and every process of its group (it leads its own session)."""
    if sys.platform != "win32":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.kill()
    except OSError:
        pass


def script(
    inbox: Sequence[Any],
    command: Sequence[str] | str,
    *,
    input: str | None = "stdin",  # noqa: A002 - the subprocess name
    output: str = "stdout",
    timeout: float | None = None,
    shell: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    text: bool = True,
    check: bool = True,
    suffix: str = "",
) -> str | bytes:
    """Run ``command`` on the item ``inbox[0]`` and return its output.

    * ``command``: the program and its arguments, a list (no shell is
      involved), or with ``shell=True`` one str run by ``/bin/sh -c``. The
      exact tokens ``{in}`` and ``{out}`` are replaced by the paths of the
      input and output files (shell-quoted in a shell string: write them
      without quotes); every other character, braces included, is left as it is.
    * ``input``: ``"stdin"`` writes the item to the program's standard input
      (a str encoded as UTF-8 when ``text``, bytes as they are); ``"file"``
      writes it to a temporary file (mode 0600, name ending with ``suffix``)
      whose path replaces ``{in}``, or is appended as the last argument;
      ``"arg"`` appends ``str(item)`` as the last argument (short items);
      None gives no input (standard input is ``/dev/null``).
    * ``output``: ``"stdout"`` returns what the program printed; ``"file"``
      returns the content of a temporary file the program must write, whose
      path replaces ``{out}`` or is appended (after the input path). With
      ``text`` the result is a str (UTF-8, newlines untouched), else bytes.
    * ``timeout``: seconds for the whole run; then the program and every
      process of its group are killed and ``ScriptTimeout`` is raised.
    * ``check``: a non-zero exit raises ``ScriptError`` (with the tail
      of the standard error in its message); with ``check=False`` the output
      is returned anyway.
    * ``cwd``, ``env``: the working directory and the environment (None:
      this process's).

    Arguments are checked at every call (TypeError or ValueError naming the
    argument). No process, file descriptor or temporary file outlives the
    call, except background processes a program that finished normally left
    running on purpose.
    """
    argv = _check_command(command, shell)
    seconds = _check_options(argv, input, output, timeout, cwd, env, suffix)
    item = inbox[0]
    data = _as_bytes(item, text, "stdin") if input == "stdin" else None
    folder: str | None = None
    stderr_file: IO[bytes] | None = None
    stdout_file: IO[bytes] | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        paths: dict[str, str] = {}
        extra: list[str] = []
        used = set(_PLACEHOLDER.findall(argv if isinstance(argv, str) else " ".join(argv)))
        if input == "file" or output == "file":
            folder = os.path.abspath(tempfile.mkdtemp(prefix="papy-script-"))
        if input == "file":
            assert folder is not None
            paths["in"] = os.path.join(folder, "item" + suffix)
            content = _as_bytes(item, text, "file")
            fd = os.open(paths["in"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb") as fh:
                fh.write(content)
            if "in" not in used:
                extra.append(paths["in"])
        elif input == "arg":
            extra.append(_as_argument(item))
        if output == "file":
            assert folder is not None
            paths["out"] = os.path.join(folder, "output")
            if "out" not in used:
                extra.append(paths["out"])
        run = _build(argv, shell, paths, extra)
        shown = _shown(run)
        stderr_file = tempfile.TemporaryFile()
        if output == "file":
            stdout_file = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            run,
            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
            stdout=stdout_file if stdout_file is not None else subprocess.PIPE,
            stderr=stderr_file,
            shell=shell,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(data, seconds)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            try:  # what it printed before it was killed
                out, _ = proc.communicate(timeout=1.0)
            except subprocess.TimeoutExpired:  # a process out of the group holds the pipe
                out = b""
            proc.wait()
            stderr = _tail_of(stderr_file)
            kept = out[-_KEEP:] if out else b""
            raise ScriptTimeout(
                f"{shown} ran longer than its timeout of {seconds:g} s and was killed "
                "(with its process group)" + _stderr_part(stderr),
                run,
                proc.returncode,
                kept.decode("utf-8", "replace") if text else kept,
                stderr.decode("utf-8", "replace") if text else stderr,
                seconds,
            ) from None
        stderr = _tail_of(stderr_file)
        if stdout_file is not None:
            out = _tail_of(stdout_file)
        failed = proc.returncode != 0 and check
        result: bytes | None = None
        if not failed and output == "file":
            try:
                with open(paths["out"], "rb") as fh:
                    result = fh.read()
            except FileNotFoundError:
                failed = True
        if failed:
            status = _status(proc.returncode)
            if proc.returncode == 0 or not check:
                status += f" without writing its output file {paths['out']}"
            kept = (out or b"")[-_KEEP:]
            raise ScriptError(
                f"{shown} {status}" + _stderr_part(stderr),
                run,
                proc.returncode,
                kept.decode("utf-8", "replace") if text else kept,
                stderr.decode("utf-8", "replace") if text else stderr,
            )
        if result is None:
            result = out or b""
        return _decoded(result, text, "output" if output == "file" else "stdout", shown)
    finally:
        if proc is not None:
            if proc.returncode is None:  # interrupted while it runs
                _kill_group(proc)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            proc.wait()
        for handle in (stderr_file, stdout_file):
            if handle is not None:
                handle.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _stderr_part(stderr: bytes) -> str:
    tail = _tail_text(stderr)
    return f"; stderr:\n{tail}" if tail else " (nothing on stderr)"
