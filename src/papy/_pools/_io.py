"""Non-blocking framed messages between a map and its workers, and the waker.

Every message is one frame: an 8-byte little-endian length, then that many
bytes (a pickle). The parent side never blocks on a worker: a :class:`Channel`
queues what it sends and writes only what the pipe or socket takes now
(:meth:`Channel.flush`), and reads whatever has arrived (:meth:`Channel.receive`).
The thread that drives a map therefore cannot deadlock on full pipes: while a
request waits to be written it keeps reading replies. Workers block, which is
fine: each has one thread and one conversation.

A :class:`Waker` is the self-pipe that interrupts the driving thread's wait
(``select.poll``) when another thread has something for it.
"""

from __future__ import annotations

import os
import select
import struct
import threading
from time import monotonic

TYPE_CHECKING = False  # typing is not imported at run time (import time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "HEADER",
    "Channel",
    "PipeChannel",
    "SocketChannel",
    "Waker",
    "read_frame",
    "write_frame",
    "raise_pipe_size",
]

HEADER = struct.Struct("<Q")
_HEADER_SIZE = HEADER.size
#: bytes read at once into a channel's reusable buffer; larger frames get their own
READ_CHUNK = 256 * 1024
#: frames up to this size are copied next to their header, larger ones are sent as they are
_SMALL = 16 * 1024
#: most buffers handed to one writev/sendmsg call
_MAX_IOV = 64

try:
    _F_SETPIPE_SZ: int | None = __import__("fcntl").F_SETPIPE_SZ
except (ImportError, AttributeError):  # not Linux
    _F_SETPIPE_SZ = None


def raise_pipe_size(fd: int, size: int = 1 << 20) -> None:
    """Ask Linux for a larger pipe buffer (fewer wake-ups for big items); best effort."""
    if _F_SETPIPE_SZ is None:
        return
    import fcntl

    for want in (size, 256 * 1024):
        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, want)
            return
        except OSError:
            continue


class Channel:
    """One worker connection seen from the parent: framed, non-blocking.

    ``send`` queues a frame; ``flush`` writes what the connection takes now;
    ``receive`` calls ``handle(frame)`` for every complete frame that has
    arrived (``frame`` is a memoryview valid only during the call). A closed
    connection raises ``EOFError``.
    """

    __slots__ = ("_out", "_out_bytes", "_buf", "_view", "_start", "_end", "_big", "_big_pos")

    def __init__(self) -> None:
        self._out: list[Any] = []  # memoryviews waiting to be written, in order
        self._out_bytes = 0
        self._buf = bytearray(READ_CHUNK)
        self._view = memoryview(self._buf)
        self._start = 0  # unparsed bytes are _buf[_start:_end]
        self._end = 0
        self._big: bytearray | None = None  # a frame larger than the buffer, being filled
        self._big_pos = 0

    # -- subclass hooks: one system call each, never blocking ---------------------
    def _read_into(self, view: memoryview) -> int:
        """Read into ``view``; 0 if nothing is there now; ``EOFError`` at the end."""
        raise NotImplementedError

    def _write(self, views: list[Any]) -> int:
        """Write from ``views`` in order; return how many bytes were taken (0: full)."""
        raise NotImplementedError

    # -- sending ----------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue ``data`` as one frame (written by ``flush``)."""
        size = len(data)
        if size <= _SMALL:
            self._out.append(memoryview(HEADER.pack(size) + data))
        else:
            self._out.append(memoryview(HEADER.pack(size)))
            self._out.append(memoryview(data))
        self._out_bytes += size + _HEADER_SIZE

    @property
    def unsent(self) -> int:
        """Bytes queued and not yet written."""
        return self._out_bytes

    def flush(self) -> bool:
        """Write what the connection takes now; True when nothing is left to write."""
        out = self._out
        while out:
            n = self._write(out[:_MAX_IOV])
            if n <= 0:
                return False
            self._out_bytes -= n
            _consume(out, n)
        return True

    # -- receiving --------------------------------------------------------------
    def receive(self, handle: Callable[[memoryview], None]) -> int:
        """Read what has arrived; call ``handle`` on each complete frame; return how many."""
        frames = 0
        while True:
            big = self._big
            if big is not None:  # a large frame, read straight into its own buffer
                view = memoryview(big)
                n = self._read_into(view[self._big_pos :])
                if n == 0:
                    return frames
                self._big_pos += n
                if self._big_pos < len(big):
                    continue
                self._big = None
                frames += 1
                handle(view)
                continue
            if self._end == len(self._buf):  # full of a partial frame: move it to the front
                self._compact()
            n = self._read_into(self._view[self._end :])
            if n == 0:
                return frames
            self._end += n
            frames += self._parse(handle)

    def _parse(self, handle: Callable[[memoryview], None]) -> int:
        """Hand out the complete frames in the buffer; set up a large one."""
        buf, view = self._buf, self._view
        frames = 0
        while True:
            start, end = self._start, self._end
            if end - start < _HEADER_SIZE:
                break
            (size,) = HEADER.unpack_from(buf, start)
            body = start + _HEADER_SIZE
            if end - body >= size:
                self._start = body + size  # consumed before the call: exceptions lose nothing else
                frames += 1
                handle(view[body : body + size])
                continue
            if size > len(buf) - _HEADER_SIZE:  # will not fit: give it its own buffer
                big = bytearray(size)
                got = end - body
                big[:got] = view[body:end]
                self._big, self._big_pos = big, got
                self._start = self._end = 0
            break
        if self._start == self._end:
            self._start = self._end = 0
        return frames

    def _compact(self) -> None:
        start, end = self._start, self._end
        if start:
            self._buf[: end - start] = self._view[start:end]
            self._start, self._end = 0, end - start


class PipeChannel(Channel):
    """A local worker: requests on one pipe, replies on another (both non-blocking here)."""

    __slots__ = ("rfd", "wfd")

    def __init__(self, rfd: int, wfd: int) -> None:
        super().__init__()
        self.rfd = rfd
        self.wfd = wfd
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)

    def _read_into(self, view: memoryview) -> int:
        try:
            n = os.readv(self.rfd, [view])
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise EOFError(str(exc)) from exc
        if n == 0:
            raise EOFError("the worker closed its end")
        return n

    def _write(self, views: list[Any]) -> int:
        try:
            return os.writev(self.wfd, views)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:  # EPIPE: the worker is gone; its EOF tells the rest
            raise EOFError(str(exc)) from exc


class SocketChannel(Channel):
    """A remote worker: one TCP (or TLS) socket in non-blocking mode."""

    __slots__ = ("sock", "rfd", "wfd", "_tls", "heard")

    def __init__(self, sock: Any) -> None:
        super().__init__()
        self.sock = sock
        sock.setblocking(False)
        self.rfd = self.wfd = sock.fileno()
        self._tls = hasattr(sock, "pending")
        #: when bytes last arrived (monotonic): a reply, a part of one, or a heartbeat
        self.heard = monotonic()

    @property
    def buffered(self) -> bool:
        """TLS: decrypted bytes wait inside the SSL object (poll cannot see them)."""
        return self._tls and self.sock.pending() > 0

    def _read_into(self, view: memoryview) -> int:
        import ssl

        try:
            n = self.sock.recv_into(view)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0
        except OSError as exc:
            raise EOFError(str(exc)) from exc
        if n == 0:
            raise EOFError("the server closed the connection")
        self.heard = monotonic()
        return n  # type: ignore[no-any-return]

    def _write(self, views: list[Any]) -> int:
        import ssl

        try:
            if self._tls:
                return self.sock.send(views[0])  # type: ignore[no-any-return]
            return self.sock.sendmsg(views)  # type: ignore[no-any-return]
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0
        except OSError as exc:
            raise EOFError(str(exc)) from exc


class Waker:
    """A self-pipe: ``wake()`` (any thread) interrupts the driving thread's poll.

    The driving thread ``arm()``s it before it checks for work, polls
    ``fileno()`` with its worker connections, then ``disarm()``s it. ``wake``
    writes only while armed, and at most one byte until the next ``disarm``.
    A ``wake`` marks itself and writes its byte in one step (under the lock),
    so a ``disarm`` that sees the mark drains the byte: a byte written after a
    ``disarm`` cleared the mark would stay in the pipe and turn every later
    wait into a busy loop.
    """

    __slots__ = ("_r", "_w", "armed", "_woken", "_lock")

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self.armed = False
        self._woken = False
        self._lock = threading.Lock()  # guards the fds against close() while writing

    def fileno(self) -> int:
        return self._r

    def arm(self) -> None:
        self.armed = True

    def wake(self) -> None:
        if self.armed and not self._woken:  # (unlocked: cheap when nobody waits)
            with self._lock:
                if not self.armed or self._woken or self._w < 0:
                    return
                self._woken = True
                try:
                    os.write(self._w, b"\0")
                except OSError:  # full: a byte is there anyway
                    pass

    def disarm(self) -> None:
        self.armed = False
        if self._woken:
            with self._lock:
                self._woken = False
                try:
                    while os.read(self._r, 512):
                        pass
                except OSError:
                    pass

    def wait(self, timeout: float) -> None:
        """For pools with nothing else to poll: sleep until woken or ``timeout``."""
        if timeout > 0:
            try:
                select.select([self._r], [], [], timeout)
            except (OSError, ValueError):  # closed meanwhile
                pass

    def close(self) -> None:
        """Close the pipe; later ``wake()`` calls do nothing."""
        with self._lock:
            self.armed = False
            for fd in (self._r, self._w):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._r = self._w = -1

    def __del__(self) -> None:
        self.close()


# -- the worker's side: blocking ------------------------------------------------
def _read_exact_fd(fd: int, view: memoryview) -> None:
    pos, size = 0, len(view)
    while pos < size:
        n = os.readv(fd, [view[pos:]])
        if n == 0:
            raise EOFError
        pos += n


def read_frame(fd: int) -> bytearray:
    """Block until one whole frame has been read from ``fd``; ``EOFError`` at the end."""
    header = bytearray(_HEADER_SIZE)
    _read_exact_fd(fd, memoryview(header))
    (size,) = HEADER.unpack(header)
    body = bytearray(size)
    if size:
        _read_exact_fd(fd, memoryview(body))
    return body


def write_frame(fd: int, data: bytes) -> None:
    """Block until ``data`` has been written to ``fd`` as one frame."""
    pending = [memoryview(HEADER.pack(len(data))), memoryview(data)]
    while pending:
        _consume(pending, os.writev(fd, pending))


def _consume(views: list[Any], n: int) -> None:
    """Drop the first ``n`` bytes written from the buffers ``views``, in place."""
    while n:
        head = views[0]
        if n >= len(head):
            n -= len(head)
            del views[0]
        else:
            views[0] = head[n:]
            n = 0
