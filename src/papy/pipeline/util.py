"""Ready-made worker functions, and helpers for streams and large items.

Worker functions follow the pipeline convention ``f(inbox, *args, **kwargs)``:
``inbox`` is a list with one entry per upstream pipe (``inbox[0]`` is the item
of the first, or only, upstream Piper). Use them as ``Worker(ipasser, (1,))``
or ``Worker(sjoiner, kwargs={'join': ' '})``.

Out-of-band items: between two parallel Pipers every item travels through the
pipeline's own process (pickled twice). For large items, ``dump_item`` stores
the item in a temporary file, a FIFO or a one-shot socket on the loopback
interface and returns a small ``ItemRef``; ``load_item`` in the
downstream Piper reads it back and cleans up (the file is removed, the FIFO
unlinked, the socket closed). A FIFO or socket is served by a thread of the
process that called ``dump_item`` for at most ``timeout`` seconds, so the
downstream Piper must read it while that process (worker) is alive.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, NamedTuple

__all__ = [
    "plugger",
    "ipasser",
    "npasser",
    "spasser",
    "sjoiner",
    "njoiner",
    "nzipper",
    "szipper",
    "print_",
    "dump_stream",
    "load_stream",
    "dump_pickle_stream",
    "load_pickle_stream",
    "make_lines",
    "pickle_dumps",
    "pickle_loads",
    "json_dumps",
    "json_loads",
    "ItemRef",
    "dump_item",
    "load_item",
]


# -- plumbing -------------------------------------------------------------------
def plugger(inbox: list[Any]) -> None:
    """A sink: returns None whatever it gets."""
    return None


def ipasser(inbox: list[Any], i: int = 0) -> Any:
    """The item of upstream pipe ``i``."""
    return inbox[i]


def npasser(inbox: list[Any], n: int | None = None) -> list[Any]:
    """The items of the first ``n`` upstream pipes (all with None), as a list."""
    return list(inbox[:n])


def _selected(inbox: list[Any], s: Any) -> list[Any]:
    if s is None:
        return list(inbox)
    wanted = set(s)
    return [item for i, item in enumerate(inbox) if i in wanted]


def spasser(inbox: list[Any], s: Any = None) -> list[Any]:
    """The items of the upstream pipes whose index is in ``s`` (all with None), in inbox order."""
    return _selected(inbox, s)


def sjoiner(inbox: list[Any], s: Any = None, join: str = "") -> str:
    """The items whose index is in ``s`` (all with None), as strings joined by ``join``."""
    return join.join(str(item) for item in _selected(inbox, s))


def njoiner(inbox: list[Any], n: int | None = None, join: str = "") -> str:
    """The first ``n`` items (all with None), as strings joined by ``join``."""
    return join.join(str(item) for item in inbox[:n])


def nzipper(inbox: list[Any], n: int | None = None) -> list[tuple[Any, ...]]:
    """Zip the first ``n`` items (all with None; each must be iterable): a list of tuples."""
    return list(zip(*inbox[:n]))


def szipper(inbox: list[Any], s: Any = None) -> list[tuple[Any, ...]]:
    """Zip the items whose index is in ``s`` (all with None): a list of tuples."""
    return list(zip(*_selected(inbox, s)))


def print_(inbox: list[Any]) -> Any:
    """Print ``inbox[0]`` and pass it on."""
    print(inbox[0], flush=True)
    return inbox[0]


# -- streams ------------------------------------------------------------------
def _check_delimiter(delimiter: str | None) -> str:
    """The delimiter as the text of its line ('' for none)."""
    if delimiter is None:
        return ""
    if not isinstance(delimiter, str):
        raise TypeError(f"delimiter must be a str or None, not {type(delimiter).__name__}")
    if "\n" in delimiter or "\r" in delimiter:
        raise ValueError(
            f"delimiter must be the text of one line, without '\\n' or '\\r': {delimiter!r}"
        )
    return delimiter


def dump_stream(inbox: list[Any], handle: IO[str], delimiter: str | None = None) -> Any:
    """Write the str ``inbox[0]`` to the text ``handle`` as one record of a stream
    that ``load_stream`` reads back; return ``handle.name`` (None if it has none).

    The format is the original PaPy's: the item, ``"\\n"``, then the delimiter
    line (an empty line without a delimiter). The items ``"a"`` and ``"b\\nc"``::

        delimiter=None   ->  "a\\n\\nb\\nc\\n\\n"
        delimiter="END"  ->  "a\\nEND\\nb\\nc\\nEND\\n"

    ``delimiter=""`` means the same as None. Every item that is accepted comes
    back exactly from ``load_stream`` with the same delimiter; an item that
    could not is refused with a ValueError: without a delimiter an item cannot
    be empty, contain a blank line or start or end with a newline (records are
    separated by a blank line); with one, no line of an item can equal the
    delimiter. A line is what ends at ``"\\n"``: for items with ``"\\r"``, open
    the file with ``newline=""`` for writing and reading (universal-newline
    mode, the default for reading, turns ``"\\r\\n"`` and ``"\\r"`` into
    ``"\\n"``). For linear Pipers only (a file handle cannot go to another
    process).
    """
    item = inbox[0]
    line = _check_delimiter(delimiter)
    if not isinstance(item, str):
        raise TypeError(
            f"dump_stream writes str items, not {type(item).__name__} "
            "(convert the item first, e.g. with json_dumps or str)"
        )
    if not line:
        if not item or "\n\n" in item or item.startswith("\n") or item.endswith("\n"):
            raise ValueError(
                "with delimiter=None items are separated by a blank line, so an item cannot be "
                "empty, contain a blank line, or start or end with a newline; pass a delimiter "
                f"(e.g. delimiter='END'): {_preview(item)}"
            )
    elif line in item.split("\n"):
        raise ValueError(
            f"a line of the item equals the delimiter {line!r}, so the item would be cut "
            f"there; choose a delimiter that no item contains as a line: {_preview(item)}"
        )
    handle.write(f"{item}\n{line}\n")
    return getattr(handle, "name", None)


def _preview(item: str, limit: int = 60) -> str:
    return (
        f"item {item!r}"
        if len(item) <= limit
        else f"item {item[:limit]!r}... ({len(item)} characters)"
    )


def _stream_lines(handle: Iterable[str]) -> Iterator[str]:
    """The lines of ``handle`` split at ``"\\n"`` only, without it; the text after
    the last ``"\\n"`` (if any) comes last. Reads one piece of ``handle`` at a time."""
    partial: list[str] = []
    for piece in handle:
        if not isinstance(piece, str):
            raise TypeError(
                f"load_stream reads a text handle, got a {type(piece).__name__} line "
                "(open the file in text mode)"
            )
        if "\n" not in piece:
            partial.append(piece)  # a line cut at "\r" (newline="") or an unfinished one
            continue
        lines = piece.split("\n")
        if partial:
            partial.append(lines[0])
            lines[0] = "".join(partial)
            partial = []
        rest = lines.pop()
        yield from lines
        if rest:
            partial.append(rest)
    if partial:
        yield "".join(partial)


def load_stream(handle: Iterable[str], delimiter: str | None = None) -> Iterator[str]:
    """Yield the items of a stream written by ``dump_stream`` (the original
    PaPy's format) with the same ``delimiter``: a generator, the input of a pipeline.

    The stream is read one line at a time and only the current record is kept,
    so files of any size can be read. Items written by ``dump_stream`` come
    back exactly (with ``"\\r"`` when both sides open the file with
    ``newline=""``). For files written by hand (or cut short):

    * without a delimiter, records are separated by one or more blank lines
      (several in a row separate the same way; blank lines at the start or
      end of the file yield nothing);
    * with a delimiter, a delimiter line with no line before it (since the
      previous delimiter line or the start) yields nothing;
    * a last record without its blank or delimiter line, or whose final line
      has no ``"\\n"``, is still yielded (unless it has only blank lines).

    ``handle`` is a text file object or any iterable of str pieces whose
    concatenation is the text; lines end at ``"\\n"`` only.
    """
    line_text = _check_delimiter(delimiter)
    record: list[str] = []
    if not line_text:
        for line in _stream_lines(handle):
            if line:
                record.append(line)
            elif record:
                yield "\n".join(record)
                record = []
        if record:
            yield "\n".join(record)
        return
    for line in _stream_lines(handle):
        if line == line_text:
            if record:
                yield "\n".join(record)
                record = []
        else:
            record.append(line)
    if any(record):  # cut short before its delimiter line
        yield "\n".join(record)


def dump_pickle_stream(inbox: list[Any], handle: IO[bytes]) -> None:
    """Append ``inbox[0]`` to the binary ``handle`` as one pickle record."""
    pickle.dump(inbox[0], handle, pickle.HIGHEST_PROTOCOL)


def load_pickle_stream(handle: IO[bytes]) -> Iterator[Any]:
    """Yield the pickle records of a binary ``handle`` until its end."""
    while True:
        try:
            yield pickle.load(handle)
        except EOFError:
            return


def make_lines(handle: IO[str], follow: bool = False, wait: float = 0.1) -> Iterator[str]:
    """Yield the lines of ``handle`` without their line ends; with ``follow``,
    wait for more lines at the end (like ``tail -f``; polls every ``wait`` s)
    instead of ending."""
    pending = ""
    while True:
        line = handle.readline()
        if not line:
            if not follow:
                if pending:
                    yield pending
                return
            time.sleep(wait)
            continue
        if not line.endswith("\n") and follow:
            pending += line  # a line still being written
            continue
        line = pending + line
        pending = ""
        yield line.rstrip("\r\n")


# -- serializers ----------------------------------------------------------------
def pickle_dumps(inbox: list[Any], protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    """``inbox[0]`` pickled."""
    return pickle.dumps(inbox[0], protocol)


def pickle_loads(inbox: list[Any]) -> Any:
    """``inbox[0]`` unpickled (only from a trusted source)."""
    return pickle.loads(inbox[0])


def json_dumps(inbox: list[Any], **kwargs: Any) -> str:
    """``inbox[0]`` as JSON text (``kwargs`` go to ``json.dumps``)."""
    return json.dumps(inbox[0], **kwargs)


def json_loads(inbox: list[Any], **kwargs: Any) -> Any:
    """``inbox[0]`` parsed from JSON text."""
    return json.loads(inbox[0], **kwargs)


# -- out-of-band items ----------------------------------------------------------------
class ItemRef(NamedTuple):
    """What ``dump_item`` returns: where the item waits and how it is encoded."""

    transport: str  # 'file', 'fifo' or 'socket'
    address: Any  # a path, or (host, port)
    codec: str  # 'bytes', 'str' or 'pickle'
    secret: str = ""  # socket: the reader sends it first


TRANSPORTS = ("file", "fifo", "socket")
_SECRET_LEN = 32


def _encode(item: Any) -> tuple[bytes, str]:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item), "bytes"
    if isinstance(item, str):
        return item.encode("utf-8"), "str"
    return pickle.dumps(item, pickle.HIGHEST_PROTOCOL), "pickle"


def _decode(data: bytes, codec: str) -> Any:
    if codec == "bytes":
        return data
    if codec == "str":
        return data.decode("utf-8")
    return pickle.loads(data)


def _remove_fifo(path: str) -> None:
    for action in (os.unlink, os.rmdir):
        try:
            action(path if action is os.unlink else os.path.dirname(path))
        except OSError:
            pass


def _serve_fifo(path: str, data: bytes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    fd = -1
    try:
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:  # ENXIO: no reader yet
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError:
        pass
    finally:
        if fd >= 0:
            os.close(fd)
        _remove_fifo(path)


def _serve_socket(server: socket.socket, data: bytes, secret: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            server.settimeout(remaining)
            try:
                conn, _ = server.accept()
            except OSError:  # timed out or closed
                return
            with conn:
                conn.settimeout(max(1.0, min(remaining, 30.0)))
                try:
                    got = b""
                    while len(got) < _SECRET_LEN:
                        part = conn.recv(_SECRET_LEN - len(got))
                        if not part:
                            break
                        got += part
                    if got != secret.encode("ascii"):
                        continue  # not our reader
                    conn.sendall(data)
                    conn.shutdown(socket.SHUT_WR)
                    return
                except OSError:
                    continue
    finally:
        server.close()


def dump_item(
    inbox: list[Any],
    type: str = "file",  # noqa: A002 - the original's name
    prefix: str | None = None,
    suffix: str | None = None,
    dir: str | None = None,  # noqa: A002
    timeout: float = 320,
) -> ItemRef:
    """Store ``inbox[0]`` out of band and return an ``ItemRef`` to it.

    ``type``: ``'file'`` (a private temporary file, removed by ``load_item``),
    ``'fifo'`` (a named pipe in a private temporary directory, written by a
    thread of this process when the reader opens it) or ``'socket'`` (a
    one-shot TCP server on 127.0.0.1 that sends the item to the first client
    that presents the secret of the ItemRef). A FIFO or socket that nobody
    reads within ``timeout`` seconds is removed. Bytes and str travel as they
    are, anything else pickled.
    """
    if type not in TRANSPORTS:
        raise ValueError(f"type must be one of {TRANSPORTS}, got {type!r}")
    data, codec = _encode(inbox[0])
    if type == "file":
        fd, path = tempfile.mkstemp(suffix=suffix, prefix=prefix or "papy-item-", dir=dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except BaseException:
            os.unlink(path)
            raise
        return ItemRef("file", path, codec)
    if type == "fifo":
        folder = tempfile.mkdtemp(prefix=prefix or "papy-fifo-", dir=dir)
        path = os.path.join(folder, "item" + (suffix or ""))
        os.mkfifo(path, 0o600)
        threading.Thread(
            target=_serve_fifo, args=(path, data, timeout), name="papy-dump-fifo", daemon=True
        ).start()
        return ItemRef("fifo", path, codec)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    secret = secrets.token_hex(_SECRET_LEN // 2)
    threading.Thread(
        target=_serve_socket,
        args=(server, data, secret, timeout),
        name="papy-dump-socket",
        daemon=True,
    ).start()
    return ItemRef("socket", server.getsockname()[:2], codec, secret)


def load_item(
    inbox: list[Any], type: str | None = None, remove: bool = True, timeout: float = 320
) -> Any:  # noqa: A002
    """Read back the item of the ``ItemRef`` ``inbox[0]``.

    ``type=None`` returns the object that was dumped; ``'bytes'`` the raw
    bytes; ``'mmap'`` (file only) a read-only ``mmap`` of the file. A file is
    removed afterwards if ``remove`` (a FIFO or socket is always cleaned up).
    """
    ref = inbox[0]
    if not isinstance(ref, ItemRef):
        ref = ItemRef(*ref)
    if type not in (None, "bytes", "mmap"):
        raise ValueError(f"type must be None, 'bytes' or 'mmap', got {type!r}")
    if type == "mmap" and ref.transport != "file":
        raise ValueError("type='mmap' needs a 'file' item")
    if ref.transport == "file":
        try:
            with open(ref.address, "rb") as fh:
                if type == "mmap":
                    if os.fstat(fh.fileno()).st_size == 0:
                        return b""
                    return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                data = fh.read()
        finally:
            if remove:
                try:
                    os.unlink(ref.address)
                except OSError:
                    pass
    elif ref.transport == "fifo":
        with open(ref.address, "rb") as fh:
            data = fh.read()
        _remove_fifo(ref.address)
    elif ref.transport == "socket":
        with socket.create_connection(tuple(ref.address), timeout=timeout) as conn:
            conn.sendall(ref.secret.encode("ascii"))
            parts = []
            while True:
                part = conn.recv(1 << 16)
                if not part:
                    break
                parts.append(part)
        data = b"".join(parts)
    else:
        raise ValueError(f"unknown transport {ref.transport!r}")
    if type == "bytes":
        return data
    return _decode(data, ref.codec)
