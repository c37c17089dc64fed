"""papy.graph on its own: DictNode and DictGraph semantics, orders, pickling."""

from __future__ import annotations

import collections
import copy
import pickle
import random
from fractions import Fraction

import pytest

from papy.graph import DictGraph, DictNode, branch_key

pytestmark = pytest.mark.timeout(30)

#: the original's postorder example: (a, b) means a -> b
EXAMPLE_EDGES = [(2, 1), (3, 1), (4, 3), (5, 3), (6, 4), (7, 4), (6, 5)]
EXAMPLE_BRANCHES = {2: "C", 3: "D", 4: "A", 5: "B", 7: 0, 6: 1}  # 1 has none


def example(branches: bool = True) -> DictGraph[int]:
    graph: DictGraph[int] = DictGraph()
    for node in range(1, 8):
        graph.add_node(node, branch=EXAMPLE_BRANCHES.get(node) if branches else None)
    graph.add_edges(EXAMPLE_EDGES)
    return graph


def diamond() -> DictGraph[str]:
    return DictGraph(edges=[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])


def cycle(length: int) -> DictGraph[int]:
    return DictGraph(range(length), [(i, (i + 1) % length) for i in range(length)])


def flags(graph: DictGraph[int]) -> list[tuple[int, bool, bool]]:
    return [(node, node_.discovered, node_.examined) for node, node_ in graph.items()]


class Branched:
    """A node object with its own ``branch`` attribute."""

    def __init__(self, name: str, branch: object) -> None:
        self.name = name
        self.branch = branch

    def __repr__(self) -> str:
        return f"Branched({self.name!r})"


class TaggedGraph(DictGraph[int]):
    """A subclass with an attribute of its own (pickled by reference to this module)."""

    def __init__(self, tag: str) -> None:  # no defaults: unpickling must not call it
        super().__init__()
        self.tag = tag


# -- DictNode ------------------------------------------------------------------------
def test_dictnode_attributes_and_entity_form():
    node = DictNode(xtra={"k": 1})
    assert (node.discovered, node.examined, node.branch, node.xtra) == (
        False,
        False,
        None,
        {"k": 1},
    )
    assert len(node) == 0 and DictNode().xtra == {}
    wrapped = DictNode("e", {"x": 2})  # the original's form: {entity: DictNode(xtra=xtra)}
    assert wrapped.nodes() == ["e"]
    assert isinstance(wrapped["e"], DictNode) and wrapped["e"].xtra == {"x": 2}
    assert len(wrapped["e"]) == 0 and wrapped.xtra == {}


def test_dictnode_clear_only_resets_flags():
    graph = DictGraph(edges=[(1, 2), (1, 3)])
    node = graph[1]
    node.discovered = node.examined = True
    node.branch = "b"
    node.xtra["k"] = "v"
    node.clear()  # shadows dict.clear: the edges stay
    assert (node.discovered, node.examined) == (False, False)
    assert node.nodes() == [2, 3] and node.branch == "b" and node.xtra == {"k": "v"}
    assert graph.edges() == ((1, 2), (1, 3))
    graph[2].discovered = graph[3].examined = True
    graph.clear_nodes()
    assert flags(graph) == [(1, False, False), (2, False, False), (3, False, False)]


def test_dictnode_nodes_and_iternodes():
    graph = DictGraph(edges=[(1, 3), (1, 2), (1, 4)])
    assert graph[1].nodes() == [3, 2, 4]
    assert list(graph[1].iternodes()) == [3, 2, 4]
    assert graph[1][2] is graph[2]


def test_deep_nodes():
    graph = example()
    assert graph.deep_nodes(6) == [4, 3, 1, 5]
    assert graph[6].deep_nodes() == [4, 3, 1, 5]
    assert graph.deep_nodes(1) == []
    start = [3]
    assert graph[6].deep_nodes(start) is start and start == [3, 4, 5]  # 3 is not entered


def test_deep_nodes_on_cycles():
    graph = DictGraph(edges=[("a", "b")], nodes=["a", "b"])
    graph.add_edge(("a", "b"), double=True)
    assert graph.deep_nodes("a") == ["b", "a"]  # back to the start: listed once
    assert cycle(4).deep_nodes(2) == [3, 0, 1, 2]
    loop = DictGraph(edges=[(1, 1)])
    assert loop.deep_nodes(1) == [1]


def test_deep_nodes_long_chain():
    graph = DictGraph(range(5000), [(i, i + 1) for i in range(4999)])
    assert graph.deep_nodes(0) == list(range(1, 5000))


# -- nodes ---------------------------------------------------------------------------
def test_add_node_and_del_node():
    graph: DictGraph[object] = DictGraph()
    assert graph.add_node("x", xtra={"k": 1}, branch=3) is True
    assert graph.add_node("x", xtra={"k": 2}, branch=4) is False  # present: unchanged
    assert graph["x"].xtra == {"k": 1} and graph["x"].branch == 3
    assert graph.nodes() == ["x"] and list(graph.iter_nodes()) == ["x"]
    graph.add_edges([("y", "x"), ("z", "x"), ("x", "z")])
    assert graph.del_node("x") is True
    assert graph.nodes() == ["y", "z"]
    assert graph.edges() == () and len(graph["y"]) == 0 and len(graph["z"]) == 0
    assert graph.del_node("y") is True  # a node without edges out: True too
    with pytest.raises(KeyError, match="'x'"):
        graph.del_node("x")
    assert graph.nodes() == ["z"]


def test_add_node_branch_from_the_node_object():
    own, other = Branched("own", 7), Branched("other", 7)
    graph: DictGraph[object] = DictGraph()
    graph.add_node(own)
    graph.add_node(other, branch="given")  # an explicit branch wins
    graph.add_node("plain")
    assert graph[own].branch == 7 and graph[other].branch == "given"
    assert graph["plain"].branch is None


def test_xtra_is_copied_into_the_node():
    xtra = {"k": 1}
    graph = DictGraph([1], xtras=[xtra])
    graph[1].xtra["k2"] = 2
    assert xtra == {"k": 1} and graph[1].xtra == {"k": 1, "k2": 2}


def test_constructor_with_xtras():
    graph = DictGraph([1, 2, 3], [(1, 2), (3, 2)], xtras=[{"a": 1}, None, {"c": 3}])
    assert graph.nodes() == [1, 2, 3]
    assert [graph[n].xtra for n in graph] == [{"a": 1}, {}, {"c": 3}]
    assert graph.edges() == ((1, 2), (3, 2))
    assert DictGraph(iter([4, 5]), xtras=iter([{}, {}])).nodes() == [4, 5]
    with pytest.raises(ValueError, match="xtras"):
        DictGraph([1, 2], xtras=[{}])
    graph = DictGraph()
    with pytest.raises(ValueError, match="xtras"):
        graph.add_nodes([1], xtras=[{}, {}])
    assert graph.nodes() == []  # checked before anything is added


def test_bulk_node_operations_do_not_mutate_arguments():
    nodes = [3, 1, 2]
    graph = DictGraph()
    graph.add_nodes(nodes)
    graph.add_edges([(3, 1), (1, 2)])
    assert graph.nodes() == [3, 1, 2] and nodes == [3, 1, 2]
    gone = [3, 2]
    graph.del_nodes(gone)
    assert gone == [3, 2] and graph.nodes() == [1] and graph.edges() == ()
    graph.add_nodes([4, 5])
    graph.del_nodes(graph.keys())  # a live view of the graph itself
    assert len(graph) == 0


# -- edges ---------------------------------------------------------------------------
def test_add_edge_and_del_edge():
    graph = DictGraph()
    graph.add_edge((1, 2))
    assert graph.nodes() == [1, 2] and graph.edges() == ((1, 2),)
    assert graph[1][2] is graph[2]
    graph.add_edge([2, 3], double=True)  # any pair
    assert graph.edges() == ((1, 2), (2, 3), (3, 2))
    assert graph[3][2] is graph[2]
    graph.del_edge((1, 2))
    assert graph.edges() == ((2, 3), (3, 2)) and graph.nodes() == [1, 2, 3]
    with pytest.raises(KeyError, match=r"\(1, 2\)"):
        graph.del_edge((1, 2))
    with pytest.raises(KeyError):
        graph.del_edge((9, 1))
    graph.del_edge((2, 3), double=True)
    assert graph.edges() == () and graph.nodes() == [1, 2, 3]


def test_del_edge_double_is_checked_first():
    graph = DictGraph(edges=[(1, 2)])
    with pytest.raises(KeyError, match=r"\(2, 1\)"):
        graph.del_edge((1, 2), double=True)  # no 2 -> 1
    assert graph.edges() == ((1, 2),)  # nothing removed


def test_loops():
    graph = DictGraph()
    graph.add_edge((1, 1), double=True)
    assert graph.edges() == ((1, 1),) and graph[1][1] is graph[1]
    graph.del_edge((1, 1), double=True)
    assert graph.edges() == ()


@pytest.mark.parametrize(
    "edge, error", [(5, TypeError), ((1, 2, 3), ValueError), ((1,), ValueError), (None, TypeError)]
)
def test_bad_edges(edge, error):
    graph = DictGraph([1, 2])
    with pytest.raises(error, match="edge"):
        graph.add_edge(edge)
    with pytest.raises(error, match="edge"):
        graph.del_edge(edge)
    assert graph.nodes() == [1, 2] and graph.edges() == ()


def test_bulk_edge_operations():
    edges = [(1, 2), (2, 3)]
    graph = DictGraph()
    graph.add_edges(edges, double=True)
    assert edges == [(1, 2), (2, 3)]
    assert graph.edges() == ((1, 2), (2, 1), (2, 3), (3, 2))
    graph.del_edges([(1, 2)], double=True)
    assert graph.edges() == ((2, 3), (3, 2))
    graph.del_edges(graph.edges())
    assert graph.edges() == () and graph.nodes() == [1, 2, 3]


def test_edges_order_and_selection():
    graph = example()
    assert graph.edges() == ((2, 1), (3, 1), (4, 3), (5, 3), (6, 4), (6, 5), (7, 4))
    assert graph.edges([6, 2]) == ((6, 4), (6, 5), (2, 1))
    assert graph.edges(iter([6, 6])) == ((6, 4), (6, 5))
    assert graph.edges([]) == ()
    with pytest.raises(KeyError):
        graph.edges([99])


def test_incoming_and_outgoing_edges():
    graph = example()
    assert graph.incoming_edges(3) == ((4, 3), (5, 3))
    assert graph.incoming_edges(4) == ((6, 4), (7, 4))
    assert graph.incoming_edges(6) == ()
    assert graph.outgoing_edges(6) == ((6, 4), (6, 5))
    assert graph.outgoing_edges(1) == ()
    assert graph.incoming_edges(99) == () and graph.outgoing_edges(99) == ()
    # a node present by equality (1.0 == 1) is found through the dicts' own lookup
    assert graph.incoming_edges(1.0) == ((2, 1), (3, 1))
    assert graph.outgoing_edges(2.0) == ((2, 1),)


def test_incoming_edges_by_identity_for_plain_objects():
    a, b, c = object(), object(), object()
    graph = DictGraph(edges=[(a, b), (c, b), (b, a)])
    incoming = graph.incoming_edges(b)
    assert len(incoming) == 2 and incoming[0][0] is a and incoming[1][0] is c
    assert all(end is b for _, end in incoming)
    assert graph.incoming_edges(object()) == ()


# -- branches ------------------------------------------------------------------------
def test_branch_key_orders_mixed_types():
    values = [(1, 2), "a", None, 2.5, 1, "b", False, Fraction(3, 2), (0,)]
    assert sorted(values, key=branch_key) == [
        None,
        False,
        1,
        Fraction(3, 2),
        2.5,
        "a",
        "b",
        (0,),
        (1, 2),
    ]
    # one type whose values do not compare: by repr ("('a',)" < "(1,)")
    assert sorted([(1,), ("a",)], key=branch_key) == [("a",), (1,)]
    assert sorted([2j, 1j], key=branch_key) == [1j, 2j]
    assert branch_key(1) == branch_key(1.0) and branch_key(None) < branch_key(-5)
    assert branch_key("a") > branch_key(10**9)


def test_cmp_branch_is_reversed():
    graph: DictGraph[str] = DictGraph()
    for name, branch in [("n", None), ("i", 1), ("f", 2.5), ("s", "a"), ("t", (1, 2))]:
        graph.add_node(name, branch=branch)
    assert graph.cmp_branch("i", "f") == 1  # cmp(2.5, 1)
    assert graph.cmp_branch("f", "i") == -1
    assert graph.cmp_branch("n", "n") == 0
    assert graph.cmp_branch("n", "i") == 1 and graph.cmp_branch("t", "s") == -1


def test_mixed_type_branches_postorder():
    graph: DictGraph[str] = DictGraph()
    for name, branch in [("n", None), ("i", 1), ("f", 2.5), ("s", "a"), ("t", (1, 2))]:
        graph.add_node(name, branch=branch)
    assert graph.postorder() == ["t", "s", "f", "i", "n"]  # descending branch
    graph.add_edges([("n", "i"), ("t", "s")])
    assert graph.postorder() == ["s", "t", "f", "i", "n"]


# -- dfs -----------------------------------------------------------------------------
def test_dfs_order_with_branches():
    graph = example()
    assert graph.dfs(6) == [1, 3, 5, 4, 6]  # 5 (branch 'B') before 4 (branch 'A')
    # the flags stay set until clear_nodes()
    assert flags(graph) == [
        (1, True, True),
        (2, False, False),
        (3, True, True),
        (4, True, True),
        (5, True, True),
        (6, True, True),
        (7, False, False),
    ]
    bucket = [0]
    assert graph.dfs(6, bucket) is bucket and bucket == [0]  # already discovered
    assert graph.dfs(7, bucket) == [0, 7]
    graph.clear_nodes()
    assert graph.dfs(7) == [1, 3, 4, 7]
    assert graph.postorder() == [1, 2, 3, 4, 7, 5, 6]  # stale flags do not hide nodes


def test_dfs_deque_appendleft_gives_the_reverse():
    graph = example()
    bucket = collections.deque()
    assert graph.dfs(6, bucket, order="appendleft") is bucket
    assert list(bucket) == [6, 4, 5, 3, 1]


def test_dfs_on_a_cycle():
    graph = cycle(3)
    assert graph.dfs(0) == [2, 1, 0]
    graph.clear_nodes()
    loop = DictGraph(edges=[(1, 1), (1, 2)])
    assert loop.dfs(1) == [2, 1]


def _recursive_dfs(graph, node, bucket):
    """The original's recursive definition, as the reference."""
    import functools

    if graph[node].discovered:
        return bucket
    graph[node].discovered = True
    for target in sorted(graph[node], key=functools.cmp_to_key(graph.cmp_branch)):
        _recursive_dfs(graph, target, bucket)
    bucket.append(node)
    graph[node].examined = True
    return bucket


def test_dfs_matches_the_recursive_definition():
    rng = random.Random(1234)
    branches = [None, None, 0, 1, 2, "a", "b", (1,)]
    for _ in range(200):
        size = rng.randint(1, 12)
        graph = DictGraph()
        for node in rng.sample(range(size), size):
            graph.add_node(node, branch=rng.choice(branches))
        for _ in range(rng.randint(0, 2 * size)):
            graph.add_edge((rng.randrange(size), rng.randrange(size)))  # cycles too
        for start in graph:
            expected = _recursive_dfs(graph, start, [])
            expected_flags = flags(graph)
            graph.clear_nodes()
            assert graph.dfs(start) == expected
            assert flags(graph) == expected_flags
            graph.clear_nodes()


def test_dfs_long_chain():
    graph = DictGraph(range(5000), [(i, i + 1) for i in range(4999)])
    assert graph.dfs(0) == list(range(4999, -1, -1))


# -- postorder -----------------------------------------------------------------------
def test_postorder_of_the_original_example():
    graph = example()
    assert graph.postorder() == [1, 2, 3, 4, 7, 5, 6]
    assert graph.postorder() == [1, 2, 3, 4, 7, 5, 6]  # flags were cleared
    assert flags(graph) == [(n, False, False) for n in range(1, 8)]


def test_postorder_without_branches_is_deterministic():
    graph = example(branches=False)
    assert graph.postorder() == [1, 3, 5, 4, 7, 6, 2]
    assert graph.postorder() == [1, 3, 5, 4, 7, 6, 2]
    assert example(branches=False).postorder() == [1, 3, 5, 4, 7, 6, 2]
    assert diamond().postorder() == ["d", "c", "b", "a"]
    objs = [object() for _ in range(6)]
    first = DictGraph(objs, [(objs[i], objs[i + 1]) for i in range(5)])
    second = DictGraph(objs, [(objs[i], objs[i + 1]) for i in range(5)])
    assert first.postorder() == second.postorder() == objs[::-1]


def test_postorder_puts_targets_first_on_random_dags():
    rng = random.Random(99)
    for _ in range(100):
        size = rng.randint(1, 15)
        graph = DictGraph()
        for node in rng.sample(range(size), size):
            graph.add_node(node, branch=rng.choice([None, 0, 1, "x"]))
        for _ in range(rng.randint(0, 2 * size)):
            a, b = rng.randrange(size), rng.randrange(size)
            if a > b:  # acyclic
                graph.add_edge((a, b))
        order = graph.postorder()
        assert sorted(order) == list(range(size))
        position = {node: i for i, node in enumerate(order)}
        assert all(position[b] < position[a] for a, b in graph.edges())


def test_postorder_long_chain():
    graph = DictGraph(range(5000), [(i, i + 1) for i in range(4999)])
    assert graph.postorder() == list(range(4999, -1, -1))
    backwards = DictGraph(range(5000), [(i + 1, i) for i in range(4999)])
    assert backwards.postorder() == list(range(5000))
    assert graph.node_rank()[0] == 4999 and graph.node_rank()[4999] == 0


def test_postorder_on_cycles_terminates():
    assert cycle(3).postorder() == [2, 1, 0]
    pair = DictGraph(edges=[("a", "b")])
    pair.add_edge(("a", "b"), double=True)
    assert pair.postorder() == ["b", "a"]
    assert flags(pair) == [("a", False, False), ("b", False, False)]
    assert DictGraph(edges=[(1, 1)]).postorder() == [1]
    assert len(cycle(5000).postorder()) == 5000


def test_order_methods_use_postorder():
    class Fixed(DictGraph[str]):
        calls = 0

        def postorder(self) -> list[str]:
            Fixed.calls += 1
            return ["d", "c", "b", "a"]

    graph = Fixed(edges=[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    graph.node_rank()
    graph.node_width()
    graph.rank_width()
    assert Fixed.calls == 3


# -- rank and width ------------------------------------------------------------------
def test_rank_and_width_of_a_diamond():
    graph = diamond()
    assert graph.node_rank() == {"a": 2, "b": 1, "c": 1, "d": 0}
    assert graph.node_width() == {"a": 2, "b": 1, "c": 1, "d": 1}
    assert graph.rank_width() == {0: 1, 1: 2, 2: 1}
    assert list(graph.rank_width()) == [0, 1, 2]


def test_rank_and_width_of_the_example():
    graph = example()
    assert graph.node_rank() == {1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3}
    assert graph.node_width() == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 2, 7: 1}
    assert graph.rank_width() == {0: 1, 1: 2, 2: 2, 3: 2}


def test_rank_and_width_on_a_cycle():
    graph = cycle(3)  # postorder [2, 1, 0]: the edge 2 -> 0 closes the cycle
    assert graph.node_rank() == {2: 0, 1: 1, 0: 2}
    assert graph.node_width() == {2: 1, 1: 1, 0: 1}
    assert graph.rank_width() == {0: 1, 1: 1, 2: 1}
    assert DictGraph().rank_width() == {}


# -- repr, equality, pickling --------------------------------------------------------
def test_repr_does_not_recurse():
    graph = DictGraph(edges=[("a", "b"), (1, 2)])
    graph.add_edge(("a", "b"), double=True)
    assert repr(graph) == "DictGraph(nodes=4, edges=3)"
    assert repr(graph["a"]) == "DictNode(->['b'])"
    assert repr(graph[2]) == "DictNode(->[])"
    assert str(graph) == repr(graph)
    assert repr(TaggedGraph("t")) == "TaggedGraph(nodes=0, edges=0)"


def test_equality_is_identity():
    first, second = cycle(300), cycle(300)
    first.add_edge((0, 1), double=True)
    second.add_edge((0, 1), double=True)
    assert first == first and not first != first
    assert first != second and not first == second  # returns at once: no deep comparison
    assert first[0] == first[0] and first[0] != second[0]
    assert DictGraph() != DictGraph() and DictGraph() != {}
    assert DictNode() != DictNode() and DictNode() != {}
    assert first[0] in [second[1], first[0]]
    with pytest.raises(TypeError):
        hash(first)
    with pytest.raises(TypeError):
        hash(first[0])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(protocol):
    graph = DictGraph(["a", "b", "c"], [("a", "b")], xtras=[{"x": 1}, None, {"y": [2]}])
    graph.add_edge(("b", "c"), double=True)  # a cycle
    graph.add_node("d", branch=(1, "z"))
    graph["a"].discovered = True
    graph["c"].examined = True
    copy_, node_b = pickle.loads(pickle.dumps((graph, graph["b"]), protocol))
    assert type(copy_) is DictGraph and copy_ is not graph
    assert copy_.nodes() == ["a", "b", "c", "d"]
    assert copy_.edges() == (("a", "b"), ("b", "c"), ("c", "b"))
    assert copy_["a"]["b"] is copy_["b"] and copy_["c"]["b"] is copy_["b"]
    assert node_b is copy_["b"]  # shared references stay shared
    assert [copy_[n].xtra for n in copy_] == [{"x": 1}, {}, {"y": [2]}, {}]
    assert flags(copy_) == [
        ("a", True, False),
        ("b", False, False),
        ("c", False, True),
        ("d", False, False),
    ]
    assert copy_["d"].branch == (1, "z")
    copy_.clear_nodes()
    assert copy_.postorder() == graph.postorder() == ["d", "c", "b", "a"]
    assert flags(graph) == [(n, False, False) for n in "abcd"]  # postorder clears them
    node = pickle.loads(pickle.dumps(graph["b"], protocol))
    assert type(node) is DictNode and node.nodes() == ["c"] and node["c"]["b"] is node


def test_pickle_subclass_and_long_chain():
    graph = TaggedGraph("tag")
    graph.add_edges([(i, i + 1) for i in range(4999)])
    for clone in (pickle.loads(pickle.dumps(graph)), copy.deepcopy(graph)):
        assert type(clone) is TaggedGraph and clone.tag == "tag"
        assert clone.nodes() == list(range(5000)) and clone.edges() == graph.edges()
        assert clone[0][1] is clone[1] and clone[0] is not graph[0]
    shallow = copy.copy(graph)
    assert shallow is not graph and shallow[0] is graph[0] and shallow.tag == "tag"
