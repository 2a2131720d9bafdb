"""Ownership transfers: a new owner fetches its partitions, an old owner drops them after.

When a ring epoch moves partitions, every node that gained a partition streams it from
every holder under the previous rings (not just one: a write acknowledged by W old owners
may be missing on the others, and after the switch the old owners drop their copies), in
batches, merging each batch with the causal join so that writes arriving meanwhile (they go
to old and new owners alike, dfsring.transition) are never overwritten. The cursor of each
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
from typing import Protocol

from dfsring import transition
from dfsring.failure import Liveness
from dfsring.localstore import LocalStore
from dfsring.membership import MemberState, Status, View
from dfsring.messages import PartitionBatch, PartitionFetch, PartitionsHeld, PartitionsHeldReply
from dfsring.ring import Ring
from dfsring.ringstate import RingState
from dfsring.transition import TransferProgress
from dfsring.transport import RpcError, Transport

log = logging.getLogger("dfsring.transfers")
BATCH_BYTES = 512 * 1024
BATCH_KEYS = 2_000
CURSOR_PREFIX = b"xfer:"
DONE = b"d"
IDLE_S = 1.0
SWEEP_S = 30.0


class Topology(Protocol):
    node_id: str

    @property
    def view(self) -> View: ...

    @property
    def me(self) -> MemberState: ...

    @property
    def ring_state(self) -> RingState: ...

    @property
    def ring(self) -> Ring: ...

    @property
    def settled(self) -> bool: ...

    def liveness(self, node_id: str) -> Liveness: ...

    def status_of(self, node_id: str) -> Status: ...

    def address_of(self, node_id: str) -> str: ...

    def set_synced(self, epoch: int) -> None: ...

    def set_status(self, status: Status) -> None: ...

    def subscribe(self, listener: Callable[[], None]) -> None: ...


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
    def __init__(self, *, topology: Topology, store: LocalStore, rpc: Transport,
                 replicas: int, partition_bits: int, rate: int, streams: int,
                 deadline_s: float) -> None:
        self.topology = topology
        self.store = store
        self.rpc = rpc
        self.replicas = replicas
        self.partition_bits = partition_bits
        self.bucket = TokenBucket(rate)
        self.streams = streams
        self.deadline_s = deadline_s
        self.progress = TransferProgress(0)
        self.progress_epoch = 0
        self.active: dict[tuple[int, str], list[int]] = {}
        self.dropped_partitions = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._prev_cache: tuple[str, tuple[Ring, ...]] = ("", ())
        self._swept: tuple[int, float] = (-1, 0.0)
        topology.subscribe(self._wake.set)

    # --- what to do ------------------------------------------------------------------------

    def previous_rings(self, ring: RingState) -> tuple[Ring, ...]:
        if self._prev_cache[0] != ring.digest():
            self._prev_cache = (ring.digest(),
                                ring.previous_rings(self.replicas, self.partition_bits))
        return self._prev_cache[1]

    def pending(self) -> int:
        """Partitions this node still has to fetch for the current epoch."""
        if self.topology.settled or self.topology.me.synced_epoch >= self.topology.ring_state.epoch:
            return 0
        return self.progress.partitions_total - self.progress.partitions_done

    def progress_json(self) -> dict[str, object]:
        """The incoming transfer for the progress API (dfsring.transition.TransferProgress)."""
        p = self.progress.add(now=time.monotonic())
        elapsed = p.elapsed or 1e-6
        return {"partitions_total": p.partitions_total, "partitions_done": p.partitions_done,
                "bytes_done": p.bytes_done, "keys_done": p.keys_done,
                "bytes_per_s": round(p.rate, 1), "keys_per_s": round(p.keys_done / elapsed, 1),
                "eta_s": None if p.eta_s is None else round(p.eta_s, 1),
                "active": [{"partition": part, "source": src, "bytes": v[0], "keys": v[1]}
                           for (part, src), v in sorted(self.active.items())]}

    async def run_once(self) -> None:
        topo = self.topology
        ring = topo.ring_state
        if ring.epoch == 0:
            return
        if (not topo.settled and topo.node_id in ring.member_ids
                and topo.me.synced_epoch < ring.epoch):
            if await self._sync(ring):
                topo.set_synced(ring.epoch)
        if topo.settled and topo.ring_state.epoch == ring.epoch and self._sweep_due(ring.epoch):
            await self._drop_unowned()
            await self._forget_cursors(ring.epoch)
            if (topo.node_id not in ring.member_ids
                    and topo.status_of(topo.node_id) is Status.LEAVING):
                log.info("handoff complete: this node has left the cluster")
                topo.set_status(Status.LEFT)

    def _sweep_due(self, epoch: int) -> bool:
        """Sweep for unowned data once per settled epoch, then every SWEEP_S (a write from a
        lagging coordinator may have left a stray copy)."""
        now = time.monotonic()
        if epoch != self._swept[0] or now - self._swept[1] >= SWEEP_S:
            self._swept = (epoch, now)
            return True
        return False

    async def _sync(self, ring: RingState) -> bool:
        """Fetch every partition gained in `ring`; True once all are here."""
        topo = self.topology
        previous = self.previous_rings(ring)
        gained = transition.incoming(topo.node_id, topo.ring, previous)
        removed = topo.view.removed
        streams = {p: transition.sources(p, topo.node_id, previous, exclude=removed)
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
        return done == len(streams) and topo.ring_state.epoch == ring.epoch

    async def _skip_empty(self, epoch: int, todo: list[tuple[int, str]]) -> None:
        """Ask each source which of our partitions it holds at all; mark the rest done."""
        by_source: dict[str, list[int]] = {}
        for p, s in todo:
            by_source.setdefault(s, []).append(p)
        for source, parts in by_source.items():
            if not self._reachable(source):
                continue
            try:
                reply = await self.rpc.call(self.topology.address_of(source),
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
        topo = self.topology
        return node in topo.view.members and topo.liveness(node) is not Liveness.DOWN

    async def _fetch(self, ring: RingState, partition: int, source: str) -> None:
        key = cursor_key(ring.epoch, partition, source)
        raw = self.store.meta_get(key)
        after = raw[1:] if raw else None
        if not self._reachable(source):
            return
        stats = self.active.setdefault((partition, source), [0, 0])
        try:
            while self.topology.ring_state.epoch == ring.epoch:
                msg = PartitionFetch(partition, after, BATCH_BYTES, BATCH_KEYS)
                batch = await self.rpc.call(self.topology.address_of(source), msg,
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
        for p in transition.not_owned(self.topology.node_id, self.topology.ring, held):
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

    # --- loop ------------------------------------------------------------------------------

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("transfer round failed")
            try:
                async with asyncio.timeout(IDLE_S):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name="transfers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def held_partitions(store: LocalStore, partitions: Iterable[int], limit: int) -> list[int]:
    """The source side of PartitionsHeld (out-of-range numbers are simply not held)."""
    return [p for p in partitions if 0 <= p < limit and store.has_partition_data(p)]
