"""Throughput of remote and executor workers next to local process workers.

Backends, all with two workers on this machine, measured in the same run:

* ``process``: ``IMap(worker_num=2)``, local worker processes;
* ``remote``: two papy servers (``python -m papy.remote serve``) on 127.0.0.1,
  one slot each, ``IMap(worker_num=0, worker_remote=[(a, 1), (b, 1)])``;
* ``dask``: a local dask.distributed cluster (2 worker processes, 1 thread
  each) through ``IMap(executor=client.get_executor(), worker_num=2)``.

Workloads: a trivial function (``x * x``) with papy's defaults and batched
(``chunksize=32, buffer=256``), and a function that burns 10 ms of CPU. A
measurement is one whole map: start (workers spawned or connected; servers
and the dask cluster are already up), every result read, stop.

    pytest benchmarks/bench_remote.py --benchmark-only      # pytest-benchmark
    python benchmarks/bench_remote.py                       # a plain table
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import papy
from papy import IMap

N_TRIVIAL = int(os.environ.get("PAPY_BENCH_REMOTE_N", "1000"))
N_10MS = max(20, N_TRIVIAL // 10)
# the papy under test (installed, or a source tree on PYTHONPATH), for the servers
SRC = Path(papy.__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.timeout(600)


def square(x: int) -> int:
    return x * x


def burn10(x: Any) -> Any:
    """Spend 10 ms of CPU, return ``x``."""
    end = time.process_time() + 0.010
    while time.process_time() < end:
        pass
    return x


WORKLOADS = {
    # name: (function, items, IMap options)
    "trivial": (square, N_TRIVIAL, {}),
    "trivial-chunk32": (square, N_TRIVIAL * 4, {"chunksize": 32, "buffer": 256, "stride": 32}),
    "cpu-10ms": (burn10, N_10MS, {}),
}
BACKENDS = ["process", "remote", "dask"]


# -- backends -------------------------------------------------------------------------
def start_papy_server() -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(SRC), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    proc = subprocess.Popen(
        # preloaded: each connection's process starts with this module (and pytest) imported
        [sys.executable, "-m", "papy.remote", "serve", "--port", "0", "--preload", "bench_remote"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"serving on (\S+):(\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"papy server did not start: {line}{proc.stdout.read()}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, f"{m.group(1)}:{m.group(2)}"


class Backends:
    """Starts the servers and the dask cluster once; ``options(name)`` gives IMap's."""

    def __init__(self) -> None:
        from distributed import Client, LocalCluster

        self.servers = [start_papy_server() for _ in range(2)]
        self.cluster = LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
        )
        self.client = Client(self.cluster)
        self.executor = self.client.get_executor()

    def options(self, backend: str) -> dict[str, Any]:
        if backend == "process":
            return {"worker_num": 2}
        if backend == "remote":
            return {"worker_num": 0, "worker_remote": [(address, 1) for _, address in self.servers]}
        return {"executor": self.executor, "worker_num": 2}

    def close(self) -> None:
        self.client.close()
        self.cluster.close()
        for proc, _ in self.servers:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)


def run_map(options: dict[str, Any], workload: str, n: int | None = None) -> float:
    """One whole map (of ``n`` items, default: the workload's); returns items per second."""
    func, default_n, extra = WORKLOADS[workload]
    n = default_n if n is None else n
    t0 = time.perf_counter()
    with IMap(func, range(n), **options, **extra) as m:
        count = sum(1 for _ in m)
    elapsed = time.perf_counter() - t0
    assert count == n
    return n / elapsed


# -- pytest-benchmark -----------------------------------------------------------------
@pytest.fixture(scope="module")
def backends():
    pytest.importorskip("rpyc")
    pytest.importorskip("distributed")
    b = Backends()
    yield b
    b.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_remote_throughput(benchmark, backends, workload, backend):
    benchmark.group = f"remote-{workload}"
    options = backends.options(backend)
    run_map(options, workload, 20)  # warm up (imports, worker caches)
    rate = benchmark.pedantic(run_map, args=(options, workload), rounds=3, iterations=1)
    benchmark.extra_info["items"] = WORKLOADS[workload][1]
    benchmark.extra_info["items_per_s"] = round(rate, 1)
    assert rate > 0


# -- plain table --------------------------------------------------------------------------
def main() -> None:
    sys.path.insert(0, str(HERE))  # this module must be importable by the workers
    import bench_remote as me  # functions pickled by reference as bench_remote.*

    b = me.Backends()
    try:
        rows = []
        for workload in me.WORKLOADS:
            rates = {}
            for backend in me.BACKENDS:
                options = b.options(backend)
                me.run_map(options, workload, 20)
                rates[backend] = max(me.run_map(options, workload) for _ in range(3))
            rows.append((workload, me.WORKLOADS[workload][1], rates))
    finally:
        b.close()
    print(f"\n| workload (items) | {' | '.join(f'{k} items/s' for k in me.BACKENDS)} |")
    print("|---|" + "---:|" * len(me.BACKENDS))
    for workload, n, rates in rows:
        print(f"| {workload} ({n}) | " + " | ".join(f"{rates[k]:,.0f}" for k in me.BACKENDS) + " |")


if __name__ == "__main__":
    main()
