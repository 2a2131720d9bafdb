"""Ownership transfers: a new owner fetches its partitions, an old owner drops them after.

When a ring epoch moves partitions, every node that gained a partition streams it from
every holder under the previous rings (not just one: a write acknowledged by W old owners
may be missing on the others, and after the switch the old owners drop their copies), in
batches, merging each batch with the causal join so that writes arriving meanwhile (they go
to old and new owners alike, dfsring.core.transition) are never overwritten. The cursor of each
(epoch, partition, source) stream is written in the same transaction as the batch, so a
crash of either side resumes exactly where it stopped.

Once a node has every partition it gained, it says so in gossip (`synced_epoch`). When every
member of the epoch has, the ring is settled: reads and writes stop consulting the previous
rings and each node drops the partitions it no longer owns (a leaving node: all of them,
after which it reports itself left). Nothing is dropped before every new owner has a copy.

Fetching is bounded: `streams` partitions at once, batches of at most BATCH_BYTES, and a
token bucket holding the total to `rate` bytes/s so client traffic keeps its share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from dfsring.core import transition
from dfsring.core.clusterview import ClusterView, Membership
from dfsring.core.membership import Status
from dfsring.core.ringstate import RingState
from dfsring.core.transition import TransferProgress
from dfsring.storage.localstore import LocalStore
from dfsring.transport import RpcError, Transport
from dfsring.transport.messages import (
    PartitionBatch,
    PartitionFetch,
    PartitionsHeld,
    PartitionsHeldReply,
)

log = logging.getLogger("dfsring.replication.transfers")
BATCH_BYTES = 512 * 1024
BATCH_KEYS = 2_000
CURSOR_PREFIX = b"xfer:"
DONE = b"d"
IDLE_S = 1.0
SWEEP_S = 30.0


def cursor_key(epoch: int, partition: int, source: str) -> bytes:
    return CURSOR_PREFIX + epoch.to_bytes(8, "big") + partition.to_bytes(2, "big") + \
        source.encode()


class TokenBucket:
    """Average `rate` units/s with bursts up to one second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = rate
        self.stamp = clock()

    def delay_for(self, amount: float) -> float:
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def take(self, amount: float) -> None:
        delay = self.delay_for(amount)
        if delay > 0:
            await asyncio.sleep(delay)


class TransferService:
    def __init__(self, *, membership: Membership, store: LocalStore, rpc: Transport,
                 partition_bits: int, rate: int, streams: int, deadline_s: float) -> None:
        self.membership = membership
        self.store = store
        self.rpc = rpc
        self.partition_bits = partition_bits
        self.bucket = TokenBucket(rate)
        self.streams = streams
        self.deadline_s = deadline_s
        self.progress = TransferProgress(0)
        self.progress_epoch = 0
        self.active: dict[tuple[int, str], list[int]] = {}
        self.dropped_partitions = 0
        self._wake = asyncio.Event()
        self._swept: tuple[int, float] = (-1, 0.0)
        membership.subscribe(self._wake.set)

    # --- what to do ------------------------------------------------------------------------

    def pending(self) -> int:
        """Partitions this node still has to fetch for the current epoch."""
        view = self.membership.cluster_view()
        if view.settled or view.me.synced_epoch >= view.ring_state.epoch:
            return 0
        return self.progress.partitions_total - self.progress.partitions_done

    def progress_json(self) -> dict[str, object]:
        """The incoming transfer for the progress API (dfsring.core.transition.TransferProgress)."""
        p = self.progress.add(now=time.monotonic())
        elapsed = p.elapsed or 1e-6
        return {"partitions_total": p.partitions_total, "partitions_done": p.partitions_done,
                "bytes_done": p.bytes_done, "keys_done": p.keys_done,
                "bytes_per_s": round(p.rate, 1), "keys_per_s": round(p.keys_done / elapsed, 1),
                "eta_s": None if p.eta_s is None else round(p.eta_s, 1),
                "active": [{"partition": part, "source": src, "bytes": v[0], "keys": v[1]}
                           for (part, src), v in sorted(self.active.items())]}

    async def run_once(self) -> None:
        view = self.membership.cluster_view()
        ring, me = view.ring_state, view.node_id
        if ring.epoch == 0:
            return
        if not view.settled and me in ring.member_ids and view.me.synced_epoch < ring.epoch:
            if await self._sync(view):
                self.membership.set_synced(ring.epoch)
        view = self.membership.cluster_view()  # set_synced may have settled it
        if view.settled and view.ring_state.epoch == ring.epoch and self._sweep_due(ring.epoch):
            await self._drop_unowned()
            await self._forget_cursors(ring.epoch)
            if (me not in ring.member_ids
                    and self.membership.cluster_view().status_of(me) is Status.LEAVING):
                log.info("handoff complete: this node has left the cluster")
                self.membership.set_status(Status.LEFT)

    def _sweep_due(self, epoch: int) -> bool:
        """Sweep for unowned data once per settled epoch, then every SWEEP_S (a write from a
        lagging coordinator may have left a stray copy)."""
        now = time.monotonic()
        if epoch != self._swept[0] or now - self._swept[1] >= SWEEP_S:
            self._swept = (epoch, now)
            return True
        return False

    async def _sync(self, view: ClusterView) -> bool:
        """Fetch every partition gained in the view's ring; True once all are here."""
        ring, previous = view.ring_state, view.previous_rings
        gained = transition.incoming(view.node_id, view.ring, previous)
        removed = view.members.removed
        streams = {p: transition.sources(p, view.node_id, previous, exclude=removed)
                   for p in gained}
        if self.progress_epoch != ring.epoch:
            now = time.monotonic()
            self.progress = TransferProgress(len(gained), started_at=now, now=now)
            self.progress_epoch = ring.epoch
        todo = [(p, s) for p, srcs in streams.items() for s in srcs
                if self.store.meta_get(cursor_key(ring.epoch, p, s)) != DONE]
        await self._skip_empty(ring.epoch, todo)
        todo = [(p, s) for p, s in todo
                if self.store.meta_get(cursor_key(ring.epoch, p, s)) != DONE]
        limit = asyncio.Semaphore(self.streams)

        async def one(p: int, s: str) -> None:
            async with limit:
                await self._fetch(ring, p, s)

        await asyncio.gather(*(one(p, s) for p, s in todo))
        done = sum(1 for p, srcs in streams.items()
                   if all(self.store.meta_get(cursor_key(ring.epoch, p, s)) == DONE
                          for s in srcs))
        self.progress = self.progress.add(now=time.monotonic(),
                                          partitions=done - self.progress.partitions_done)
        return done == len(streams) and self.membership.cluster_view().epoch == ring.epoch

    async def _skip_empty(self, epoch: int, todo: list[tuple[int, str]]) -> None:
        """Ask each source which of our partitions it holds at all; mark the rest done."""
        by_source: dict[str, list[int]] = {}
        for p, s in todo:
            by_source.setdefault(s, []).append(p)
        for source, parts in by_source.items():
            if not self._reachable(source):
                continue
            try:
                reply = await self.rpc.call(self.membership.cluster_view().address_of(source),
                                            PartitionsHeld(tuple(parts)), PartitionsHeldReply,
                                            self.deadline_s)
            except RpcError as exc:
                log.info("transfer source unreachable", extra={"fields": {
                    "source": source, "error": exc.detail}})
                continue
            held = set(reply.partitions)
            await self.store.meta_put_many([(cursor_key(epoch, p, source), DONE)
                                            for p in parts if p not in held])

    def _reachable(self, node: str) -> bool:
        """A known member not held down (ClusterView.is_alive: unknown nodes are down)."""
        return self.membership.cluster_view().is_alive(node)

    async def _fetch(self, ring: RingState, partition: int, source: str) -> None:
        key = cursor_key(ring.epoch, partition, source)
        raw = self.store.meta_get(key)
        after = raw[1:] if raw else None
        if not self._reachable(source):
            return
        stats = self.active.setdefault((partition, source), [0, 0])
        try:
            while (view := self.membership.cluster_view()).ring_state.epoch == ring.epoch:
                msg = PartitionFetch(partition, after, BATCH_BYTES, BATCH_KEYS)
                batch = await self.rpc.call(view.address_of(source), msg,
                                            PartitionBatch, self.deadline_s)
                size = sum(len(k) + len(v) for k, v in batch.records)
                cursor = DONE if batch.next_after is None else b"c" + batch.next_after
                await self.store.merge_records(partition, list(batch.records), key, cursor)
                stats[0] += size
                stats[1] += len(batch.records)
                self.progress = self.progress.add(now=time.monotonic(), bytes_=size,
                                                  keys=len(batch.records))
                if batch.next_after is None:
                    return
                after = batch.next_after
                await self.bucket.take(size)
        except (RpcError, ValueError) as exc:
            log.info("partition fetch interrupted; will resume", extra={"fields": {
                "partition": partition, "source": source, "error": str(exc)[:200]}})
        finally:
            self.active.pop((partition, source), None)

    async def _drop_unowned(self) -> None:
        held = held_partitions(self.store, range(1 << self.partition_bits),
                               1 << self.partition_bits)
        view = self.membership.cluster_view()
        for p in transition.not_owned(view.node_id, view.ring, held):
            while await self.store.drop_partition(p):
                pass
            self.dropped_partitions += 1
            log.debug("dropped a partition this node no longer owns",
                      extra={"fields": {"partition": p}})

    async def _forget_cursors(self, epoch: int) -> None:
        stale = [k for k in self.store.meta_keys(CURSOR_PREFIX)
                 if int.from_bytes(k[len(CURSOR_PREFIX):len(CURSOR_PREFIX) + 8], "big") <= epoch]
        if stale:
            await self.store.meta_delete(stale)

    @property
    def wakeup(self) -> asyncio.Event:
        """Set when the ring changes: the transfers worker's idle wait ends at once."""
        return self._wake


def held_partitions(store: LocalStore, partitions: Iterable[int], limit: int) -> list[int]:
    """The source side of PartitionsHeld (out-of-range numbers are simply not held)."""
    return [p for p in partitions if 0 <= p < limit and store.has_partition_data(p)]
