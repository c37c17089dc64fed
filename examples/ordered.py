"""Ordered results come in input order; unordered ones as soon as they are ready."""

import time

from papy import IMap


def wake(item):
    if item == "sleep":
        time.sleep(0.5)
    return item


if __name__ == "__main__":
    data = ("awake", "sleep", "awake", "awake")
    for ordered in (True, False):
        with IMap(wake, data, worker_type="thread", worker_num=4, ordered=ordered) as result:
            print("ordered" if ordered else "unordered", tuple(result))
