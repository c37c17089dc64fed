"""A Dagger of two Pipers sharing one IMap."""

from papy import IMap
from papy.pipeline import Dagger, Piper


def l33t(inbox):
    return inbox[0].replace("e", "3").replace("o", "0")


def l1(inbox):
    return inbox[0].replace("l", "1")


if __name__ == "__main__":
    imap = IMap(worker_type="process", worker_num=2)
    first = Piper(l33t, parallel=imap)
    second = Piper(l1, parallel=imap)
    dagger = Dagger()
    dagger.add_pipe((first, second))
    dagger.connect([["hello", "world"]])
    dagger.start()
    print(list(second))
    dagger.stop()
    dagger.disconnect()
