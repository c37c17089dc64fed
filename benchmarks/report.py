"""Print papy's performance table: each row measured for papy and its peer in one run.

    python benchmarks/report.py [--repeats 5] [--plot docs/chunksize.png] [--work]

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

#: the papy/peer ratio of each round of the last ``median_pair`` (its spread is printed)
ROUNDS: list[float] = []


def median_pair(repeats: int, papy_fn, peer_fn) -> tuple[float, float]:
    """Run papy and the peer alternately ``repeats`` times; their medians.

    The ratio of each round (papy then peer, back to back) goes to ``ROUNDS``."""
    a, b = [], []
    for _ in range(repeats):
        a.append(papy_fn())
        b.append(peer_fn())
    ROUNDS[:] = [x / y for x, y in zip(a, b)]
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


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """The median of ``values`` with their range: ``m (lo-hi)``."""
    lo, hi, mid = min(values), max(values), statistics.median(values)
    return f"{fmt.format(mid)} ({fmt.format(lo)}-{fmt.format(hi)})"


def work_table(r: int) -> list[tuple[str, str, str, str, str]]:
    """Issue 19's rows: each pair interleaved (papy, then the peer), ``r`` times."""
    import multiprocessing

    import work_aware as wa

    rows: list[tuple[str, str, str, str, str]] = []

    def row(label: str, mine: str, peer: str, ratio: str, target: str) -> None:
        rows.append((label, mine, peer, ratio, target))
        print(f"  {label}: {mine} | {peer} | {ratio}", flush=True)

    for wt in ("process", "thread"):
        firsts = [wa.papy_blocked_input_first(wt) for _ in range(r)]
        row(f"{wt}: chained task, upstream input blocks after 2 items: first result",
            spread(firsts, "{:.3f}") + " s", "nested Pool.imap: never (waits for the input's end)",
            "", "<= 0.1 s")  # fmt: skip
    firsts, totals = [], []
    for _ in range(r):
        pf, pt = w.papy_chain(w.n_items(200))
        qf, qt = w.pool_chain(w.n_items(200))
        firsts.append(pf / qf)
        totals.append(pt / qt)
    row("3 chained 5 ms tasks x 200, defaults vs nested Pool.imap: first result", "", "",
        spread(firsts, "{:.3f}"), "<= 0.1")  # fmt: skip
    row("3 chained 5 ms tasks x 200, defaults vs nested Pool.imap: total", "", "",
        spread(totals), "<= 1.0")  # fmt: skip
    for wt in ("process", "thread"):
        grown = [wa.papy_paused_results_mb(wt, w.n_items(2000)) for _ in range(max(1, r // 2))]
        row(f"{wt}: 1 MB results, consumer paused: parent RSS growth",
            spread(grown, "{:.0f}") + " MB", "", "", "<= 256 MB")  # fmt: skip
        grown = [wa.papy_big_inputs_mb(wt, w.n_items(400)) for _ in range(max(1, r // 2))]
        row(f"{wt}: 1 MB inputs from a generator, consumer paused: parent RSS growth",
            spread(grown, "{:.0f}") + " MB", "", "", "<= 256 MB")  # fmt: skip
    try:
        import numpy  # noqa: F401
    except ImportError:
        row("numpy arrays", "numpy is not installed", "", "", "")
    else:
        with multiprocessing.Pool(w.WORKERS) as pool:
            pool.map(w.square, range(4))
            for mb, n in ((1, 400), (16, 40)):
                mine_mb, peer_mb, rates = [], [], []
                for _ in range(r):
                    a_mb, a_rate = wa.papy_arrays(mb * wa.MB, w.n_items(n))
                    b_mb, b_rate = wa.pool_arrays(mb * wa.MB, w.n_items(n), pool)
                    mine_mb.append(a_mb)
                    peer_mb.append(b_mb)
                    rates.append(a_rate / b_rate)
                ratio = statistics.median(mine_mb) / max(statistics.median(peer_mb), 1.0)
                row(f"{mb} MB numpy arrays, defaults: parent RSS growth vs Pool.imap",
                    spread(mine_mb, "{:.0f}") + " MB", spread(peer_mb, "{:.0f}") + " MB",
                    f"{ratio:.2f}", "<= 4")  # fmt: skip
                row(f"{mb} MB numpy arrays, defaults: throughput vs Pool.imap", "", "",
                    spread(rates), ">= 1.0 (kept)")  # fmt: skip
    for wt in ("process", "thread"):
        late = [wa.papy_timeout_lateness(wt) * 1e3 for _ in range(r)]
        row(f"{wt}: next(timeout=0.1) on a chain, every form: worst lateness",
            spread(late, "{:.1f}") + " ms", "", "", "<= 50 ms")  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plot", default=None, help="write the chunksize plot (PNG) here")
    parser.add_argument(
        "--work", action="store_true", help="only the rows of the work-aware defaults"
    )
    opts = parser.parse_args()
    r = opts.repeats
    if opts.work:
        print(
            f"# papy: work-aware defaults ({platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {w.WORKERS} workers, {r} runs each)\n"
        )
        table = work_table(r)
        print("| row | papy | peer | ratio (median, range) | target |")
        print("|---|---|---|---|---|")
        for cells in table:
            print("| " + " | ".join(cells) + " |")
        return 0
    n = w.n_items(100_000)
    rows: list[tuple[str, str, str, str | float, str]] = []

    def add(
        label: str, mine: float, peer: float, unit: str, target: str, rounds: list[float]
    ) -> None:
        """A row: the medians, their ratio and the range of the rounds' ratios."""
        fmt = "{:,.0f} " + unit if unit == "items/s" else "{:.3f} " + unit
        ratio = f"{mine / peer:.2f}"
        if len(rounds) > 1:
            ratio += f" ({min(rounds):.2f}-{max(rounds):.2f})"
        rows.append((label, fmt.format(mine), fmt.format(peer), ratio, target))
        print(f"  {label}: {mine:,.3f} vs {peer:,.3f} -> {ratio}", flush=True)

    print(
        f"# papy performance ({platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {w.WORKERS} workers, median of {r})\n"
    )
    # memory first, while this process is small
    mine_mem = w.papy_memory(w.n_items(20_000))
    peer_mem = w.pool_memory(w.n_items(20_000))
    big = 10 * n
    with w.make_pool("thread") as tpool, w.make_pool("process") as ppool:
        ppool.map(w.square, range(10))
        pools = {"thread": tpool, "process": ppool}
        peer_name = {"thread": "ThreadPool.imap", "process": "Pool.imap"}
        for wt in ("process", "thread"):
            pool = pools[wt]
            # the seed's API next to papy.imap, same options
            mine, peer = median_pair(
                r,
                lambda: w.papy_task_rate(wt, big, chunksize=64),
                lambda: w.papy_rate(wt, big, chunksize=64),
            )
            add(f"{wt}: IMap object API (iterate the task) vs papy.imap, chunksize 64",
                mine, peer, "items/s", ">= 0.95", ROUNDS)  # fmt: skip
            # defaults against a peer tuned by hand, start-up in both
            mine, peer = median_pair(
                r, lambda: w.papy_defaults_rate(wt, n), lambda: w.pool_started_rate(wt, n, 1000)
            )
            add(f"{wt}: papy.imap(f, range({n:,})) defaults vs {peer_name[wt]}(chunksize=1000), "
                "start-up in both", mine, peer, "items/s", ">= 1.0", ROUNDS)  # fmt: skip
            # defaults against the peer's own best rule (its pool already started)
            rule = w.pool_rule_chunksize(4 * n)
            mine, peer = median_pair(
                r,
                lambda: w.papy_defaults_rate(wt, 4 * n),
                lambda: w.pool_rate(wt, 4 * n, pool, rule),
            )
            add(f"{wt}: defaults, {4 * n:,} items, vs {peer_name[wt]} with Pool.map's chunksize "
                "rule (peer started beforehand)", mine, peer, "items/s", ">= 1.0", ROUNDS)  # fmt: skip
            mine, peer = median_pair(
                r,
                lambda: w.papy_rate(wt, big, chunksize=64),
                lambda: w.pool_rate(wt, big, pool, 64),
            )
            add(f"{wt}: chunksize 64 vs {peer_name[wt]}(chunksize=64)", mine, peer, "items/s",
                ">= 1.0", ROUNDS)  # fmt: skip
            mine, peer = median_pair(
                r,
                lambda: w.papy_rate(wt, big, chunksize=64, buffer=512),
                lambda: w.pool_rate(wt, big, pool, 64),
            )
            add(f"{wt}: chunksize 64, buffer 512 vs {peer_name[wt]}(chunksize=64)", mine, peer,
                "items/s", ">= 1.0", ROUNDS)  # fmt: skip
            mine, peer = median_pair(
                r, lambda: w.papy_defaults_rate(wt, n), lambda: w.pool_rate(wt, n, pool, 1)
            )
            add(f"{wt}: defaults: papy.imap(f, it) vs {peer_name[wt]}(f, it)", mine, peer,
                "items/s", ">= 1.0", ROUNDS)  # fmt: skip
            mine, peer = median_pair(
                r,
                lambda: w.papy_rate(wt, n, chunksize=1, buffer=64),
                lambda: w.pool_rate(wt, n, pool, 1),
            )
            add(f"{wt}: chunksize 1, buffer 64 vs {peer_name[wt]}(chunksize=1)", mine, peer,
                "items/s", ">= 2.0" if wt == "process" else ">= 1.2", ROUNDS)  # fmt: skip
        # the floor: no scheduling, no per-item Python code on either side
        mine, echo = median_pair(
            r, lambda: w.papy_sum_rate("process", big, chunksize=64),
            lambda: w.pipe_echo_rate(big, 64),
        )  # fmt: skip
        add("process: sum(papy.imap(..., chunksize=64)) vs a raw two-worker pipe echo "
            "summing each chunk", mine, echo, "items/s", ">= 0.8", ROUNDS)  # fmt: skip
        # 10 kB in and out: the best of a few settings on each side
        items = w.payloads(w.n_items(20_000))
        for wt in ("process", "thread"):
            pool = pools[wt]
            best_mine = max(
                median_pair(
                    r,
                    lambda o=o: w.papy_bytes_rate(wt, items, **o),
                    lambda: 1.0,
                )[0]
                for o in ({}, {"chunksize": 1}, {"chunksize": 8}, {"chunksize": 32})
            )
            best_peer = max(
                median_pair(r, lambda c=c: w.pool_bytes_rate(items, pool, c), lambda: 1.0)[0]
                for c in (1, 8, 32, w.pool_rule_chunksize(len(items)))
            )
            add(f"{wt}, 10 kB in and out, best setting of each", best_mine, best_peer,
                "items/s", ">= 1.0", [])  # fmt: skip
    # start-up: import to the first result, fresh interpreters, alternating
    firsts, pfirsts = [], []
    for _ in range(max(5, 2 * r)):
        firsts.append(w.first_result("papy"))
        pfirsts.append(w.first_result("pool"))
    f, pf = statistics.median(firsts), statistics.median(pfirsts)
    rows.append(
        (
            "import to the first result of a 10-item map, fresh interpreter "
            f"(median of {len(firsts)}; papy {min(firsts) * 1e3:.1f}-{max(firsts) * 1e3:.1f} ms, "
            f"Pool {min(pfirsts) * 1e3:.1f}-{max(pfirsts) * 1e3:.1f} ms)",
            f"{f * 1e3:.1f} ms",
            f"{pf * 1e3:.1f} ms",
            f"{f / pf:.2f} ({min(a / b for a, b in zip(firsts, pfirsts)):.2f}-"
            f"{max(a / b for a, b in zip(firsts, pfirsts)):.2f})",
            "<= 1.0",
        )
    )
    print(f"  first result: {f * 1e3:.1f} vs {pf * 1e3:.1f} ms", flush=True)
    speedups = sorted(w.speedup_1ms(w.n_items(3000)) for _ in range(max(8, 2 * r)))
    rows.append(
        (
            f"1 ms CPU items x {w.n_items(3000):,}, defaults: speed-up over serial, "
            f"every run ({', '.join(f'{x:.2f}' for x in speedups)})",
            f"{min(speedups):.2f} (lowest)",
            "serial",
            min(speedups),
            ">= 1.7 in every run",
        )
    )
    print(f"  1 ms items: speed-ups {speedups}", flush=True)
    # chains, with the defaults
    for k in (2, 4, 8):
        firsts, totals, pfirsts, ptotals = [], [], [], []
        for _ in range(r):
            f, t = w.chain_in_fresh_interpreter("papy", k, w.n_items(10_000))
            pf, pt = w.chain_in_fresh_interpreter("pool", k, w.n_items(10_000))
            firsts.append(f), totals.append(t), pfirsts.append(pf), ptotals.append(pt)
        f, t, pf, pt = map(statistics.median, (firsts, totals, pfirsts, ptotals))
        add(f"{k} chained x + 1 tasks, 10,000 items, defaults: total", t, pt, "s", "<= 1.0",
            [a / b for a, b in zip(totals, ptotals)])  # fmt: skip
        add(f"{k} chained x + 1 tasks, 10,000 items, defaults: first result", f, pf, "s",
            "<= 0.1", [a / b for a, b in zip(firsts, pfirsts)])  # fmt: skip
    rows.append(
        (
            "100 kB results, slow consumer: peak RSS growth",
            f"{mine_mem:.1f} MB",
            f"{peer_mem:.1f} MB",
            mine_mem / peer_mem if peer_mem > 0 else float("nan"),
            "papy < 50 MB",
        )
    )
    mine_t, peer_t = w.threads_while_consuming("papy"), w.threads_while_consuming("pool")
    rows.append(
        (
            "threads besides the consumer while a process map is read",
            str(mine_t),
            str(peer_t),
            mine_t / peer_t,
            "(report)",
        )
    )
    c, py = core_ratio(r)
    rows.append(
        (
            "scheduler core alone (compiled vs pure twin)",
            f"{c:,.0f} ops/s",
            f"{py:,.0f} ops/s",
            f"{c / py:.2f} ({min(ROUNDS):.2f}-{max(ROUNDS):.2f})",
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
    for label, mine_s, peer_s, ratio, target in rows:
        shown = ratio if isinstance(ratio, str) else f"{ratio:.2f}"
        print(f"| {label} | {mine_s} | {peer_s} | {shown} | {target} |")

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
                lambda: w.papy_rate("process", n, chunksize=c),
                lambda: w.pool_rate("process", n, pool, c),
            )
            mine.append(a)
            peer.append(b)
            print(f"chunksize {c}: papy {a:,.0f}/s, Pool.imap {b:,.0f}/s")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, mine, "o-", label="papy.imap (default buffer)")
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
