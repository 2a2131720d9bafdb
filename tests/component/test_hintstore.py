"""The durable hint store over a real engine: queueing, folding, bounds, delivery bookkeeping,
expiry, reads of hinted data, and that all of it survives a reopen (LMDB, fsync)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfsring.core import keys, vclock
from dfsring.core.vclock import Versions, VersionVector
from dfsring.storage import LmdbEngine
from dfsring.storage.hintstore import TABLES as HINT_TABLES
from dfsring.storage.hintstore import HintStore, local_view
from dfsring.storage.localstore import TABLES, LocalStore

pytestmark = pytest.mark.component

BITS = 6


def _versions(value: bytes, actor: str = "a", base: Versions | None = None) -> Versions:
    return vclock.update(base or Versions(), VersionVector() if base is None else base.clock,
                         actor, value, "text/plain", 1_000)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[LmdbEngine]:
    eng = LmdbEngine(tmp_path / "db", (*TABLES, *HINT_TABLES), durable=True)
    yield eng
    await eng.close()


async def _stores(engine: LmdbEngine, bound: int = 1 << 20) -> tuple[LocalStore, HintStore]:
    store = LocalStore(engine, "me", BITS)
    await store.open()
    hint_store = HintStore(engine, bound)
    hint_store.open()
    return store, hint_store


async def test_hints_queue_fold_and_serve_reads(engine: LmdbEngine) -> None:
    store, hs = await _stores(engine)
    name = keys.object_name("b", "k")
    skey = store.storage_key(name)
    first = _versions(b"one")
    added = await hs.add("n2", name, skey, first, 10)
    assert (added.stored, added.merged) == (True, False)
    second = _versions(b"two", "b")  # concurrent with the first: both must be kept
    added = await hs.add("n2", name, skey, second, 20)
    assert (added.stored, added.merged) == (True, True)
    await hs.add("n3", name, skey, first, 30)
    assert hs.pending == 2 and hs.targets() == ["n2", "n3"]
    assert sorted(s.value for s in hs.versions_for(skey).siblings) == [b"one", b"two"]
    assert store.get(name) == Versions()  # not in this node's own replica
    assert sorted(s.value for s in local_view(store, hs, name).siblings) == [b"one", b"two"]
    [hint] = hs.oldest("n2", 10, 1 << 20)
    assert hint.created_ms == 20  # folding keeps the hint's place; its age restarts


async def test_delivery_deletes_only_what_was_sent(engine: LmdbEngine) -> None:
    store, hs = await _stores(engine)
    names = [keys.object_name("b", f"k{i}") for i in range(5)]
    for i, name in enumerate(names):
        await hs.add("n2", name, store.storage_key(name), _versions(b"v%d" % i), i)
    batch = hs.oldest("n2", 3, 1 << 20)
    assert [h.created_ms for h in batch] == [0, 1, 2]
    # a write folds into one of the hints being delivered: that one must stay queued
    await hs.add("n2", names[1], store.storage_key(names[1]), _versions(b"newer", "c"), 99)
    assert await hs.remove(batch) == 2
    left = hs.oldest("n2", 10, 1 << 20)
    assert [h.created_ms for h in left] == [99, 3, 4]  # its place kept, its age restarted
    assert hs.versions_for(store.storage_key(names[0])) == Versions()
    assert await hs.remove(left) == 3
    assert hs.pending == 0 and hs.targets() == []


async def test_a_full_queue_refuses_and_expiry_drops_oldest(engine: LmdbEngine) -> None:
    store, hs = await _stores(engine, bound=2_000)
    stored = 0
    for i in range(20):
        name = keys.object_name("b", f"k{i}")
        added = await hs.add("n2", name, store.storage_key(name), _versions(b"x" * 300), i)
        stored += added.stored
    assert 0 < stored < 20
    assert hs.stats["n2"].bytes <= 2_000
    assert await hs.drop_expired("n2", now_ms=1_000 + 2, max_age_ms=1_000) == 2
    assert hs.stats["n2"].count == stored - 2


async def test_hints_and_their_counters_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db"
    engine = LmdbEngine(path, (*TABLES, *HINT_TABLES), durable=True)
    store, hs = await _stores(engine)
    for i in range(10):
        name = keys.object_name("b", f"k{i}")
        await hs.add(f"n{i % 2}", name, store.storage_key(name), _versions(b"v"), i)
    before = dict(hs.stats)
    await engine.close()
    engine = LmdbEngine(path, (*TABLES, *HINT_TABLES), durable=True)
    try:
        store, hs = await _stores(engine)
        assert hs.stats == before
        name = keys.object_name("b", "late")
        await hs.add("n0", name, store.storage_key(name), _versions(b"v"), 100)
        assert hs.oldest("n0", 100, 1 << 20)[-1].created_ms == 100  # queued after the old
    finally:
        await engine.close()


async def test_hint_for_a_key_rewritten_often_does_not_expire_while_it_holds_a_recent_write(
        engine: LmdbEngine) -> None:
    """Issue 15 part 5: a key rewritten every 100 ms while its owner is down, for longer than
    --hint-max-age. The hint holds a write 1 ms old and must not be dropped; it expires only
    max-age after its newest write."""
    store, hs = await _stores(engine)
    name = keys.object_name("b", "hot")
    skey = store.storage_key(name)
    max_age = 1_000
    versions = _versions(b"v0")
    await hs.add("n2", name, skey, versions, 0)
    for at in range(100, 1_600, 100):
        versions = _versions(f"v{at}".encode(), base=versions)
        assert (await hs.add("n2", name, skey, versions, at)).merged
    newest = 1_500
    assert await hs.drop_expired("n2", now_ms=newest + 1, max_age_ms=max_age) == 0
    assert hs.pending == 1
    assert [s.value for s in hs.versions_for(skey).siblings] == [b"v1500"]
    assert await hs.drop_expired("n2", now_ms=newest + max_age + 1, max_age_ms=max_age) == 1
    assert hs.pending == 0
