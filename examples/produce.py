"""produce=2: each result is a sequence of two items, handed out one by one."""

from papy.pipeline import Piper


def l33t_twice(inbox):
    word = inbox[0].replace("e", "3").replace("o", "0")
    return (word, word)


if __name__ == "__main__":
    piper = Piper(l33t_twice, produce=2)
    piper.connect([["hello", "world"]])
    piper.start()
    print(list(piper))
