"""produce=2 upstream, consume=4 downstream: two results become one inbox of four."""

from papy.pipeline import Piper


def l33t_and_yuk(inbox):
    return (inbox[0].replace("e", "3").replace("o", "0"), "yuk")


def join_words(inbox):
    print("inbox:", list(inbox))
    return " ".join(entry[0] for entry in inbox if entry[0] != "yuk")


if __name__ == "__main__":
    producer = Piper(l33t_and_yuk, produce=2)
    consumer = Piper(join_words, consume=4)
    producer.connect([["hello", "world", "hi", "folks"]])
    consumer.connect([producer])
    producer.start()
    consumer.start()
    print(list(consumer))
