"""A small directed graph made of nested dicts (the API of the original ``papy.graph``).

The model:

* a **node object** is any hashable object (a Piper, a number, a string ...);
* a **topological node** is the ``DictNode`` of a node object: a dict
  mapping every node object it has an edge *to* onto that node's DictNode;
* a ``DictGraph`` is a dict mapping every node object onto its DictNode.

An edge ``(a, b)`` points from ``a`` to ``b`` and is stored as
``graph[a][b] is graph[b]``, so the DictNodes form one nested (and, with
cycles, self-referential) structure; there is no separate list of edges.

Every order is deterministic: nodes and edges are taken in the order they were
added (dict order), ties between branches keep that order, and no order depends
on object ids. The orders of the original (which used Python 2 dict order) are
reproduced wherever it defined them.

Because the nested dicts are self-referential, comparing them by value or
printing them could recurse without end: DictNode and DictGraph compare by
identity and have a short ``repr``. Note that ``DictNode.clear()`` only resets
the search flags (as in the original), it does not remove edges.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, SupportsIndex, TypeVar, overload

__all__ = ["DictNode", "DictGraph", "branch_key"]

_N = TypeVar("_N", bound=Hashable)
_B = TypeVar("_B")
_T = TypeVar("_T")


# -- branches -----------------------------------------------------------------------
def _compare(a: object, b: object) -> int:
    """``cmp(a, b)`` for branch values of any types (see ``branch_key``)."""
    rank_a, rank_b = _type_rank(a), _type_rank(b)
    if rank_a != rank_b:
        return -1 if rank_a < rank_b else 1
    if rank_a == 0:  # both None
        return 0
    if rank_a == 2:  # neither None nor a number: group by type name first
        name_a, name_b = type(a).__qualname__, type(b).__qualname__
        if name_a != name_b:
            return -1 if name_a < name_b else 1
    try:
        if a < b:  # type: ignore[operator]
            return -1
        if b < a:  # type: ignore[operator]
            return 1
        return 0
    except (TypeError, ValueError):  # values that do not compare: by repr
        repr_a, repr_b = repr(a), repr(b)
        return (repr_a > repr_b) - (repr_a < repr_b)


def _type_rank(value: object) -> int:
    """0 for None, 1 for real numbers (they compare across types), 2 for anything else."""
    if value is None:
        return 0
    return 1 if isinstance(value, numbers.Real) else 2


@functools.total_ordering
class _BranchKey:
    """A sort key that orders branch values of any types (see ``branch_key``)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _BranchKey):
            return NotImplemented
        return _compare(self.value, other.value) == 0

    def __lt__(self, other: _BranchKey) -> bool:
        return _compare(self.value, other.value) < 0

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"branch_key({self.value!r})"


def branch_key(value: object) -> _BranchKey:
    """A sort key for a ``branch`` value, ascending, that never raises TypeError.

    Branches are free-form (numbers, strings, tuples ... mixed in one graph), so
    Python 3 cannot compare them directly. The order, like Python 2's: None
    first, then real numbers (bool, int, float, Fraction ...) by value, then
    any other objects grouped by type name, then by value; two values of one
    type that do not compare are ordered by ``repr``.
    """
    return _BranchKey(value)


# -- topological nodes -----------------------------------------------------------------
class _ByIdentity:
    """Equality is identity: a value comparison would walk the nested (maybe
    cyclic) dicts. Defining ``__eq__`` also leaves the class unhashable."""

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other


class DictNode(_ByIdentity, dict[_N, "DictNode[_N]"]):
    """The topological node of a node object: ``{target: target's DictNode}``.

    ``DictNode(entity=None, xtra=None)``. Attributes: ``discovered`` and
    ``examined`` (search flags, see ``clear``), ``branch`` (sorts
    equivalent branches, see ``DictGraph.cmp_branch``) and ``xtra`` (a
    dict of free properties). ``DictNode(entity, xtra)`` (the original's other
    form) is ``{entity: DictNode(xtra=xtra)}``.
    """

    def __init__(self, entity: _N | None = None, xtra: dict[Any, Any] | None = None) -> None:
        super().__init__()
        self.discovered = False
        self.examined = False
        self.branch: Any = None
        if entity is not None:
            self.xtra: dict[Any, Any] = {}
            self[entity] = DictNode(xtra=xtra)
        else:
            self.xtra = xtra or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(->[{', '.join(map(repr, self))}])"

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # class, attributes, then items, for every protocol: the default of
        # protocols 0 and 1 builds the items before the node exists (no cycles)
        return (_new_empty, (type(self),), self.__dict__, None, iter(self.items()))

    def clear(self) -> None:
        """Reset the ``discovered`` and ``examined`` flags (and nothing else).

        Note: this *shadows* ``dict.clear``, as in the original; the edges stay.
        Use ``dict.clear(node)`` to remove them.
        """
        self.discovered = False
        self.examined = False

    def nodes(self) -> list[_N]:
        """The node objects this node has an edge to, in the order the edges were added."""
        return list(self)

    def iternodes(self) -> Iterator[_N]:
        """An iterator of ``nodes``."""
        return iter(self)

    def deep_nodes(self, allnodes: list[_N] | None = None) -> list[_N]:
        """Every node object reachable from this node, each once, in depth-first
        discovery order (a cycle back to this node lists its node object too).

        The nodes are appended to ``allnodes`` (a new list if None), which also
        says which nodes are not to be entered. Iterative: no recursion limit.
        """
        if allnodes is None:
            allnodes = []
        seen = set(allnodes)
        stack = [iter(self.items())]
        while stack:
            for node, node_ in stack[-1]:
                if node not in seen:
                    seen.add(node)
                    allnodes.append(node)
                    stack.append(iter(node_.items()))
                    break
            else:
                stack.pop()
        return allnodes


# -- the graph -------------------------------------------------------------------------
class DictGraph(_ByIdentity, dict[_N, DictNode[_N]]):
    """A directed graph: ``{node object: its DictNode}``.

    ``DictGraph(nodes=(), edges=(), xtras=None)`` adds ``nodes`` (with one
    ``xtra`` dict each, or none at all) and then ``edges``, pairs ``(a, b)``
    meaning ``a -> b``. Subclasses (the pipeline's Dagger) override single
    methods: the constructor uses ``add_nodes`` and ``add_edges``, and
    every order comes from ``postorder`` and ``cmp_branch``.
    """

    def __init__(
        self,
        nodes: Iterable[_N] = (),
        edges: Iterable[Iterable[_N]] = (),
        xtras: Iterable[dict[Any, Any] | None] | None = None,
    ) -> None:
        super().__init__()
        self.add_nodes(nodes, xtras)
        self.add_edges(edges)

    def __repr__(self) -> str:
        edges = sum(len(node_) for node_ in self.values())
        return f"{type(self).__name__}(nodes={len(self)}, edges={edges})"

    # pickle and copy: the DictNodes go first, each after the DictNodes it leads
    # to, so that pickling a node only refers back to ones already done: a long
    # chain does not hit the recursion limit (a long cycle still may)
    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return (
            _new_empty,
            (type(self),),
            (self.__dict__, self._targets_first(), list(self.items())),
        )

    def __setstate__(
        self, state: tuple[dict[str, Any], Any, list[tuple[_N, DictNode[_N]]]]
    ) -> None:
        attrs, _, items = state
        self.__dict__.update(attrs)
        dict.update(self, items)

    def _targets_first(self) -> list[DictNode[_N]]:
        """Every DictNode reachable, each after the DictNodes it leads to (dict order;
        ids only mark the visited nodes)."""
        order: list[DictNode[_N]] = []
        seen: set[int] = set()
        for root in self.values():
            if id(root) in seen:
                continue
            seen.add(id(root))
            stack = [(root, iter(root.values()))]
            while stack:
                node_, targets = stack[-1]
                for target in targets:
                    if id(target) not in seen:
                        seen.add(id(target))
                        stack.append((target, iter(target.values())))
                        break
                else:
                    stack.pop()
                    order.append(node_)
        return order

    # -- nodes -------------------------------------------------------------------
    def add_node(self, node: _N, xtra: dict[Any, Any] | None = None, branch: Any = None) -> bool:
        """Add a node object; False (and no change) if it is already in the graph.

        The new DictNode's ``xtra`` is updated with ``xtra``; its ``branch`` is
        ``branch``, or else the node object's own ``branch`` attribute, if any.
        """
        if node in self:
            return False
        node_: DictNode[_N] = DictNode()
        if xtra:
            node_.xtra.update(xtra)
        node_.branch = branch if branch is not None else getattr(node, "branch", None)
        self[node] = node_
        return True

    def del_node(self, node: _N) -> bool:
        """Remove a node object and every edge to it; KeyError if it is not in the graph."""
        if node not in self:
            raise KeyError(f"node {node!r} is not in the graph")
        for node_ in self.values():
            node_.pop(node, None)
        del self[node]
        return True

    def add_nodes(
        self, nodes: Iterable[_N], xtras: Iterable[dict[Any, Any] | None] | None = None
    ) -> None:
        """Add node objects (see ``add_node``), with one ``xtra`` dict each or none."""
        nodes = list(nodes)
        xtras = [None] * len(nodes) if xtras is None else list(xtras)
        if len(xtras) != len(nodes):
            raise ValueError(
                f"xtras must have one entry per node: {len(xtras)} xtras for {len(nodes)} nodes"
            )
        for node, xtra in zip(nodes, xtras):
            self.add_node(node, xtra)

    def del_nodes(self, nodes: Iterable[_N]) -> None:
        """Remove node objects (see ``del_node``)."""
        for node in list(nodes):  # a snapshot: ``nodes`` may be a view of this graph
            self.del_node(node)

    def nodes(self) -> list[_N]:
        """The node objects, in the order they were added."""
        return list(self)

    def iter_nodes(self) -> Iterator[_N]:
        """An iterator of ``nodes``."""
        return iter(self)

    def clear_nodes(self) -> None:
        """Reset the search flags of every DictNode (see ``DictNode.clear``)."""
        for node_ in self.values():
            node_.clear()

    def deep_nodes(self, node: _N) -> list[_N]:
        """Every node object reachable from ``node`` (see ``DictNode.deep_nodes``)."""
        return self[node].deep_nodes()

    # -- edges -------------------------------------------------------------------
    def add_edge(self, edge: Iterable[_N], double: bool = False) -> None:
        """Add the edge ``(a, b)``, ``a -> b`` (and ``b -> a`` with ``double``),
        adding the node objects that are not in the graph yet."""
        left, right = _pair(edge)
        self.add_node(left)
        self.add_node(right)
        self[left][right] = self[right]
        if double:
            self.add_edge((right, left))

    def del_edge(self, edge: Iterable[_N], double: bool = False) -> None:
        """Remove the edge ``(a, b)`` (and ``(b, a)`` with ``double``); the node
        objects stay. KeyError, and no change, if an edge is not in the graph."""
        left, right = _pair(edge)
        self._check_edge(left, right)
        if double:
            self._check_edge(right, left)
        del self[left][right]
        if double and left in self[right]:  # a loop (a, a) is one edge, already gone
            self.del_edge((right, left))

    def _check_edge(self, left: _N, right: _N) -> None:
        if left not in self or right not in self[left]:
            raise KeyError(f"edge {(left, right)!r} is not in the graph")

    def add_edges(self, edges: Iterable[Iterable[_N]], *args: Any, **kwargs: Any) -> None:
        """Add edges; further arguments are passed on to ``add_edge``."""
        for edge in list(edges):
            self.add_edge(edge, *args, **kwargs)

    def del_edges(self, edges: Iterable[Iterable[_N]], *args: Any, **kwargs: Any) -> None:
        """Remove edges; further arguments are passed on to ``del_edge``."""
        for edge in list(edges):  # a snapshot: ``edges`` may be ``self.edges()``-like
            self.del_edge(edge, *args, **kwargs)

    def edges(self, nodes: Iterable[_N] | None = None) -> tuple[tuple[_N, _N], ...]:
        """Every edge ``(a, b)``: by ``a`` in the order the nodes were added, then
        in the order its edges were added; only those going out of ``nodes`` if
        given (KeyError for a node object not in the graph)."""
        sources = self if nodes is None else dict.fromkeys(nodes)
        return tuple((left, right) for left in sources for right in self[left])

    def incoming_edges(self, node: _N) -> tuple[tuple[_N, _N], ...]:
        """The edges ``(x, node)``, in the order of ``edges``; ``()`` if none."""
        return tuple((left, node) for left, left_ in self.items() if node in left_)

    def outgoing_edges(self, node: _N) -> tuple[tuple[_N, _N], ...]:
        """The edges ``(node, x)``, in the order of ``edges``; ``()`` if none."""
        if node not in self:
            return ()
        return tuple((node, right) for right in self[node])

    # -- orders ------------------------------------------------------------------
    def cmp_branch(self, node1: _N, node2: _N) -> int:
        """``cmp`` of the ``branch`` of two node objects' DictNodes, *reversed*
        (as in the original): sorting with it puts the highest branch first.
        Branches of any types compare (see ``branch_key``)."""
        return _compare(self[node2].branch, self[node1].branch)

    def _sorted_by_branch(self, nodes: Iterable[_N]) -> list[_N]:
        """``nodes`` sorted with ``cmp_branch`` (descending branch); ties keep their order."""
        return sorted(nodes, key=functools.cmp_to_key(self.cmp_branch))

    @overload
    def dfs(self, node: _N, bucket: None = None, order: str = "append") -> list[_N]: ...

    @overload
    def dfs(self, node: _N, bucket: _B, order: str = "append") -> _B: ...

    def dfs(self, node: _N, bucket: Any = None, order: str = "append") -> Any:
        """Depth-first search from ``node``, following edges; returns ``bucket``.

        A node is passed to ``getattr(bucket, order)`` after all the nodes it
        leads to (visited highest branch first, see ``cmp_branch``), so a list
        ``bucket`` (a new one if None) gets a postorder, targets first, and a
        ``collections.deque`` with ``order="appendleft"`` the reverse. Nodes
        already ``discovered`` are not entered again, and the flags are left
        set, so that several searches can share one bucket: call
        ``clear_nodes`` afterwards. Iterative, with the result of the
        original's recursion: no recursion limit on long chains.
        """
        if bucket is None:
            bucket = []
        put = getattr(bucket, order)
        if self[node].discovered:
            return bucket
        self[node].discovered = True
        stack = [(node, iter(self._sorted_by_branch(self[node])))]
        while stack:
            parent, targets = stack[-1]
            for target in targets:
                if not self[target].discovered:
                    self[target].discovered = True
                    stack.append((target, iter(self._sorted_by_branch(self[target]))))
                    break
            else:
                stack.pop()
                put(parent)
                self[parent].examined = True
        return bucket

    def postorder(self) -> list[_N]:
        """Every node object after the node objects it has edges to (on an acyclic
        graph; on a cycle some edge has to be broken, and this terminates).

        The original's algorithm, made deterministic: (1) the nodes sorted by
        branch, highest first (``cmp_branch``, ties in the order added);
        (2) ``dfs`` from each of them, in that order, into one list (the
        search flags are cleared before and after); (3) the "earthworm" pass
        over that list: a node is inserted right after the last of its targets
        placed so far, or appended if none is placed, so that a branch is kept
        together.
        """
        found: list[_N] = []
        self.clear_nodes()  # flags left by an earlier dfs() would hide nodes
        try:
            for node in self._sorted_by_branch(self.nodes()):
                self.dfs(node, found)
        finally:
            self.clear_nodes()
        ordered: list[_N] = []
        placed: set[_N] = set()
        for node in found:
            after = [ordered.index(target) for target in self[node] if target in placed]
            if after:
                ordered.insert(max(after) + 1, node)
            else:
                ordered.append(node)
            placed.add(node)
        return ordered

    def node_rank(self) -> dict[_N, int]:
        """``{node: rank}``: 0 for a node without edges out, else one more than the
        highest rank of its targets (the longest path to a node without edges
        out). Computed in ``postorder``; an edge closing a cycle is ignored."""
        rank: dict[_N, int] = {}
        for node in self.postorder():
            rank[node] = max(
                (rank[target] + 1 for target in self[node] if target in rank), default=0
            )
        return rank

    def node_width(self) -> dict[_N, int]:
        """``{node: width}``: the sum of the widths of its targets, or 1 if that is 0
        (the number of paths down to nodes without edges out). Computed in
        ``postorder``; an edge closing a cycle is ignored."""
        width: dict[_N, int] = {}
        for node in self.postorder():
            width[node] = sum(width[target] for target in self[node] if target in width) or 1
        return width

    def rank_width(self) -> dict[int, int]:
        """``{rank: number of nodes of that rank}`` (see ``node_rank``), by rank."""
        counts: dict[int, int] = {}
        for rank in self.node_rank().values():
            counts[rank] = counts.get(rank, 0) + 1
        return dict(sorted(counts.items()))


def _new_empty(cls: type[_T]) -> _T:
    """An instance of ``cls`` made without ``__init__`` (unpickling fills it in)."""
    return cls.__new__(cls)


def _pair(edge: Iterable[_N]) -> tuple[_N, _N]:
    """``edge`` as ``(a, b)``; TypeError or ValueError if it is not a pair."""
    try:
        pair = tuple(edge)
    except TypeError:
        raise TypeError(f"edge must be a pair (a, b) of node objects, got {edge!r}")
    if len(pair) != 2:
        raise ValueError(f"edge must be a pair (a, b) of node objects, got {edge!r}")
    return pair[0], pair[1]
