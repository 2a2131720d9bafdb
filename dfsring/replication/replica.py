"""The replica side of the peer protocol: what a node does when a peer asks it something.

Each handler is a plain async function over explicit dependencies (`ReplicaDeps`): the
local store, the hint store, membership, the ring changer and the coordinator. It takes the
decoded message (and raw payload bytes, unused by key/value messages) and returns the reply
message, or raises a DfsError that dfsring.transport.peer_error turns into an ErrorReply. No
handler knows which transport carried the message (HTTP, or one process in tests), nor
checks the cluster secret: the transport did that before.

Rules kept here, because a replica must enforce them whoever coordinates:
- a replica refuses a write for a key it does not hold under its ring, unless the sender
  knows a newer ring (StaleRing): an ack from a node about to drop the key must not count
  (issue 15 part 4);
- a replica write replaces a corrupt local record instead of failing (issue 15 part 6);
- every index a peer sends (partition, tree node, leaf) is range-checked before use.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dfsring.core import keys, transition, validate, vclock
from dfsring.core import merkle as antientropy
from dfsring.core.ringstate import RingState
from dfsring.core.vclock import VersionVector
from dfsring.foundation import batching, errors
from dfsring.foundation.metrics import NodeMetrics
from dfsring.replication.coordinator import WriteResult
from dfsring.replication.peers import wall_ms
from dfsring.replication.transfers import BATCH_BYTES, BATCH_KEYS, held_partitions
from dfsring.ring import Ring
from dfsring.storage.hintstore import HintStore, local_view
from dfsring.storage.localstore import LocalStore
from dfsring.transport import Handler, Pieces
from dfsring.transport.messages import (
    Ack,
    CoordinateWrite,
    EpochAccept,
    EpochAccepted,
    EpochChosen,
    EpochChosenReply,
    EpochPrepare,
    EpochPromise,
    FetchRecords,
    GossipAck,
    GossipAck2,
    GossipSyn,
    HandoffBatch,
    HintedWrite,
    LeafItems,
    LeafItemsReply,
    ListKeys,
    ListKeysReply,
    ListPartition,
    Message,
    PartitionBatch,
    PartitionFetch,
    PartitionsHeld,
    PartitionsHeldReply,
    PurgeTombstones,
    RecordsReply,
    ReplicaAck,
    ReplicaRead,
    ReplicaReadReply,
    ReplicaWrite,
    RingAnnounce,
    TreeChildren,
    TreeChildrenReply,
    TreeRoots,
    TreeRootsReply,
    WriteReply,
)

log = logging.getLogger("dfsring.internal")
MAX_FETCH_KEYS = 2_000
MAX_LIST_LIMIT = 10_001


class Membership(Protocol):
    """What the replica side needs of gossip (dfsring.gossip.Gossiper provides it)."""

    @property
    def node_id(self) -> str: ...

    @property
    def ring_state(self) -> RingState: ...

    @property
    def ring(self) -> Ring: ...

    @property
    def previous(self) -> tuple[Ring, ...]: ...

    def handle_syn(self, msg: GossipSyn) -> GossipAck: ...

    def handle_ack2(self, msg: GossipAck2) -> None: ...

    async def handle_announce(self, msg: RingAnnounce) -> None: ...


class Acceptor(Protocol):
    """The Paxos acceptor of ring changes (dfsring.replication.ringchange.RingChanger)."""

    def handle_prepare(self, msg: EpochPrepare) -> EpochPromise: ...

    def handle_accept(self, msg: EpochAccept) -> EpochAccepted: ...

    def handle_chosen(self, msg: EpochChosen) -> EpochChosenReply: ...


class WriteCoordinator(Protocol):
    """Coordinates a write a peer forwarded here (dfsring.replication.coordinator)."""

    @property
    def n(self) -> int: ...

    async def put(self, name: keys.ObjectName, context: VersionVector, value: bytes | None,
                  content_type: str, *, w: int, sloppy: bool = True,
                  forward: bool = True) -> WriteResult: ...


@dataclass(frozen=True)
class ReplicaDeps:
    store: LocalStore
    hints: HintStore
    membership: Membership
    acceptor: Acceptor
    coordinator: WriteCoordinator
    metrics: NodeMetrics
    hint_max_bytes: int


def handlers(deps: ReplicaDeps) -> dict[type[Message], Handler]:
    """The key/value handler table of one node, each handler bound to `deps`."""
    return {kind: functools.partial(fn, deps) for kind, fn in _TABLE.items()}


def _name(bucket: bytes, key: bytes) -> keys.ObjectName:
    return validate.peer_name(bucket, key)


def _versions(d: ReplicaDeps, raw: bytes) -> vclock.Versions:
    """A peer's versions, each sibling checked as a client's write (dfsring.core.validate)."""
    return validate.versions(vclock.decode_versions(raw), d.store.max_value_size)


async def replica_write(d: ReplicaDeps, msg: ReplicaWrite, _: Pieces) -> Message:
    """Fold the versions in; the ack names the ring epoch this node applied them under, so
    a coordinator on another ring counts it only under the right one (issue 15 part 4)."""
    if msg.epoch < 0:
        raise errors.BadRequest(f"a ring epoch is never negative, got {msg.epoch}")
    incoming = _versions(d, msg.versions)
    name = _name(msg.bucket, msg.key)
    check_partition(d.membership, d.store.partition(name), msg.epoch)
    stored = await d.store.merge(name, incoming, overwrite_corrupt=True)
    # the ring held once the copy is durable: if it moved on meanwhile, the ack says so
    return ReplicaAck(stored.changed, d.membership.ring_state.epoch)


def check_partition(membership: Membership, partition: int, epoch: int) -> None:
    """Refuse a write for a partition this node does not hold under its ring, unless the
    sender knows a newer ring than ours: an ack from a node about to drop the key must not
    count, and a copy nobody will look for is not kept."""
    if epoch > membership.ring_state.epoch:
        return
    counted, extra = transition.write_targets(partition, membership.ring, membership.previous)
    if membership.node_id not in counted and membership.node_id not in extra:
        raise errors.StaleRing(f"this node does not hold the key under ring epoch "
                               f"{membership.ring_state.epoch} (sender's: {epoch})")


async def replica_read(d: ReplicaDeps, msg: ReplicaRead, _: Pieces) -> Message:
    versions = local_view(d.store, d.hints, _name(msg.bucket, msg.key))
    return ReplicaReadReply(vclock.encode_versions(versions) if versions.siblings else None)


async def hinted_write(d: ReplicaDeps, msg: HintedWrite, _: Pieces) -> Message:
    """Keep a write for a down owner as a hint (this node is its fallback). A hint for a
    node no ring names would be kept, and retried, for good: refused (issue 23)."""
    if not _in_some_ring(d.membership.ring_state, msg.target):
        raise errors.BadRequest(f"no ring member {msg.target[:64]!r} to keep a hint for")
    name = _name(msg.bucket, msg.key)
    versions = _versions(d, msg.versions)
    epoch = d.membership.ring_state.epoch
    if msg.target == d.membership.node_id:  # the owner itself, back already: no hint needed
        # as a replica write: a corrupt local record is replaced, never a 500 (issue 15 part 6)
        changed = (await d.store.merge(name, versions, overwrite_corrupt=True)).changed
        return ReplicaAck(changed, epoch)
    added = await d.hints.add(msg.target, name, d.store.storage_key(name), versions, wall_ms())
    if not added.stored:
        d.metrics.count_hints_dropped("full")
        log.warning("hint refused: the queue for its target is full", extra={"fields": {
            "target": msg.target, "limit": d.hint_max_bytes}})
        raise errors.HintsFull(f"hints for {msg.target} are at the bound")
    if not added.merged:
        d.metrics.hints_stored.inc()
    return ReplicaAck(True, epoch)


async def handoff_batch(d: ReplicaDeps, msg: HandoffBatch, _: Pieces) -> Message:
    """Hints a fallback kept for this node (or records anti-entropy pushes): fold them in."""
    for skey, _record in msg.records:
        check_partition(d.membership, _skey_partition(d.store, skey), msg.epoch)
    changed = await d.store.merge_raw(list(msg.records))
    return Ack(changed > 0)


def _in_some_ring(ring: RingState, node_id: str) -> bool:
    return node_id in ring.member_ids or any(m.node_id == node_id
                                             for members in ring.previous for m in members)


def _skey_partition(store: LocalStore, skey: bytes) -> int:
    """The partition a peer's storage key names (its first two bytes), range-checked."""
    if len(skey) < 2:
        raise errors.BadRequest("a storage key is too short")
    return _partition(store, int.from_bytes(skey[:2], "big"))


def _partition(store: LocalStore, partition: int) -> int:
    if not 0 <= partition < (1 << store.partition_bits):
        raise errors.BadRequest(f"no partition {partition}")
    return partition


async def tree_roots(d: ReplicaDeps, msg: TreeRoots, _: Pieces) -> Message:
    partitions = [_partition(d.store, p) for p in msg.partitions]
    return TreeRootsReply(tuple(await d.store.tree_roots(partitions)))


async def tree_children(d: ReplicaDeps, msg: TreeChildren, _: Pieces) -> Message:
    tree = d.store.tree_view(_partition(d.store, msg.partition))
    if len(msg.nodes) > tree.leaf_count:
        raise errors.BadRequest("too many tree nodes asked for")
    try:
        return TreeChildrenReply(tuple(tuple(tree.children(level, index))
                                       for level, index in msg.nodes))
    except (IndexError, ValueError) as exc:
        raise errors.BadRequest(f"no such tree node: {exc}") from exc


async def leaf_items(d: ReplicaDeps, msg: LeafItems, _: Pieces) -> Message:
    partition = _partition(d.store, msg.partition)
    if any(not 0 <= leaf < antientropy.DEFAULT_LEAVES for leaf in msg.leaves):
        raise errors.BadRequest("leaf index out of range")
    items = await batching.off_loop(d.store.leaf_items, partition, set(msg.leaves))
    return LeafItemsReply(tuple(sorted(items.items())))


async def fetch_records(d: ReplicaDeps, msg: FetchRecords, _: Pieces) -> Message:
    if len(msg.skeys) > MAX_FETCH_KEYS:
        raise errors.BadRequest(f"at most {MAX_FETCH_KEYS} keys per fetch")
    records = await batching.off_loop(d.store.records, list(msg.skeys),
                                      batching.MAX_BATCH_BYTES)
    return RecordsReply(tuple(records))


async def purge_tombstones(d: ReplicaDeps, msg: PurgeTombstones, _: Pieces) -> Message:
    for skey, _digest in msg.items:
        _skey_partition(d.store, skey)
    removed = 0
    for skey, digest in msg.items:
        removed += await d.store.purge_tombstone(skey, digest)
    if removed:
        d.metrics.count_scrub("tombstones_removed", removed)
    return Ack(removed > 0)


async def coordinate_write(d: ReplicaDeps, msg: CoordinateWrite, _: Pieces) -> Message:
    coord = d.coordinator
    if not 1 <= msg.w <= coord.n:
        raise errors.BadRequest(f"w must be 1..{coord.n}")
    validate.write(msg.value, msg.content_type, d.store.max_value_size)
    result = await coord.put(_name(msg.bucket, msg.key), vclock.decode_context(msg.context),
                             msg.value, msg.content_type, w=msg.w, sloppy=msg.sloppy,
                             forward=False)
    return WriteReply(vclock.encode_versions(result.versions), result.acks, result.n,
                      result.hinted)


async def list_keys(d: ReplicaDeps, msg: ListKeys, _: Pieces) -> Message:
    bucket = keys.validate_bucket(msg.bucket.decode("ascii", "replace"))
    limit = max(1, min(msg.limit, MAX_LIST_LIMIT))
    return ListKeysReply(tuple(d.store.list_live(bucket, msg.prefix, msg.after, limit)))


async def list_partition(d: ReplicaDeps, msg: ListPartition, _: Pieces) -> Message:
    bucket = keys.validate_bucket(msg.bucket.decode("ascii", "replace"))
    if msg.partition >= 1 << d.store.partition_bits:
        raise errors.BadRequest(f"partition {msg.partition} is outside this node's ring")
    limit = max(1, min(msg.limit, MAX_LIST_LIMIT))
    return ListKeysReply(tuple(d.store.list_partition(msg.partition, bucket, msg.prefix,
                                                      msg.after, limit)))


async def gossip_syn(d: ReplicaDeps, msg: GossipSyn, _: Pieces) -> Message:
    return d.membership.handle_syn(msg)


async def gossip_ack2(d: ReplicaDeps, msg: GossipAck2, _: Pieces) -> Message:
    d.membership.handle_ack2(msg)
    return Ack(True)


async def ring_announce(d: ReplicaDeps, msg: RingAnnounce, _: Pieces) -> Message:
    await d.membership.handle_announce(msg)
    return Ack(True)


async def epoch_prepare(d: ReplicaDeps, msg: EpochPrepare, _: Pieces) -> Message:
    return d.acceptor.handle_prepare(msg)


async def epoch_accept(d: ReplicaDeps, msg: EpochAccept, _: Pieces) -> Message:
    return d.acceptor.handle_accept(msg)


async def epoch_chosen(d: ReplicaDeps, msg: EpochChosen, _: Pieces) -> Message:
    return d.acceptor.handle_chosen(msg)


async def partitions_held(d: ReplicaDeps, msg: PartitionsHeld, _: Pieces) -> Message:
    partitions = [_partition(d.store, p) for p in msg.partitions]
    return PartitionsHeldReply(tuple(held_partitions(d.store, partitions,
                                                     1 << d.store.partition_bits)))


async def partition_fetch(d: ReplicaDeps, msg: PartitionFetch, _: Pieces) -> Message:
    partition = _partition(d.store, msg.partition)
    records, next_after = await batching.off_loop(
        d.store.read_partition, partition, msg.after,
        max(1, min(msg.max_bytes, BATCH_BYTES * 8)), max(1, min(msg.max_keys, BATCH_KEYS * 4)))
    return PartitionBatch(tuple(records), next_after)


_TABLE: dict[type[Message], Callable[..., Any]] = {
    GossipSyn: gossip_syn,
    GossipAck2: gossip_ack2,
    RingAnnounce: ring_announce,
    EpochPrepare: epoch_prepare,
    EpochAccept: epoch_accept,
    EpochChosen: epoch_chosen,
    PartitionsHeld: partitions_held,
    PartitionFetch: partition_fetch,
    ReplicaWrite: replica_write,
    HintedWrite: hinted_write,
    HandoffBatch: handoff_batch,
    TreeRoots: tree_roots,
    TreeChildren: tree_children,
    LeafItems: leaf_items,
    FetchRecords: fetch_records,
    PurgeTombstones: purge_tombstones,
    ReplicaRead: replica_read,
    CoordinateWrite: coordinate_write,
    ListKeys: list_keys,
    ListPartition: list_partition,
}
