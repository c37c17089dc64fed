"""A pipeline template: fork -> (left, right: two parallel Pipers sharing one IMap) -> join -> print.

    python examples/pipeline.py [--worker-type process|thread] [--workers 2] [--items 4] [--dot]

``--dot`` prints the pipeline as Graphviz DOT instead of running it
(``python examples/pipeline.py --dot | dot -Tpng -o pipeline.png``).
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from papy import IMap
from papy.pipeline import Piper, Plumber, Worker
from papy.pipeline.util import ipasser, print_


def where(worker_type):
    if worker_type == "process":
        return f"process:{os.getpid()}"
    return f"thread:{threading.current_thread().name}"


def work(inbox, worker_type):
    return f"{where(worker_type)}"


def join(inbox):
    return f"joined result from {inbox[0]} and {inbox[1]}"


def build(worker_type: str, workers: int) -> Plumber:
    imap = IMap(worker_type=worker_type, worker_num=workers, name="shared")
    fork = Piper(ipasser, name="fork")
    left = Piper(Worker(work, (worker_type,)), parallel=imap, name="left", branch=1)
    right = Piper(Worker(work, (worker_type,)), parallel=imap, name="right", branch=2)
    joiner = Piper(join, name="join")
    output = Piper(print_, name="print")
    return Plumber(pipes=[(fork, left, joiner, output), (fork, right, joiner)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-type", choices=["process", "thread"], default="process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--dot", action="store_true", help="print the graph (DOT) and exit")
    args = parser.parse_args()
    plumber = build(args.worker_type, args.workers)
    if args.dot:
        print(plumber.to_dot(), end="")
        return
    start = time.perf_counter()
    plumber.start([range(args.items)])
    plumber.run()
    plumber.wait()
    plumber.stop()
    print(f"Runtime: {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
