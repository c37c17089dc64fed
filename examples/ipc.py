"""Large items between parallel Pipers, out of band: dump_item in one, load_item in the next.

Only a small ItemRef travels through the pipeline; the item itself goes
through a temporary file, a FIFO or a loopback socket, removed after use.
"""

import os
import sys

from papy import IMap
from papy.pipeline import Piper, Plumber, Worker
from papy.pipeline.util import dump_item, load_item


def make(inbox):
    return f"{os.getpid()}"  # dump_item, next in the composition, gets it as inbox[0]


def arrive(inbox):
    return f"{inbox[0]}->{os.getpid()}"


if __name__ == "__main__":
    transport = sys.argv[1] if len(sys.argv) > 1 else "file"
    up = Piper(
        Worker((make, dump_item), ((), (transport,))), parallel=IMap(worker_num=2), name="up"
    )
    down = Piper(Worker((load_item, arrive)), parallel=IMap(worker_num=2), name="down", track=True)
    plumber = Plumber(pipes=[(up, down)])
    plumber.start([range(4)])
    plumber.run()
    plumber.wait()
    plumber.stop()
    for i in range(4):
        print(down.tracked[i])
