"""A call that must return in time: for tests of calls that could block for ever."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def within(seconds: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Call ``func`` in a daemon thread; fail if it has not returned after
    ``seconds`` (the test goes on: a hang fails it, never blocks the run).
    Returns the seconds it took, and raises what it raised."""
    box: dict[str, Any] = {}

    def call() -> None:
        t0 = time.perf_counter()
        try:
            box["value"] = func(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised again below
            box["error"] = exc
        box["seconds"] = time.perf_counter() - t0

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{func.__name__}() still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return float(box["seconds"])
