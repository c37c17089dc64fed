"""Large items never deadlock: the payload matrix.

Every combination of item size {1 kB, 10 kB, 100 kB, 1 MB}, buffer {2, 64,
512, 4096} and chunksize {1, 16} runs to the end with every result correct,
on local process workers and on papy's remote server. Items and results are
as large as each other, so requests and replies fill both directions of a
worker's pipe (or socket) at once: a parent that blocked on a write while its
worker blocked on a reply would hang here.
"""

from __future__ import annotations

import itertools

import pytest

import papy
from test_remote import papy_server

pytestmark = pytest.mark.timeout(120)

SIZES = {"1kB": 1_000, "10kB": 10_000, "100kB": 100_000, "1MB": 1_000_000}
BUFFERS = [2, 64, 512, 4096]
CHUNKS = [1, 16]
#: bytes sent each way per case: enough to fill every pipe many times over
VOLUME = 12_000_000


def rot(b: bytes) -> bytes:
    return b[1:] + b[:1]


def item(i: int, size: int) -> bytes:
    return bytes((i & 255,)) * (size - 1) + bytes(((i * 7) & 255,))


def count_for(size: int) -> int:
    return max(48, min(3000, VOLUME // size))


def check(results: object, n: int, size: int) -> None:
    got = 0
    for i, r in enumerate(results):  # type: ignore[call-overload]
        assert r == rot(item(i, size)), f"wrong result at {i}"
        got += 1
    assert got == n


CASES = list(itertools.product(SIZES, BUFFERS, CHUNKS))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = papy_server(tmp_path_factory.mktemp("payload-server"))
    yield s
    s.kill()


@pytest.mark.parametrize("size, buffer, chunk", CASES, ids=[f"{s}-b{b}-c{c}" for s, b, c in CASES])
def test_process_workers(size: str, buffer: int, chunk: int) -> None:
    nbytes = SIZES[size]
    n = count_for(nbytes)
    gen = (item(i, nbytes) for i in range(n))
    results = papy.imap(
        rot, gen, worker_type="process", worker_num=2, buffer=buffer, chunksize=chunk
    )
    check(results, n, nbytes)


@pytest.mark.parametrize("size, buffer, chunk", CASES, ids=[f"{s}-b{b}-c{c}" for s, b, c in CASES])
def test_remote_workers(server, size: str, buffer: int, chunk: int) -> None:
    nbytes = SIZES[size]
    n = count_for(nbytes) // 2  # loopback TCP through the server: half the volume
    gen = (item(i, nbytes) for i in range(n))
    results = papy.imap(
        rot,
        gen,
        worker_num=0,
        worker_remote=[(server.address, 2)],
        buffer=buffer,
        chunksize=chunk,
    )
    check(results, n, nbytes)
