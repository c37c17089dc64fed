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
        with pytest.raises(RuntimeError, match="never started"):
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
    final = m.stats()  # after the with block: the snapshot taken at stop
    assert final["tasks"] == s["tasks"] and final["elapsed"] >= s["elapsed"]
    final["tasks"][0]["returned"] = -1
    assert m.stats()["tasks"][0]["returned"] == 5  # a copy each time
    m.add_task(inc, [1])
    m.start()
    assert [t["submitted"] for t in m.stats()["tasks"]] in ([0], [1])  # the new run's
    m.stop()


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


def test_imap_results_have_the_maps_stats():
    results = papy.imap(inc, range(100), worker_type="thread", worker_num=2)
    assert isinstance(results, papy.MapIterator) and iter(results) is results
    assert next(results) == 1
    assert results.stats()["tasks"][0]["returned"] >= 1
    assert list(results) == list(range(2, 101))
    final = results.stats()  # the map stopped when the results ended
    assert final["tasks"][0]["returned"] == 100 and not results.imap.started
    closed = papy.imap(inc, range(10), worker_type="thread", worker_num=1)
    next(closed)
    closed.close()
    assert not closed.imap.started and closed.stats()["tasks"][0]["returned"] >= 1


class _Bars:
    """Records the tqdm bars made (tqdm writes to stderr; the test reads the objects)."""

    def __init__(self, monkeypatch):
        import tqdm.auto

        self.made = []
        real = tqdm.auto.tqdm
        bars = self

        class Recording(real):
            def __init__(self, *args, **kwargs):
                bars.made.append(self)
                self.options = kwargs
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(tqdm.auto, "tqdm", Recording)


def test_progress_bars_of_imap_tasks_take_tqdm_options(monkeypatch):
    pytest.importorskip("tqdm")
    bars = _Bars(monkeypatch)
    with IMap(worker_type="thread", worker_num=2) as m:
        a = m.add_task(inc, range(7), progress={"desc": "incrementing", "leave": False})
        b = m.add_task(inc, iter(range(3)), progress=True)
        c = m.add_task(inc, range(2))  # no bar
        assert bars.made == []  # bars appear when the map starts
        m.start()
        assert [x.options.get("desc") for x in bars.made] == ["incrementing", "task 1"]
        assert bars.made[0].options["leave"] is False and bars.made[0].total == 7
        assert bars.made[1].total is None  # an iterator has no length
        assert (list(a), list(b), list(c)) == (list(range(1, 8)), [1, 2, 3], [1, 2])
        assert [x.n for x in bars.made] == [7, 3]
    assert all(x.disable or x.n is not None for x in bars.made)  # closed at stop
    results = papy.imap(inc, range(5), worker_type="thread", progress={"desc": "d", "position": 1})
    assert list(results) == [1, 2, 3, 4, 5]
    assert bars.made[-1].options["desc"] == "d" and bars.made[-1].options["position"] == 1


def test_progress_arguments_are_checked_before_any_bar(monkeypatch):
    pytest.importorskip("tqdm")
    bars = _Bars(monkeypatch)
    for bad in ({"worker_num": 0}, {"worker_type": "greenlet"}, {"ordered": "no"}):
        with pytest.raises((ValueError, TypeError)):
            papy.imap(inc, range(3), progress=True, **bad)
    with pytest.raises(TypeError, match="progress must be"):
        papy.imap(inc, range(3), progress="yes")
    with pytest.raises(TypeError, match="progress must be"):
        IMap(worker_type="thread").add_task(inc, [1], progress=3)
    assert bars.made == []


def test_progress_without_tqdm_names_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r"pip install 'papy2\[progress\]'"):
        papy.imap(inc, range(3), progress=True)
    with pytest.raises(ImportError, match=r"papy2\[progress\]"):
        IMap(worker_type="thread").add_task(inc, [1], progress=True)


@pytest.mark.parametrize("value", ["no", "yes", None, 2, 0.5, [True]])
def test_ordered_and_skip_must_be_yes_or_no(value):
    for name in ("ordered", "skip"):
        with pytest.raises(TypeError, match=f"{name} must be True or False"):
            IMap(worker_type="thread", **{name: value})
    assert IMap(worker_type="thread", ordered=0, skip=1).ordered is False


def test_buffer_smaller_than_the_default_stride_says_it_is_the_default():
    with pytest.raises(ValueError, match=r"the default stride, 3 for 3 workers.*give stride="):
        IMap(worker_type="thread", worker_num=3, buffer=2)
    with pytest.raises(ValueError, match=r"\(stride=4\), got buffer=2"):
        IMap(worker_type="thread", stride=4, buffer=2)


def test_one_iterator_cannot_feed_two_tasks():
    import itertools

    gen = (x for x in range(10))
    m = IMap(worker_type="thread", worker_num=1)
    m.add_task(inc, gen)
    with pytest.raises(ValueError, match="task 0 already reads.*itertools.tee"):
        m.add_task(inc, gen)
    assert m.n_tasks == 1
    left, right = itertools.tee(range(4))
    m2 = IMap(worker_type="thread", worker_num=1)
    a, b = m2.add_task(inc, left), m2.add_task(inc, right)
    data = [1, 2]
    c, d = m2.add_task(inc, data), m2.add_task(inc, data)  # a list is read afresh by each
    m2.start()
    assert (list(a), list(b), list(c), list(d)) == ([1, 2, 3, 4], [1, 2, 3, 4], [2, 3], [2, 3])
    m2.stop()


@pytest.mark.parametrize(
    ("value", "pure"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_papy_no_extensions_reads_on_and_off(value, pure):
    import subprocess
    import sys

    code = "import papy._scheduler as s; print(s.IMPLEMENTATION)"
    env = dict(os.environ, PAPY_NO_EXTENSIONS=value)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert (out.stdout.strip() == "python") is pure, out.stdout


def test_papy_no_extensions_refuses_a_typo():
    import subprocess
    import sys

    env = dict(os.environ, PAPY_NO_EXTENSIONS="ture")
    out = subprocess.run(
        [sys.executable, "-c", "import papy"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "PAPY_NO_EXTENSIONS='ture' is not an on/off value" in out.stderr


def nap_ms(x):
    import time

    time.sleep(0.001)
    return x


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_stats_per_worker(worker_type):
    with IMap(nap_ms, range(300), worker_type=worker_type, worker_num=2, chunksize=5) as m:
        assert sum(1 for _ in m) == 300
        per_worker = m.stats()["per_worker"]
    assert [w["worker"] for w in per_worker] == [f"{worker_type} 0", f"{worker_type} 1"]
    assert sum(w["items"] for w in per_worker) == 300
    for w in per_worker:
        assert w["items"] > 0 and w["batches"] > 0 and w["largest_batch"] <= 5
        assert w["mean_batch"] == pytest.approx(w["items"] / w["batches"])
        assert w["busy"] >= 0.001 * w["items"] * 0.9  # each item sleeps 1 ms
        assert w["idle"] >= 0
    kept = m.stats()["per_worker"]  # the snapshot taken at stop
    assert [(w["items"], w["batches"]) for w in kept] == [
        (w["items"], w["batches"]) for w in per_worker
    ]


def test_the_progress_bar_shows_the_workers(monkeypatch):
    pytest.importorskip("tqdm")
    bars = _Bars(monkeypatch)
    results = papy.imap(nap_ms, range(50), worker_type="thread", worker_num=2, progress=True)
    assert sum(1 for _ in results) == 50
    postfix = bars.made[-1].postfix
    assert "2 workers" in postfix and "% busy" in postfix and "batches of" in postfix
