"""Draw the figures of docs/user-guide.md from real runs of papy.

Every figure is a measurement, not a drawing: the evaluation orders are
recorded by the functions themselves while papy (one thread worker, so the
evaluation order is the submission order) or ``multiprocessing.Pool`` runs
them, and the buffer occupancy is sampled from ``IMap.stats()``.

    pip install matplotlib
    PYTHONPATH=src python tools/make_doc_figures.py          # writes docs/figures/*.png

Figures:

* ``weave.png``: two independent tasks L and R, stride 2: ``L0 L1 R0 R1 L2 L3 ...``
* ``chain.png``: the chain A -> B -> C on papy (stride 2) next to nested
  ``multiprocessing.Pool.imap`` calls (every A first).
* ``buffer.png``: buffer occupancy over time (in flight / ready) with a consumer
  that pauses now and then, for the default buffer and a larger one.
* ``workers.png``: what each worker did in a map of uneven items
  (``stats()['per_worker']``: busy and idle seconds, items, batches).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from papy import IMap

OUT = Path(__file__).resolve().parent.parent / "docs" / "figures"
STEP = 0.03  # seconds each recorded tasklet takes
COLOURS = {"L": "#4C72B0", "R": "#DD8452", "A": "#4C72B0", "B": "#DD8452", "C": "#55A868"}


# -- recording functions --------------------------------------------------------
class Recorder:
    """A function that notes (tag, item, start, end) of every evaluation, in memory."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[tuple[str, int, float, float]] = []
        self.lock = threading.Lock()

    def __call__(self, x: int, tag: str) -> int:
        start = time.monotonic() - self.t0
        time.sleep(STEP)
        end = time.monotonic() - self.t0
        with self.lock:
            self.events.append((tag, x, start, end))
        return x


def logged(x: int, tag: str, log: str) -> int:
    """The same for worker processes: one line per evaluation, appended to ``log``."""
    start = time.time()
    time.sleep(STEP)
    with open(log, "a") as fh:
        fh.write(f"{tag} {x} {start} {time.time()}\n")
    return x


def read_log(log: str, t0: float) -> list[tuple[str, int, float, float]]:
    events = []
    with open(log) as fh:
        for line in fh:
            tag, x, start, end = line.split()
            events.append((tag, int(x), float(start) - t0, float(end) - t0))
    return events


# -- drawing ---------------------------------------------------------------------
def timeline(ax, events, rows, reads=(), title="", first_result=None):
    """One row per task; a labelled bar per evaluation; ticks for the consumer's reads."""
    ypos = {tag: len(rows) - i for i, tag in enumerate(rows)}
    for tag, x, start, end in events:
        y = ypos[tag]
        ax.barh(
            y, end - start, left=start, height=0.6, color=COLOURS[tag], edgecolor="black", lw=0.6
        )
        ax.text(
            (start + end) / 2,
            y,
            f"{tag}{x}",
            ha="center",
            va="center",
            fontsize=8,
            color="white",
            fontweight="bold",
        )
    labels = [f"task {tag}" for tag in rows]
    ticks = [ypos[tag] for tag in rows]
    if reads:
        ax.scatter(
            [t for _, t in reads], [0] * len(reads), marker="v", color="black", s=30, zorder=3
        )
        for name, t in reads:
            ax.text(t, -0.45, name, ha="center", va="top", fontsize=7)
        labels.append("consumer\nreads")
        ticks.append(0)
    if first_result is not None:
        ax.axvline(first_result, color="crimson", ls="--", lw=1.2)
        ax.text(
            first_result,
            len(rows) + 0.55,
            " first final result",
            color="crimson",
            fontsize=8,
            va="center",
        )
    ax.set_yticks(ticks, labels)
    ax.set_ylim(-1.0 if reads else 0.4, len(rows) + 0.8)
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(axis="x", alpha=0.3)


def weave_figure() -> None:
    rec = Recorder()
    reads = []
    with IMap(worker_type="thread", worker_num=1, stride=2) as m:
        left = m.add_task(rec, range(6), args=("L",))
        right = m.add_task(rec, range(6), args=("R",))
        m.start()
        for _ in range(3):  # read in weave order: stride results of each task in turn
            for name, it in (("L", left), ("R", right)):
                for _ in range(2):
                    x = next(it)
                    reads.append((f"{name}{x}", time.monotonic() - rec.t0))
    fig, ax = plt.subplots(figsize=(10, 2.8))
    timeline(
        ax,
        rec.events,
        ["L", "R"],
        reads,
        "Two independent tasks L and R, one thread worker, stride=2 (buffer 4): "
        "L0 L1 R0 R1 L2 L3 R2 R3 ...",
    )
    fig.tight_layout()
    fig.savefig(OUT / "weave.png", dpi=110)
    plt.close(fig)
    print("weave:", " ".join(f"{t}{x}" for t, x, _, _ in rec.events))


def chain_figure() -> None:
    rec = Recorder()
    with IMap(worker_type="thread", worker_num=1, stride=2) as m:
        a = m.add_task(rec, range(6), args=("A",))
        b = m.add_task(rec, a, args=("B",))
        c = m.add_task(rec, b, args=("C",))
        m.start()
        next(c)
        papy_first = time.monotonic() - rec.t0
        list(c)
    papy_events = rec.events

    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "pool.log")
        with Pool(1) as pool:
            t0 = time.time()
            inner = pool.imap(_tagged_a, [(x, log) for x in range(6)])
            middle = pool.imap(_tagged_b, ((x, log) for x in inner))
            outer = pool.imap(_tagged_c, ((x, log) for x in middle))
            next(outer)
            pool_first = time.time() - t0
            list(outer)
        pool_events = read_log(log, t0)

    end = max(e[3] for e in papy_events + pool_events) + 0.02
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 5.2), sharex=True)
    timeline(
        ax1,
        papy_events,
        ["A", "B", "C"],
        title="papy: IMap(worker_num=1, stride=2), tasks A -> B -> C chained in one map",
        first_result=papy_first,
    )
    timeline(
        ax2,
        pool_events,
        ["A", "B", "C"],
        title="multiprocessing: pool.imap(C, pool.imap(B, pool.imap(A, xs))), Pool(1)",
        first_result=pool_first,
    )
    ax1.set_xlim(0, end)
    ax1.set_xlabel("")
    fig.tight_layout()
    fig.savefig(OUT / "chain.png", dpi=110)
    plt.close(fig)
    print("chain, papy:", " ".join(f"{t}{x}" for t, x, _, _ in papy_events))
    print(
        "chain, Pool:",
        " ".join(f"{t}{x}" for t, x, _, _ in sorted(pool_events, key=lambda e: e[2])),
    )
    print(f"first final result: papy {papy_first:.2f} s, Pool {pool_first:.2f} s")


def _tagged_a(arg):
    return logged(arg[0], "A", arg[1])


def _tagged_b(arg):
    return logged(arg[0], "B", arg[1])


def _tagged_c(arg):
    return logged(arg[0], "C", arg[1])


def buffer_run(buffer):
    """One task on 2 thread workers; the consumer pauses after every 10th result."""
    samples = []
    pauses = []
    with IMap(worker_type="thread", worker_num=2, buffer=buffer) as m:
        out = m.add_task(_work, range(60))
        m.start()
        done = threading.Event()

        def sample():
            while not done.is_set():
                s = m.stats()
                task = s["tasks"][0]
                samples.append((s["elapsed"], task["in_flight"], task["ready"], s["buffer_size"]))
                time.sleep(0.004)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for y in out:
            if y % 10 == 9:
                start = m.stats()["elapsed"]
                time.sleep(0.1)
                pauses.append((start, m.stats()["elapsed"]))
        done.set()
        sampler.join()
        stats = m.stats()
    return samples, pauses, stats


def _work(x):
    time.sleep(0.02)
    return x


def buffer_figure() -> None:
    runs = [(None, "default buffer (tasks x stride = 2)"), (20, "buffer=20")]
    results = [buffer_run(b) for b, _ in runs]
    end = max(stats["elapsed"] for _, _, stats in results) + 0.02
    fig, axes = plt.subplots(2, 1, figsize=(10, 5.6), sharex=True)
    for ax, (_, label), (samples, pauses, stats) in zip(axes, runs, results):
        t = [s[0] for s in samples]
        flight = [s[1] for s in samples]
        ready = [s[2] for s in samples]
        for i, (a, b) in enumerate(pauses):
            ax.axvspan(
                a,
                b,
                color="0.85",
                zorder=0,
                label="consumer busy (0.1 s pause)" if i == 0 else None,
            )
        ax.stackplot(
            t,
            flight,
            ready,
            labels=[
                "in flight (submitted, result not back yet)",
                "ready (computed, waiting for the consumer)",
            ],
            colors=["#4C72B0", "#DD8452"],
            step="post",
            alpha=0.9,
            zorder=2,
        )
        ax.axhline(samples[0][3], color="black", lw=1, ls="--", label="buffer size", zorder=3)
        ax.set_ylabel("tasklets")
        ax.set_ylim(0, samples[0][3] * 1.15)
        ax.set_title(
            f"{label}: done in {stats['elapsed']:.2f} s; feeder_wait {stats['feeder_wait']:.2f} s, "
            f"consumer_wait {stats['consumer_wait']:.2f} s",
            fontsize=10,
            loc="left",
        )
        ax.grid(alpha=0.3)
        print(
            f"buffer {label}: elapsed {stats['elapsed']:.2f} s, feeder_wait {stats['feeder_wait']:.2f} s, "
            f"consumer_wait {stats['consumer_wait']:.2f} s"
        )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    axes[1].set_xlim(0, end)
    axes[1].set_xlabel(
        "time (s): 60 items of 20 ms on 2 thread workers; the consumer pauses 0.1 s "
        "after every 10th result"
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(OUT / "buffer.png", dpi=110)
    plt.close(fig)


def _uneven(x: int) -> int:
    """Every tenth item costs ten times the others (CPU, not sleep)."""
    end = time.process_time() + (0.010 if x % 10 == 0 else 0.001)
    while time.process_time() < end:
        pass
    return x


def workers_figure() -> None:
    """What each worker did (``stats()['per_worker']``) in a real map: 2 process
    workers, 2,000 items of 1 ms with every tenth of 10 ms, the defaults."""
    with IMap(_uneven, range(2000), worker_num=2) as m:
        for _ in m:
            pass
        stats = m.stats()
    workers = stats["per_worker"]
    names = [w["worker"] for w in workers]
    busy = [w["busy"] for w in workers]
    idle = [w["idle"] for w in workers]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8, 2.8))
    ax.barh(names, busy, color="#4C72B0", label="busy")
    ax.barh(names, idle, left=busy, color="#C9C9C9", label="idle")
    ax.set_xlabel("seconds")
    ax.set_title(f"busy and idle ({stats['elapsed']:.2f} s elapsed)")
    ax.legend(loc="lower right", fontsize=8)
    bx.barh(names, [w["items"] for w in workers], color="#55A868")
    for y, w in enumerate(workers):
        bx.text(
            w["items"], y, f" {w['batches']} batches, mean {w['mean_batch']:.1f}, "
            f"largest {w['largest_batch']}", va="center", fontsize=8,
        )  # fmt: skip
    bx.set_xlabel("items")
    bx.set_xlim(0, max(w["items"] for w in workers) * 2.2)
    bx.set_title("items and batches")
    fig.tight_layout()
    fig.savefig(OUT / "workers.png", dpi=110)
    plt.close(fig)
    for w in workers:
        print(w)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    weave_figure()
    chain_figure()
    buffer_figure()
    workers_figure()
    print("written:", ", ".join(sorted(p.name for p in OUT.glob("*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
