"""A Plumber runs a pipeline: start(datas), run(), wait(), stop(); track keeps the results."""

from papy import IMap
from papy.pipeline import Piper, Plumber


def l33t(inbox):
    return inbox[0].replace("e", "3").replace("o", "0")


def l1(inbox):
    return inbox[0].replace("l", "1")


if __name__ == "__main__":
    imap = IMap(worker_type="process", worker_num=2)
    start = Piper(l33t, parallel=imap, name="start")
    end = Piper(l1, parallel=imap, track=True, name="end")
    plumber = Plumber(pipes=[(start, end)])
    plumber.start([["hello", "world"]])
    plumber.run()
    print("finished:", plumber.wait())
    plumber.stop()
    stats = plumber.stats
    print("tracked:", stats["pipers_tracked"][end])
    print("counts:", {p.name: c for p, c in stats["pipers"].items()})
