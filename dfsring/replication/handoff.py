"""Hint delivery: hand what a fallback kept for a down owner back to it once it is up.

One loop per node. Every `TICK_S` it looks at each target with queued hints: hints older
than --hint-max-age are dropped (counted; anti-entropy repairs what they carried); if the
failure detector holds the target up and no backoff is running, it sends the target's hints
oldest first in batches (`HandoffBatch`), at most --hint-rate bytes/s over all targets, and
deletes each batch once the target acknowledged it durably (dfsring.storage.hintstore keeps a hint
that a newer write changed meanwhile). A failed batch backs off exponentially for that target
only. A hint whose target no longer owns the key (it left, or ownership moved) goes to the
key's current owners instead, and is deleted once every one of them acknowledged it. That
holds while the target is down too (issue 15 part 5): a target that is still a member but
lost some partitions to a new ring may never come back, and would not own those keys if it
did, so its queue is scanned once per ring epoch, `BATCH_KEYS` hints per tick, for hints it
no longer owns, and those go to their new owners, with the same backoff on failure.

The owner folds delivered records in with the causal join, so a hint delivered twice (a
crash between the owner's ack and our delete) is harmless.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable

from dfsring.core import hints
from dfsring.core.clusterview import ViewSource
from dfsring.core.hints import Hint
from dfsring.foundation.metrics import NodeMetrics
from dfsring.replication.peers import wall_ms
from dfsring.replication.transfers import TokenBucket
from dfsring.storage.hintstore import HintStore
from dfsring.transport import RpcError, Transport
from dfsring.transport.messages import Ack, HandoffBatch

log = logging.getLogger("dfsring.replication.handoff")
TICK_S = 0.25
BATCH_BYTES = 512 << 10
BATCH_KEYS = 1_000
ROUND_S = 2.0  # one target's share of a round before the next target gets its turn
_PASS_DONE = -1  # scan position: this ring epoch's pass over a down target's queue is done


class HandoffService:
    def __init__(self, *, node_id: str, views: ViewSource, store: HintStore, rpc: Transport,
                 metrics: NodeMetrics, rate: int, max_age_s: float, deadline_s: float,
                 merge_local: Callable[[list[tuple[bytes, bytes]]], Awaitable[int]],
                 now_ms: Callable[[], int] = wall_ms) -> None:
        """`merge_local` folds records into this node's own replica: a hint whose key this
        node has come to own is delivered here."""
        self.node_id = node_id
        self.merge_local = merge_local
        self.views = views
        self.store = store
        self.rpc = rpc
        self.metrics = metrics
        self.bucket = TokenBucket(rate)
        self.max_age_ms = int(max_age_s * 1000)
        self.deadline_s = deadline_s
        self.now_ms = now_ms
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._scan: dict[str, tuple[int, int | None]] = {}  # target -> (ring epoch, after)
        self.delivered_keys = 0
        self.last_error: dict[str, str] = {}

    def progress_json(self) -> list[dict[str, object]]:
        """One entry per target with hints queued here, for /v1/cluster/transfers."""
        out = []
        view = self.views.cluster_view()
        for target in self.store.targets():
            stats = self.store.stats[target]
            oldest = self.store.oldest_created_ms(target)
            out.append({
                "target": target,
                "hints": stats.count,
                "bytes": stats.bytes,
                "oldest_age_s": None if oldest is None else
                round(max(0, self.now_ms() - oldest) / 1000, 1),
                "target_up": view.is_alive(target),
                "failures": self._failures.get(target, 0),
                "last_error": self.last_error.get(target),
            })
        return out

    def publish(self) -> None:
        self.metrics.show_hints({t: (s.count, s.bytes) for t, s in self.store.stats.items()})

    async def run_once(self) -> None:
        for target in self.store.targets():
            dropped = await self.store.drop_expired(target, self.now_ms(), self.max_age_ms)
            if dropped:
                self.metrics.count_hints_dropped("expired", dropped)
                log.warning("dropped expired hints", extra={"fields": {
                    "target": target, "count": dropped}})
            if target not in self.store.stats or self._backing_off(target):
                continue
            if self._due(target):
                await self._deliver(target)
            else:
                await self._redirect(target)
        self.publish()

    def _backing_off(self, target: str) -> bool:
        return self._retry_at.get(target, 0.0) > time.monotonic()

    def _due(self, target: str) -> bool:
        view = self.views.cluster_view()
        gone = target not in view.ring.node_ids()  # its hints go to the new owners
        return gone or view.is_alive(target)

    async def _redirect(self, target: str) -> None:
        """For a target held down: send the next scanned slice of its hints that it no
        longer owns to their current owners. One pass over the queue per ring epoch."""
        ring = self.views.cluster_view().ring
        epoch, after = self._scan.get(target, (-1, None))
        if epoch == ring.epoch and after == _PASS_DONE:
            return
        if epoch != ring.epoch:
            after = None
        scanned = self.store.oldest(target, BATCH_KEYS, BATCH_BYTES, after_seq=after)
        owned = set(ring.partitions_of(target))
        moved = [h for h in scanned if int.from_bytes(h.skey[:2], "big") not in owned]
        if moved and not await self._try_send(target, moved):
            return  # the same slice again after the backoff
        self._scan[target] = (ring.epoch, scanned[-1].seq if scanned else _PASS_DONE)
        if moved:
            await self._delivered(moved)

    async def _deliver(self, target: str) -> None:
        """Send `target`'s hints, oldest first, for up to ROUND_S; stop at the first failure."""
        until = time.monotonic() + ROUND_S
        while time.monotonic() < until and target in self.store.stats:
            batch = self.store.oldest(target, BATCH_KEYS, BATCH_BYTES)
            if not batch or not await self._try_send(target, batch):
                return
            await self._delivered(batch)

    async def _try_send(self, target: str, batch: list[Hint]) -> bool:
        """Send a batch; on failure back off for this target (exponential, capped) and
        say False."""
        try:
            await self._send(target, batch)
        except RpcError as exc:
            failures = self._failures.get(target, 0) + 1
            self._failures[target] = failures
            self._retry_at[target] = time.monotonic() + hints.backoff_s(
                failures, jitter=random.random())
            self.last_error[target] = exc.detail[:200]
            log.info("hint delivery failed", extra={"fields": {
                "target": target, "failures": failures, "error": exc.detail[:200]}})
            return False
        self._failures.pop(target, None)
        self.last_error.pop(target, None)
        return True

    async def _delivered(self, batch: list[Hint]) -> None:
        removed = await self.store.remove(batch)
        self.delivered_keys += removed
        self.metrics.count_hints_delivered(removed)
        self.publish()

    async def _send(self, target: str, batch: list[Hint]) -> None:
        """Deliver a batch; raises RpcError unless every destination acknowledged it."""
        view = self.views.cluster_view()
        ring = view.ring
        by_dest: dict[str, list[tuple[bytes, bytes]]] = {}
        for hint in batch:
            partition = int.from_bytes(hint.skey[:2], "big")
            for dest in hints.destinations(target, partition, ring):
                by_dest.setdefault(dest, []).append((hint.skey, hint.record))
        await self.bucket.take(sum(h.size for h in batch))
        for dest, records in by_dest.items():
            if dest == self.node_id:
                await self.merge_local(records)
                continue
            await self.rpc.call(view.address_of(dest),
                                HandoffBatch(tuple(records), ring.epoch), Ack, self.deadline_s)
