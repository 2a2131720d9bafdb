"""Active anti-entropy: find and repair what replicas disagree on, with no client involved.

Every replica keeps a Merkle tree per partition, updated in the same transaction as the data
(dfsring.storage.localstore, dfsring.core.merkle). This worker, one per node, runs one exchange at a
time on a jittered schedule (riak_kv's ``kv_entropy_manager``; Cassandra's repair, but
continuous):

1. pick the next live peer (round robin) and ask it, in one round trip, for its roots of every
   partition both of them own; equal roots mean that partition is in sync (it counts as
   exchanged now);
2. for each differing partition, walk the two trees level by level (one round trip per level,
   only under differing nodes: dfsring.core.merkle.diff_walk), then compare the (key,
   version digest) items of the differing leaves;
3. repair both ways with the causal merge: fetch the peer's records of the keys it has and we
   lack or hold differently and fold them in, then push ours (now the join) to the peer.
   Siblings are kept and tombstones are records like any other, so a delete is repaired, not
   undone.

Bounded: one peer session at a time, at most `MAX_PARTITIONS_PER_ROUND` partitions repaired
per round (`PARALLEL_PARTITIONS` of them in flight, so round trips and fsyncs overlap), batches of
`BATCH_KEYS` and at most batching.MAX_BATCH_BYTES (a peer cuts a fetch's reply at that size and
refuses a bigger push with 413, which the pusher halves), and records moved at most --ae-rate
bytes/s. Off the event loop (issue 15 part 7): the roots of every shared partition are computed
in slices, and the leaf scans, record reads and batch decoding run in worker threads, so the
gossip heartbeats keep their pace while a wiped replica of 100 000 keys is refilled. A round
that found differences is followed at once by the next (a wiped node is refilled quickly); a
clean round waits
--ae-interval, jittered, so an idle cluster costs one small message per interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from dfsring.core import merkle as antientropy
from dfsring.core.clusterview import ClusterView, ViewSource
from dfsring.foundation import batching
from dfsring.foundation.metrics import NodeMetrics
from dfsring.replication.transfers import TokenBucket
from dfsring.storage.localstore import LocalStore
from dfsring.transport import PeerRefused, RpcError, Transport
from dfsring.transport.messages import (
    Ack,
    FetchRecords,
    HandoffBatch,
    LeafItems,
    LeafItemsReply,
    Message,
    RecordsReply,
    TreeChildren,
    TreeChildrenReply,
    TreeRoots,
    TreeRootsReply,
)

log = logging.getLogger("dfsring.antientropy")
MAX_PARTITIONS_PER_ROUND = 64
PARALLEL_PARTITIONS = 8  # partitions of one session in flight: hides round trips and fsyncs
BATCH_KEYS = batching.MAX_BATCH_KEYS
R = TypeVar("R", bound=Message)


class ExchangeService:
    def __init__(self, *, node_id: str, views: ViewSource, store: LocalStore, rpc: Transport,
                 metrics: NodeMetrics, interval_s: float, rate: int,
                 deadline_s: float) -> None:
        self.node_id = node_id
        self.views = views
        self.store = store
        self.rpc = rpc
        self.metrics = metrics
        self.interval_s = interval_s
        self.bucket = TokenBucket(rate)
        self.deadline_s = deadline_s
        self.started = time.monotonic()
        self.last_exchanged: dict[int, float] = {}
        self._turn = 0
        self.last_nodes_fetched = 0  # tree nodes the latest partition exchange fetched
        # told of every completed (peer, partition) exchange: dfsring.core.refill counts them
        self.on_exchanged: Callable[[str, int], None] = lambda peer, partition: None

    def oldest_unexchanged_s(self) -> float:
        """Age of the least recently exchanged partition this node owns."""
        now = time.monotonic()
        owned = self.views.cluster_view().ring.partitions_of(self.node_id)
        if not owned:
            return 0.0
        return max(now - self.last_exchanged.get(p, self.started) for p in owned)

    def _next_peer(self, view: ClusterView) -> str | None:
        peers = [n for n in view.ring.node_ids()
                 if n != self.node_id and view.is_alive(n)]
        if not peers:
            return None
        self._turn += 1
        return peers[self._turn % len(peers)]

    async def run_once(self) -> int:
        """One round with one peer; returns how many partitions differed."""
        view = self.views.cluster_view()
        if not view.settled:
            return 0  # ownership is moving: transfers are the repair, trees are in flux
        ring = view.ring
        peer = self._next_peer(view)
        if peer is None:
            return 0
        shared = [p for p in ring.partitions_of(self.node_id)
                  if peer in ring.preference_list(p)]
        if not shared:
            return 0
        reply = await self._call(peer, TreeRoots(tuple(shared)), TreeRootsReply)
        if len(reply.roots) != len(shared):
            raise RpcError(peer, "tree-roots reply of the wrong length")
        self.metrics.count_ae_bytes(16 * len(shared))
        mine = await self.store.tree_roots(shared)
        now = time.monotonic()
        differing = []
        for partition, root, my_root in zip(shared, reply.roots, mine, strict=True):
            if root == my_root:
                self.last_exchanged[partition] = now
                self.on_exchanged(peer, partition)
            else:
                differing.append((partition, root))
        self.metrics.count_ae_exchanges(len(shared) - len(differing))
        gate = asyncio.Semaphore(PARALLEL_PARTITIONS)

        async def one(partition: int, root: bytes) -> None:
            async with gate:
                await self.exchange(peer, partition, root)

        await asyncio.gather(*(one(p, r) for p, r in differing[:MAX_PARTITIONS_PER_ROUND]))
        return len(differing)

    async def exchange(self, peer: str, partition: int, remote_root: bytes) -> None:
        """Compare one partition with `peer` from the roots down and repair both ways."""
        result = await self._walk(peer, partition, remote_root)
        self.last_nodes_fetched = result.nodes_fetched
        self.metrics.count_ae_nodes(result.nodes_fetched)
        if result.differing_leaves:
            leaves = tuple(sorted(result.differing_leaves))
            reply = await self._call(peer, LeafItems(partition, leaves), LeafItemsReply)
            remote = dict(reply.items)
            self.metrics.count_ae_bytes(sum(len(k) + len(v) for k, v in reply.items))
            local = await batching.off_loop(self.store.leaf_items, partition, set(leaves))
            diff = antientropy.diff_leaf(local, remote)
            await self._pull(peer, partition, diff.missing_here + diff.different)
            await self._push(peer, diff.missing_there + diff.different)
        self.last_exchanged[partition] = time.monotonic()
        self.on_exchanged(peer, partition)
        self.metrics.count_ae_exchanges(1)

    async def _walk(self, peer: str, partition: int,
                    remote_root: bytes) -> antientropy.DiffResult:
        walk = antientropy.diff_walk(self.store.tree_view(partition), remote_root)
        try:
            nodes = next(walk)
            while True:
                reply = await self._call(peer, TreeChildren(partition, tuple(nodes)),
                                         TreeChildrenReply)
                if len(reply.children) != len(nodes):
                    raise RpcError(peer, "tree-children reply of the wrong length")
                self.metrics.count_ae_bytes(sum(16 * len(c) for c in reply.children))
                nodes = walk.send([list(c) for c in reply.children])
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except ValueError as exc:  # the peer's tree has another shape
            raise RpcError(peer, f"unusable tree nodes: {exc}") from exc

    async def _pull(self, peer: str, partition: int, skeys: Sequence[bytes]) -> None:
        """Fetch the peer's records of `skeys`; a reply cut at the peer's byte budget is
        followed by a fetch of the keys after its last record (batching.resume_after)."""
        prefix = partition.to_bytes(2, "big")
        pending = list(skeys)
        while pending:
            batch = tuple(pending[:BATCH_KEYS])
            reply = await self._call(peer, FetchRecords(batch), RecordsReply)
            pending = pending[batching.resume_after(batch, reply.records):]
            records = [(k, raw) for k, raw in reply.records if k.startswith(prefix)]
            size = sum(len(k) + len(raw) for k, raw in records)
            self.metrics.count_ae_bytes(size)
            await self.bucket.take(size)
            changed = await self.store.merge_raw(records)
            self.metrics.count_ae_repaired("in", changed)

    async def _push(self, peer: str, skeys: Sequence[bytes]) -> None:
        epoch = self.views.cluster_view().epoch
        for i in range(0, len(skeys), BATCH_KEYS):
            records = await batching.off_loop(self.store.records, list(skeys[i:i + BATCH_KEYS]))
            for batch in batching.byte_batches(records, max_bytes=batching.MAX_BATCH_BYTES,
                                               max_count=BATCH_KEYS,
                                               size=batching.record_size):
                size = sum(map(batching.record_size, batch))
                self.metrics.count_ae_bytes(size)
                await self.bucket.take(size)
                await batching.send_halving(
                    batch, lambda part: self._send(peer, part, epoch), _too_large)

    async def _send(self, peer: str, records: list[tuple[bytes, bytes]], epoch: int) -> None:
        ack = await self._call(peer, HandoffBatch(tuple(records), epoch), Ack)
        if ack.changed:
            self.metrics.count_ae_repaired("out", len(records))

    async def _call(self, peer: str, msg: Message, reply: type[R]) -> R:
        return await self.rpc.call(self.views.cluster_view().address_of(peer), msg, reply,
                                   self.deadline_s)


def _too_large(exc: Exception) -> bool:
    """A peer's 413: its body limit is below our batch (dfsring.http.internal_api)."""
    return isinstance(exc, PeerRefused) and exc.reply.code == "payload-too-large"
