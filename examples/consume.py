"""consume=2: the Worker gets two inboxes at a time (a list of two inboxes)."""

from papy.pipeline import Piper


def join_words(inbox):
    print("inbox:", list(inbox))
    return " ".join(entry[0] for entry in inbox)


if __name__ == "__main__":
    piper = Piper(join_words, consume=2)
    piper.connect([["hello", "world", "hi", "folks"]])
    piper.start()
    print(list(piper))
