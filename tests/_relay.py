"""A delaying TCP relay, for measuring papy's remote workers behind network latency.

The kernel of the test machine may lack ``netem``, so latency is made in user
space: :class:`Relay` listens on an address, opens a connection to the target
for every client it accepts, and forwards the bytes of both directions, each
chunk written ``delay`` seconds after it was read (order preserved, no
bandwidth limit beyond Python's own speed). A half-close (EOF) travels with
the same delay; an error on either side (reset, refused) aborts both.

It runs an asyncio loop in a thread of this process (:class:`Relay`), or in a
subprocess of its own (:class:`RelayProcess`, ``python tests/_relay.py``), so
that it does not compete for the GIL with the map being measured. Both have
``address`` (``'host:port'``) and ``close()``, which stops the relay and cuts
every connection it carries.

Not a test module (leading underscore): imported by ``tests/_hosts.py`` and
``tests/test_multihost.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

__all__ = ["Relay", "RelayProcess", "split_address"]

READY = re.compile(r"relaying on (\S+):(\d+)")
CHUNK = 1 << 16


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class Relay:
    """Forward ``listen`` -> ``target`` with ``delay`` seconds each way, in a thread.

    ``listen`` is ``(host, port)``; port 0 picks a free one (``address`` says
    which). ``connections`` counts the clients accepted so far.
    """

    def __init__(
        self,
        target: tuple[str, int] | str,
        delay: float,
        listen: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        self.target = split_address(target) if isinstance(target, str) else tuple(target)
        self.delay = float(delay)
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="papy-test-relay", daemon=True
        )
        self._thread.start()
        try:
            fut = asyncio.run_coroutine_threadsafe(self._start(*listen), self._loop)
            host, port = fut.result(10)
        except BaseException:
            self._stop_loop()
            raise
        self.host, self.port = host, port
        self.address = f"{host}:{port}"

    # -- the loop's side --------------------------------------------------------
    async def _start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._accepted, host, port, reuse_address=True, backlog=128
        )
        sock = self._server.sockets[0]
        h, p = sock.getsockname()[:2]
        return h, p

    async def _accepted(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self._writers.add(cwriter)
        swriter = None
        try:
            try:
                sreader, swriter = await asyncio.open_connection(*self.target)
            except OSError:
                cwriter.transport.abort()
                return
            self._writers.add(swriter)
            both = (cwriter, swriter)
            await asyncio.gather(
                self._direction(creader, swriter, both),
                self._direction(sreader, cwriter, both),
            )
            for w in both:
                w.close()
        except asyncio.CancelledError:
            pass
        finally:
            for w in (cwriter, swriter):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)

    async def _direction(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        """One direction: read chunks, stamp them, write each ``delay`` seconds after."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

        async def read() -> None:
            while True:
                try:
                    data: bytes | None = await reader.read(CHUNK)
                except (OSError, asyncio.IncompleteReadError):
                    data = None  # an error: abort both sides when its turn comes
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    return

        async def write() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    for w in both:
                        w.transport.abort()
                    return
                try:
                    if not data:  # EOF: pass the half-close on
                        if writer.can_write_eof() and not writer.transport.is_closing():
                            writer.write_eof()
                        return
                    writer.write(data)
                    await writer.drain()
                except (OSError, RuntimeError):
                    for w in both:
                        w.transport.abort()
                    return

        reading = asyncio.ensure_future(read())
        try:
            await write()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # -- the caller's side --------------------------------------------------------
    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def close(self) -> None:
        """Stop listening and cut every relayed connection (idempotent)."""
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._stop_loop()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RelayProcess:
    """A :class:`Relay` in a subprocess of its own (``python tests/_relay.py``).

    ``close()`` kills it; the kernel then closes every connection it carried.
    """

    def __init__(
        self,
        target: tuple[str, int] | str,
        delay: float,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        prefix: Sequence[str] = (),
    ) -> None:
        if not isinstance(target, str):
            target = f"{target[0]}:{target[1]}"
        self.target = target
        self.delay = float(delay)
        argv = [
            *prefix,
            sys.executable,
            os.path.abspath(__file__),
            target,
            "--delay",
            repr(self.delay),
            "--listen",
            f"{listen[0]}:{listen[1]}",
        ]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # written once listening
        m = READY.search(line)
        if m is None:
            rest = ""
            with contextlib.suppress(Exception):
                self.close()
                rest = self.proc.stdout.read()
            raise RuntimeError(f"the relay did not start: {line}{rest}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.address = f"{self.host}:{self.port}"

    def close(self) -> None:
        """Kill the relay process and its connections (idempotent)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def __enter__(self) -> RelayProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tests/_relay.py",
        description="Relay TCP connections to TARGET, each chunk delayed by --delay seconds. "
        "Runs until its stdin closes or it is killed.",
    )
    parser.add_argument("target", help="host:port to connect to")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds, each way")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: a free one)")
    args = parser.parse_args(argv)
    relay = Relay(args.target, args.delay, split_address(args.listen))
    print(f"relaying on {relay.address} to {args.target} (delay {args.delay} s)", flush=True)
    try:
        sys.stdin.read()  # until the parent closes it (or dies)
    except KeyboardInterrupt:
        pass
    relay.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
