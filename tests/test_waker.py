"""The waker: the self-pipe that interrupts the driving thread's wait (``papy._pools._io``).

A wake-up from another thread may race the driving thread ending one wait
(``disarm``) and starting the next (``arm``). Whatever the interleaving, a wake
ends at most one wait: a byte left in the pipe would end every later wait at
once, and the driving thread would spin instead of waiting.
"""

from __future__ import annotations

import select
import threading
from typing import Any

import pytest

from papy._pools._io import Waker

pytestmark = pytest.mark.timeout(20)


def _woken(waker: Waker, seconds: float = 0.05) -> bool:
    """One wait of the driving thread: did the waker end it (before ``seconds``)?"""
    woke = bool(select.select([waker.fileno()], [], [], seconds)[0])
    waker.disarm()
    waker.arm()
    return woke


def test_a_wake_ends_one_wait_then_waits_wait_again() -> None:
    waker = Waker()
    try:
        waker.arm()
        waker.wake()
        waker.wake()  # a second one before the wait: still one byte
        assert [_woken(waker) for _ in range(3)] == [True, False, False]
    finally:
        waker.close()


def test_a_wake_racing_the_end_of_a_wait_leaves_no_byte_behind() -> None:
    """The interleaving is forced: a thread's ``wake`` has seen the waker armed and
    is held just before it writes; meanwhile the driving thread ends its wait
    (``disarm``) and starts the next (``arm``); then the wake goes on."""
    waker = Waker()
    lock = waker._lock
    in_wake, resume = threading.Event(), threading.Event()
    waking: list[threading.Thread] = []

    class HeldInWake:
        """The waker's lock, holding the waking thread at its door."""

        def __enter__(self) -> Any:
            if threading.current_thread() in waking:
                in_wake.set()
                resume.wait(10)
            return lock.__enter__()

        def __exit__(self, *exc: Any) -> Any:
            return lock.__exit__(*exc)

    try:
        waker.arm()
        waker._lock = HeldInWake()  # type: ignore[assignment]
        thread = threading.Thread(target=waker.wake)
        waking.append(thread)
        thread.start()
        assert in_wake.wait(10)
        waker.disarm()  # the driving thread ends its wait ...
        waker.arm()  # ... and starts the next one
        resume.set()
        thread.join(10)
        waker._lock = lock
        woke = [_woken(waker) for _ in range(3)]
        # the racing wake may end the next wait (it came while armed), no more
        assert woke[1:] == [False, False], f"every wait ended at once: {woke}"
    finally:
        resume.set()
        waker.close()
