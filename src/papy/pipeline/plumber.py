"""Plumber: runs a Dagger.

The canonical sequence is ``start(datas)`` -> ``run()`` -> ``wait()`` ->
``stop()``; ``pause()`` suspends the reading of the outputs and ``run()``
resumes it. The *plunger* is one thread per start that reads the output Pipers
round robin (one item from each in turn) and discards the items (a pipeline's
output Pipers should store their results; tracked Pipers keep them in
``tracked``). An output that ends is left out of the rotation; the run
finishes when all have ended. An exception raised while reading an output (a
``debug`` Piper's error, or a broken IMap) ends the run: ``wait()`` raises it;
with ``fail_fast`` the first item that fails anywhere does too.

The caller keeps control: ``pause()`` and ``stop()`` never wait for a read
that blocks (an input waiting for data, a slow worker function). ``pause()``
lets the plunger finish the read it is in and returns within half a second;
whatever that read returns, and every item in flight, comes out after
``run()``. ``stop()`` ends the inputs, lets the items already read flow out for
at most ``timeout`` seconds, then stops every IMap at once: what has not come
out by then is discarded (the Pipers' counts say exactly what came out). A read
blocked inside user code cannot be interrupted: its thread is left to finish
it, and what it returns is dropped.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import _check
from .._log import pipeline_logger
from .dagger import Dagger
from .errors import PlumberError, WorkerError
from .piper import Piper

__all__ = ["Plumber"]

#: pause(): how long to wait for the plunger to finish the read it is in
_PAUSE_WAIT = 0.5
#: stop(): how long the items already read may take to come out (the default ``timeout``)
_DRAIN = 0.5
#: stop(): how long to wait for the plunger once the maps are stopped (a read blocked in
#: user code is left behind after that)
_JOIN_WAIT = 0.2


class _either_way:  # noqa: N801 - used as a decorator, like classmethod
    """A method that may be called on the class (getting the class) or on an
    instance (getting the instance)."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self._func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, cls: type | None = None) -> Callable[..., Any]:
        return functools.partial(self._func, obj if obj is not None else cls)


class _Run:
    """One ``start()`` of a Plumber: its plunger thread, what the thread is told to
    do, and how the run ended.

    ``mode`` (written under ``cond``): ``"idle"`` before ``run()``, ``"run"``,
    ``"pause"`` (the plunger parks between two reads), ``"drain"`` (``stop()``:
    read until every output ends, errors ignored) and ``"quit"``. A plunger that
    ``stop()`` leaves behind (blocked in user code) only ever writes to its own
    ``_Run``, so a later start of the same Plumber is not disturbed.
    """

    def __init__(self, pipers: list[Piper], outputs: list[Piper], fail_fast: bool) -> None:
        self.cond = threading.Condition()
        self.mode = "idle"
        self.parked = True  # the plunger is not inside a read
        self.thread: threading.Thread | None = None
        self.pipers = pipers
        self.outputs = outputs
        self.live = list(outputs)
        self.turn = 0
        self.fail_fast = fail_fast
        self.bar: Any = None
        self.done = threading.Event()
        self.finished = False
        self.error: BaseException | None = None
        self.first_failure: WorkerError | None = None
        self.start_time = time.time()
        self.t0 = time.perf_counter()
        self.end_time: float | None = None
        self.reported = False

    # -- the plunger thread -----------------------------------------------------
    def launch(self) -> None:
        self.thread = threading.Thread(target=self.plunge, name="papy-plunger", daemon=True)
        self.thread.start()

    def plunge(self) -> None:
        try:
            self._plunge()
        except BaseException as exc:  # noqa: BLE001 - ends the run; wait() raises it
            self.end(exc)
        finally:
            with self.cond:
                self.parked = True
                self.cond.notify_all()
            self.close_bar()

    def _plunge(self) -> None:
        live = self.live
        cond = self.cond
        while True:
            with cond:
                while self.mode == "pause" and live and not self.done.is_set():
                    self.parked = True
                    cond.notify_all()
                    cond.wait()
                self.parked = False
                mode = self.mode
                failure = self.first_failure if self.fail_fast and mode == "run" else None
            if mode == "quit" or not live:
                break
            if mode != "drain" and self.done.is_set():
                return  # the run was ended by a failure read by another thread
            if failure is not None:
                self.end(failure)
                return
            if self.turn >= len(live):
                self.turn = 0
            piper = live[self.turn]
            try:
                next(piper)
            except StopIteration:
                live.remove(piper)  # the next output takes its place in the turn
                continue
            except Exception as exc:
                if self.mode not in ("drain", "quit"):
                    raise
                if isinstance(exc, WorkerError):  # a debug Piper's item: read on
                    self.turn += 1
                else:  # a stopped map, a broken output: nothing more comes from it
                    live.remove(piper)
                continue
            self.turn += 1
            bar = self.bar
            if bar is not None:
                bar.update(1)
        if not live and self.mode in ("run", "pause"):
            for piper in self.pipers:
                if piper.failure is not None:
                    raise piper.failure
            # with fail_fast, a failure seen while paused still ends the run as one
            self.end(self.first_failure if self.fail_fast else None)

    # -- the end of a run ---------------------------------------------------------
    def failed(self, error: WorkerError) -> None:
        """(any thread reading a Piper) An item failed: the first is kept, and with
        ``fail_fast`` it ends a running run."""
        with self.cond:
            if self.first_failure is None:
                self.first_failure = error
            now = self.fail_fast and self.mode == "run" and not self.done.is_set()
        if now:
            self.end(error)

    def end(self, error: BaseException | None) -> None:
        """The run is over: finished (``error`` None) or ended by ``error``."""
        with self.cond:
            if self.done.is_set():
                return
            if isinstance(error, WorkerError) and error.__cause__ is None:
                error.__cause__ = error.exception
            self.error = error
            self.finished = True
            self.end_time = time.perf_counter()
            self.done.set()
            self.cond.notify_all()
        self.report("failed" if error is not None else "finished")

    def close_bar(self) -> None:
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()

    def report(self, how: str) -> None:
        """Log the summary of the run once: at WARNING if any item failed."""
        with self.cond:
            if self.reported:
                return
            self.reported = True
        end = self.end_time if self.end_time is not None else time.perf_counter()
        out = sum(p.stats["out"] for p in self.outputs)
        errors = sum(p.stats["errors"] for p in self.outputs)
        failed = {p.name: p.stats["failed"] for p in self.pipers if p.stats["failed"]}
        n_failed = sum(failed.values())
        text = (
            f"pipeline {how} after {end - self.t0:.3g} s: {out} items out, "
            f"{errors} of them errors; {n_failed} failed"
        )
        if failed:
            text += " (" + ", ".join(f"{name}: {n}" for name, n in failed.items()) + ")"
        if self.first_failure is not None:
            text += f"; the first: {self.first_failure}"
        if self.error is not None and self.error is not self.first_failure:
            text += f"; ended by {type(self.error).__name__}: {self.error}"
        log = pipeline_logger()
        if n_failed or errors or self.error is not None:
            log.warning("%s", text)
        else:
            log.info("%s", text)


class Plumber(Dagger):
    """A Dagger that runs: it connects, starts, runs and stops a pipeline.

    States: *idle* -> ``start(datas)`` -> *started* -> ``run()`` -> *running*
    -> (finished, or ``pause()`` -> *paused* -> ``run()`` ...) -> ``stop()``
    -> *idle*. While running, a plunger thread reads the output Pipers (and
    discards their items: outputs should store them, or be tracked); an
    exception that ends the run is raised by ``wait()``, so a pipeline never
    hangs silently. ``pause()`` and ``stop()`` return within about a second
    whatever the input and the workers do (see the module docstring). When a
    run ends, a summary is logged to the ``papy.pipeline`` logger: items out,
    items failed, the first failure (at WARNING if any item failed, else INFO).

    Args:
        pipers: As for ``Dagger``: Pipers added first.
        pipes: As for ``Dagger``: the pipes, in order.
        xtras: As for ``Dagger``: one dict per Piper of ``pipers``.
        progress: Show a tqdm progress bar of the items leaving the pipeline
            (``pip install "papy2[progress]"``).
        fail_fast: End the run at the first item that fails in any Piper:
            ``wait()`` raises its ``WorkerError``. By default failed items
            flow to the outputs as values and the run goes on.
    """

    def __init__(
        self,
        pipers: Iterable[Any] = (),
        pipes: Iterable[Sequence[Any]] = (),
        xtras: Any = None,
        progress: bool = False,
        fail_fast: bool = False,
    ):
        super().__init__(pipers, pipes, xtras)
        # progress=True: a tqdm bar counts the items that leave the output Pipers
        self.progress = bool(progress)
        self.fail_fast = _check.flag("fail_fast", fail_fast)
        self._started = False
        self._current: _Run | None = None  # the run of the last start()

    # -- state ----------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._started

    @property
    def running(self) -> bool:
        """True while the plunger reads the outputs (not paused, not finished)."""
        run = self._current
        return (
            self._started
            and run is not None
            and run.mode == "run"
            and run.thread is not None
            and not run.done.is_set()
        )

    @property
    def paused(self) -> bool:
        """True between ``pause()`` and the next ``run()`` (or ``stop()``)."""
        run = self._current
        return self._started and run is not None and run.mode == "pause" and not run.finished

    @property
    def finished(self) -> bool:
        """True once every output Piper has ended (or the run failed)."""
        return self._current is not None and self._current.finished

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the run, if one did."""
        return self._current.error if self._current is not None else None

    def start(self, datas: Sequence[Any]) -> None:  # type: ignore[override]
        """Connect the input Pipers to ``datas`` (one iterable each, in input
        order), connect and start every Piper. The plunger is not started yet."""
        if self._started:
            raise PlumberError("the Plumber is already started; stop() it first")
        pipers = self.postorder()
        run = _Run(pipers, self.get_outputs(), self.fail_fast)
        for piper in pipers:
            piper._on_failure = run.failed
        try:
            self.connect(datas)
            super().start()
        except BaseException:
            for piper in pipers:
                piper._on_failure = None
            for piper in self.postorder():
                try:
                    if piper.started:
                        piper.stop(forced=True)
                    if piper.connected:
                        piper.disconnect(forced=True)
                except Exception:  # noqa: BLE001 - best effort; the original error is raised
                    pass
            raise
        self._current = run
        self._started = True

    def run(self) -> None:
        """Start (or resume) the plunger."""
        run = self._current
        if not self._started or run is None:
            raise PlumberError("the Plumber is not started; start(datas) first")
        if self.running:
            raise PlumberError("the Plumber is already running")
        if run.finished:
            raise PlumberError("the run has finished; stop() the Plumber")
        if self.progress and run.bar is None:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                raise PlumberError(
                    "progress=True needs tqdm: pip install 'papy2[progress]'"
                ) from None
            run.bar = tqdm(unit="item", desc="pipeline")
        with run.cond:
            run.mode = "run"
            run.cond.notify_all()
        if run.thread is None:
            run.launch()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to finish; True if it did, False if ``timeout`` passed.

        Raises the exception that ended the run, if one did (with ``fail_fast``,
        the first failed item's ``WorkerError``).
        """
        timeout = _check.seconds("timeout", timeout)
        run = self._current
        if run is None or not (run.finished or (self._started and run.thread is not None)):
            raise PlumberError("the Plumber is not running; run() it first")
        if not run.finished and run.mode != "run":
            raise PlumberError("the Plumber is paused; run() it first")
        done = run.done.wait(timeout)
        if done and run.error is not None:
            raise run.error
        return done

    def pause(self) -> None:
        """Stop reading the outputs; ``run()`` resumes.

        The plunger finishes the read it is in; ``pause()`` waits for that half
        a second at most, so it returns at once even when the read waits for a
        blocked input or a slow worker (that read then completes in the
        background, and its item is handed out and counted as usual). Nothing
        is lost: the items in flight stay in the pipeline and come out after
        ``run()`` (the IMaps go on until their buffers are full).
        """
        run = self._current
        if run is None or not (self.running or (self._started and run.finished)):
            raise PlumberError("the Plumber is not running")
        if run.finished:
            return
        with run.cond:
            run.mode = "pause"
            run.cond.notify_all()
            run.cond.wait_for(lambda: run.parked or run.done.is_set(), _PAUSE_WAIT)

    def stop(self, timeout: float | None = _DRAIN) -> None:
        """Stop and disconnect every Piper; returns within about ``timeout`` seconds.

        Allowed when the run has finished, is paused, or was never run. The
        inputs end at once (nothing more is read from them). If the run has not
        finished, the items already read go on flowing to the outputs (and are
        discarded there, tracked Pipers keep them) for at most ``timeout``
        seconds (``None``: until all are out, however long that takes; ``0``:
        not at all). Then every IMap stops at once (busy worker processes are
        terminated) and whatever has not come out is discarded: each Piper's
        ``stats`` count exactly the items it handed out.
        """
        timeout = _check.seconds("timeout", timeout)
        if not self._started:
            raise PlumberError("the Plumber is not started")
        if self.running:
            raise PlumberError("the Plumber is running; pause() it first (or wait() for the end)")
        run = self._current
        assert run is not None
        for piper in self.get_inputs():
            piper._end_inputs()
        if not run.finished and timeout != 0:
            with run.cond:
                run.mode = "drain"
                run.cond.notify_all()
            if run.thread is None:
                run.launch()
            assert run.thread is not None
            run.thread.join(timeout)
        with run.cond:
            run.mode = "quit"
            run.cond.notify_all()
        try:
            self._stop_pipers()
        finally:
            if run.thread is not None:
                run.thread.join(_JOIN_WAIT)  # a read blocked in user code is left behind
            run.close_bar()
            if run.end_time is None:
                run.end_time = time.perf_counter()
            for piper in run.pipers:
                if piper._on_failure == run.failed:
                    piper._on_failure = None
            self.disconnect(forced=True)
            self._started = False
            run.report("stopped")

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
        """The counts of the current (or last) run.

        ``start_time`` (epoch seconds), ``run_time`` (seconds from start to the
        end of the run, or until now), ``finished``; ``out`` (items handed out
        by the output Pipers), ``errors`` (the ``WorkerError`` items among
        them), ``failed`` (items that failed in any Piper) and
        ``first_failure`` (the first of them, or None); ``pipers`` (per Piper:
        items ``in``, ``out``, ``errors``, ``failed``) and ``pipers_tracked``
        (the ``tracked`` dict of every tracked Piper), keyed by Piper."""
        run = self._current
        if run is None:
            start_time = run_time = None
        else:
            start_time = run.start_time
            end = run.end_time if run.end_time is not None else time.perf_counter()
            run_time = end - run.t0
        pipers = self.postorder()
        outputs = self.get_outputs()
        counts = {p: p.stats for p in pipers}
        return {
            "start_time": start_time,
            "run_time": run_time,
            "finished": self.finished,
            "out": sum(counts[p]["out"] for p in outputs),
            "errors": sum(counts[p]["errors"] for p in outputs),
            "failed": sum(c["failed"] for c in counts.values()),
            "first_failure": run.first_failure if run is not None else None,
            "pipers": counts,
            "pipers_tracked": {p: p.tracked for p in pipers if p.track},
        }

    def __repr__(self) -> str:
        if self.running:
            state = "running"
        elif self.finished:
            state = "finished"
        elif self.paused:
            state = "paused"
        elif self._started:
            state = "started"
        else:
            state = "idle"
        return f"<Plumber {state} pipers={len(self)} pipes={len(self.pipes)}>"
