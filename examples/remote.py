"""Remote workers: an IMap whose tasklets run on a papy worker server (RPyC).

Re-expresses the original's ``remote.py`` (``worker_num=0``: purely remote).
The script starts a server on this machine itself; on a real cluster you
would run ``papy-worker --host 0.0.0.0 --port 18812`` (with TLS) on each
worker machine instead.
"""

import re
import subprocess
import sys

from papy import IMap


def got(x):
    return f"got{x}"


def start_server():
    server = subprocess.Popen(
        [sys.executable, "-m", "papy.remote", "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline()  # "papy-worker serving on 127.0.0.1:PORT (...)"
    match = re.search(r"127\.0\.0\.1:(\d+)", line)
    if match is None:
        server.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return server, int(match.group(1))


if __name__ == "__main__":
    server, port = start_server()
    try:
        with IMap(worker_num=0, worker_remote=[(f"127.0.0.1:{port}", 2)]) as imap:
            results = imap.add_task(got, range(5))
            imap.start()
            print(tuple(results))
    finally:
        server.terminate()
        server.wait(10)
