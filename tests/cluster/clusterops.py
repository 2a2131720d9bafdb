"""Helpers for membership cluster tests: where keys really are, and a writer that keeps going.

Everything reads the nodes' own HTTP API (no shortcuts into their data dirs), and every wait
polls with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from dfsring.cli.launcher import LocalCluster, NodeProcess
from dfsring.core import keys

BUCKET = "moves"


def members_seen_by(node: NodeProcess) -> dict[str, dict[str, Any]]:
    return {m["node_id"]: m for m in node.get_json("/v1/cluster/members")}


def ring_of(node: NodeProcess) -> dict[str, Any]:
    return node.get_json("/v1/cluster/ring")


def local_keys(node: NodeProcess, bucket: str = BUCKET) -> set[str]:
    """Every live key of the bucket stored on this node (paged)."""
    out: set[str] = set()
    cursor = None
    for _ in range(10_000):
        path = f"/v1/node/local/kv/{bucket}?limit=10000"
        if cursor:
            path += f"&cursor={cursor}"
        page = node.get_json(path, timeout=30)
        out.update(page["keys"])
        cursor = page["cursor"]
        if not cursor:
            return out
    raise AssertionError("listing did not end")


def owners(ring: dict[str, Any], key: str, bucket: str = BUCKET) -> set[str]:
    bits = ring["partitions"].bit_length() - 1
    part = keys.partition_of(bucket.encode(), key.encode(), bits)
    return set(ring["owners"][str(part)])


def misplaced(expected: Iterable[str], nodes: list[NodeProcess]) -> list[str]:
    """Problems with placement: an expected key missing on an owner, or any key on a node
    that does not own it. Empty when every key sits on exactly its owners."""
    ring = ring_of(nodes[0])
    held = {n.node_id: local_keys(n) for n in nodes}
    problems = []
    for key in expected:
        for owner in owners(ring, key):
            if key not in held.get(owner, set()):
                problems.append(f"{key} missing on owner {owner}")
    for node_id, stored in held.items():
        for key in stored:
            if node_id not in owners(ring, key):
                problems.append(f"{key} on non-owner {node_id}")
    return problems


def wait_placed(cluster: LocalCluster, expected: set[str], nodes: list[NodeProcess],
                timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        problems = misplaced(expected, nodes)
        if not problems:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(problems)} placement problems, e.g. {problems[:5]}")
        time.sleep(0.5)


@dataclass
class Writer:
    """Unique-key writes through every given node in turn, until stopped; records which
    were acknowledged (2xx). Failed or timed-out writes are not counted as acknowledged."""

    urls: list[str]
    prefix: str
    concurrency: int = 4
    headers: dict[str, str] = field(default_factory=dict)  # the cluster's auth_headers
    acked: set[str] = field(default_factory=set)
    failed: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _count: int = 0

    async def run(self, limit: int = 100_000) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout, headers=self.headers) as http:
            await asyncio.gather(*(self._one(http, i, limit) for i in range(self.concurrency)))

    async def _one(self, http: aiohttp.ClientSession, lane: int, limit: int) -> None:
        while not self._stop.is_set() and self._count < limit:
            self._count += 1
            key = f"{self.prefix}-{lane}-{self._count}"
            url = self.urls[self._count % len(self.urls)]
            try:
                async with http.put(f"{url}/v1/kv/{BUCKET}/{key}", data=key.encode()) as resp:
                    await resp.read()
                    if resp.status == 204:
                        self.acked.add(key)
                    else:
                        self.failed += 1
            except (aiohttp.ClientError, TimeoutError):
                self.failed += 1
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()


async def load(urls: list[str], count: int, prefix: str = "k", concurrency: int = 32, *,
               headers: dict[str, str]) -> set[str]:
    """Write `count` unique keys as fast as the cluster takes them; all must be acked."""
    writer = Writer(urls, prefix, concurrency, headers)
    await writer.run(limit=count)
    assert writer.failed == 0, f"{writer.failed} preload writes failed"
    return writer.acked


async def read_back(urls: list[str], keys_: Iterable[str], *,
                    headers: dict[str, str]) -> list[str]:
    """Keys whose quorum read does not return the value written (the key itself)."""
    bad: list[str] = []
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10),
                                     headers=headers) as http:
        async def one(i: int, key: str) -> None:
            async with sem, http.get(f"{urls[i % len(urls)]}/v1/kv/{BUCKET}/{key}") as resp:
                body = await resp.read()
                if resp.status != 200 or body != key.encode():
                    bad.append(f"{key}: {resp.status}")
        await asyncio.gather(*(one(i, k) for i, k in enumerate(keys_)))
    return bad
