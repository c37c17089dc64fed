"""A fork: one upstream Piper feeds two outputs; branch=1/2 orders the outputs."""

from papy.pipeline import Dagger, Piper


def upper(inbox):
    return inbox[0].upper()


def e3(inbox):
    return inbox[0].replace("E", "3")


def o0(inbox):
    return inbox[0].replace("O", "0")


if __name__ == "__main__":
    up = Piper(upper, name="upper")
    dagger = Dagger()
    dagger.add_pipe((up, Piper(o0, branch=2, name="o0")))
    dagger.add_pipe((up, Piper(e3, branch=1, name="e3")))
    dagger.connect([["hello", "world"]])
    dagger.start()
    outputs = dagger.get_outputs()  # by branch: e3, then o0
    print([p.name for p in outputs])
    print(list(zip(*outputs)))
    dagger.stop()
