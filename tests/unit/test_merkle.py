"""Laws of the anti-entropy Merkle tree (dfsring.core.merkle) and of the exchange walk.

* the tree is a function of the item set: any sequence of incremental updates equals a rebuild
  from the final items (XOR leaves make the order irrelevant);
* an exchange finds exactly the leaves whose items differ, and its cost depends on the number
  of differences, not on the number of keys: one differing key among 100 000 costs
  ``fanout * depth`` fetched hashes (riak_core ``hashtree:compare/4``; Dynamo §4.7);
* serialisation round-trips and rejects garbage with ValueError.

The 100 000-item tree is built once per module (``big``) and copied per example.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from hashlib import blake2b
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core.keys import storage_key
from dfsring.core.merkle import (
    DEFAULT_DEPTH,
    DEFAULT_FANOUT,
    EMPTY_LEAF,
    EMPTY_ROOT,
    HASH_BYTES,
    DiffResult,
    InnerNodes,
    LeafDiff,
    MerkleTree,
    adiff,
    diff,
    diff_leaf,
    diff_walk,
    item_digest,
    tree_from_sparse,
)

pytestmark = pytest.mark.unit

BIG = 100_000
SHAPES = [(2, 1), (2, 3), (4, 2), (16, 1), (DEFAULT_FANOUT, DEFAULT_DEPTH)]


def vd(n: int) -> bytes:
    """A version digest (what the storage layer will derive from a key's Versions)."""
    return blake2b(n.to_bytes(8, "big"), digest_size=16).digest()


def skey(i: int) -> bytes:
    return storage_key(7, b"photos", b"k%06d" % i)


@functools.cache
def big() -> tuple[dict[bytes, bytes], MerkleTree]:
    items = {skey(i): vd(i) for i in range(BIG)}
    return items, MerkleTree.build(items.items())


def leaf_items(tree: MerkleTree, items: dict[bytes, bytes], leaf: int) -> dict[bytes, bytes]:
    return {k: v for k, v in items.items() if tree.leaf_of(k) == leaf}


def expected_leaves(tree: MerkleTree, a: dict[bytes, bytes], b: dict[bytes, bytes]) -> list[int]:
    keys = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    return sorted({tree.leaf_of(k) for k in keys})


small_keys = st.binary(min_size=1, max_size=6)
digests = st.binary(min_size=1, max_size=20)
item_maps = st.dictionaries(small_keys, digests, max_size=40)
shapes = st.sampled_from(SHAPES)


# -- the tree -----------------------------------------------------------------------------------


def test_empty_tree_is_well_defined() -> None:
    a, b = MerkleTree(), MerkleTree.build([])
    assert a == b and a.root() == b.root()
    assert len(a.root()) == HASH_BYTES and a.root() != EMPTY_LEAF
    assert a.leaf_count == DEFAULT_FANOUT**DEFAULT_DEPTH == 4096
    assert all(h == EMPTY_LEAF for h in a.leaf_hashes())
    assert MerkleTree(4, 2).root() != MerkleTree(2, 4).root()  # same leaves, other shape


@pytest.mark.parametrize(("fanout", "depth"), [(1, 3), (257, 1), (16, 0), (16, 6), (2, 21)])
def test_bad_shapes_rejected(fanout: int, depth: int) -> None:
    with pytest.raises(ValueError):
        MerkleTree(fanout, depth)


@given(shapes, st.lists(st.tuples(st.integers(0, 15), st.none() | digests), max_size=60))
def test_incremental_updates_equal_a_rebuild(
    shape: tuple[int, int], ops: list[tuple[int, bytes | None]]
) -> None:
    """Inserts, replaces, deletes (and no-ops) in any order end in the tree of the final set."""
    tree, model = MerkleTree(*shape), dict[bytes, bytes]()
    for k, new in ops:
        key = b"key-%d" % k
        changed = tree.update(key, model.get(key), new)
        assert changed == (None if model.get(key) == new else tree.leaf_of(key))
        if new is None:
            model.pop(key, None)
        else:
            model[key] = new
    assert tree == MerkleTree.build(model.items(), *shape)
    assert tree == MerkleTree.build(reversed(list(model.items())), *shape)


@given(shapes, item_maps)
def test_inner_nodes_hash_their_children(shape: tuple[int, int], items: dict[bytes, bytes]) -> None:
    tree = MerkleTree.build(items.items(), *shape)
    f, d = shape
    assert tree.root() == tree.node(0, 0)
    for level in range(d):
        for index in range(f**level):
            children = tree.children(level, index)
            assert children == [tree.node(level + 1, f * index + j) for j in range(f)]
    for leaf in range(f**d):
        acc = 0
        for k, v in items.items():
            if tree.leaf_of(k) == leaf:
                acc ^= item_digest(k, v)
        assert tree.node(d, leaf) == acc.to_bytes(HASH_BYTES, "big")


def test_node_addressing_is_checked() -> None:
    tree = MerkleTree(4, 2)
    for level, index in [(-1, 0), (3, 0), (0, 1), (1, 4), (2, 16), (2, -1)]:
        with pytest.raises(ValueError):
            tree.node(level, index)
    with pytest.raises(ValueError):
        tree.children(2, 0)  # leaves have no children


def test_item_digest_separates_key_and_version() -> None:
    assert item_digest(b"ab", b"c") != item_digest(b"a", b"bc")
    assert 0 <= item_digest(b"k", b"v") < 2**128


# -- exchange -----------------------------------------------------------------------------------


def test_identical_trees_exchange_nothing() -> None:
    """Equal item sets: equal roots, and the exchange fetches 0 nodes in 0 rounds."""
    items, tree = big()
    other = MerkleTree.build(reversed(list(items.items())))
    assert other == tree and other.root() == tree.root()
    assert diff(tree, other.children, other.root()) == DiffResult([], 0, 0)


@pytest.mark.parametrize("change", ["replace", "delete", "insert"])
def test_one_key_in_100k_costs_a_logarithmic_exchange(change: str) -> None:
    items, local = big()
    remote = local.copy()
    key = skey(31_337) if change != "insert" else skey(BIG + 1)
    old = None if change == "insert" else items[key]
    new = None if change == "delete" else vd(BIG + 1)
    remote.update(key, old, new)
    calls: list[tuple[int, int]] = []

    def fetch(level: int, index: int) -> list[bytes]:
        calls.append((level, index))
        return remote.children(level, index)

    result = diff(local, fetch, remote.root())
    assert result.differing_leaves == [local.leaf_of(key)]
    # one node per level: fanout hashes per level, depth levels, whatever the key count
    assert result.nodes_fetched == DEFAULT_FANOUT * DEFAULT_DEPTH == 48
    assert result.nodes_fetched == len(calls) * DEFAULT_FANOUT
    assert result.rounds == DEFAULT_DEPTH == len(calls)
    assert [lvl for lvl, _ in calls] == list(range(DEFAULT_DEPTH))
    # the last step compares the keys of that one leaf only (~24 of the 100 000)
    here = leaf_items(local, items, result.differing_leaves[0])
    there = dict(here)
    if new is None:
        del there[key]
    else:
        there[key] = new
    assert len(here) < 100
    expect = {"replace": ([], [], [key]), "delete": ([], [key], []), "insert": ([key], [], [])}
    assert diff_leaf(here, there) == LeafDiff(*expect[change])


changes = st.lists(
    st.tuples(st.integers(0, BIG + 50), st.sampled_from(["replace", "delete"])),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(changes)
def test_random_differences_in_100k_all_found_none_false(ops: list[tuple[int, str]]) -> None:
    items, local = big()
    remote, changed = (
        local.copy(),
        dict[bytes, bytes | None](),
    )  # remote = items overridden by changed (None: deleted)
    for i, what in ops:
        key = skey(i)
        new = None if what == "delete" else vd(i + 7 * BIG)
        remote.update(key, changed.get(key, items.get(key)), new)
        changed[key] = new
    want = sorted({local.leaf_of(k) for k, v in changed.items() if items.get(k) != v})
    result = diff(local, remote.children, remote.root())
    assert result.differing_leaves == want
    assert result.nodes_fetched <= DEFAULT_FANOUT * DEFAULT_DEPTH * len(want)
    assert result.rounds == (DEFAULT_DEPTH if want else 0)
    assert diff(remote, local.children, local.root()).differing_leaves == want


@given(shapes, item_maps, item_maps)
def test_exchange_then_leaf_repair_converges(
    shape: tuple[int, int], a: dict[bytes, bytes], b: dict[bytes, bytes]
) -> None:
    """Repairing only the leaves the exchange reports makes the replicas equal: no leaf that
    differs is missed, and each reported leaf really differs."""
    ta, tb = MerkleTree.build(a.items(), *shape), MerkleTree.build(b.items(), *shape)
    result = diff(ta, tb.children, tb.root())
    assert result.differing_leaves == expected_leaves(ta, a, b)
    repaired = dict(a)
    for leaf in result.differing_leaves:
        here, there = leaf_items(ta, a, leaf), leaf_items(ta, b, leaf)
        d = diff_leaf(here, there)
        assert d.missing_here or d.missing_there or d.different
        for key in d.missing_here + d.different:  # adopt b's version (vclock.sync in reality)
            ta.update(key, repaired.get(key), there[key])
            repaired[key] = there[key]
        for key in d.missing_there:
            ta.update(key, repaired.pop(key), None)
    assert repaired == b and ta == tb


@settings(max_examples=25, deadline=None)
@given(shapes, item_maps, item_maps)
async def test_async_twin_gives_the_same_result(
    shape: tuple[int, int], a: dict[bytes, bytes], b: dict[bytes, bytes]
) -> None:
    ta, tb = MerkleTree.build(a.items(), *shape), MerkleTree.build(b.items(), *shape)

    async def fetch(level: int, index: int) -> Sequence[bytes]:
        return tb.children(level, index)

    assert await adiff(ta, fetch, tb.root()) == diff(ta, tb.children, tb.root())


async def test_async_twin_on_100k() -> None:
    items, local = big()
    remote = local.copy()
    remote.update(skey(5), items[skey(5)], None)

    async def fetch(level: int, index: int) -> Sequence[bytes]:
        return remote.children(level, index)

    result = await adiff(local, fetch, remote.root())
    assert result == DiffResult([local.leaf_of(skey(5))], 48, 3)


def test_walk_yields_one_batch_per_level() -> None:
    """The sans-I/O walk is what a batched network driver steps: one request list per level."""
    f, d = 4, 3
    a = {b"%d" % i: b"x" for i in range(200)}
    b = {**a, b"0": b"y", b"1": b"y", b"150": b"y"}
    ta, tb = MerkleTree.build(a.items(), f, d), MerkleTree.build(b.items(), f, d)
    walk = diff_walk(ta, tb.root())
    batches: list[list[tuple[int, int]]] = []
    try:
        request = next(walk)
        while True:
            batches.append(request)
            request = walk.send([tb.children(lvl, i) for lvl, i in request])
    except StopIteration as done:
        result = done.value
    assert [{lvl for lvl, _ in batch} for batch in batches] == [{0}, {1}, {2}]
    assert result.rounds == d and result.nodes_fetched == f * sum(map(len, batches))
    assert result.differing_leaves == expected_leaves(ta, a, b)


@pytest.mark.parametrize(
    "answer",
    [
        lambda t, lvl, i: t.children(lvl, i)[:-1],  # too few: a peer with another fanout
        lambda t, lvl, i: [*t.children(lvl, i), EMPTY_LEAF],
        lambda t, lvl, i: [h[:-1] for h in t.children(lvl, i)],
        lambda t, lvl, i: ["x" * HASH_BYTES] * t.fanout,
    ],
)
def test_malformed_remote_answers_rejected(answer: Callable[..., Any]) -> None:
    local, remote = MerkleTree(4, 2), MerkleTree.build([(b"k", b"v")], 4, 2)
    with pytest.raises(ValueError):
        diff(local, lambda lvl, i: answer(remote, lvl, i), remote.root())
    with pytest.raises(ValueError):
        diff(local, remote.children, remote.root()[:-1])


# -- serialisation ------------------------------------------------------------------------------


@given(shapes, item_maps)
def test_serialisation_round_trip(shape: tuple[int, int], items: dict[bytes, bytes]) -> None:
    tree = MerkleTree.build(items.items(), *shape)
    blob = tree.to_bytes()
    assert len(blob) == 8 + shape[0] ** shape[1] * HASH_BYTES + HASH_BYTES
    back = MerkleTree.from_bytes(blob)
    assert back == tree and back.root() == tree.root()
    assert MerkleTree.from_leaves(tree.leaf_hashes(), *shape) == tree


def test_default_serialisation_size() -> None:
    assert len(big()[1].to_bytes()) == 8 + 4096 * 16 + 16  # 64 KiB per partition
    assert MerkleTree.from_bytes(big()[1].to_bytes()) == big()[1]


@given(st.binary(max_size=300))
def test_garbage_rejected(data: bytes) -> None:
    with pytest.raises(ValueError):
        MerkleTree.from_bytes(data)


@given(item_maps, st.data())
def test_any_corruption_rejected(items: dict, data: st.DataObject) -> None:
    """Every single-byte change, truncation or extension of a valid blob is refused: header
    changes fail the magic, shape or length checks; hash changes fail the root check."""
    blob = bytearray(MerkleTree.build(items.items(), 4, 2).to_bytes())
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if kind == "flip":
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        del blob[data.draw(st.integers(0, len(blob) - 1)) :]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=20))
    with pytest.raises(ValueError):
        MerkleTree.from_bytes(bytes(blob))


def test_from_leaves_validates() -> None:
    with pytest.raises(ValueError):
        MerkleTree.from_leaves([EMPTY_LEAF] * 15, 4, 2)
    with pytest.raises(ValueError):
        MerkleTree.from_leaves([EMPTY_LEAF] * 15 + [b"short"], 4, 2)


def test_hostile_shape_header_does_not_allocate() -> None:
    with pytest.raises(ValueError):
        MerkleTree.from_bytes(b"DMK\x01" + (256).to_bytes(2, "big") + (9).to_bytes(2, "big"))


# -- diff_leaf ----------------------------------------------------------------------------------


@given(item_maps, item_maps)
def test_diff_leaf_partitions_the_differing_keys(
    a: dict[bytes, bytes], b: dict[bytes, bytes]
) -> None:
    d = diff_leaf(a, b)
    assert d.missing_here == sorted(b.keys() - a.keys())
    assert d.missing_there == sorted(a.keys() - b.keys())
    assert d.different == sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
    assert set(d.missing_here + d.missing_there + d.different) == {
        k for k in a.keys() | b.keys() if a.get(k) != b.get(k)
    }
    swapped = diff_leaf(b, a)
    assert (swapped.missing_here, swapped.missing_there) == (d.missing_there, d.missing_here)
    assert swapped.different == d.different
    assert diff_leaf(a, dict(a)) == LeafDiff([], [], [])


def test_leaves_spread_keys_evenly() -> None:
    """blake2b top bits spread one partition's keys: no leaf far above the mean of ~24."""
    items, tree = big()
    counts = [0] * tree.leaf_count
    for key in items:
        counts[tree.leaf_of(key)] += 1
    assert max(counts) < 3 * BIG / tree.leaf_count
    rng = random.Random(1)
    assert all(0 <= tree.leaf_of(rng.randbytes(9)) < tree.leaf_count for _ in range(1000))


@given(st.dictionaries(st.integers(0, 255), st.binary(min_size=16, max_size=16), max_size=40),
       st.lists(st.dictionaries(st.integers(0, 255), st.binary(min_size=16, max_size=16),
                                max_size=10), max_size=5))
def test_inner_nodes_updated_piecemeal_equal_a_rebuilt_tree(
        start: dict[int, bytes], changes: list[dict[int, bytes]]) -> None:
    leaves = dict(start)
    inner = InnerNodes(leaves, fanout=4, depth=4)
    for change in changes:
        leaves.update(change)
        groups = {i // 4 for i in change}
        inner.update({g: [leaves.get(g * 4 + j, EMPTY_LEAF) for j in range(4)] for g in groups})
        assert inner.root() == tree_from_sparse(leaves, 4, 4).root()
    assert InnerNodes({}).root() == EMPTY_ROOT
