"""Scrubbing, Merkle-leaf rebuilds and tombstone removal: one slow background pass at a time.

Anti-entropy compares replicas' trees, but a tree records what was written, not what the disk
holds now: a flipped bit leaves the tree unchanged. So a pass re-reads every record of every
partition this node holds, at most --scrub-rate bytes/s, once per --scrub-interval (Swift's
object auditor; Garage's scrub worker):

* a record that fails its checksum is quarantined (deleted, its key noted, never served: reads
  already refuse it) and fetched again from another owner at once; anti-entropy finds it
  missing later if no owner answered;
* the partition's stored Merkle leaves are compared with leaves recomputed from the data and
  rewritten if they drifted (an unreadable record's old digest is unknowable, and a crash
  cannot split a leaf from its data, but a bug could);
* tombstones older than the grace period are candidates for removal. The partition's primary
  owner removes one only when every owner (ring settled, all alive) holds exactly the same
  tombstone record, by compare-and-delete on every owner: no owner keeps an older value the
  tombstone would have hidden. The grace period is at least --hint-max-age, so no hint with
  an older value can arrive after it (Cassandra's gc_grace_seconds against its hint window).

Every page of the partition is read, hashed and decoded in a worker thread (issue 15 part 7:
a pass must not hold the event loop that carries the heartbeats). A peer's reply to the
owners' check is cut at its byte budget (dfsring.foundation.batching); a key it left out is simply
not
removed in this pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dfsring.core import merkle as antientropy
from dfsring.core.clusterview import ViewSource
from dfsring.foundation import batching
from dfsring.foundation.metrics import NodeMetrics
from dfsring.replication.peers import wall_ms
from dfsring.replication.transfers import TokenBucket
from dfsring.storage.localstore import LocalStore, decode_record
from dfsring.transport import RpcError, Transport
from dfsring.transport.messages import Ack, FetchRecords, PurgeTombstones, RecordsReply

log = logging.getLogger("dfsring.replication.scrub")
PURGE_BATCH = 256


def removable_tombstone(raw: bytes, now_ms: int, grace_ms: int) -> bool:
    """A record that holds only tombstones, the newest older than the grace period."""
    versions = decode_record(raw)[1]
    if not versions.siblings or versions.live():
        return False
    return now_ms - max(s.modified_ms for s in versions.siblings) > grace_ms


def old_tombstones(records: list[tuple[bytes, bytes]], now_ms: int, grace_ms: int
                   ) -> list[tuple[bytes, bytes]]:
    """(storage key, version digest) of the records that are removable tombstones."""
    return [(k, antientropy.version_digest(raw)) for k, raw in records
            if removable_tombstone(raw, now_ms, grace_ms)]


class Scrubber:
    def __init__(self, *, node_id: str, views: ViewSource, store: LocalStore, rpc: Transport,
                 metrics: NodeMetrics, interval_s: float, rate: int, tombstone_grace_s: float,
                 deadline_s: float, now_ms: Callable[[], int] = wall_ms) -> None:
        self.node_id = node_id
        self.views = views
        self.store = store
        self.rpc = rpc
        self.metrics = metrics
        self.interval_s = interval_s
        self.bucket = TokenBucket(rate)
        self.grace_ms = int(tombstone_grace_s * 1000)
        self.deadline_s = deadline_s
        self.now_ms = now_ms

    async def run_pass(self) -> None:
        ring = self.views.cluster_view().ring
        partitions = sorted(set(ring.partitions_of(self.node_id))
                            | set(self.store.dirty_partitions()))
        for partition in partitions:
            await self.scrub_partition(partition)
        self.metrics.count_scrub("scrub_passes")

    async def scrub_partition(self, partition: int) -> None:
        """One rate-limited read of the partition: quarantine what fails its checksum,
        collect old tombstones, and rebuild the Merkle leaves if they drifted."""
        candidates: list[tuple[bytes, bytes]] = []
        now = self.now_ms()

        async def visit(records: list[tuple[bytes, bytes]], corrupt: list[bytes]) -> None:
            await self.bucket.take(sum(len(k) + len(v) for k, v in records) + 1)
            for skey in corrupt:
                await self._quarantine(partition, skey)
            candidates.extend(await batching.off_loop(  # a page decoded off the loop
                old_tombstones, records, now, self.grace_ms))

        rebuilt = await self.store.rebuild_tree(partition, visit)
        if not rebuilt and partition in self.store.dirty_partitions():
            # a quarantine and its re-fetch raced the rebuild; a second read settles it
            rebuilt = await self.store.rebuild_tree(partition)
        if rebuilt:
            self.metrics.count_scrub("tree_rebuilds")
            log.warning("Merkle leaves rebuilt from the data", extra={"fields": {
                "partition": partition}})
        if candidates:
            await self._purge(partition, candidates)

    async def _quarantine(self, partition: int, skey: bytes) -> None:
        if not await self.store.quarantine(skey, self.now_ms()):
            return
        self.metrics.count_corrupt()
        log.warning("corrupt value quarantined", extra={"fields": {
            "partition": partition, "key": skey.hex()}})
        view = self.views.cluster_view()
        for owner in view.owners(partition):
            if owner == self.node_id:
                continue  # not asking the failure detector: right after a start it knows
                #           nobody yet, and a failed call costs no more than a skipped one
            try:
                reply = await self.rpc.call(view.address_of(owner),
                                            FetchRecords((skey,)), RecordsReply,
                                            self.deadline_s)
            except RpcError:
                continue
            records = [(k, raw) for k, raw in reply.records if k == skey]
            if records and await self.store.merge_raw(records):
                self.metrics.count_scrub("corrupt_repaired")
                return

    async def _purge(self, partition: int, candidates: list[tuple[bytes, bytes]]) -> None:
        """Remove tombstones every owner holds identically (see the module docstring)."""
        view = self.views.cluster_view()
        owners = view.owners(partition)
        if (not view.settled or not owners or owners[0] != self.node_id
                or len(owners) < view.ring.replicas
                or not all(view.is_alive(o) for o in owners)):
            return
        for i in range(0, len(candidates), PURGE_BATCH):
            batch = dict(candidates[i:i + PURGE_BATCH])
            try:
                for owner in owners[1:]:
                    reply = await self.rpc.call(view.address_of(owner),
                                                FetchRecords(tuple(batch)), RecordsReply,
                                                self.deadline_s)
                    theirs = {k: antientropy.version_digest(raw) for k, raw in reply.records}
                    batch = {k: d for k, d in batch.items() if theirs.get(k) == d}
                if not batch:
                    continue
                items = tuple(batch.items())
                for owner in owners[1:]:
                    await self.rpc.call(view.address_of(owner),
                                        PurgeTombstones(items), Ack, self.deadline_s)
            except RpcError as exc:
                log.info("tombstone removal skipped", extra={"fields": {
                    "partition": partition, "error": exc.detail[:200]}})
                return
            removed = 0
            for skey, digest in batch.items():
                removed += await self.store.purge_tombstone(skey, digest)
            self.metrics.count_scrub("tombstones_removed", removed)
