"""stride=2, buffer=6: six tasklets are evaluated before anything is read; each read lets one more in."""

import time

from papy import IMap

evaluated = []


def tag(item, name):
    evaluated.append(f"{name}{item}")
    return item


if __name__ == "__main__":
    with IMap(worker_type="thread", worker_num=1, stride=2, buffer=6) as imap:
        left = imap.add_task(tag, range(4), args=("L",))
        right = imap.add_task(tag, range(4), args=("R",))
        imap.start()
        time.sleep(0.3)
        print("before any read:", " ".join(evaluated))
        print("read:", next(left), next(left))
        time.sleep(0.3)
        print("after two reads:", " ".join(evaluated))
        for _ in range(2):
            next(right)
        list(left), list(right)
