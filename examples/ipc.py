"""Items between two parallel Pipers out of band: ``dump_item`` up, ``load_item`` down.

Re-expresses the original's ``ipc.py``: two NuMaps, ``upstream`` composed
with ``dump_item`` and ``load_item`` composed with ``downstream``. Only a small
ItemRef travels through this process; the item goes through a temporary file,
a FIFO or a loopback socket (the first argument), removed after use.
"""

import sys

from papy import NuMap, imports
from papy.pipeline import Piper, Worker
from papy.pipeline.util import dump_item, load_item


@imports(["os"])
def upstream(inbox):
    up_pid = os.getpid()  # noqa: F821 - os is bound by @imports
    return str(up_pid)


@imports(["os"])
def downstream(inbox):
    up_pid = inbox[0]
    down_pid = os.getpid()  # noqa: F821
    return f"{up_pid}->{down_pid}"


if __name__ == "__main__":
    transport = sys.argv[1] if len(sys.argv) > 1 else "file"
    host1 = NuMap(worker_num=2)
    host2 = NuMap(worker_num=2)

    up = Worker((upstream, dump_item), ((), (transport,)))
    dn = Worker((load_item, downstream))
    up_ = Piper(up, parallel=host1)
    dn_ = Piper(dn, parallel=host2)

    up_([["hello", "world", "hi", "folks"]])
    dn_([up_])

    up_.start()
    dn_.start()

    for line in list(dn_):
        print(line)
    dn_.stop()
    up_.stop()
