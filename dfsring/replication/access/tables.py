"""The identity system tables over the coordinator: quorum reads, read-modify-writes.

A read asks R replicas and merges the siblings it finds (dfsring.core.accessrecords says
how); a write carries the causal context of the read it modifies, so it supersedes what it
saw and stays a sibling of what it did not. With R + W > N a read after an acknowledged
write sees it: that is what makes a rotated key work at once on every node.
"""

from __future__ import annotations

import logging

from dfsring.core import accessrecords as ar
from dfsring.core.accessrecords import BucketRecord, KeyRecord
from dfsring.core.keys import ObjectName
from dfsring.core.vclock import VersionVector
from dfsring.replication.coordinator import Coordinator

log = logging.getLogger("dfsring.access")
LIST_PAGE = 1_000


def _name(bucket: str, key: str) -> ObjectName:
    return ObjectName(bucket, key, bucket.encode("ascii"), key.encode("utf-8"))


class AccessTables:
    def __init__(self, coordinator: Coordinator, *, r: int, w: int) -> None:
        self.coordinator = coordinator
        self.r = r
        self.w = w

    async def _read(self, bucket: str, key: str) -> tuple[list[bytes], VersionVector]:
        found = await self.coordinator.get(_name(bucket, key), r=self.r)
        values = [s.value for s in found.live() if s.value is not None]
        return values, found.clock

    def _decoded(self, what: str, key: str, bad: int) -> None:
        if bad:
            log.warning("access record sibling does not decode; skipped", extra={"fields": {
                "table": what, "name": key, "skipped": bad}})

    async def read_key(self, access_key: str) -> tuple[KeyRecord | None, VersionVector]:
        values, clock = await self._read(ar.KEYS_BUCKET, access_key)
        found, bad = ar.decode_all(values, ar.decode_key)
        self._decoded("keys", access_key, bad)
        return ar.merge_keys(r for r in found if r.access_key == access_key), clock

    async def write_key(self, rec: KeyRecord, context: VersionVector) -> None:
        await self.coordinator.put(_name(ar.KEYS_BUCKET, rec.access_key), context,
                                   ar.encode_key(rec), ar.CONTENT_TYPE, w=self.w)

    async def read_bucket(self, bucket: str) -> tuple[BucketRecord | None, VersionVector]:
        values, clock = await self._read(ar.BUCKETS_BUCKET, bucket)
        found, bad = ar.decode_all(values, ar.decode_bucket)
        self._decoded("buckets", bucket, bad)
        return ar.merge_buckets(r for r in found if r.bucket == bucket), clock

    async def write_bucket(self, rec: BucketRecord, context: VersionVector) -> None:
        await self.coordinator.put(_name(ar.BUCKETS_BUCKET, rec.bucket), context,
                                   ar.encode_bucket(rec), ar.CONTENT_TYPE, w=self.w)

    async def key_ids(self, limit: int) -> list[str]:
        """Up to ``limit`` access key ids in order (deleted ones included: their graves)."""
        return await self._names(ar.KEYS_BUCKET, limit)

    async def bucket_names(self, limit: int) -> list[str]:
        """Up to ``limit`` bucket names with a record, in order (graves included)."""
        return await self._names(ar.BUCKETS_BUCKET, limit)

    async def _names(self, table: str, limit: int) -> list[str]:
        out: list[str] = []
        cursor: bytes | None = None
        bucket = table.encode("ascii")
        while len(out) < limit:
            page = await self.coordinator.list_keys(bucket, b"", cursor, LIST_PAGE)
            out += [full.decode("utf-8", "replace") for _, full in page]
            if len(page) < LIST_PAGE:
                break
            cursor = page[-1][0]
        return out[:limit]
