"""Print papy's performance table: each row measured for papy and its peer in one run.

    python benchmarks/report.py [--repeats 5] [--plot docs/chunksize.png]

Measurements alternate papy and peer and the table gives medians, so the
ratios hold on a noisy machine. ``--plot`` also draws items/s against
chunksize for papy and ``Pool.imap`` (needs matplotlib).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads as w  # noqa: E402


def median_pair(repeats: int, papy_fn, peer_fn) -> tuple[float, float]:
    a, b = [], []
    for _ in range(repeats):
        a.append(papy_fn())
        b.append(peer_fn())
    return statistics.median(a), statistics.median(b)


def core_ratio(repeats: int) -> tuple[float, float]:
    from papy import _sched, _sched_py

    def run(mod, n=50_000):
        s = mod.Scheduler(1, 2, 64, True, False, 0.5)
        nt, acq, sub, put, get = s.next_task, s.acquire_slot, s.submit, s.put_result, s.get_result
        t0 = time.perf_counter()
        for i in range(n):
            task = nt()
            acq(None)
            index = sub(task)
            put(task, index, True, i)
            get(task, None)
        return n / (time.perf_counter() - t0)

    return median_pair(repeats, lambda: run(_sched), lambda: run(_sched_py))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plot", default=None, help="write the chunksize plot (PNG) here")
    opts = parser.parse_args()
    r = opts.repeats
    n = w.n_items(20_000)
    rows = []
    print(
        f"# papy performance ({platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {w.WORKERS} workers, median of {r})\n"
    )
    with w.make_pool("thread") as tpool, w.make_pool("process") as ppool:
        ppool.map(w.square, range(10))
        cases = [
            ("thread workers, chunksize 1, buffer 64", "thread", {"buffer": 64}, tpool, 1, n, 1.2),
            (
                "process workers, chunksize 1, buffer 64",
                "process",
                {"buffer": 64},
                ppool,
                1,
                n,
                1.25,
            ),
            (
                "process workers, chunksize 64, buffer 512",
                "process",
                {"buffer": 512, "chunksize": 64},
                ppool,
                64,
                4 * n,
                1.0,
            ),
            (
                "thread workers, seed defaults (stride 2, buffer 2)",
                "thread",
                {"stride": 2, "buffer": 2},
                tpool,
                1,
                n,
                None,
            ),
            (
                "process workers, seed defaults (stride 2, buffer 2)",
                "process",
                {"stride": 2, "buffer": 2},
                ppool,
                1,
                n,
                None,
            ),
        ]
        for label, wt, options, pool, chunk, items, target in cases:
            mine, peer = median_pair(
                r,
                lambda: w.papy_rate(wt, items, **options),
                lambda: w.pool_rate(wt, items, pool, chunk),
            )
            rows.append(
                (
                    label,
                    f"{mine:,.0f} items/s",
                    f"{peer:,.0f} items/s",
                    mine / peer,
                    f">= {target}" if target else "(report)",
                )
            )
    firsts, totals, pfirsts, ptotals = [], [], [], []
    for _ in range(max(1, r // 2)):
        f, t = w.papy_chain(w.n_items(200))
        pf, pt = w.pool_chain(w.n_items(200))
        firsts.append(f), totals.append(t), pfirsts.append(pf), ptotals.append(pt)
    f, t, pf, pt = map(statistics.median, (firsts, totals, pfirsts, ptotals))
    rows.append(
        (
            "3 chained 5 ms tasks, 200 items: first result",
            f"{f:.3f} s",
            f"{pf:.3f} s",
            f / pf,
            "<= 0.1",
        )
    )
    rows.append(
        ("3 chained 5 ms tasks, 200 items: total", f"{t:.3f} s", f"{pt:.3f} s", t / pt, "<= 1.1")
    )
    mine_mem = w.papy_memory(w.n_items(20_000))
    peer_mem = w.pool_memory(w.n_items(20_000))
    rows.append(
        (
            "100 kB results, slow consumer: peak RSS growth",
            f"{mine_mem:.1f} MB",
            f"{peer_mem:.1f} MB",
            mine_mem / peer_mem if peer_mem > 0 else float("nan"),
            "papy < 50 MB",
        )
    )
    c, py = core_ratio(r)
    rows.append(
        (
            "scheduler core alone (compiled vs pure twin)",
            f"{c:,.0f} ops/s",
            f"{py:,.0f} ops/s",
            c / py,
            ">= 3",
        )
    )
    mine_imp, peer_imp = w.import_time("papy"), w.import_time("multiprocessing.pool")
    rows.append(
        (
            "import papy vs import multiprocessing.pool",
            f"{mine_imp * 1e3:.1f} ms",
            f"{peer_imp * 1e3:.1f} ms",
            mine_imp / peer_imp,
            "<= 0.5",
        )
    )

    print("| benchmark | papy | peer | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for label, mine, peer, ratio, target in rows:
        print(f"| {label} | {mine} | {peer} | {ratio:.2f} | {target} |")

    if opts.plot:
        plot(opts.plot, r)
    return 0


def plot(path: str, repeats: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [1, 2, 4, 8, 16, 32, 64, 128]
    n = w.n_items(40_000)
    mine, peer = [], []
    with w.make_pool("process") as pool:
        pool.map(w.square, range(10))
        for c in sizes:
            a, b = median_pair(
                max(1, repeats // 2),
                lambda: w.papy_rate("process", n, buffer=max(64, 8 * c), chunksize=c),
                lambda: w.pool_rate("process", n, pool, c),
            )
            mine.append(a)
            peer.append(b)
            print(f"chunksize {c}: papy {a:,.0f}/s, Pool.imap {b:,.0f}/s")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, mine, "o-", label="papy.imap (buffer = max(64, 8 x chunksize))")
    ax.plot(sizes, peer, "s--", label="multiprocessing.Pool.imap")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("chunksize (tasklets per message)")
    ax.set_ylabel("items / s (x*x, 2 process workers)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
