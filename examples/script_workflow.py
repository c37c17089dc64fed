"""External programs as pipeline stages: ``script()`` workers (``script_workflow.py``).

Re-expresses the original's ``script/script_workflow.py``: a bash stage turns
each message into a greeting (the message in a file, the greeting written to
another file), then a Python stage packs the greeting (in on stdin, out on
stdout). Both run on one shared NuMap; a failing script would leave a
WorkerError at its item.
"""

import json
import sys

from papy import NuMap
from papy.pipeline import Dagger, Piper, Worker
from papy.pipeline.script import script

GREET = 'printf "Hello, %s!" "$(cat "$1")" > "$2"'
PACK = "import json, sys; text = sys.stdin.read(); print(json.dumps({'package': text}))"

sh_worker = Worker(
    script, (["bash", "-c", GREET, "greet", "{in}", "{out}"],), {"input": "file", "output": "file"}
)
py_worker = Worker(script, ([sys.executable, "-c", PACK],))

if __name__ == "__main__":
    numap = NuMap(worker_num=2)
    sh_piper = Piper(sh_worker, parallel=numap)
    py_piper = Piper(py_worker, parallel=numap)

    pipeline = Dagger()
    pipeline.add_pipe((sh_piper, py_piper))
    end = pipeline.get_outputs()[0]

    pipeline.connect([["work moar", "nevar give up"]])
    pipeline.start()
    print([json.loads(result) for result in end])
    pipeline.stop()
