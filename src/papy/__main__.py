"""``python -m papy``: a short demo of IMap on process workers (threads on Windows).

1. The seed's nested map ``degrees(radians(x))`` as two chained tasks of one
   IMap: results, and the order in which the tasklets were evaluated.
2. Two independent tasks L and R with ``stride=2``: the weave evaluates
   ``L0 L1 R0 R1 L2 L3 R2 R3``.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time

from papy import IMap, __version__
from papy._pools import PROCESS_WORKERS
from papy._scheduler import IMPLEMENTATION

#: process workers where the platform has them (POSIX), else threads (Windows)
KIND = "process" if PROCESS_WORKERS else "thread"


def _radians(x: float, log: str) -> float:
    with open(log, "a") as fh:
        fh.write(f"radians({x}) ")
    return math.radians(x)


def _degrees(x: float, log: str) -> float:
    with open(log, "a") as fh:
        fh.write(f"degrees({x:.4f}) ")
    return math.degrees(x)


def _tag(x: int, tag: str, log: str) -> int:
    with open(log, "a") as fh:
        fh.write(f"{tag}{x} ")
    return x


def _read(log: str) -> str:
    with open(log) as fh:
        return fh.read().strip()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m papy",
        description="A short demo of papy's IMap: the seed's degrees(radians(x)) as two "
        "chained tasks, and two independent tasks woven with stride 2; each prints its "
        "results and the order in which the tasklets were evaluated.",
        epilog="papy's remote worker server: python -m papy.remote serve --help",
    )
    parser.add_argument("--version", action="version", version=f"papy {__version__}")
    parser.parse_args(argv)
    print(f"papy demo (scheduler core: {IMPLEMENTATION}, pid {os.getpid()})\n")
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "chain.log")
        # One worker, so the evaluation order is exactly the submission order.
        with IMap(worker_type=KIND, worker_num=1, stride=2) as imap:
            radians = imap.add_task(_radians, [1, 2, 3, 4], args=(log,))
            degrees = imap.add_task(_degrees, radians, args=(log,))
            imap.start()
            results = [round(d, 6) for d in degrees]
        print(f"1. degrees(radians(x)) for x in [1, 2, 3, 4], stride 2, one {KIND} worker")
        print("   results:         ", results)
        print("   evaluation order:", _read(log))

        log = os.path.join(tmp, "stride.log")
        with IMap(worker_type=KIND, worker_num=1, stride=2) as imap:
            left = imap.add_task(_tag, range(4), args=("L", log))
            right = imap.add_task(_tag, range(4), args=("R", log))
            imap.start()
            got = []
            for _ in range(2):  # read in weave order: stride results of each task in turn
                got += [next(left), next(left), next(right), next(right)]
            time.sleep(0.05)
        print("\n2. two independent tasks L and R, stride 2 (buffer = 2 tasks x stride)")
        print("   results (weave order):", got)
        print("   evaluation order:     ", _read(log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
