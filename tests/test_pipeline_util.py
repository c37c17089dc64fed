"""Helper worker functions: plumbing, streams, serializers, out-of-band items."""

from __future__ import annotations

import io
import os
import pickle
import threading
import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

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


# -- text streams: the original PaPy's format, exact round trips ----------------------
def write_stream(items, delimiter, handle=None):
    handle = io.StringIO() if handle is None else handle
    for item in items:
        util.dump_stream([item], handle, delimiter)
    return handle


def read_back(items, delimiter):
    handle = write_stream(items, delimiter)
    handle.seek(0)
    return list(util.load_stream(handle, delimiter))


TRICKY = [
    "a",
    "two\nlines",
    "  spaces  \n\tand tabs\t",
    "carriage\rreturn\r",
    "\r",
    "windows\r\nline\r\nends",
    "unicode: \u00e9\u00e8 \u4e2d\u6587 \U0001f600 \u2028 \u0085",
    "END",  # not a delimiter line without a delimiter
    "x" * 100_000,
]
TRICKY_WITH_DELIMITER = [
    *TRICKY[:-2],
    "",
    "\n",
    "\n\n",
    "inner\n\nblank\n\n\nlines",
    "\nleading newline",
    "trailing newline\n",
    "\n\nboth\n\n",
    " END",
    "END ",
    "ENDING\nEN\nxEND",
    "x" * 100_000,
]


@pytest.mark.parametrize(
    "delimiter, items",
    [
        (None, TRICKY),
        ("", TRICKY),
        ("END", TRICKY_WITH_DELIMITER),
        ("//", TRICKY_WITH_DELIMITER),
        (" ", TRICKY_WITH_DELIMITER),
        ("\u00e9", TRICKY_WITH_DELIMITER),
    ],
)
def test_text_stream_round_trip(delimiter, items):
    assert read_back(items, delimiter) == items
    for item in items:  # alone, first and last
        assert read_back([item], delimiter) == [item]


@pytest.mark.parametrize("delimiter", [None, "END"])
def test_text_stream_round_trip_through_a_real_file(tmp_path, delimiter):
    items = ["one", "two\nlines", "\u00e9\u4e2d\U0001f600 \u2028 \x85 \x0c", "a\r\nb\rc"]
    path = tmp_path / "stream.txt"
    with open(path, "w", newline="") as out:
        write_stream(items, delimiter, out)
    with open(path, newline="") as fh:
        assert list(util.load_stream(fh, delimiter)) == items
    plain = [item for item in items if "\r" not in item]
    with open(path, "w") as out:
        assert util.dump_stream([plain[0]], out, delimiter) == str(path)
        write_stream(plain[1:], delimiter, out)
    with open(path) as fh:
        assert list(util.load_stream(fh, delimiter)) == plain
    with open(path, "w", newline="") as out:
        write_stream(["a\r\nb", "c"], delimiter, out)
    with open(path) as fh:  # universal newlines (the default) turn "\r\n" into "\n"
        assert list(util.load_stream(fh, delimiter)) == ["a\nb", "c"]


@given(
    items=st.lists(
        st.text(alphabet=st.sampled_from("ab \t\n\r\x0c\x85\u2028\u00e9\U0001f600END"), max_size=12)
        | st.sampled_from(["END", "\n", "", "x\nEND", "END\n"]),
        max_size=8,
    ),
    delimiter=st.sampled_from([None, "END"]),
)
@settings(max_examples=200, deadline=None, database=None)
def test_text_stream_round_trip_property(tmp_path_factory, items, delimiter):
    accepted = []
    for item in items:
        try:
            util.dump_stream([item], io.StringIO(), delimiter)
        except ValueError:
            continue
        accepted.append(item)
    assume(accepted)
    path = tmp_path_factory.mktemp("stream") / "items.txt"
    with open(path, "w", newline="") as out:
        write_stream(accepted, delimiter, out)
    with open(path, newline="") as fh:
        assert list(util.load_stream(fh, delimiter)) == accepted
    assert read_back(accepted, delimiter) == accepted  # StringIO: no newline translation


def test_text_stream_bytes_on_disk_are_the_original_format():
    assert write_stream(["a", "b\nc"], None).getvalue() == "a\n\nb\nc\n\n"
    assert write_stream(["a", "b\nc"], "").getvalue() == "a\n\nb\nc\n\n"
    assert write_stream(["a", "b\nc"], "END").getvalue() == "a\nEND\nb\nc\nEND\n"
    assert write_stream(["", "x\n"], "END").getvalue() == "\nEND\nx\n\nEND\n"
    assert util.dump_stream(["a"], io.StringIO()) is None  # a StringIO has no name


def test_load_stream_reads_the_original_format_and_hand_written_files():
    def load(text, delimiter=None):
        return list(util.load_stream(io.StringIO(text), delimiter))

    assert load("a\n\nb\nc\n\n") == ["a", "b\nc"]
    assert load("a\nEND\nb\nc\nEND\n", "END") == ["a", "b\nc"]
    # several blank lines separate the same way; blank lines at either end yield nothing
    assert load("\n\n\na\n\n\n\nb\nc\n\n\n\n") == ["a", "b\nc"]
    assert load("\n\n") == [] and load("") == [] and load("", "END") == []
    # a last record without its separator, or without its final newline
    assert load("a\n\nb\nc") == ["a", "b\nc"]
    assert load("a\n\nb\nc\n") == ["a", "b\nc"]
    assert load("a\nEND\nb\nc\nEND", "END") == ["a", "b\nc"]
    assert load("a\nEND\nb\nc", "END") == ["a", "b\nc"]
    assert load("a\nEND\nb\nc\n", "END") == ["a", "b\nc"]
    assert load("a\nEND\n\n", "END") == ["a"]  # only blank lines after the last delimiter
    # a delimiter line with nothing before it yields nothing
    assert load("END\na\nEND\nEND\n", "END") == ["a"]
    # lines cut anywhere by the handle are joined back ("\r" ends a line with newline="")
    pieces = ["a", "b\r", "\nc", "\n", "\n", "d\ne", "nd\nEND", "\nx"]
    assert list(util.load_stream(iter(pieces), None)) == ["ab\r\nc", "d\nend\nEND\nx"]
    assert list(util.load_stream(iter(pieces), "END")) == ["ab\r\nc\n\nd\nend", "x"]


class Exploding:
    """A file-like iterator whose lines after the first ``n`` raise."""

    def __init__(self, lines, n):
        self.lines = iter(lines)
        self.n = n
        self.read = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.read >= self.n:
            raise AssertionError("read too far")
        self.read += 1
        return next(self.lines)


@pytest.mark.parametrize(
    "delimiter, lines",
    [(None, ["a\n", "b\n", "\n", "c\n"]), ("END", ["a\n", "b\n", "END\n", "c\n"])],
)
def test_load_stream_is_lazy(delimiter, lines):
    stream = util.load_stream(Exploding(lines, 3), delimiter)
    assert next(stream) == "a\nb"
    with pytest.raises(AssertionError, match="read too far"):
        next(stream)
    source = Exploding(lines, 0)
    util.load_stream(source, delimiter)  # a generator: nothing read until asked
    assert source.read == 0


@pytest.mark.parametrize(
    "item, delimiter, reason",
    [
        ("", None, "cannot be empty"),
        ("", "", "cannot be empty"),
        ("a\n\nb", None, "contain a blank line"),
        ("\na", None, "start or end with a newline"),
        ("a\n", None, "start or end with a newline"),
        ("\n", None, "pass a delimiter"),
        ("END", "END", "equals the delimiter 'END'"),
        ("a\nEND\nb", "END", "equals the delimiter"),
        ("a\nEND", "END", "equals the delimiter"),
        ("END\n", "END", "equals the delimiter"),
    ],
)
def test_dump_stream_refuses_items_that_would_not_come_back(item, delimiter, reason):
    handle = io.StringIO()
    with pytest.raises(ValueError, match=reason):
        util.dump_stream([item], handle, delimiter)
    assert handle.getvalue() == ""  # nothing written


def test_dump_stream_and_load_stream_check_their_arguments():
    for item, name in [(1, "int"), (b"a", "bytes"), (None, "NoneType"), (["a"], "list")]:
        with pytest.raises(TypeError, match=f"not {name}"):
            util.dump_stream([item], io.StringIO())
    for delimiter in ["a\nb", "\n", "END\r"]:
        with pytest.raises(ValueError, match="one line"):
            util.dump_stream(["a"], io.StringIO(), delimiter)
        with pytest.raises(ValueError, match="one line"):
            list(util.load_stream(io.StringIO("a\n\n"), delimiter))
    with pytest.raises(TypeError, match="delimiter must be a str"):
        util.dump_stream(["a"], io.StringIO(), 1)
    with pytest.raises(TypeError, match="text mode"):
        list(util.load_stream(io.BytesIO(b"a\n\n")))


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
