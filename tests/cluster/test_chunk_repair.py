"""Chunk anti-entropy and scrubbing with real node processes (dfsring.files.chunksync): a node
whose chunks were deleted gets them all back, rotten chunk files are replaced, and copies a
fallback took for a down owner move to that owner and leave the fallback, all with no client
read. Chunks are checked where they really are: the files under each node's data dir."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dfsring.cli.launcher import NodeProcess
from dfsring.files import placement
from dfsring.testing.files import MIB, random_blocks
from dfsring.testing.wait import async_wait_until
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.timeout(120)
TIMEOUT = aiohttp.ClientTimeout(total=60)
SMALL_CHUNKS = ("--chunk-size", str(256 << 10))


def chunk_files(node: NodeProcess) -> dict[str, Path]:
    """The node's chunk files on disk: hex id -> path (temp files of writes excluded)."""
    root = node.spec.data_dir / "chunks"
    return {p.name: p for p in root.glob("??/??/*") if len(p.name) == 64}


def sound(path: Path) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    except FileNotFoundError:
        return False


def flip(path: Path, at: int = 1000) -> None:
    """Invert one byte of the file in place (bit rot)."""
    with open(path, "r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0xFF]))


def sync_stats(node: NodeProcess) -> dict[str, Any]:
    return node.get_json("/v1/node/chunks")["sync"]  # type: ignore[no-any-return]


async def upload(node: NodeProcess, path: str, size: int, seed: int) -> tuple[dict[str, Any],
                                                                              bytes]:
    data = b"".join(random_blocks(size, seed))
    async with aiohttp.ClientSession(headers=node.auth_headers, timeout=TIMEOUT) as http, \
            http.put(f"{node.url}/v1/files/{path}", data=data) as r:
        doc = await r.json()
        assert r.status == 201, doc
    return doc, data


async def everywhere(nodes: list[NodeProcess], count: int) -> None:
    """Wait until every node holds ``count`` chunks (replicas beyond W come in the
    background)."""
    async def held() -> bool:
        return all(len(chunk_files(n)) == count for n in nodes)

    await async_wait_until(held, timeout=20, message=f"every node holds the file's {count} "
                                                    "chunks")


async def test_a_node_whose_chunks_were_deleted_gets_them_all_back(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(3, extra_args=(*SMALL_CHUNKS, "--chunk-sync-interval", "1"))
    doc, _ = await upload(cluster.nodes[0], "repair/big", 20 * MIB, seed=31)
    count = doc["chunks"]
    assert count > 40
    await everywhere(cluster.nodes, count)
    victim = cluster.node("node3")
    expected = set(chunk_files(victim))
    victim.stop()
    shutil.rmtree(victim.spec.data_dir / "chunks")
    victim.start()
    victim.wait_ready(timeout=20)
    started = time.monotonic()

    async def restored() -> bool:
        return set(chunk_files(victim)) == expected

    await async_wait_until(restored, timeout=30, interval=0.1,
                           message=f"node3 holds all {count} chunks again")
    took = time.monotonic() - started
    assert all(sound(p) for p in chunk_files(victim).values())

    async def counted() -> bool:  # a pusher counts a chunk when its answer arrives, after the file
        return sum(sync_stats(n)["chunks_pushed"] for n in cluster.nodes[:2]) >= count

    await async_wait_until(counted, timeout=10, interval=0.1,
                           message=f"node1 and node2 counted {count} chunks pushed")
    pushed = [sync_stats(n) for n in cluster.nodes[:2]]
    print(f"\n{count} chunks (20 MiB) back on the node whose chunks were deleted in "
          f"{took:.1f}s after it was ready, with no client read; pushed by node1/node2: "
          f"{[s['chunks_pushed'] for s in pushed]}")


async def test_rotten_chunk_files_are_replaced_by_the_scrub(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(3, extra_args=(*SMALL_CHUNKS, "--scrub-interval", "1",
                                             "--scrub-rate", str(64 << 20)))
    doc, _ = await upload(cluster.nodes[0], "repair/rot", 8 * MIB, seed=32)
    await everywhere(cluster.nodes, doc["chunks"])
    victim = cluster.node("node2")
    rotten = sorted(chunk_files(victim).values())[:20]
    assert len(rotten) == 20
    for path in rotten:
        flip(path)  # live
    started = time.monotonic()

    async def repaired() -> bool:
        return all(sound(p) for p in rotten)

    await async_wait_until(repaired, timeout=20, interval=0.1,
                           message="all 20 rotten chunk files hold their chunk again")
    took = time.monotonic() - started
    stats = victim.get_json("/v1/node/chunks")
    assert stats["sync"]["corrupt_chunks_repaired"] >= 20
    assert stats["corrupt_found"] >= 20 and stats["sync"]["chunk_scrub_passes"] >= 1
    print(f"\n20 rotten chunk files repaired by the scrub in {took:.1f}s, with no client read")


async def test_copies_taken_for_a_down_owner_move_to_it_and_leave_the_fallbacks(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(5, extra_args=(*SMALL_CHUNKS, "--chunk-sync-interval", "1",
                                             "--gc-grace", "2"))
    ring = cluster.nodes[0].get_json("/v1/cluster/ring")
    bits = ring["partitions"].bit_length() - 1

    def owners(name: str) -> set[str]:
        part = placement.chunk_partition(bytes.fromhex(name), bits)
        return set(ring["owners"][str(part)])

    def placed() -> dict[str, set[str]]:
        held: dict[str, set[str]] = {}
        for node in cluster.nodes:
            for name in chunk_files(node):
                held.setdefault(name, set()).add(node.node_id)
        return held

    down = cluster.node("node5")
    down.stop()
    doc, data = await upload(cluster.nodes[0], "repair/moved", 8 * MIB, seed=33)
    held = placed()
    assert len(held) == doc["chunks"]
    strays = [name for name, nodes in held.items() if not nodes <= owners(name)]
    assert strays, "no chunk went to a fallback: the test shows nothing"

    async def past_the_grace() -> bool:  # so they move only once a scan finds them referenced
        cutoff = time.time() - 2.5
        return all(p.stat().st_mtime < cutoff for n in cluster.nodes
                   for p in chunk_files(n).values())

    await async_wait_until(past_the_grace, timeout=10, message="every copy older than the grace")
    down.start()
    down.wait_ready(timeout=20)
    started = time.monotonic()

    async def on_their_owners() -> bool:
        return all(nodes == owners(name) for name, nodes in placed().items())

    await async_wait_until(on_their_owners, timeout=30, interval=0.1,
                           message="every chunk on exactly its owners")
    took = time.monotonic() - started
    assert set(placed()) == set(held)
    dropped = sum(sync_stats(n)["stray_chunks_dropped"] for n in cluster.nodes)
    assert dropped >= len(strays)
    async with aiohttp.ClientSession(headers=cluster.auth_headers, timeout=TIMEOUT) as http, \
            http.get(f"{cluster.nodes[1].url}/v1/files/repair/moved") as r:
        assert r.status == 200 and await r.read() == data
    print(f"\n{len(strays)} of {len(held)} chunks had gone to fallbacks; on exactly their "
          f"owners {took:.1f}s after the owner was back ({dropped} stray copies dropped)")
