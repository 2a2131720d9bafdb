"""Merkle leaves kept by the local store in the same transaction as the data: after any mix of
writes, merges, transfers and drops they equal leaves rebuilt from the data; a corrupt record
is quarantined and the partition rebuilt; tombstones go only by compare-and-delete."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from dfsring.core import keys, vclock
from dfsring.core import merkle as antientropy
from dfsring.core.vclock import Versions, VersionVector
from dfsring.storage import MemoryEngine, frame
from dfsring.storage.localstore import TABLES, TREE, LocalStore, encode_record
from dfsring.testing.bitrot import store_raw

pytestmark = pytest.mark.component

BITS = 4


@pytest.fixture
async def store() -> AsyncIterator[LocalStore]:
    engine = MemoryEngine(TABLES)
    s = LocalStore(engine, "me", BITS)
    await s.open()
    yield s
    await engine.close()


def _names(count: int) -> list[keys.ObjectName]:
    return [keys.object_name("b", f"k{i}") for i in range(count)]


async def _consistent(store: LocalStore) -> bool:
    """No partition's stored leaves differ from the data (rebuild would change nothing)."""
    return not any([await store.rebuild_tree(p) for p in range(1 << BITS)])


async def test_leaves_follow_every_kind_of_write(store: LocalStore) -> None:
    rng = random.Random(7)
    names = _names(60)
    for step in range(300):
        name = rng.choice(names)
        kind = rng.randrange(3)
        if kind == 0:
            await store.coordinate(name, store.get(name).clock, b"v%d" % step, "t", step)
        elif kind == 1:  # a peer's concurrent version
            other = vclock.update(Versions(), VersionVector(), f"peer{step % 3}", b"p", "t", 1)
            await store.merge(name, other)
        else:  # a tombstone
            await store.coordinate(name, store.get(name).clock, None, "t", step)
    assert await _consistent(store)
    roots = {p: store.tree_root(p) for p in range(1 << BITS)}
    await store.drop_partition(3, batch=10_000)
    assert await _consistent(store)
    assert store.tree_root(3) == antientropy.EMPTY_ROOT
    assert all(store.tree_root(p) == roots[p] for p in roots if p != 3)


async def test_identical_data_gives_identical_trees() -> None:
    """Two replicas reaching the same versions by different routes agree on every root."""
    stores = []
    for order in (1, -1):
        engine = MemoryEngine(TABLES)
        s = LocalStore(engine, "x", BITS)
        await s.open()
        items = [(s.storage_key(n), encode_record(n, vclock.update(
            Versions(), VersionVector(), "a", n.key_bytes, "t", 5))) for n in _names(50)]
        for item in items[::order]:
            await s.merge_raw([item])
        stores.append(s)
    a, b = stores
    assert all(a.tree_root(p) == b.tree_root(p) for p in range(1 << BITS))



def _rebuilt(store: LocalStore, partition: int) -> antientropy.MerkleTree:
    """The partition's tree rebuilt from every stored leaf: what its kept inner nodes and
    its walk view must agree with."""
    start = partition.to_bytes(2, "big")
    leaves = {int.from_bytes(k[2:4], "big"): v
              for k, v in store.engine.scan(TREE, start, keys.prefix_end(start)) if len(k) == 4}
    return antientropy.tree_from_sparse(leaves)

async def test_corrupt_record_is_quarantined_and_the_tree_rebuilt(store: LocalStore) -> None:
    names = _names(30)
    for name in names:
        await store.coordinate(name, VersionVector(), b"value", "t", 1)
    victim = names[4]
    skey = store.storage_key(victim)
    store_raw(store.engine, "kv", skey, frame(b"\x00garbage")[:-1] + b"\xff")
    partition = store.partition(victim)
    records, corrupt, _ = store.scan_records(partition)
    assert corrupt == [skey] and skey not in dict(records)
    assert await store.quarantine(skey, 1)
    assert partition in store.dirty_partitions()
    assert await store.rebuild_tree(partition)  # the victim's digest was still in its leaf
    assert store.dirty_partitions() == []
    assert await _consistent(store)


async def test_tombstones_go_only_by_compare_and_delete(store: LocalStore) -> None:
    name = _names(1)[0]
    await store.coordinate(name, VersionVector(), b"v", "t", 1)
    skey = store.storage_key(name)
    live_digest = antientropy.version_digest(store.records([skey])[0][1])
    assert not await store.purge_tombstone(skey, live_digest)  # a live value never goes
    await store.coordinate(name, store.get(name).clock, None, "t", 2)
    digest = antientropy.version_digest(store.records([skey])[0][1])
    assert not await store.purge_tombstone(skey, live_digest)  # stale digest: kept
    assert await store.purge_tombstone(skey, digest)
    assert store.records([skey]) == []
    assert await _consistent(store)


async def test_kept_inner_nodes_always_give_the_rebuilt_root(store: LocalStore) -> None:
    """Roots are asked for between writes, so the kept inner nodes are updated piecemeal;
    every answer must equal the root of a tree rebuilt from the stored leaves."""
    rng = random.Random(11)
    names = _names(200)
    for step in range(400):
        name = rng.choice(names)
        value = None if rng.random() < 0.2 else b"v%d" % step
        await store.coordinate(name, store.get(name).clock, value, "t", step)
        if step % 7 == 0:
            for p in range(1 << BITS):
                assert store.tree_root(p) == _rebuilt(store, p).root()
    await store.drop_partition(5, batch=10_000)
    for p in range(1 << BITS):
        assert store.tree_root(p) == _rebuilt(store, p).root()


async def test_the_walk_view_shows_the_same_nodes_as_a_rebuilt_tree(store: LocalStore) -> None:
    rng = random.Random(5)
    names = _names(150)
    for step in range(200):
        name = rng.choice(names)
        await store.coordinate(name, store.get(name).clock, b"w%d" % step, "t", step)
        if step % 50 == 49:
            for p in range(1 << BITS):
                view, full = store.tree_view(p), _rebuilt(store, p)
                assert view.root() == full.root()
                for level in range(full.depth):
                    for index in range(full.fanout**level):
                        assert view.children(level, index) == full.children(level, index)
