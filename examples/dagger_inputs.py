"""Branches order the inputs of a Dagger (and so the datas) and the inbox of a join.

In papy the order is ascending by branch: the input with branch 1 gets datas[0].
"""

from papy.pipeline import Dagger, Piper
from papy.pipeline.util import ipasser, sjoiner

if __name__ == "__main__":
    one = Piper(ipasser, branch=1, name="one")
    two = Piper(ipasser, branch=2, name="two")
    joiner = Piper(sjoiner, name="join")
    joiner.worker.kwargs = ({"join": " "},)
    dagger = Dagger(pipes=[(two, joiner), (one, joiner)])
    print([p.name for p in dagger.get_inputs()], [p.name for p in dagger.upstream(joiner)])
    dagger.connect([["hello", "world"], ["world", "hello"]])
    dagger.start()
    print(list(joiner))
    dagger.stop()
