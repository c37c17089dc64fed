"""Workers never outlive their parent.

Three measures, because a worker may be idle, blocked or spinning in a
function when its parent dies:

* the parent's ends of a worker's pipes are closed in every process forked
  from the parent (:func:`register_parent_fd`), so an idle worker reads EOF;
* every worker holds the read end of a *lifeline* pipe whose write end only
  the parent holds: a thread in the worker (:func:`watch_parent`) reads EOF
  when the parent is gone and ends the worker, busy or not;
* on Linux the worker also asks the kernel for ``SIGKILL`` when its parent
  dies (``PR_SET_PDEATHSIG``), which works even while a C extension holds the
  GIL. The kernel sends it when the parent *thread* that created the worker
  exits, so it is used only when that thread lives as long as the process
  (the main thread, or a forkserver).
"""

from __future__ import annotations

import os
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "register_parent_fd",
    "unregister_parent_fd",
    "watch_parent",
    "set_death_signal",
    "preload",
]

_parent_fds: set[int] = set()
_lock = threading.Lock()
_hooked = False


def _close_parent_fds() -> None:
    """(in a forked child) Close the parent's ends of papy's pipes."""
    for fd in list(_parent_fds):
        try:
            os.close(fd)
        except OSError:
            pass
    _parent_fds.clear()


def register_parent_fd(*fds: int) -> None:
    """``fds`` belong to the parent only: a forked child closes them at once."""
    global _hooked
    with _lock:
        if not _hooked and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_close_parent_fds)
            _hooked = True
        _parent_fds.update(fds)


def unregister_parent_fd(*fds: int) -> None:
    """Forget ``fds`` before they are closed (so a forked child never closes a reused number)."""
    with _lock:
        _parent_fds.difference_update(fds)


_libc_handle: Any = None


def _libc() -> Any:
    """The C library (Linux), loaded once: a forked worker finds it loaded."""
    global _libc_handle
    if _libc_handle is None and sys.platform.startswith("linux"):
        try:
            import ctypes

            _libc_handle = ctypes.CDLL(None, use_errno=True)
        except (OSError, ImportError):
            _libc_handle = False
    return _libc_handle or None


def set_death_signal(expected_parent: int) -> None:
    """(Linux, in a worker) Be killed when the parent thread exits.

    ``expected_parent`` > 0: the parent's pid, checked after the request (the
    parent may have died before it); 0: no check (a forkserver is the parent).
    """
    libc = _libc()
    if libc is None:
        return
    try:
        import signal

        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if expected_parent > 0 and os.getppid() != expected_parent:
        os._exit(1)  # the parent died before the request: nobody wants our results


def watch_parent(fd: int) -> None:
    """(in a worker) End this process when ``fd``, the lifeline's read end, reads EOF."""
    if fd < 0:
        return

    def watch() -> None:
        while True:
            try:
                if not os.read(fd, 1):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        os._exit(1)

    threading.Thread(target=watch, name="papy-lifeline", daemon=True).start()


def preload() -> None:
    """(parent) Load what a worker needs at start, so that forked workers start quickly."""
    _libc()
