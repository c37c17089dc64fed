"""IMap(func, iterable) starts at once; iterating it gives the results of task 0 in order."""

from papy import IMap


def hello(item):
    return item


if __name__ == "__main__":
    data = tuple(f"element_{i}" for i in range(5))
    with IMap(hello, data, worker_type="process", worker_num=2) as result:
        print(tuple(result))
