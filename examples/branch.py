"""Two tasks joined by zip(left, right) into a third task of the same IMap."""

from papy import IMap


def left(item):
    return f"left_{item}"


def right(item):
    return f"right_{item}"


def passer(item):
    return item


if __name__ == "__main__":
    with IMap(worker_type="process", worker_num=2) as imap:
        lefts = imap.add_task(left, range(5))
        rights = imap.add_task(right, range(5))
        joined = imap.add_task(passer, zip(lefts, rights))
        imap.start()
        print(tuple(joined))
