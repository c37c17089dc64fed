"""Dagger: the directed acyclic graph of Pipers joined by pipes.

A *pipe* ``(a, b, c)`` says that items flow from ``a`` to ``b`` and from ``b``
to ``c``. The Dagger is a ``papy.graph.DictGraph`` whose node objects are
the Pipers; as in the original PaPy, its *edges* point the other way, from a
Piper to the Pipers it depends on: ``dagger[b]`` holds ``a`` (``edges()``
gives ``(b, a)``, ``outgoing_edges(b)`` leads upstream, ``incoming_edges(a)``
comes from downstream). The graph methods (``nodes``, ``edges``, ``dfs``,
``deep_nodes``, ``node_rank`` ...) work on it; edit it through ``add_pipe``
and ``add_piper``, which check what a pipeline needs (Pipers only, no cycle,
each Piper in one Dagger once).

Every order the Dagger uses is deterministic and never depends on object ids:

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

A ``branch`` is any object; branches of types that do not compare (``1`` and
``'a'``) are ordered as ``papy.graph.branch_key`` says.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._log import pipeline_logger
from ..graph import DictGraph, branch_key
from .errors import DaggerError, WorkerError
from .piper import Piper

if TYPE_CHECKING:
    import logging

__all__ = ["Dagger"]


def _order_key(branch: Any, tie: int) -> tuple[bool, Any, int]:
    """Pipers with a branch first, by branch; then by ``tie`` (an insertion number)."""
    return (branch is None, branch_key(branch), tie)


class Dagger(DictGraph[Piper]):
    """The directed acyclic graph of Pipers and pipes that makes a pipeline.

    It is a ``papy.graph.DictGraph`` whose edges point from a Piper to the
    Pipers it reads from (the original's graph, with its methods); every order
    (inboxes of joins, inputs, outputs, postorder) is deterministic. A pipe
    that would close a cycle is refused with ``DaggerError``.

    Args:
        pipers: Pipers added first, in this order. Anything that is not a
            Piper but a Worker or a callable is wrapped in a new linear Piper.
        pipes: Then these pipes, each a sequence of Pipers through which items
            flow in that order (``(a, b, c)``: a -> b -> c).
        xtras: One dict per Piper of ``pipers`` (or ``None``), kept as that
            node's ``xtra``.
    """

    def __init__(
        self, pipers: Iterable[Any] = (), pipes: Iterable[Sequence[Any]] = (), xtras: Any = None
    ):
        dict.__init__(self)
        self._seq: dict[tuple[Piper, Piper], int] = {}  # (down, up) edge -> when it was added
        self._counter = itertools.count()
        self._grace: dict[Any, Any] = {}  # IMap -> its deadlock_grace before start
        pipers = list(pipers)
        xtras = list(xtras) if xtras is not None else [None] * len(pipers)
        if len(xtras) != len(pipers):
            raise ValueError("xtras must have one entry per piper")
        for piper, xtra in zip(pipers, xtras):
            self.add_piper(piper, xtra)
        for pipe in pipes:
            self.add_pipe(pipe)

    @property
    def log(self) -> logging.Logger:
        """The ``papy.pipeline`` logger (the original's ``Dagger.log``)."""
        return pipeline_logger()

    # -- nodes ------------------------------------------------------------------
    @property
    def pipers(self) -> list[Piper]:
        """The Pipers in the order they were added."""
        return list(self)

    @property
    def pipes(self) -> list[tuple[Piper, Piper]]:
        """Every ``(upstream, downstream)`` pair, downstream Pipers in the order added."""
        return [(u, d) for d in self for u in self[d]]

    @property
    def xtras(self) -> dict[Piper, Any]:
        """The ``xtra`` dict of every Piper that has a non-empty one."""
        return {p: node.xtra for p, node in self.items() if node.xtra}

    def resolve(self, piper: Any, forgive: bool = False) -> Any:
        """The Piper ``piper`` (a Piper of this Dagger, its name, or its ``id()``
        as in the original); DaggerError (or False with ``forgive``) if there is none."""
        if isinstance(piper, Piper):
            if piper in self:
                return piper
        elif isinstance(piper, str):
            for p in self:
                if p.name == piper:
                    return p
        elif isinstance(piper, int) and not isinstance(piper, bool):
            for p in self:
                if id(p) == piper:
                    return p
        if forgive:
            return False
        raise DaggerError(f"{piper!r} is not a Piper of this Dagger")

    def _check_free(self, piper: Piper) -> None:
        """A Piper belongs to one Dagger, and its name is unique in it."""
        owner = piper._dagger() if piper._dagger is not None else None
        if owner is not None and owner is not self:
            raise DaggerError(
                f"Piper {piper.name!r} is in another Dagger; a Piper is a node of one "
                "pipeline (del_piper it there first, or make a new Piper from it: Piper(piper))"
            )
        for other in self:
            if other.name == piper.name and other is not piper:
                raise DaggerError(f"another Piper of this Dagger is named {piper.name!r}")

    def add_node(self, node: Piper, xtra: dict[Any, Any] | None = None, branch: Any = None) -> bool:
        """Add a Piper as a node (False if it is there already); see ``add_piper``."""
        if not isinstance(node, Piper):
            raise DaggerError(f"the nodes of a Dagger are Pipers, got {node!r}")
        if node in self:
            return False
        self._check_free(node)
        if xtra is not None and not isinstance(xtra, dict):
            raise DaggerError(f"xtra must be a dict of node properties, got {xtra!r}")
        super().add_node(node, xtra, branch)
        self[node].order = next(self._counter)  # type: ignore[attr-defined]
        node._dagger = weakref.ref(self)
        return True

    def del_node(self, node: Piper) -> bool:
        """Remove a Piper and its pipes (no checks; ``del_piper`` checks)."""
        if node not in self:
            raise DaggerError(f"{node!r} is not a Piper of this Dagger")
        super().del_node(node)
        self._seq = {e: n for e, n in self._seq.items() if node not in e}
        if node._dagger is not None and node._dagger() is self:
            node._dagger = None
        return True

    def add_piper(
        self, piper: Any, xtra: Any = None, create: bool = True, branch: Any = None
    ) -> tuple[bool, Piper]:
        """Add a Piper; a Worker or callable becomes a new linear Piper if ``create``.

        Returns ``(created, piper)``. ``branch`` (if given) replaces the Piper's
        own branch inside this Dagger. A Piper already in this Dagger or in
        another one is refused (``add_pipe`` joins Pipers already added).
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
        if piper in self:
            raise DaggerError(
                f"Piper {piper.name!r} is already in this Dagger; add_pipe joins Pipers "
                "already added"
            )
        self.add_node(piper, xtra, branch)
        return created, piper

    def del_piper(self, piper: Any, forced: bool = False) -> None:
        """Remove a Piper and its pipes; one with downstream Pipers needs ``forced``."""
        piper = self.resolve(piper)
        downs = self._downs(piper)
        if downs and not forced:
            raise DaggerError(
                f"Piper {piper.name!r} has downstream Pipers "
                f"({', '.join(d.name for d in downs)}); use forced=True"
            )
        self.del_node(piper)

    def add_pipers(self, pipers: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        for piper in list(pipers):
            self.add_piper(piper, *args, **kwargs)

    def del_pipers(self, pipers: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        """Remove several Pipers, the last one first (the caller's list is not changed)."""
        for piper in reversed(list(pipers)):
            self.del_piper(piper, *args, **kwargs)

    # -- edges --------------------------------------------------------------------
    def _downs(self, piper: Piper) -> list[Piper]:
        """The downstream Pipers of ``piper``, in the order their pipes were added."""
        downs = [d for d in self if piper in self[d]]
        return sorted(downs, key=lambda d: self._seq.get((d, piper), 0))

    def _reaches(self, start: Piper, goal: Piper, extra: dict[Piper, list[Piper]]) -> bool:
        """Is there a path downstream from ``start`` to ``goal`` (with ``extra`` pipes)?"""
        seen = {start}
        stack = [start]
        while stack:
            node = stack.pop()
            if node is goal:
                return True
            nxt_nodes = (self._downs(node) if node in self else []) + extra.get(node, [])
            for nxt in nxt_nodes:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    def add_edge(self, edge: Iterable[Piper], double: bool = False) -> None:
        """Add the dependency edge ``(down, up)``: the pipe ``up -> down``.

        Both must be Pipers (added if missing); an edge that would close a cycle
        (and ``double``, which always would) is refused with DaggerError.
        """
        if double:
            raise DaggerError("a Dagger is acyclic: double edges are refused")
        pair = tuple(edge)
        if len(pair) != 2:
            raise DaggerError(f"an edge is a pair (downstream, upstream), got {edge!r}")
        down, up = pair
        self.add_pipe((up, down))

    def del_edge(self, edge: Iterable[Piper], double: bool = False) -> None:
        """Remove the dependency edge ``(down, up)`` (the pipe ``up -> down``); the
        Pipers stay."""
        pair = tuple(edge)
        if len(pair) != 2:
            raise DaggerError(f"an edge is a pair (downstream, upstream), got {edge!r}")
        down, up = pair
        if down not in self or up not in self[down]:
            raise DaggerError(f"there is no pipe {up!r} -> {down!r}")
        super().del_edge((down, up), double)
        self._seq.pop((down, up), None)

    def add_pipe(self, pipe: Sequence[Any], branch: Any = None) -> list[Piper]:
        """Add the pipe ``(a, b, ...)``: items flow a -> b -> ...

        The entries are Pipers, or names of Pipers of this Dagger; a Worker or a
        function is refused with DaggerError (``add_piper`` makes a Piper of one:
        use the Piper it returns, so that a node used in two pipes is one node).
        Pipers not yet in the Dagger are added (with ``branch`` if given). A
        pipe that would close a cycle, or that names a Piper of another Dagger,
        is refused with DaggerError and leaves the Dagger unchanged. Returns the
        Pipers of the pipe.
        """
        if isinstance(pipe, (str, bytes)) or not isinstance(pipe, Sequence) or len(pipe) < 2:
            raise DaggerError("a pipe is a sequence of at least two Pipers, upstream first")
        pipers: list[Piper] = []
        for p in pipe:
            if isinstance(p, Piper):
                pipers.append(p)
            elif isinstance(p, str):
                pipers.append(self.resolve(p))
            else:
                # A pipe names nodes; a Worker is not one. Making a Piper of it here
                # would make a new node at every mention (a Worker in two pipes would
                # be two nodes), so the user makes the node once.
                raise DaggerError(
                    f"a pipe is made of Pipers (or the names of Pipers of this Dagger), got "
                    f"{p!r}: make a node of a Worker or function with Piper(...), or "
                    "add_piper(...), which returns it, and use that Piper in every pipe"
                )
        for p in pipers:
            if p not in self:
                self._check_free(p)
        extra: dict[Piper, list[Piper]] = {}
        for up, down in zip(pipers, pipers[1:]):
            if up is down or self._reaches(down, up, extra):
                raise DaggerError(
                    f"the pipe {up.name!r} -> {down.name!r} would make a cycle; the pipe was not added"
                )
            extra.setdefault(up, []).append(down)
        for p in pipers:
            if p not in self:
                self.add_node(p, branch=branch)
        for up, down in zip(pipers, pipers[1:]):
            if up not in self[down]:
                DictGraph.add_edge(self, (down, up))
                self._seq[(down, up)] = next(self._counter)
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
            if up not in self[down]:
                raise DaggerError(f"there is no pipe {up.name!r} -> {down.name!r}")
        for up, down in reversed(pairs):
            self.del_edge((down, up))
        for p in pipers:
            if p in self and not self[p] and not self._downs(p):
                self.del_node(p)

    def add_pipes(self, pipes: Iterable[Sequence[Any]], *args: Any, **kwargs: Any) -> None:
        for pipe in list(pipes):
            self.add_pipe(pipe, *args, **kwargs)

    def del_pipes(self, pipes: Iterable[Sequence[Any]], *args: Any, **kwargs: Any) -> None:
        for pipe in list(pipes):
            self.del_pipe(pipe, *args, **kwargs)

    def children_after_parents(self, piper1: Piper, piper2: Piper) -> int:
        """The original's comparison: 1 if ``piper1`` is upstream of ``piper2``, -1 if
        downstream, 0 if neither (use with ``functools.cmp_to_key``)."""
        if piper1 in self.deep_nodes(piper2):
            return 1
        if piper2 in self.deep_nodes(piper1):
            return -1
        return 0

    # -- orders -------------------------------------------------------------------
    def _key(self, piper: Piper) -> tuple[bool, Any, int]:
        node = self[piper]
        return _order_key(node.branch, node.order)  # type: ignore[attr-defined]

    def branch_of(self, piper: Any) -> Any:
        return self[self.resolve(piper)].branch

    def upstream(self, piper: Any) -> list[Piper]:
        """The upstream Pipers of ``piper`` in inbox order."""
        piper = self.resolve(piper)
        ups = list(self[piper])
        return sorted(ups, key=lambda u: _order_key(self[u].branch, ups.index(u)))

    def downstream(self, piper: Any) -> list[Piper]:
        """The downstream Pipers of ``piper`` (branch order, then pipe order)."""
        piper = self.resolve(piper)
        downs = self._downs(piper)
        return sorted(downs, key=lambda d: _order_key(self[d].branch, downs.index(d)))

    def get_inputs(self) -> list[Piper]:
        """Pipers without upstream Pipers, by branch then in the order added."""
        return sorted((p for p in self if not self[p]), key=self._key)

    def get_outputs(self) -> list[Piper]:
        """Pipers without downstream Pipers, by branch then in the order added."""
        has_down = {u for d in self for u in self[d]}
        return sorted((p for p in self if p not in has_down), key=self._key)

    def postorder(self) -> list[Piper]:
        """Every Piper after its upstream Pipers (see the module docstring)."""
        order: list[Piper] = []
        placed: set[Piper] = set()

        def ready(p: Piper) -> bool:
            return p not in placed and all(u in placed for u in self[p])

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
        Without, every input Piper must have been connected by hand
        (``piper.connect([data])``); an input Piper without data is refused with
        DaggerError, and nothing is connected.
        """
        if not self:
            raise DaggerError("the Dagger has no Pipers")
        if datas is None:
            bare = [p.name for p in self.get_inputs() if not p.connected]
            if bare:
                names = ", ".join(repr(n) for n in bare)
                which = (
                    f"input Piper {names} has" if len(bare) == 1 else f"input Pipers {names} have"
                )
                raise DaggerError(
                    f"{which} no data: give connect(datas), one iterable per input, "
                    f"or connect the inputs first ({bare[0]}.connect([data]))"
                )
        else:
            self.connect_inputs(datas)
        for piper in self.postorder():
            if piper.connected:
                continue
            piper.connect(self.upstream(piper))

    def _readers(self) -> dict[Any, set[Any]]:
        """For every IMap, the threads (other than its own feeder) that read its Pipers."""
        memo: dict[Piper, frozenset[Any]] = {}

        def readers(p: Piper) -> frozenset[Any]:
            if p in memo:
                return memo[p]
            downs = self._downs(p)
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
        for p in self:
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
        self.log.debug("%r started, in the order %s", self, [p.name for p in order])

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
        for piper in self.get_inputs():
            piper._end_inputs()
        try:
            self._drain([p for p in self.get_outputs() if p.started], timeout)
        finally:
            self._stop_pipers()

    def _stop_pipers(self) -> None:
        """Stop every started Piper, upstream first, and its IMap at once."""
        started = [p for p in self.postorder() if p.started]
        for piper in self.postorder():
            piper.finished = True
        for piper in started:
            # all first: a read in progress anywhere ends uncounted, instead of
            # taking the error of a map stopped under it for an item
            piper._halt()
        for piper in started:
            piper._shut()
        for imap, grace in self._grace.items():
            imap.deadlock_grace = grace
        self._grace = {}
        self.log.debug("%r stopped", self)

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
                label = f' [label="inbox[{i}]"]' if len(self[down]) > 1 else ""
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
                arrow = f' -->|"inbox[{i}]"| ' if len(self[down]) > 1 else " --> "
                lines.append(f"    {ids[up]}{arrow}{ids[down]}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pipers={len(self)} pipes={len(self.pipes)}>"
