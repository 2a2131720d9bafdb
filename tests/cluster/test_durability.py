"""Durability and integrity of a single node (foundation issue, "Must show").

- kill -9 while clients stream acknowledged writes, then restart: every acknowledged write is
  readable (fsync + group commit before the ack).
- Bytes flipped in the engine's file: the read reports an error, never the corrupt bytes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import aiohttp

from dfsring.cli.launcher import LocalCluster, NodeProcess

WRITERS = 8
KILL_AFTER_ACKS = 400
MAX_WRITES_PER_WRITER = 5_000  # bound: the kill comes long before


def _single(tmp_path: Path) -> LocalCluster:
    return LocalCluster(1, tmp_path, n=1, r=1, w=1)


async def _stream_writes(node: NodeProcess, acked: dict[str, bytes], enough: asyncio.Event,
                         writer: int) -> None:
    """Write unique keys until the node dies; record a key only once its 204 arrived."""
    timeout = aiohttp.ClientTimeout(total=5)
    url = node.url
    async with aiohttp.ClientSession(timeout=timeout, headers=node.auth_headers) as http:
        for i in range(MAX_WRITES_PER_WRITER):
            key, value = f"w{writer}-{i}", secrets.token_bytes(64)
            try:
                async with http.put(f"{url}/v1/kv/dur/{key}", data=value) as r:
                    if r.status != 204:
                        return
            except (aiohttp.ClientError, TimeoutError):
                return  # the node was killed under us: this write is not acknowledged
            acked[key] = value
            if len(acked) >= KILL_AFTER_ACKS:
                enough.set()


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    with _single(tmp_path) as cluster:
        node = cluster.nodes[0]
        acked: dict[str, bytes] = {}
        enough = asyncio.Event()
        writers = [asyncio.create_task(_stream_writes(node, acked, enough, w))
                   for w in range(WRITERS)]
        await asyncio.wait_for(enough.wait(), timeout=60)
        node.kill()  # SIGKILL while the writers are still going
        await asyncio.wait_for(asyncio.gather(*writers), timeout=30)
        assert len(acked) >= KILL_AFTER_ACKS
        node.start()
        node.wait_ready(30)
        missing = await _missing(node, acked)
        assert missing == [], f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


async def _missing(node: NodeProcess, expected: dict[str, bytes]) -> list[str]:
    lost: list[str] = []
    url = node.url
    async with aiohttp.ClientSession(headers=node.auth_headers) as http:
        for key, value in expected.items():
            async with http.get(f"{url}/v1/kv/dur/{key}") as r:
                if r.status != 200 or await r.read() != value:
                    lost.append(key)
    return lost


def _flip_everywhere(db_file: Path, marker: bytes) -> int:
    """Flip one byte of every copy of `marker` in the file (LMDB may hold stale page copies)."""
    data = db_file.read_bytes()
    flipped = 0
    with open(db_file, "r+b") as fh:
        at = data.find(marker)
        while at >= 0:
            fh.seek(at + len(marker) // 2)
            fh.write(bytes([data[at + len(marker) // 2] ^ 0x20]))
            flipped += 1
            at = data.find(marker, at + 1)
        fh.flush()
        os.fsync(fh.fileno())
    return flipped


async def test_corrupted_value_is_an_error_not_data(tmp_path: Path) -> None:
    with _single(tmp_path) as cluster:
        node: NodeProcess = cluster.nodes[0]
        marker = b"MARKER-" + secrets.token_hex(24).encode()
        async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
            for key, value in (("bad", marker), ("good", b"fine")):
                async with http.put(f"{node.url}/v1/kv/rot/{key}", data=value) as r:
                    assert r.status == 204
            assert _flip_everywhere(node.spec.data_dir / "db" / "data.mdb", marker) >= 1
            # Through the quorum path: the only replica is corrupt, so no quorum, and the
            # problem names the corruption. On the local path: the corruption itself.
            expected = {"/v1/kv/rot/bad": (503, "quorum-not-met"),
                        "/v1/node/local/kv/rot/bad": (500, "corrupt-value")}
            for path, (status, slug) in expected.items():
                async with http.get(node.url + path) as r:
                    body = await r.read()
                    assert r.status == status, body
                    assert r.content_type == "application/problem+json"
                    assert marker[:-2] not in body
                    doc = await r.json()
                    assert doc["type"].endswith("/" + slug)
                    if slug == "quorum-not-met":
                        assert doc["replicas"] == {"node1": "corrupt-value"}
            async with http.get(f"{node.url}/v1/kv/rot/good") as r:
                assert r.status == 200 and await r.read() == b"fine"
            async with http.get(f"{node.url}/v1/node/stats") as r:
                assert (await r.json())["corrupt_found"] >= 2
