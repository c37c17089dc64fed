"""Word statistics: a fork, two parallel Pipers sharing one IMap, a join, an output."""

from papy import IMap
from papy.pipeline import Piper, Plumber, Worker
from papy.pipeline.util import ipasser


def length(inbox):
    return len(inbox[0])


def vowels(inbox):
    return sum(ch in "aeiou" for ch in inbox[0])


def report(inbox, sep):
    # the inbox of a join: one entry per upstream pipe, in inbox order
    return sep.join(str(x) for x in inbox)


def build():
    imap = IMap(worker_type="process", worker_num=2, name="pool")
    words = Piper(ipasser, name="words")
    size = Piper(length, parallel=imap, name="length")
    vows = Piper(vowels, parallel=imap, name="vowels")
    join = Piper(Worker(report, kwargs={"sep": "/"}), name="report", track=True)
    return Plumber(pipes=[(words, size, join), (words, vows, join)])


if __name__ == "__main__":
    plumber = build()
    plumber.start([["pipeline", "papy", None, "python"]])
    plumber.run()
    plumber.wait()
    plumber.stop()
    report_piper = plumber.resolve("report")
    for position, item in report_piper.tracked.items():
        print(position, item)
    for piper, counts in plumber.stats["pipers"].items():
        print(piper.name, counts)
