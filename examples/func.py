"""``@imports``: the original's decorator binds modules into the function's globals.

Re-expresses the original's ``func.py`` unchanged but for ``print``: ``os`` is
never imported at the top, the decorator binds it (papy does not need the
decorator, because it sends functions pickled, but code written for the
original keeps working).
"""

from papy import imports


@imports(["os"])
def hello_you(inbox):
    name = inbox[0]
    print(f"hello {name} I am {os.getpid()}")  # noqa: F821 - os is bound by @imports


hello_you(["world"])
