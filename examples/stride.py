"""stride=2, two independent tasks read in weave order: L0 L1 R0 R1 L2 L3 R2 R3."""

from papy import IMap

evaluated = []


def tag(item, name):
    evaluated.append(f"{name}{item}")
    return item


if __name__ == "__main__":
    # one thread worker: the evaluation order is exactly the submission order
    with IMap(worker_type="thread", worker_num=1, stride=2) as imap:
        left = imap.add_task(tag, range(4), args=("L",))
        right = imap.add_task(tag, range(4), args=("R",))
        imap.start()
        results = []
        for _ in range(2):  # at most `stride` results of one task in a row
            results += [
                ("L", next(left)),
                ("L", next(left)),
                ("R", next(right)),
                ("R", next(right)),
            ]
    print("evaluation order:", " ".join(evaluated))
    print("results:", results)
