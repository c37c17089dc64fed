"""Three chained tasks on one IMap: source -> pipe -> sink, evaluated stride by stride."""

from papy import IMap

trace = []


def step(item, name):
    trace.append(f"{name} {item}")
    return item


if __name__ == "__main__":
    with IMap(worker_type="thread", worker_num=1, stride=2) as imap:
        source = imap.add_task(step, range(6), args=("source",))
        pipe = imap.add_task(step, source, args=("pipe",))
        sink = imap.add_task(step, pipe, args=("sink",))
        imap.start()
        result = list(sink)
    for line in trace:
        print(line)
    print("result:", result)
