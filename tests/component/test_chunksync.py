"""Chunk anti-entropy and scrubbing (dfsring.files.chunksync) over real chunk stores on temp
dirs, one per node, with an in-process stand-in for the network."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dfsring.core.clusterview import ClusterView
from dfsring.files import placement
from dfsring.files.chunkstore import Buffer, ChunkStore
from dfsring.files.chunksync import ChunkSync, SyncSettings
from dfsring.files.metrics import FileMetrics
from dfsring.foundation import errors
from dfsring.foundation.worker import Schedule, Worker, idle
from dfsring.ring import Ring, RingMember
from dfsring.testing.views import view_of
from dfsring.transport.rpc import PeerUnavailable

pytestmark = pytest.mark.component
NODES = ("n1", "n2", "n3", "n4")
RING = Ring.build([RingMember(n) for n in NODES], replicas=3, partition_bits=8, epoch=1)
GRACE = 60.0


def chunk(seed: int, size: int = 3000) -> tuple[bytes, bytes]:
    data = hashlib.shake_128(seed.to_bytes(4, "big")).digest(size)
    return hashlib.sha256(data).digest(), data


@dataclass
class Net:
    """Every node's chunk store, which nodes are down, and the cluster view they share."""

    stores: dict[str, ChunkStore]
    ring: Ring = RING
    previous: tuple[Ring, ...] = ()
    down: set[str] = field(default_factory=set)
    sent: list[tuple[str, bytes]] = field(default_factory=list)

    def cluster_view(self) -> ClusterView:
        return view_of(self.ring, "n1", previous=self.previous, down=self.down)

    def store(self, node: str) -> ChunkStore:
        if node in self.down:
            raise PeerUnavailable(node, "connection refused")
        return self.stores[node]

    def holders(self, cid: bytes) -> set[str]:
        return {n for n, s in self.stores.items() if s.has(cid)}


@dataclass
class FakeReplicas:
    net: Net
    me: str

    async def present_on(self, node: str, ids: Sequence[bytes], *,
                         touch: bool) -> list[bytes]:
        return self.net.store(node).have(ids, touch=touch)

    async def send(self, node: str, cid: bytes, data: Buffer, *, repair: bool = False) -> bool:
        self.net.sent.append((node, cid))
        return self.net.store(node).put(cid, data, replace=repair)

    async def get(self, cid: bytes) -> Buffer:
        for node in NODES:
            if node != self.me and node not in self.net.down:
                data = self.net.stores[node].get(cid)
                if data is not None:
                    return data
        raise errors.QuorumNotMet(1, 0, {"(all)": "absent"})


@pytest.fixture
def net(tmp_path: Path) -> Net:
    stores = {}
    for node in NODES:
        stores[node] = ChunkStore(tmp_path / node, durable=False)
        stores[node].open()
    return Net(stores)


def sync_of(net: Net, me: str, referenced: set[bytes] | None = None) -> ChunkSync:
    async def refs(ids: set[bytes]) -> set[bytes]:
        if referenced is None:
            raise RuntimeError("references were not expected to be needed")
        return ids & referenced

    settings = SyncSettings(interval_s=0.01, rate=1 << 30, grace_s=GRACE, scrub_interval_s=0.01,
                            scrub_rate=1 << 30)
    return ChunkSync(node_id=me, store=net.stores[me], replicas=FakeReplicas(net, me),
                     views=net, settings=settings, metrics=FileMetrics(), referenced=refs)


def owned_by(node: str, count: int, *, owner: bool = True, start: int = 0) -> list[bytes]:
    """Seeds of ``count`` chunks that ``node`` owns (or, owner=False, does not own)."""
    seeds = []
    for seed in range(start, start + 10_000):
        if (node in placement.owners(RING, chunk(seed)[0])) == owner:
            seeds.append(seed)
            if len(seeds) == count:
                return seeds
    raise AssertionError("not enough chunks")


def put(store: ChunkStore, seed: int, age: float = 0.0) -> bytes:
    cid, data = chunk(seed)
    store.put(cid, data)
    if age:
        t = os.stat(store.path_of(cid)).st_mtime - age
        os.utime(store.path_of(cid), (t, t))
    return cid


async def test_owners_that_lack_a_chunk_get_it_and_down_ones_are_skipped(net: Net) -> None:
    seeds = owned_by("n1", 30)
    ids = [put(net.stores["n1"], s) for s in seeds]
    net.down.add("n3")
    report = await sync_of(net, "n1").sync_once()
    for cid in ids:
        owners = set(placement.owners(RING, cid))
        assert net.holders(cid) == owners - {"n3"}  # n3 was down; no fallback was written
    assert report.pushed == sum(len(set(placement.owners(RING, c)) - {"n1", "n3"})
                                for c in ids)
    assert len(net.sent) == report.pushed  # each copy sent once
    assert report.checked == 30 and report.dropped == 0
    net.down.clear()
    net.sent.clear()
    for node in NODES:  # now the first owner holding each chunk sends it to n3
        await sync_of(net, node).sync_once()
    assert all(net.holders(c) == set(placement.owners(RING, c)) for c in ids)
    assert {node for node, _ in net.sent} == {"n3"}  # only what was missing moved
    assert len(net.sent) == sum("n3" in placement.owners(RING, c) for c in ids)
    net.sent.clear()
    for node in NODES:
        assert (await sync_of(net, node).sync_once()).pushed == 0
    assert net.sent == []


async def test_a_stray_moves_to_its_owners_then_goes_once_past_the_grace(net: Net) -> None:
    seeds = owned_by("n4", 6, owner=False)
    old = [put(net.stores["n4"], s, age=2 * GRACE) for s in seeds[:3]]
    young = [put(net.stores["n4"], s) for s in seeds[3:]]
    sync = sync_of(net, "n4", referenced=set(old))
    first = await sync.sync_once()
    for cid in old + young:  # every owner has it now
        assert set(placement.owners(RING, cid)) <= net.holders(cid)
    assert first.dropped == 0  # old ones were copied after the batch's strays were judged
    second = await sync.sync_once()
    assert second.pushed == 0 and second.dropped == 3
    assert not any(net.stores["n4"].has(c) for c in old)
    assert all(net.stores["n4"].has(c) for c in young)  # an upload may still rely on these
    assert sync.stats_json()["stray_chunks_dropped"] == 3


async def test_strays_stay_while_an_owner_is_silent_or_the_ring_moves(net: Net) -> None:
    seeds = owned_by("n4", 4, owner=False)
    ids = [put(net.stores["n4"], s, age=2 * GRACE) for s in seeds]
    for cid in ids:
        for owner in placement.owners(RING, cid):
            net.stores[owner].put(cid, chunk(seeds[ids.index(cid)])[1])
    net.previous = (RING,)  # a transition: reads may still come here
    assert (await sync_of(net, "n4").sync_once()).dropped == 0
    net.previous = ()
    net.down.add("n1")
    report = await sync_of(net, "n4").sync_once()
    kept = [c for c in ids if "n1" in placement.owners(RING, c)]
    assert report.dropped == len(ids) - len(kept)
    assert all(net.stores["n4"].has(c) for c in kept)


async def test_old_garbage_is_not_copied_back_to_an_owner_that_collected_it(net: Net) -> None:
    seeds = owned_by("n1", 4)
    ids = [put(net.stores["n1"], s, age=2 * GRACE) for s in seeds]
    live = set(ids[:2])
    report = await sync_of(net, "n1", referenced=live).sync_once()
    for cid in ids:
        expected = set(placement.owners(RING, cid)) if cid in live else {"n1"}
        assert net.holders(cid) == expected
    assert report.old_unreferenced == 2


async def test_a_corrupt_local_copy_is_never_pushed_and_is_replaced(net: Net) -> None:
    seed = next(s for s in owned_by("n1", 20) if placement.owners(RING, chunk(s)[0])[0] == "n1")
    cid, data = chunk(seed)  # n1 is its primary: the holder that pushes it
    others = [n for n in placement.owners(RING, cid) if n != "n1"]
    net.stores["n1"].put(cid, data)
    net.stores[others[0]].put(cid, data)
    path = net.stores["n1"].path_of(cid)
    path.write_bytes(b"rot" + data[3:])
    sync = sync_of(net, "n1")
    report = await sync.sync_once()
    assert report.pushed == 0 and not net.stores[others[1]].has(cid)
    assert path.read_bytes() == data  # fetched from the other owner
    assert sync.stats_json()["corrupt_chunks_repaired"] == 1
    await sync.sync_once()
    assert net.stores[others[1]].get(cid) == data


async def test_scrub_replaces_every_corrupt_copy(net: Net) -> None:
    seeds = owned_by("n2", 12)
    for s in seeds:
        cid, data = chunk(s)
        for owner in placement.owners(RING, cid):
            net.stores[owner].put(cid, data)
    rotten = [net.stores["n2"].path_of(chunk(s)[0]) for s in seeds[:5]]
    for path in rotten:
        raw = bytearray(path.read_bytes())
        raw[100] ^= 0xFF
        path.write_bytes(raw)
    sync = sync_of(net, "n2")
    assert await sync.scrub_once() == 5
    for s in seeds:
        cid, data = chunk(s)
        assert net.stores["n2"].get(cid) == data
    stats = sync.stats_json()
    assert stats["corrupt_chunks_repaired"] == 5 and stats["chunk_scrub_passes"] == 1
    assert await sync.scrub_once() == 0


async def test_a_failing_pass_does_not_stop_the_loop(net: Net) -> None:
    put(net.stores["n1"], owned_by("n1", 1)[0])
    calls = 0
    third = asyncio.Event()

    async def broken(node: str, ids: Sequence[bytes], *, touch: bool) -> list[bytes]:
        nonlocal calls
        calls += 1
        if calls == 3:
            third.set()
        raise RuntimeError("a bug")

    sync = sync_of(net, "n1")
    sync.replicas.present_on = broken  # type: ignore[method-assign]
    worker = Worker("chunk-sync", idle(sync.sync_once), Schedule(0.01, first_wait=True))
    task = asyncio.create_task(worker.run_forever())
    try:
        async with asyncio.timeout(5):
            await third.wait()  # three passes failed, and the loop still runs
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert worker.status.last_error == "RuntimeError: a bug"


async def test_a_chunk_missing_on_one_owner_is_sent_by_one_holder(net: Net) -> None:
    seeds = owned_by("n4", 20, owner=False)
    ids = []
    for s in seeds:
        cid, data = chunk(s)
        ids.append(cid)
        net.stores["n4"].put(cid, data)  # a stray copy too
        for owner in placement.owners(RING, cid)[:2]:
            net.stores[owner].put(cid, data)
    for node in NODES:
        await sync_of(net, node).sync_once()
    assert sorted(cid for _, cid in net.sent) == sorted(ids)  # once each
    for cid in ids:
        assert set(placement.owners(RING, cid)) <= net.holders(cid)
