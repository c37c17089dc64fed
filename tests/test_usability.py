"""What users expect around the map: stats, a progress bar, a quiet logger."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import pytest

import papy
from papy import IMap

pytestmark = pytest.mark.timeout(60)


def inc(x):
    return x + 1


def kill_on_two(x):
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_stats_counts_per_task_and_for_the_map():
    with IMap(worker_type="thread", worker_num=2, stride=2, buffer=8) as m:
        a = m.add_task(inc, [1, "x", 3, 4, 5])
        b = m.add_task(inc, range(3))
        m.start()
        with pytest.raises(RuntimeError, match="not started"):
            IMap().stats()
        got = [next(a), None]
        with pytest.raises(TypeError):
            next(a)
        list(a), list(b)
        s = m.stats()
    ta, tb = s["tasks"]
    assert ta["submitted"] == 5 and ta["returned"] == 5 and ta["failed"] == 1
    assert ta["completed"] == 5 and ta["in_flight"] == 0 and ta["ready"] == 0
    assert tb["submitted"] == tb["returned"] == 3 and tb["failed"] == 0
    assert s["buffer_size"] == 8 and s["buffer_used"] == 0
    assert s["feeder_wait"] >= 0 and s["consumer_wait"] >= 0 and s["elapsed"] > 0
    assert s["workers"] == 2
    assert got[0] == 2


def test_stats_show_a_slow_consumer_as_feeder_wait():
    import time

    with IMap(inc, range(50), worker_type="thread", worker_num=2, stride=2, buffer=2) as m:
        for _ in m:
            time.sleep(0.005)
        s = m.stats()
    assert s["feeder_wait"] > s["consumer_wait"]


def test_progress_bar_with_total(capsys):
    pytest.importorskip("tqdm")
    out = list(papy.imap(inc, list(range(50)), worker_type="thread", worker_num=2, progress=True))
    assert out == list(range(1, 51))
    err = capsys.readouterr().err
    assert "50/50" in err


def test_progress_bar_without_length(capsys):
    pytest.importorskip("tqdm")
    out = list(
        papy.imap(
            inc, iter(range(7)), worker_type="thread", worker_num=2, chunksize=3, progress=True
        )
    )
    assert out == list(range(1, 8))
    assert "7item" in capsys.readouterr().err


def test_logger_is_silent_by_default_and_reports_lost_workers(caplog):
    # silent: a lost worker prints nothing on stderr unless logging is configured
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__)] + sys.path))
    code = (
        "import papy, sys\n"
        "from test_usability import kill_on_two\n"
        "m = papy.IMap(kill_on_two, range(4), worker_num=1)\n"
        "out = []\n"
        "for _ in range(4):\n"
        "    try: out.append(next(m))\n"
        "    except papy.WorkerLostError: out.append('lost')\n"
        "m.stop(); print(out)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.stdout.strip() == "[0, 1, 'lost', 3]", proc.stderr
    assert proc.stderr == ""
    with caplog.at_level(logging.WARNING, logger="papy"):
        with IMap(kill_on_two, range(4), worker_num=1) as m:
            for _ in range(4):
                try:
                    next(m)
                except papy.WorkerLostError:
                    pass
    assert any("was lost" in r.getMessage() for r in caplog.records)


def test_plumber_progress_bar(capsys):
    pytest.importorskip("tqdm")
    from papy.pipeline import Piper, Plumber

    out = Piper(lambda inbox: inbox[0] * 2, name="double", track=True)
    pl = Plumber(pipes=[(Piper(lambda inbox: inbox[0], name="src"), out)], progress=True)
    pl.start([list(range(12))])
    pl.run()
    assert pl.wait(30)
    pl.stop()
    assert list(out.tracked.values()) == [2 * x for x in range(12)]
    assert "12item" in capsys.readouterr().err.replace(" ", "")
