"""A remote Piper: a Piper evaluated by the workers of a papy server (``grid.py``).

Re-expresses the original's ``grid.py``: a NuMap with no local workers
(``worker_num=0``) and two remote slots, a Piper on it, ``@imports`` as the
original wrote it. The original connected to a stock RPyC classic server;
papy's own server runs here on 127.0.0.1 (on a cluster: ``papy-worker --host
0.0.0.0`` with TLS on each machine, see docs/remote.md).
"""

import os

from remote import start_server

from papy import NuMap, imports
from papy.pipeline import Piper


@imports(["os"])
def hello_from(inbox):
    word = inbox[0]
    up_pid = os.getpid()
    return (word, up_pid)


if __name__ == "__main__":
    server, port = start_server()
    try:
        somehost = NuMap(worker_num=0, worker_remote=[(f"127.0.0.1:{port}", 2)])
        remote_piper = Piper(hello_from, parallel=somehost)
        remote_piper([["hello", "world", "hi", "folks"]])
        remote_piper.start()
        results = list(remote_piper)
        remote_piper.stop()
        print([word for word, pid in results])
        print("evaluated by the server:", all(pid != os.getpid() for word, pid in results))
    finally:
        server.terminate()
        server.wait(10)
