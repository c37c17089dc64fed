"""A join: two input Pipers feed one Piper; its inbox has one entry per upstream pipe."""

from papy.pipeline import Dagger, Piper
from papy.pipeline.util import ipasser


def l33t(inbox):
    return inbox[0].replace("e", "3").replace("o", "0")


def join_words(inbox):
    return f"{inbox[0]} {inbox[1]}"


if __name__ == "__main__":
    first = Piper(ipasser, branch=1, name="first")
    second = Piper(ipasser, branch=2, name="second")
    joiner = Piper(join_words, name="join")
    output = Piper(l33t, name="l33t")
    dagger = Dagger(pipes=[(first, joiner, output), (second, joiner)])
    dagger.connect([["hello", "hi"], ["world", "folks"]])  # datas in input (branch) order
    dagger.start()
    print(list(output))
    dagger.stop()
