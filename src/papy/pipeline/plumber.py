"""Plumber: runs a Dagger.

The canonical sequence is ``start(datas)`` -> ``run()`` -> ``wait()`` ->
``stop()``; ``pause()`` halts the plunger at a round boundary and ``run()``
resumes it. The *plunger* is one thread that reads the output Pipers round
robin (one item from each in turn) and discards the items (a pipeline's output
Pipers should store their results; tracked Pipers keep them in ``tracked``).
An output that ends is left out of the rotation; the run finishes when all
have ended. An exception raised while reading an output (a ``debug`` Piper's
error, or a broken IMap) ends the run: ``wait()`` raises it.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .dagger import Dagger
from .errors import PlumberError
from .piper import Piper

__all__ = ["Plumber"]


class _either_way:  # noqa: N801 - used as a decorator, like classmethod
    """A method that may be called on the class (getting the class) or on an
    instance (getting the instance)."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self._func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, cls: type | None = None) -> Callable[..., Any]:
        return functools.partial(self._func, obj if obj is not None else cls)


class Plumber(Dagger):
    """A Dagger that runs: it connects, starts, runs and stops a pipeline.

    States: *idle* -> ``start(datas)`` -> *started* -> ``run()`` -> *running*
    -> (finished, or ``pause()`` -> *started* again) -> ``stop()`` -> *idle*.
    While running, a plunger thread reads the output Pipers (and discards their
    items: outputs should store them, or be tracked); an exception that ends
    the run is raised by ``wait()``, so a pipeline never hangs silently.

    Args:
        pipers: As for ``Dagger``: Pipers added first.
        pipes: As for ``Dagger``: the pipes, in order.
        xtras: As for ``Dagger``: one dict per Piper of ``pipers``.
        progress: Show a tqdm progress bar of the items leaving the pipeline
            (``pip install "papy2[progress]"``).
    """

    def __init__(
        self,
        pipers: Iterable[Any] = (),
        pipes: Iterable[Sequence[Any]] = (),
        xtras: Any = None,
        progress: bool = False,
    ):
        super().__init__(pipers, pipes, xtras)
        # progress=True: a tqdm bar counts the items that leave the output Pipers
        self.progress = bool(progress)
        self._bar: Any = None
        self._started = False
        self._plunger: threading.Thread | None = None
        self._pausing = threading.Event()
        self._done = threading.Event()
        self._finished = False
        self._error: BaseException | None = None
        self._start_time: float | None = None
        self._end_time: float | None = None
        self._t0 = 0.0
        self._outputs: list[Piper] = []
        self._live: list[Piper] = []

    # -- state ----------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._started

    @property
    def running(self) -> bool:
        """True while the plunger thread runs (and has not finished the run)."""
        return self._plunger is not None and self._plunger.is_alive() and not self._done.is_set()

    @property
    def finished(self) -> bool:
        """True once every output Piper has ended (or the run failed)."""
        return self._finished

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the run, if one did."""
        return self._error

    def start(self, datas: Sequence[Any]) -> None:  # type: ignore[override]
        """Connect the input Pipers to ``datas`` (one iterable each, in input
        order), connect and start every Piper. The plunger is not started yet."""
        if self._started:
            raise PlumberError("the Plumber is already started; stop() it first")
        self._finished = False
        self._error = None
        self._done.clear()
        self._pausing.clear()
        self._start_time = time.time()
        self._t0 = time.perf_counter()
        self._end_time = None
        try:
            self.connect(datas)
            super().start()
        except BaseException:
            for piper in self.postorder():
                try:
                    if piper.started:
                        piper.stop(forced=True)
                    if piper.connected:
                        piper.disconnect(forced=True)
                except Exception:  # noqa: BLE001 - best effort; the original error is raised
                    pass
            raise
        self._outputs = self.get_outputs()
        self._live = list(self._outputs)
        self._started = True

    def run(self) -> None:
        """Start (or resume) the plunger thread."""
        if not self._started:
            raise PlumberError("the Plumber is not started; start(datas) first")
        if self.running:
            raise PlumberError("the Plumber is already running")
        if self._finished:
            raise PlumberError("the run has finished; stop() the Plumber")
        self._pausing.clear()
        if self.progress and self._bar is None:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                raise PlumberError(
                    "progress=True needs tqdm: pip install 'papy2[progress]'"
                ) from None
            self._bar = tqdm(unit="item", desc="pipeline")
        self._plunger = threading.Thread(target=self._plunge, name="papy-plunger", daemon=True)
        self._plunger.start()

    def _plunge(self) -> None:
        live = self._live
        bar = self._bar
        try:
            while live and not self._pausing.is_set():
                for piper in list(live):
                    try:
                        next(piper)
                    except StopIteration:
                        live.remove(piper)
                    else:
                        if bar is not None:
                            bar.update(1)
            if not live:
                for piper in self.postorder():
                    if piper.failure is not None:
                        raise piper.failure
                self._finish()
        except BaseException as exc:  # noqa: BLE001 - ends the run; wait() raises it
            self._error = exc
            self._finish()

    def _finish(self) -> None:
        self._end_time = time.perf_counter()
        self._finished = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to finish; True if it did, False if ``timeout`` passed.

        Raises the exception that ended the run, if one did.
        """
        if self._plunger is None and not self._finished:
            raise PlumberError("the Plumber is not running; run() it first")
        if not self._finished and not self.running:
            raise PlumberError("the Plumber is paused; run() it first")
        done = self._done.wait(timeout)
        plunger = self._plunger
        if done and plunger is not None and plunger is not threading.current_thread():
            # The plunger sets `_done` as its last act; let it end, so that a
            # stop() right after wait() never sees it still running.
            plunger.join()
        if done and self._error is not None:
            raise self._error
        return done

    def pause(self) -> None:
        """Stop the plunger at the end of its current round (the IMaps go on
        until their buffers are full). ``run()`` resumes."""
        if self._plunger is None or not (self.running or self._finished):
            raise PlumberError("the Plumber is not running")
        self._pausing.set()
        self._plunger.join()
        self._plunger = None

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully (see ``Dagger.stop``) and disconnect every Piper.

        Allowed when the run has finished, is paused, or was never run.
        """
        if not self._started:
            raise PlumberError("the Plumber is not started")
        if self.running:
            raise PlumberError("the Plumber is running; pause() it first (or wait() for the end)")
        if self._plunger is not None:
            self._plunger.join()
            self._plunger = None
        try:
            super().stop(timeout)
        finally:
            if self._end_time is None:
                self._end_time = time.perf_counter()
            self.disconnect(forced=True)
            self._started = False

    # -- saving -------------------------------------------------------------------
    def save(self, filename: str | os.PathLike[str]) -> None:
        """Save the pipeline's definition (Pipers, Workers, IMap settings, pipes,
        branches, xtras) to ``filename``; ``Plumber.load`` builds it again,
        in this or another process. See ``papy.pipeline._saved``."""
        from . import _saved

        _saved.save(self, filename)
        self.log.debug("%r saved to %s", self, os.fspath(filename))

    @_either_way
    def load(target: Any, filename: str | os.PathLike[str]) -> Any:  # noqa: N805
        """Load a pipeline saved by ``save``: ``Plumber.load(filename)`` returns a
        new Plumber; ``plumber.load(filename)`` (the original's call) adds the
        saved Pipers and pipes to ``plumber`` and returns it. Loading runs code
        from the file: load only files you trust."""
        from . import _saved

        data = _saved.read(filename)
        plumber = target() if isinstance(target, type) else target
        if not isinstance(target, type) and plumber.started:
            raise PlumberError("the Plumber is started; stop() it before loading into it")
        return _saved.build(plumber, data)

    # -- statistics and tracking -----------------------------------------------
    @property
    def stats(self) -> dict[str, Any]:
        """``start_time`` (epoch seconds), ``run_time`` (seconds from start to
        the end of the run, or until now), ``pipers`` (per Piper: items
        ``in``, ``out``, ``errors``, ``failed``) and ``pipers_tracked`` (the
        ``tracked`` dict of every tracked Piper), keyed by Piper."""
        if self._start_time is None:
            run_time = None
        else:
            end = self._end_time if self._end_time is not None else time.perf_counter()
            run_time = end - self._t0
        return {
            "start_time": self._start_time,
            "run_time": run_time,
            "finished": self._finished,
            "pipers": {p: p.stats for p in self.postorder()},
            "pipers_tracked": {p: p.tracked for p in self.postorder() if p.track},
        }

    def __repr__(self) -> str:
        if self.running:
            state = "running"
        elif self._finished:
            state = "finished"
        elif self._started:
            state = "started"
        else:
            state = "idle"
        return f"<Plumber {state} pipers={len(self)} pipes={len(self.pipes)}>"
