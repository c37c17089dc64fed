"""Dagger: the directed acyclic graph of Pipers joined by pipes.

A *pipe* ``(a, b, c)`` says that items flow from ``a`` to ``b`` and from ``b``
to ``c``. Every order the Dagger uses is deterministic and never depends on
object ids:

* **inbox order** (the order of the entries of a join's inbox, ``inbox[i]``):
  the upstream Pipers sorted by ``branch``, ascending, where they have one
  (Pipers with a branch come first), then the others in the order their pipes
  were added;
* **input and output order** (``get_inputs()``, ``get_outputs()``, the
  order of ``datas`` in ``connect(datas)``): by ``branch`` in the same way,
  then in the order the Pipers were added to the Dagger;
* **postorder** (the order of connecting and starting): every Piper after all
  of its upstream Pipers; depth first from the inputs, visiting the
  downstream Pipers of a Piper in the same branch order, so a branch stays
  contiguous.

A ``branch`` is any sortable object; branches of types that do not compare
(``1`` and ``'a'``) are ordered by type name, then by value.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import DaggerError, WorkerError
from .piper import Piper

__all__ = ["Dagger"]


@functools.total_ordering
class _BranchKey:
    """Sort key: Pipers with a branch first, by branch; then by a tie-breaker."""

    __slots__ = ("branch", "tie")

    def __init__(self, branch: Any, tie: int) -> None:
        self.branch = branch
        self.tie = tie

    def _cmp(self, other: _BranchKey) -> int:
        a, b = self.branch, other.branch
        if a is None or b is None:
            if a is None and b is None:
                return (self.tie > other.tie) - (self.tie < other.tie)
            return 1 if a is None else -1
        try:
            if a < b:
                return -1
            if b < a:
                return 1
        except TypeError:
            ka, kb = (type(a).__name__, repr(a)), (type(b).__name__, repr(b))
            if ka != kb:
                return -1 if ka < kb else 1
        return (self.tie > other.tie) - (self.tie < other.tie)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _BranchKey) and self._cmp(other) == 0

    def __lt__(self, other: _BranchKey) -> bool:
        return self._cmp(other) < 0


class Dagger:
    """``Dagger(pipers=(), pipes=(), xtras=None)``: a graph of Pipers.

    ``pipers`` are added first (with the matching ``xtras`` dicts, kept as
    ``dagger.xtras[piper]``), then ``pipes``. Anything that is not a Piper but
    a Worker or a callable is wrapped in a new linear Piper when added.
    """

    def __init__(
        self, pipers: Iterable[Any] = (), pipes: Iterable[Sequence[Any]] = (), xtras: Any = None
    ):
        self._order: dict[Piper, int] = {}  # piper -> insertion number
        self._branch: dict[Piper, Any] = {}
        self._up: dict[Piper, list[Piper]] = {}  # in pipe order
        self._down: dict[Piper, list[Piper]] = {}
        self._counter = 0
        self.xtras: dict[Piper, Any] = {}
        self._grace: dict[Any, Any] = {}  # IMap -> its deadlock_grace before start
        pipers = list(pipers)
        xtras = list(xtras) if xtras is not None else [None] * len(pipers)
        if len(xtras) != len(pipers):
            raise ValueError("xtras must have one entry per piper")
        for piper, xtra in zip(pipers, xtras):
            self.add_piper(piper, xtra)
        for pipe in pipes:
            self.add_pipe(pipe)

    # -- nodes ------------------------------------------------------------------
    def __contains__(self, piper: object) -> bool:
        return piper in self._order

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Any:
        return iter(self.postorder())

    @property
    def pipers(self) -> list[Piper]:
        """The Pipers in the order they were added."""
        return list(self._order)

    @property
    def pipes(self) -> list[tuple[Piper, Piper]]:
        """Every ``(upstream, downstream)`` pair, downstream Pipers in the order added."""
        return [(u, d) for d in self._order for u in self._up[d]]

    def resolve(self, piper: Any, forgive: bool = False) -> Any:
        """The Piper ``piper`` (a Piper of this Dagger or its name); DaggerError
        (or False with ``forgive``) if there is none."""
        if isinstance(piper, Piper):
            if piper in self._order:
                return piper
        elif isinstance(piper, str):
            for p in self._order:
                if p.name == piper:
                    return p
        if forgive:
            return False
        raise DaggerError(f"{piper!r} is not a Piper of this Dagger")

    def add_piper(
        self, piper: Any, xtra: Any = None, create: bool = True, branch: Any = None
    ) -> tuple[bool, Piper]:
        """Add a Piper; a Worker or callable becomes a new linear Piper if ``create``.

        Returns ``(created, piper)``. ``branch`` (if given) replaces the Piper's
        own branch inside this Dagger.
        """
        created = False
        if not isinstance(piper, Piper):
            if not create:
                raise DaggerError(f"{piper!r} is not a Piper (and create is False)")
            try:
                piper = Piper(piper)
            except (TypeError, ValueError) as exc:
                raise DaggerError(f"cannot make a Piper of {piper!r}: {exc}") from exc
            created = True
        if piper in self._order:
            if branch is not None:
                self._branch[piper] = branch
            if xtra is not None:
                self.xtras[piper] = xtra
            return False, piper
        for other in self._order:
            if other.name == piper.name:
                raise DaggerError(f"another Piper of this Dagger is named {piper.name!r}")
        self._order[piper] = self._counter
        self._counter += 1
        self._branch[piper] = branch if branch is not None else piper.branch
        self._up[piper] = []
        self._down[piper] = []
        if xtra is not None:
            self.xtras[piper] = xtra
        return created, piper

    def del_piper(self, piper: Any, forced: bool = False) -> None:
        """Remove a Piper and its pipes; one with downstream Pipers needs ``forced``."""
        piper = self.resolve(piper)
        if self._down[piper] and not forced:
            raise DaggerError(
                f"Piper {piper.name!r} has downstream Pipers "
                f"({', '.join(d.name for d in self._down[piper])}); use forced=True"
            )
        for up in self._up[piper]:
            self._down[up].remove(piper)
        for down in self._down[piper]:
            self._up[down].remove(piper)
        for table in (self._order, self._branch, self._up, self._down, self.xtras):
            table.pop(piper, None)

    def add_pipers(self, pipers: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        for piper in list(pipers):
            self.add_piper(piper, *args, **kwargs)

    def del_pipers(self, pipers: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        """Remove several Pipers, the last one first (the caller's list is not changed)."""
        for piper in reversed(list(pipers)):
            self.del_piper(piper, *args, **kwargs)

    # -- edges --------------------------------------------------------------------
    def _reaches(self, start: Piper, goal: Piper, extra: dict[Piper, list[Piper]]) -> bool:
        """Is there a path downstream from ``start`` to ``goal`` (with ``extra`` edges)?"""
        seen = {start}
        stack = [start]
        while stack:
            node = stack.pop()
            if node is goal:
                return True
            for nxt in self._down.get(node, []) + extra.get(node, []):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    def add_pipe(self, pipe: Sequence[Any], branch: Any = None) -> list[Piper]:
        """Add the pipe ``(a, b, ...)``: items flow a -> b -> ...

        Pipers not yet in the Dagger are added (with ``branch`` if given). A
        pipe that would close a cycle is refused with DaggerError and leaves the
        Dagger unchanged. Returns the Pipers of the pipe.
        """
        if isinstance(pipe, (str, bytes)) or not isinstance(pipe, Sequence) or len(pipe) < 2:
            raise DaggerError("a pipe is a sequence of at least two Pipers, upstream first")
        pipers: list[Piper] = []
        for p in pipe:
            if isinstance(p, Piper) or not isinstance(p, str):
                if isinstance(p, Piper):
                    pipers.append(p)
                else:
                    raise DaggerError(f"a pipe is made of Pipers, got {p!r}")
            else:
                pipers.append(self.resolve(p))
        names: dict[str, Piper] = {p.name: p for p in self._order}
        for p in pipers:
            if p not in self._order and names.get(p.name, p) is not p:
                raise DaggerError(f"another Piper of this Dagger is named {p.name!r}")
        extra: dict[Piper, list[Piper]] = {}
        for up, down in zip(pipers, pipers[1:]):
            if up is down or self._reaches(down, up, extra):
                raise DaggerError(
                    f"the pipe {up.name!r} -> {down.name!r} would make a cycle; the pipe was not added"
                )
            extra.setdefault(up, []).append(down)
        for p in pipers:
            if p not in self._order:
                self.add_piper(p, branch=branch)
        for up, down in zip(pipers, pipers[1:]):
            if up not in self._up[down]:
                self._up[down].append(up)
                self._down[up].append(down)
        return pipers

    def del_pipe(self, pipe: Sequence[Any], forced: bool = False) -> None:
        """Remove the pipes of ``(a, b, ...)``; Pipers left without any pipe are removed too.

        ``forced`` is accepted for compatibility; removing a pipe never needs it.
        """
        if isinstance(pipe, (str, bytes)) or not isinstance(pipe, Sequence) or len(pipe) < 2:
            raise DaggerError("a pipe is a sequence of at least two Pipers, upstream first")
        pipers = [self.resolve(p) for p in pipe]
        pairs = list(zip(pipers, pipers[1:]))
        for up, down in pairs:
            if up not in self._up[down]:
                raise DaggerError(f"there is no pipe {up.name!r} -> {down.name!r}")
        for up, down in reversed(pairs):
            self._up[down].remove(up)
            self._down[up].remove(down)
        for p in pipers:
            if p in self._order and not self._up[p] and not self._down[p]:
                self.del_piper(p)

    def add_pipes(self, pipes: Iterable[Sequence[Any]], *args: Any, **kwargs: Any) -> None:
        for pipe in list(pipes):
            self.add_pipe(pipe, *args, **kwargs)

    def del_pipes(self, pipes: Iterable[Sequence[Any]], *args: Any, **kwargs: Any) -> None:
        for pipe in list(pipes):
            self.del_pipe(pipe, *args, **kwargs)

    # -- orders -------------------------------------------------------------------
    def _key(self, piper: Piper) -> _BranchKey:
        return _BranchKey(self._branch[piper], self._order[piper])

    def branch_of(self, piper: Any) -> Any:
        return self._branch[self.resolve(piper)]

    def upstream(self, piper: Any) -> list[Piper]:
        """The upstream Pipers of ``piper`` in inbox order."""
        piper = self.resolve(piper)
        ups = self._up[piper]
        return sorted(ups, key=lambda u: _BranchKey(self._branch[u], ups.index(u)))

    def downstream(self, piper: Any) -> list[Piper]:
        """The downstream Pipers of ``piper`` (branch order, then pipe order)."""
        piper = self.resolve(piper)
        downs = self._down[piper]
        return sorted(downs, key=lambda d: _BranchKey(self._branch[d], downs.index(d)))

    def get_inputs(self) -> list[Piper]:
        """Pipers without upstream Pipers, by branch then in the order added."""
        return sorted((p for p in self._order if not self._up[p]), key=self._key)

    def get_outputs(self) -> list[Piper]:
        """Pipers without downstream Pipers, by branch then in the order added."""
        return sorted((p for p in self._order if not self._down[p]), key=self._key)

    def postorder(self) -> list[Piper]:
        """Every Piper after its upstream Pipers (see the module docstring)."""
        order: list[Piper] = []
        placed: set[Piper] = set()

        def ready(p: Piper) -> bool:
            return p not in placed and all(u in placed for u in self._up[p])

        for root in self.get_inputs():
            if root in placed:
                continue
            order.append(root)
            placed.add(root)
            stack = [iter(self.downstream(root))]
            while stack:
                for down in stack[-1]:
                    if ready(down):
                        order.append(down)
                        placed.add(down)
                        stack.append(iter(self.downstream(down)))
                        break
                else:
                    stack.pop()
        return order

    # -- lifecycle -------------------------------------------------------------------
    def connect_inputs(self, datas: Sequence[Any]) -> None:
        """Connect each input Piper to one iterable of ``datas`` (in input order)."""
        inputs = self.get_inputs()
        if isinstance(datas, (str, bytes)) or not isinstance(datas, Sequence):
            raise DaggerError("datas must be a list with one iterable per input Piper")
        if len(datas) != len(inputs):
            raise DaggerError(
                f"the Dagger has {len(inputs)} input Pipers "
                f"({', '.join(p.name for p in inputs)}), got {len(datas)} datas"
            )
        for piper, _data in zip(inputs, datas):
            if piper.connected:
                raise DaggerError(f"input Piper {piper.name!r} is already connected")
        for piper, data in zip(inputs, datas):
            piper.connect([data])

    def connect(self, datas: Sequence[Any] | None = None) -> None:
        """Connect every Piper to its upstream Pipers (in postorder, inbox order).

        With ``datas``, the input Pipers are first connected to those iterables.
        """
        if not self._order:
            raise DaggerError("the Dagger has no Pipers")
        if datas is not None:
            self.connect_inputs(datas)
        for piper in self.postorder():
            if piper.connected:
                continue
            ups = self.upstream(piper)
            if not ups:
                raise DaggerError(f"input Piper {piper.name!r} has no data; give connect(datas)")
            piper.connect(ups)

    def _readers(self) -> dict[Any, set[Any]]:
        """For every IMap, the threads (other than its own feeder) that read its Pipers."""
        memo: dict[Piper, frozenset[Any]] = {}

        def readers(p: Piper) -> frozenset[Any]:
            if p in memo:
                return memo[p]
            downs = self._down[p]
            out: set[Any] = set()
            if not downs:
                out.add("output")
            for d in downs:
                if d.imap is not None:
                    out.add(id(d.imap))
                else:
                    out |= readers(d)
            memo[p] = frozenset(out)
            return memo[p]

        result: dict[Any, set[Any]] = {}
        for p in self._order:
            if p.imap is not None:
                result.setdefault(p.imap, set()).update(readers(p) - {id(p.imap)})
        return result

    def start(self) -> None:
        """Start every Piper (after all are connected, so shared IMaps get all their tasks).

        An IMap whose Pipers are read by more than one thread gets
        ``deadlock_grace=None`` for this run (its deadlock check assumes one
        reading thread); the previous value is restored by ``stop()``.
        """
        order = self.postorder()
        for piper in order:
            if not piper.connected:
                raise DaggerError(
                    f"Piper {piper.name!r} is not connected; connect() the Dagger first"
                )
        for imap, readers in self._readers().items():
            if len(readers) > 1 and imap not in self._grace:
                self._grace[imap] = imap.deadlock_grace
                imap.deadlock_grace = None
        for piper in order:
            piper._mark_started()
        # the inputs of every Piper stay closed until every IMap is started,
        # so no feeder reads from an IMap that is not started yet
        for piper in order:
            if piper.imap is not None:
                piper.imap.start()
        for piper in order:
            piper._open_gate()

    def _drain(self, outputs: list[Piper], timeout: float | None = None) -> bool:
        """Read the outputs round robin until each ends; True if they all did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        live = [p for p in outputs if p.started and not p.finished]
        while live:
            for piper in list(live):
                try:
                    next(piper)
                except StopIteration:
                    live.remove(piper)
                except WorkerError:
                    pass
                except Exception:  # noqa: BLE001 - a broken output: give up on it
                    live.remove(piper)
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: the inputs end now, every item already read flows to
        the outputs (whose items are discarded; tracked Pipers keep them), then
        every IMap is stopped. ``timeout`` bounds the draining (then the IMaps
        are stopped at once)."""
        order = self.postorder()
        for piper in self.get_inputs():
            piper._end_inputs()
        try:
            self._drain([p for p in self.get_outputs() if p.started], timeout)
        finally:
            for piper in order:
                piper.finished = True
                if piper.started:
                    piper.stop()
            for imap, grace in self._grace.items():
                imap.deadlock_grace = grace
            self._grace = {}

    def disconnect(self, forced: bool = False) -> None:
        """Disconnect every connected Piper, downstream first."""
        for piper in reversed(self.postorder()):
            if piper.connected:
                piper.disconnect(forced)

    # -- drawing ---------------------------------------------------------------
    def _labels(self) -> tuple[dict[Piper, str], dict[Piper, str]]:
        ids: dict[Piper, str] = {}
        labels: dict[Piper, str] = {}
        for i, piper in enumerate(self.postorder()):
            ids[piper] = f"p{i}"
            parts = [piper.name]
            if piper.worker.__name__ not in piper.name:
                parts.append(piper.worker.__name__)
            if piper.imap is not None:
                parts.append(
                    f"{piper.imap.worker_type} x{piper.imap.worker_num} ({piper.imap.name})"
                )
            else:
                parts.append("linear")
            extra = [
                f"{k}={getattr(piper, k)}"
                for k in ("consume", "produce", "spawn")
                if getattr(piper, k) != 1
            ]
            if piper.timeout is not None:
                extra.append(f"timeout={piper.timeout:g}")
            if extra:
                parts.append(" ".join(extra))
            labels[piper] = "\n".join(parts)
        return ids, labels

    def to_dot(self, name: str = "pipeline") -> str:
        """The graph in Graphviz DOT (``dot -Tpng``): inputs are drawn as
        rounded boxes, outputs as double boxes, Pipers sharing an IMap share a colour."""
        ids, labels = self._labels()
        palette = ["#cfe2f3", "#d9ead3", "#fff2cc", "#f4cccc", "#d9d2e9", "#fce5cd"]
        colours: dict[int, str] = {}
        inputs, outputs = set(self.get_inputs()), set(self.get_outputs())

        def q(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

        lines = [
            f"digraph {q(name)} {{",
            "  rankdir=TB;",
            '  node [fontname="Helvetica", style=filled, fillcolor="#eeeeee"];',
            '  edge [fontname="Helvetica", fontsize=10];',
        ]
        for piper in self.postorder():
            attrs = [f"label={q(labels[piper])}"]
            if piper in inputs:
                attrs.append('shape=box, style="rounded,filled"')
            elif piper in outputs:
                attrs.append("shape=box, peripheries=2")
            else:
                attrs.append("shape=box")
            if piper.imap is not None:
                key = id(piper.imap)
                if key not in colours:
                    colours[key] = palette[len(colours) % len(palette)]
                attrs.append(f'fillcolor="{colours[key]}"')
            lines.append(f"  {ids[piper]} [{', '.join(attrs)}];")
        for down in self.postorder():
            for i, up in enumerate(self.upstream(down)):
                label = f' [label="inbox[{i}]"]' if len(self._up[down]) > 1 else ""
                lines.append(f"  {ids[up]} -> {ids[down]}{label};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart (renders in GitHub Markdown)."""
        ids, labels = self._labels()
        inputs, outputs = set(self.get_inputs()), set(self.get_outputs())

        def q(text: str) -> str:
            return '"' + text.replace('"', "#quot;").replace("\n", "<br/>") + '"'

        lines = ["flowchart TD"]
        for piper in self.postorder():
            label = q(labels[piper])
            if piper in inputs:
                shape = f"[/{label}/]"
            elif piper in outputs:
                shape = f"[[{label}]]"
            else:
                shape = f"[{label}]"
            lines.append(f"    {ids[piper]}{shape}")
        for down in self.postorder():
            for i, up in enumerate(self.upstream(down)):
                arrow = f" -->|inbox[{i}]| " if len(self._up[down]) > 1 else " --> "
                lines.append(f"    {ids[up]}{arrow}{ids[down]}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pipers={len(self._order)} pipes={len(self.pipes)}>"
