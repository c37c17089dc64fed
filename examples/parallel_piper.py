"""A parallel Piper: the same, evaluated by the process workers of an IMap."""

from papy import IMap
from papy.pipeline import Piper


def l33t(inbox):
    return inbox[0].replace("e", "3").replace("o", "0")


if __name__ == "__main__":
    imap = IMap(worker_type="process", worker_num=2)
    piper = Piper(l33t, parallel=imap)
    piper.connect([["hello", "world"]])
    piper.start()
    print(list(piper))
    piper.stop()
    piper.disconnect()
