"""The chunk store on a temp dir, and the upload's moving parts with a fake replicator
(dfsring.files.chunkstore, dfsring.files.upload)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfsring.core.chunker import ChunkParams, split
from dfsring.files.chunks import PutOutcome
from dfsring.files.chunkstore import ChunkStore
from dfsring.files.upload import ChunkPipeline, Cutter, batches
from dfsring.foundation import errors

pytestmark = pytest.mark.component


def chunk(seed: int, size: int = 5000) -> tuple[bytes, bytes]:
    data = hashlib.shake_128(seed.to_bytes(4, "big")).digest(size)
    return hashlib.sha256(data).digest(), data


@pytest.fixture
def store(tmp_path: Path) -> ChunkStore:
    s = ChunkStore(tmp_path / "chunks")
    s.open()
    return s


def test_put_get_and_dedup(store: ChunkStore) -> None:
    cid, data = chunk(1)
    assert not store.has(cid) and store.get(cid) is None
    assert store.put(cid, data) is True
    assert store.has(cid) and store.get(cid) == data
    assert store.put(cid, data) is False  # already here: not written again
    assert store.stats.count == 1 and store.stats.bytes == len(data)
    assert store.path_of(cid) == store.root / cid.hex()[:2] / cid.hex()[2:4] / cid.hex()


def test_parts_are_written_in_order_without_joining(store: ChunkStore) -> None:
    cid, data = chunk(2, 100_000)
    parts = [data[:10], memoryview(data)[10:70_000], data[70_000:]]
    assert store.put(cid, parts) is True
    assert store.get(cid) == data


def test_data_that_does_not_match_its_id_is_refused(store: ChunkStore) -> None:
    cid, data = chunk(3)
    with pytest.raises(errors.BadRequest):
        store.put(cid, data + b"x")
    assert not store.has(cid)
    assert list((store.root / "tmp").iterdir()) == []


def test_a_corrupt_copy_is_never_served_and_is_deleted(store: ChunkStore) -> None:
    cid, data = chunk(4)
    store.put(cid, data)
    path = store.path_of(cid)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(errors.CorruptValue):
        store.get(cid)
    assert not path.exists() and store.stats.count == 0 and store.corrupt_found == 1
    assert store.put(cid, data) is True  # a repair puts the good copy back
    assert store.verify(cid) is True
    path.write_bytes(b"junk")
    assert store.verify(cid) is False
    assert store.verify(cid) is None


def test_replace_overwrites(store: ChunkStore) -> None:
    cid, data = chunk(5)
    store.put(cid, data)
    store.path_of(cid).write_bytes(b"bad")
    assert store.get(cid, verify=False) == b"bad"
    assert store.put(cid, data, replace=True) is True
    assert store.get(cid) == data


def test_open_counts_and_clears_leftover_temp_files(tmp_path: Path) -> None:
    first = ChunkStore(tmp_path / "c")
    first.open()
    for i in range(5):
        first.put(*chunk(10 + i))
    (first.root / "tmp" / "half-written").write_bytes(b"x")
    (first.root / "ab").mkdir(exist_ok=True)
    (first.root / "ab" / "not-a-dir").write_bytes(b"x")
    again = ChunkStore(tmp_path / "c")
    again.open()
    assert again.stats == first.stats
    assert list((again.root / "tmp").iterdir()) == []
    assert sorted(i.cid for i in again.iter_chunks()) == sorted(chunk(10 + i)[0]
                                                                for i in range(5))


def test_the_collector_deletes_only_chunks_untouched_since_its_cutoff(store: ChunkStore) -> None:
    old, young, touched = chunk(20), chunk(21), chunk(22)
    for cid, data in (old, young, touched):
        store.put(cid, data)
    past = time.time() - 100
    for cid in (old[0], touched[0]):
        os.utime(store.path_of(cid), (past, past))
    cutoff = time.time() - 50
    candidates = store.older_than(cutoff, limit=10)
    assert set(candidates) == {old[0], touched[0]}
    assert store.have([touched[0], chunk(99)[0]], touch=True) == [touched[0]]  # an upload
    assert store.delete_if_older(candidates, cutoff) == 1
    assert not store.has(old[0]) and store.has(touched[0]) and store.has(young[0])
    assert store.stats.count == 2
    assert store.older_than(cutoff, limit=1) == {}


# --- the upload's parts ---------------------------------------------------------------------


async def _stream(pieces: list[bytes], pause: float = 0.0) -> AsyncIterator[bytes]:
    for piece in pieces:
        if pause:
            await asyncio.sleep(pause)
        yield piece


async def test_batches_keep_the_pieces_and_bound_the_wait() -> None:
    pieces = [bytes([i]) * 300 for i in range(10)]
    got = [b async for b in batches(_stream(pieces), 1000, idle_s=5)]
    assert [len(b) for b in got] == [4, 4, 2] and [p for b in got for p in b] == pieces
    with pytest.raises(errors.RequestTimeout):
        async for _ in batches(_stream(pieces, pause=0.2), 1000, idle_s=0.05):
            pass


async def test_the_cutter_matches_the_chunker_and_sha256() -> None:
    data = os.urandom(3 << 20)
    params = ChunkParams.for_average(64 << 10)
    cutter = Cutter(params)
    cut = cutter.feed([data[:12345], data[12345:2_000_000]]) + cutter.feed([data[2_000_000:]])
    cut += cutter.finish()
    assert [c for _, c in cut] == split(data, params)
    assert all(hashlib.sha256(c).digest() == cid for cid, c in cut)
    assert cutter.sha256 == hashlib.sha256(data).hexdigest() and cutter.size == len(data)


class FakeReplicator:
    """Records puts; a put waits on `gate` so the window can be observed."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.active = 0
        self.peak = 0
        self.puts: list[bytes] = []
        self.fail_on = fail_on
        self.gate = asyncio.Event()
        self.adopted: list[asyncio.Future[None]] = []
        self.confirmed: list[list[bytes]] = []
        self.lose: bytes | None = None

    async def put(self, cid: bytes, data: bytes, w: int) -> PutOutcome:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await self.gate.wait()
            if cid == self.fail_on:
                raise errors.QuorumNotMet(w, 0, {"n2": "down"})
            self.puts.append(cid)
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return PutOutcome(["n1", "n2"], True, done)
        finally:
            self.active -= 1

    def adopt(self, task: asyncio.Future[None]) -> None:
        self.adopted.append(task)

    async def confirm(self, holders: dict[bytes, list[str]], w: int) -> None:
        self.confirmed.append(sorted(holders))
        if self.lose is not None and self.lose in holders:
            raise errors.QuorumNotMet(w, 0, {"chunks": "lost"})


async def test_the_window_bounds_chunks_in_flight_and_dedups() -> None:
    fake = FakeReplicator()
    pipeline = ChunkPipeline(fake, w=2, window=3, renew_s=60)  # type: ignore[arg-type]
    chunks = [chunk(i) for i in range(8)]

    async def feed() -> None:
        for cid, data in [*chunks, chunks[0]]:
            await pipeline.submit(cid, data)

    feeding = asyncio.ensure_future(feed())
    await asyncio.sleep(0.05)
    assert fake.peak == 3 and not feeding.done()  # blocked: the window is full
    fake.gate.set()
    await feeding
    holders = await pipeline.finish()
    assert sorted(fake.puts) == sorted(c for c, _ in chunks)  # the repeated chunk went once
    assert set(holders) == {c for c, _ in chunks} and pipeline.new_chunks == 8


async def test_a_failed_chunk_fails_the_upload() -> None:
    chunks = [chunk(i) for i in range(6)]
    fake = FakeReplicator(fail_on=chunks[1][0])
    fake.gate.set()
    pipeline = ChunkPipeline(fake, w=2, window=2, renew_s=60)  # type: ignore[arg-type]
    with pytest.raises(errors.QuorumNotMet):
        for cid, data in chunks:
            await pipeline.submit(cid, data)
            await asyncio.sleep(0)
        await pipeline.finish()
    await pipeline.abort()


async def test_a_long_upload_keeps_touching_its_chunks() -> None:
    fake = FakeReplicator()
    fake.gate.set()
    pipeline = ChunkPipeline(fake, w=2, window=2, renew_s=0.05)  # type: ignore[arg-type]
    first = chunk(1)
    await pipeline.submit(*first)
    await asyncio.sleep(0.2)  # the upload goes on; its first chunk is renewed meanwhile
    assert len(fake.confirmed) >= 2 and all(c == [first[0]] for c in fake.confirmed)
    await pipeline.submit(*chunk(2))
    await asyncio.sleep(0.12)
    await pipeline.finish()  # touches again only if the last renewal is older than renew_s
    assert fake.confirmed[-1] == sorted([first[0], chunk(2)[0]])


async def test_a_chunk_lost_during_a_long_upload_fails_it() -> None:
    fake = FakeReplicator()
    fake.gate.set()
    pipeline = ChunkPipeline(fake, w=2, window=2, renew_s=0.05)  # type: ignore[arg-type]
    lost = chunk(1)
    fake.lose = lost[0]
    await pipeline.submit(*lost)
    await asyncio.sleep(0.2)
    with pytest.raises(errors.QuorumNotMet):
        await pipeline.finish()
