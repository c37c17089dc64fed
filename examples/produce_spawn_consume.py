"""produce=2, then spawn=2 (two copies of the Worker share the fan-out), then consume=4.

The consumer needs 4 items per inbox, more than the spawner makes in one weave
round of the shared IMap (spawn 2 x stride), so it is linear (on one IMap it
would wait for itself; papy refuses that at connect). The rule of thumb:
upstream produce x spawn >= downstream consume x spawn on a shared IMap.
"""

from papy import NuMap
from papy.pipeline import Dagger, Piper


def l33t_and_yuk(inbox):
    return (inbox[0].replace("e", "3").replace("o", "0"), "yuk")


def upper(inbox):
    return inbox[0].upper()


def join_words(inbox):
    return " ".join(entry[0] for entry in inbox if entry[0] != "YUK")


if __name__ == "__main__":
    imap = NuMap(worker_type="process", worker_num=2)  # the original's defaults: stride 2
    producer = Piper(l33t_and_yuk, parallel=imap, produce=2)
    spawner = Piper(upper, parallel=imap, spawn=2)
    consumer = Piper(join_words, consume=4)
    dagger = Dagger(pipes=[(producer, spawner, consumer)])
    dagger.connect([["hello", "world", "hi", "folks"]])
    dagger.start()
    print(list(consumer))
    dagger.stop()
