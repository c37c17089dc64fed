"""A linear Piper: connect it to an input, start it, read it."""

from papy.pipeline import Piper


def l33t(inbox):
    return inbox[0].replace("e", "3").replace("o", "0")


if __name__ == "__main__":
    piper = Piper(l33t)
    piper.connect([["hello", "world"]])
    piper.start()
    print(list(piper))
    piper.stop()
    piper.disconnect()
