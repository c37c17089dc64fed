"""Faults stay the size of one item: an item that kills its worker fails alone,
whatever the batch it travelled in (before: its whole batch, up to thousands
of innocent items, and with ``retries`` the poison came back with each retry).
Real process pools and papy's server; both cores."""

from __future__ import annotations

import os
import signal

import pytest

import papy
from papy import IMap

pytestmark = pytest.mark.timeout(120)

POISON = 50_000


def poisoned(x):
    if x == POISON:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def outcomes(it):
    got, lost = 0, []
    while True:
        try:
            next(it)
            got += 1
        except StopIteration:
            return got, lost
        except papy.WorkerLostError as exc:
            lost.append(str(exc))


@pytest.mark.parametrize("retries", [0, 2])
def test_only_the_item_that_kills_its_worker_fails(retries):
    with IMap(poisoned, range(100_000), worker_num=2, retries=retries) as m:
        got, lost = outcomes(iter(m))
        stats = m.stats()
    assert len(lost) == 1 and f"item {POISON} " in lost[0]
    assert got == 100_000 - 1
    assert stats["tasks"][0]["returned"] == 100_000
    assert m.stats()["tasks"][0]["failed"] == 1


@pytest.mark.parametrize("chunksize", [16, 1000])
def test_a_batch_that_loses_its_worker_runs_again_item_by_item(chunksize):
    with IMap(poisoned, range(POISON - 500, POISON + 500), worker_num=2, chunksize=chunksize) as m:
        got, lost = outcomes(iter(m))
    assert (got, len(lost)) == (999, 1)


def test_through_papys_server(tmp_path):
    """The poison kills the connection that ran its batch, then the one that runs it
    alone: with three slots one is left for the rest while those reconnect."""
    from test_remote import papy_server

    server = papy_server(tmp_path)
    try:
        with IMap(
            poisoned,
            range(POISON - 300, POISON + 300),
            worker_num=0,
            worker_remote=[(server.address, 3)],
            chunksize=64,
        ) as m:
            got, lost = outcomes(iter(m))
        assert (got, len(lost)) == (599, 1)
    finally:
        server.kill()
