"""A whole workflow: Workers with constant keyword arguments, parallel Pipers, a Plumber.

Each item is stamped when it enters and leaves a slow parallel stage; the
output Piper writes one line per item (an output Piper should store its
results: the Plumber discards what the outputs return).
"""

import sys
import time

from papy import IMap
from papy.pipeline import Piper, Plumber, Worker
from papy.pipeline.util import dump_stream

T0 = time.time()


def stamp(inbox, label):
    item = inbox[0]
    stamps = dict(item[1]) if isinstance(item, tuple) else {}
    stamps[label] = round(time.time() - T0, 2)
    word = item[0] if isinstance(item, tuple) else item
    return (word, stamps)


def slow(inbox, seconds):
    time.sleep(seconds)
    return inbox[0]


def render(inbox):
    word, stamps = inbox[0]  # in a composition, the previous result comes as a 1-tuple
    return f"{word}: " + " ".join(f"{k}={v:.2f}" for k, v in stamps.items())


if __name__ == "__main__":
    imap = IMap(worker_type="process", worker_num=2)
    enter = Piper(Worker(stamp, kwargs={"label": "in"}), name="enter")
    work = Piper(
        Worker((stamp, slow), ((), ()), ({"label": "start"}, {"seconds": 0.1})),
        parallel=imap,
        name="work",
    )
    leave = Piper(Worker((stamp, render), ((), ()), ({"label": "out"}, {})), name="leave")
    output = Piper(Worker(dump_stream, (sys.stdout,)), name="write", track=True)
    plumber = Plumber(pipes=[(enter, work, leave, output)])
    plumber.start([["alpha", "beta", "gamma", "delta"]])
    plumber.run()
    plumber.wait()
    plumber.stop()
    print("counts:", plumber.stats["pipers"][output])
