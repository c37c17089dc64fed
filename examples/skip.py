"""next(timeout=...) with skip=False returns the late item later; with skip=True it is dropped."""

import time

import papy
from papy import IMap


def wake(item):
    if item == "sleep":
        time.sleep(1.0)
    return item


if __name__ == "__main__":
    data = ("awake", "sleep", "awake", "awake")
    for skip in (False, True):
        print(f"skip={skip}")
        with IMap(wake, data, worker_type="thread", worker_num=2, skip=skip) as imap:
            while True:
                try:
                    print("  ", imap.next(timeout=0.6))
                except papy.TimeoutError:
                    print("   timeout")
                except StopIteration:
                    break
