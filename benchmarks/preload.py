"""Fill stopped nodes' engines with the keys the benchmark reads, without HTTP.

Reads need keys to read, and the repair phase needs 100 000 keys for anti-entropy to restore.
Written through the API at the ~700 writes/s of a 3-node cluster on 2 cores, 100 000 keys
take over two minutes, longer than all the KV phases together. Instead every owner's LMDB
gets the same records straight from this process while the nodes are stopped (the way
tests/cluster/test_antientropy.py preloads), through LocalStore.merge_raw: the same path a
replica takes when it merges a peer's records, so the Merkle leaves, key counts and byte
counts are kept exactly as if the records had arrived by replication.

Each key goes only to the nodes the ring makes its owners (GET /v1/cluster/ring, fetched
while the cluster was up), so a cluster larger than N holds N copies, not one per node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dfsring.core import keys, vclock
from dfsring.core.vclock import Versions, VersionVector
from dfsring.storage import LmdbEngine
from dfsring.storage.hintstore import TABLES as HINT_TABLES
from dfsring.storage.localstore import TABLES, LocalStore, encode_record

PRELOAD_ACTOR = "bench-preload.000000"
_BATCH = 10_000


def key_names(count: int, prefix: str) -> list[str]:
    """The key names the load generator reads: ``{prefix}00000000`` and up."""
    return [f"{prefix}{i:08d}" for i in range(count)]


def records_by_owner(ring: Mapping[str, Any], bucket: str, names: Sequence[str], value: bytes,
                     content_type: str = "application/octet-stream"
                     ) -> dict[str, list[tuple[bytes, bytes]]]:
    """(storage key, record) of every key, grouped by each node that owns it on ``ring``."""
    bits = int(ring["partitions"]).bit_length() - 1
    owners: Mapping[str, Sequence[str]] = ring["owners"]
    now_ms = int(time.time() * 1000)
    out: dict[str, list[tuple[bytes, bytes]]] = {}
    for key in names:
        name = keys.object_name(bucket, key)
        part = keys.partition_of(name.bucket_bytes, name.key_bytes, bits)
        versions = vclock.update(Versions(), VersionVector(), PRELOAD_ACTOR, value,
                                 content_type, now_ms)
        item = (keys.storage_key(part, name.bucket_bytes, name.key_bytes),
                encode_record(name, versions))
        for node_id in owners[str(part)]:
            out.setdefault(node_id, []).append(item)
    return out


async def _load(db_path: Path, node_id: str, partition_bits: int, durable: bool,
                items: list[tuple[bytes, bytes]]) -> int:
    engine = LmdbEngine(db_path, (*TABLES, *HINT_TABLES), durable=durable)
    try:
        store = LocalStore(engine, node_id, partition_bits)
        await store.open()
        changed = 0
        for start in range(0, len(items), _BATCH):
            changed += await store.merge_raw(items[start:start + _BATCH])
        return changed
    finally:
        await engine.close()


def preload(db_path: Path, node_id: str, partition_bits: int,
            items: list[tuple[bytes, bytes]], durable: bool = True) -> int:
    """Merge ``items`` into the (stopped) node's engine at ``db_path``; keys changed."""
    return asyncio.run(_load(db_path, node_id, partition_bits, durable, items))
