"""A Worker can be called directly: it gets an inbox (one entry per upstream pipe)."""

from papy.pipeline import Worker


def l33t(inbox):
    return inbox[0].replace("e", "3")


if __name__ == "__main__":
    worker = Worker(l33t)
    for word in ["hello", "world"]:
        print(worker([word]))
