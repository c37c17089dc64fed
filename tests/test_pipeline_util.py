"""Helper worker functions: plumbing, streams, serializers, out-of-band items."""

from __future__ import annotations

import io
import os
import pickle
import threading
import time

import pytest

from papy import IMap
from papy.pipeline import Piper, Plumber, Worker, util

pytestmark = pytest.mark.timeout(60)


def test_plumbing_functions():
    inbox = ["ab", "cd", "ef"]
    assert util.plugger(inbox) is None
    assert util.ipasser(inbox) == "ab" and util.ipasser(inbox, 2) == "ef"
    assert util.npasser(inbox) == inbox and util.npasser(inbox, 2) == ["ab", "cd"]
    assert util.spasser(inbox) == inbox and util.spasser(inbox, [2, 0]) == ["ab", "ef"]
    assert util.sjoiner(inbox, [2, 0], join="-") == "ab-ef" and util.sjoiner(inbox) == "abcdef"
    assert util.njoiner(inbox, 2, " ") == "ab cd" and util.njoiner(inbox) == "abcdef"
    assert util.nzipper(inbox, 2) == [("a", "c"), ("b", "d")]  # every tuple, not just the first
    assert util.szipper(inbox) == [("a", "c", "e"), ("b", "d", "f")]  # s=None zips all
    assert util.szipper(inbox, [0, 2]) == [("a", "e"), ("b", "f")]


def test_print_passes_the_item_on(capsys):
    assert util.print_(["hi"]) == "hi"
    assert capsys.readouterr().out == "hi\n"


def test_workers_with_constant_arguments():
    assert Worker(util.sjoiner, ((1, 0),), {"join": "+"})(["a", "b"]) == "a+b"
    assert Worker(util.ipasser, (1,))(["a", "b"]) == "b"


@pytest.mark.parametrize("delimiter", [None, "//"])
def test_text_stream_round_trip(delimiter):
    items = (
        ["one", "two", "three"] if delimiter is None else ["one\nline", "two", "three\nmore\nlines"]
    )
    handle = io.StringIO()
    for item in items:
        util.dump_stream([item], handle, delimiter)
    handle.seek(0)
    assert list(util.load_stream(handle, delimiter)) == items


def test_pickle_stream_and_serializers():
    handle = io.BytesIO()
    items = [1, {"a": (1, 2)}, None, "x"]
    for item in items:
        util.dump_pickle_stream([item], handle)
    handle.seek(0)
    assert list(util.load_pickle_stream(handle)) == items
    assert util.pickle_loads([util.pickle_dumps([items])]) == items
    assert util.json_loads([util.json_dumps([{"a": [1, 2]}])]) == {"a": [1, 2]}


def test_make_lines(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("a\nb\nc")
    with open(path) as fh:
        assert list(util.make_lines(fh)) == ["a", "b", "c"]
    with open(path, "w") as out, open(path) as fh:
        out.write("1\n")
        out.flush()
        lines = util.make_lines(fh, follow=True, wait=0.01)
        assert next(lines) == "1"

        def later():
            time.sleep(0.05)
            out.write("2\n")
            out.flush()

        threading.Thread(target=later).start()
        assert next(lines) == "2"  # waited for it, like tail -f


ITEMS = [b"\x00" * 300_000, "h\u00e9llo", {"key": list(range(5))}]


@pytest.mark.parametrize("transport", util.TRANSPORTS)
def test_dump_and_load_item_round_trip_and_clean_up(transport, tmp_path):
    for item in ITEMS:
        ref = util.dump_item(
            [item], transport, dir=str(tmp_path) if transport != "socket" else None
        )
        assert isinstance(ref, util.ItemRef) and len(pickle.dumps(ref)) < 300
        assert util.load_item([ref]) == item
        if transport != "socket":
            time.sleep(0.02)  # the fifo writer thread removes its folder after the write
            assert os.listdir(tmp_path) == []


def test_load_item_as_mmap_and_bytes(tmp_path):
    ref = util.dump_item([b"abc"], "file", dir=str(tmp_path))
    m = util.load_item([ref], type="mmap")
    assert m[:] == b"abc" and not os.path.exists(ref.address)
    ref = util.dump_item(["abc"], "file", dir=str(tmp_path))
    assert util.load_item([ref], type="bytes", remove=False) == b"abc" and os.path.exists(
        ref.address
    )
    with pytest.raises(ValueError):
        util.load_item([util.dump_item(["x"], "socket")], type="mmap")
    with pytest.raises(ValueError):
        util.dump_item(["x"], "udp")


def test_an_unread_fifo_or_socket_is_removed_after_the_timeout(tmp_path):
    ref = util.dump_item(["x"], "fifo", dir=str(tmp_path), timeout=0.05)
    sref = util.dump_item(["x"], "socket", timeout=0.05)
    time.sleep(0.3)
    assert os.listdir(tmp_path) == []
    with pytest.raises(OSError):
        util.load_item([sref], timeout=1)
    assert ref.transport == "fifo"


def test_a_socket_item_needs_its_secret():
    import socket

    ref = util.dump_item([b"secret data"], "socket", timeout=5)
    with socket.create_connection(ref.address, timeout=5) as conn:
        conn.sendall(b"0" * 32)
        assert conn.recv(100) == b""  # refused: wrong secret
    assert util.load_item([ref]) == b"secret data"


def make_big(inbox):
    return bytes([inbox[0] % 256]) * 100_000 + str(os.getpid()).encode()


def size_and_first(inbox):
    data = inbox[0]  # in a composition, the previous result comes as a 1-tuple
    return (len(data) > 100_000, data[:1])


@pytest.mark.parametrize("transport", util.TRANSPORTS)
@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_items_passed_out_of_band_between_parallel_pipers(transport, worker_type, tmp_path):
    up_map = IMap(worker_type=worker_type, worker_num=2)
    down_map = IMap(worker_type=worker_type, worker_num=2)
    kwargs = {"dir": str(tmp_path)} if transport != "socket" else {}
    up = Piper(
        Worker((make_big, util.dump_item), ((), (transport,)), ({}, kwargs)),
        parallel=up_map,
        name="up",
    )
    down = Piper(
        Worker((util.load_item, size_and_first)), parallel=down_map, name="down", track=True
    )
    pl = Plumber(pipes=[(up, down)])
    pl.start([range(6)])
    pl.run()
    assert pl.wait(30)
    pl.stop()
    assert [down.tracked[i] for i in range(6)] == [(True, bytes([i])) for i in range(6)]
    time.sleep(0.05)
    assert os.listdir(tmp_path) == []
