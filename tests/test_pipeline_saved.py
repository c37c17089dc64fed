"""Plumber.save / Plumber.load: a saved pipeline, loaded here or in a new process, runs the same."""

from __future__ import annotations

import concurrent.futures
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

from papy import IMap, NuMap
from papy.pipeline import Piper, Plumber, PlumberError, Worker
from papy.pipeline.util import ipasser, sjoiner

pytestmark = pytest.mark.timeout(120)


def l33t(inbox):
    return inbox[0].replace("e", "3").replace("o", "0")


def pair(inbox):
    return (inbox[0], inbox[0].upper())


def merge_two(inbox):
    return "/".join(row[0] for row in inbox)  # consume=2: two inboxes of one entry


def build(worker_type="thread"):
    shared = NuMap(worker_type=worker_type, worker_num=2, stride=2, name="shared")
    source = Piper(ipasser, name="source")
    leet = Piper(l33t, parallel=shared, name="leet", branch=2)
    shout = Piper(
        Worker(lambda inbox: inbox[0].upper() + "!"), parallel=shared, name="shout", branch=1
    )
    split = Piper(pair, name="split", produce=2)
    merge = Piper(merge_two, name="merge", consume=2)
    join = Piper(Worker(sjoiner, kwargs={"join": "+"}), name="join", track=True)
    plumber = Plumber(
        pipers=[source, leet],
        xtras=[{"color": "red"}, None],
        pipes=[(source, leet, join), (source, shout, split, merge, join)],
    )
    return plumber


def run(plumber, data):
    plumber.start([data])
    plumber.run()
    assert plumber.wait(30)
    out = plumber.resolve("join").tracked
    plumber.stop()
    return [out[i] for i in range(len(out))]


WORDS = ["hello", "world", "hi", "folks"]


def shape(plumber):
    """Everything the definition says, by name."""
    return {
        "pipers": [
            (p.name, p.consume, p.produce, p.spawn, p.timeout, p.track, p.debug, p.repeat)
            for p in plumber.pipers
        ],
        "pipes": [(u.name, d.name) for u, d in plumber.pipes],
        "branches": {p.name: plumber[p].branch for p in plumber},
        "xtras": {p.name: x for p, x in plumber.xtras.items()},
        "postorder": [p.name for p in plumber.postorder()],
        "inbox": {p.name: [u.name for u in plumber.upstream(p)] for p in plumber},
        "imaps": {
            p.name: None
            if p.imap is None
            else (type(p.imap).__name__, p.imap.name, p.imap.worker_num, p.imap.stride)
            for p in plumber
        },
    }


def test_save_and_load_in_this_process(tmp_path):
    original = build()
    path = tmp_path / "pipeline.papy"
    original.save(path)
    loaded = Plumber.load(path)
    assert isinstance(loaded, Plumber) and loaded is not original
    assert shape(loaded) == shape(original)
    leet, shout = loaded.resolve("leet"), loaded.resolve("shout")
    assert leet.imap is shout.imap and isinstance(leet.imap, NuMap)  # still shared
    assert leet.imap is not original.resolve("leet").imap
    expected = run(original, WORDS)
    assert expected == [
        "h3ll0+HELLO!/HELLO!",
        "w0rld+WORLD!/WORLD!",
        "hi+HI!/HI!",
        "f0lks+FOLKS!/FOLKS!",
    ]
    assert run(loaded, WORDS) == expected
    assert not list(tmp_path.glob("*.partial-*"))


def test_load_into_a_plumber_as_the_original_did(tmp_path):
    path = tmp_path / "p.papy"
    build().save(str(path))
    plumber = Plumber()
    assert plumber.load(str(path)) is plumber
    assert [p.name for p in plumber.postorder()][0] == "source"
    assert run(plumber, WORDS) == run(build(), WORDS)
    plumber.start([WORDS])
    with pytest.raises(PlumberError, match="stop"):
        plumber.load(str(path))
    plumber.stop()


SAVE = """
import sys
from papy import NuMap
from papy.pipeline import Piper, Plumber, Worker

def double(inbox):
    return inbox[0] * 2

def label(inbox, prefix):
    return f"{prefix}{inbox[0]}"

offset = 100

if __name__ == "__main__":
    imap = NuMap(worker_type=sys.argv[2], worker_num=2, start_method=sys.argv[3] or None)
    a = Piper(double, parallel=imap, name="double")
    b = Piper(
        Worker((lambda inbox: inbox[0] + offset, label), ((), ("n=",))),
        parallel=imap, name="label", track=True,
    )
    plumber = Plumber(pipes=[(a, b)])
    plumber.save(sys.argv[1])
    plumber.start([range(6)])
    plumber.run()
    plumber.wait()
    print([b.tracked[i] for i in range(6)])
    plumber.stop()
"""

LOAD = """
import sys
from papy.pipeline import Plumber

if __name__ == "__main__":
    plumber = Plumber.load(sys.argv[1])
    plumber.start([range(6)])
    plumber.run()
    plumber.wait()
    out = plumber.resolve("label").tracked
    print([out[i] for i in range(6)])
    plumber.stop()
"""


@pytest.mark.parametrize(
    ("worker_type", "start_method"),
    [("thread", ""), ("process", "fork"), ("process", "spawn"), ("process", "forkserver")],
)
def test_a_pipeline_saved_by_a_script_runs_the_same_in_a_new_process(
    tmp_path, worker_type, start_method, sched_implementation
):
    env = dict(os.environ)
    if sched_implementation.is_pure_python:
        env["PAPY_NO_EXTENSIONS"] = "1"
    path = str(tmp_path / "saved.papy")
    (tmp_path / "save_it.py").write_text(textwrap.dedent(SAVE))
    (tmp_path / "load_it.py").write_text(textwrap.dedent(LOAD))
    saved = subprocess.run(
        [sys.executable, "save_it.py", path, worker_type, start_method],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert saved.returncode == 0, saved.stderr
    os.remove(tmp_path / "save_it.py")  # the loading process cannot import it
    loaded = subprocess.run(
        [sys.executable, "load_it.py", path],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert loaded.returncode == 0, loaded.stderr
    expected = str([f"n={2 * i + 100}" for i in range(6)])
    assert saved.stdout.strip() == expected
    assert loaded.stdout.strip() == expected


def test_what_cannot_be_saved_or_loaded(tmp_path):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        piper = Piper(l33t, parallel=IMap(executor=pool), name="on_pool")
        with pytest.raises(PlumberError, match="executor"):
            Plumber([piper]).save(tmp_path / "x.papy")
    assert not list(tmp_path.iterdir())
    (tmp_path / "other.pickle").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(PlumberError, match="not a saved papy pipeline"):
        Plumber.load(tmp_path / "other.pickle")
    (tmp_path / "garbage").write_bytes(b"\x00\x01 not a pickle")
    with pytest.raises(PlumberError, match="not a saved papy pipeline"):
        Plumber.load(tmp_path / "garbage")
    (tmp_path / "future").write_bytes(pickle.dumps({"format": "papy-pipeline", "version": 99}))
    with pytest.raises(PlumberError, match="version 99"):
        Plumber.load(tmp_path / "future")
    with pytest.raises(FileNotFoundError):
        Plumber.load(tmp_path / "missing")
