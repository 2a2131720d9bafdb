"""Internal (node-to-node) endpoints: POST /internal/v1/{kind} with a msgpack message.

Every call must carry the cluster secret (401 otherwise). Bodies are size-bounded and decoded
against the typed catalogue; a malformed message is a 400 ErrorReply and a log line, and the
node keeps serving. Domain errors travel back as ErrorReply so the caller can re-raise them.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from dfsring import antientropy, batching, errors, keys, messages, transition, vclock
from dfsring.hintstore import local_view
from dfsring.http.appkeys import (
    CONFIG,
    COORDINATOR,
    HINTS,
    MEMBERSHIP,
    METRICS,
    RING_CHANGER,
    STORE,
)
from dfsring.http.body import read_body
from dfsring.http.middleware import REQUEST_ID
from dfsring.messages import (
    Ack,
    CoordinateWrite,
    EpochAccept,
    EpochPrepare,
    ErrorReply,
    FetchRecords,
    GossipAck2,
    GossipSyn,
    HandoffBatch,
    HintedWrite,
    LeafItems,
    LeafItemsReply,
    ListKeys,
    ListKeysReply,
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
from dfsring.peers import wall_ms
from dfsring.rpc import MSGPACK, RPC_PATH, SECRET_HEADER
from dfsring.transfers import BATCH_BYTES, BATCH_KEYS, held_partitions

log = logging.getLogger("dfsring.internal")
MAX_SIBLINGS_CARRIED = 64


def setup(app: web.Application) -> None:
    app.router.add_post(RPC_PATH + "{kind}", dispatch)


def _reply(msg: Message, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msg.encode(), content_type=MSGPACK)


def _error(status: int, code: str, detail: str, needed: int = 0, acked: int = 0) -> web.Response:
    return _reply(ErrorReply(code, detail[:500], needed, acked), status)


async def dispatch(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), cfg.cluster_secret.encode()):
        log.warning("internal call without the cluster secret", extra={"fields": {
            "peer": request.remote, "request_id": request[REQUEST_ID]}})
        return _error(401, "unauthorized", "missing or wrong cluster secret")
    kind = messages.kind_of(request.match_info["kind"])
    handler = _HANDLERS.get(kind) if kind is not None else None
    if handler is None:
        return _error(404, "no-such-route", f"unknown message kind {request.match_info['kind']}")
    try:
        raw = await read_body(request, cfg.max_value_size * MAX_SIBLINGS_CARRIED + (1 << 16),
                              cfg.request_timeout)
        msg = messages.decode(raw, kind)
        return _reply(await handler(request, msg))
    except messages.MessageError as exc:
        return _malformed(request, kind, exc)
    except errors.DfsError as exc:  # one lookup over the error's class (dfsring.errors)
        if isinstance(exc, errors.CorruptValue):
            request.app[METRICS].count_corrupt()
        detail = f"{kind.KIND} body too large: {exc}" if isinstance(
            exc, errors.PayloadTooLarge) else None  # the sender splits its batch (batching)
        return _reply(ErrorReply.of(exc, detail), exc.peer_status)
    except ValueError as exc:
        return _malformed(request, kind, exc)


def _malformed(request: web.Request, kind: type[Message], exc: ValueError) -> web.Response:
    log.warning("malformed peer message", extra={"fields": {
        "peer": request.remote, "kind": kind.KIND, "error": str(exc)[:300]}})
    return _error(400, "bad-request", f"malformed {kind.KIND} message: {exc}")


def _name(bucket: bytes, key: bytes) -> keys.ObjectName:
    try:
        return keys.object_name(bucket.decode("ascii"), key.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise errors.InvalidKey("bucket or key is not valid text") from exc


async def _replica_write(request: web.Request, msg: ReplicaWrite) -> Message:
    """Fold the versions in; the ack names the ring epoch this node applied them under, so
    a coordinator on another ring counts it only under the right one (issue 15 part 4)."""
    if msg.epoch < 0:
        raise errors.BadRequest(f"a ring epoch is never negative, got {msg.epoch}")
    incoming = vclock.decode_versions(msg.versions)
    name = _name(msg.bucket, msg.key)
    _check_owner(request, name, msg.epoch)
    stored = await request.app[STORE].merge(name, incoming, overwrite_corrupt=True)
    # the ring held once the copy is durable: if it moved on meanwhile, the ack says so
    return ReplicaAck(stored.changed, request.app[MEMBERSHIP].ring_state.epoch)


def _check_owner(request: web.Request, name: keys.ObjectName, epoch: int) -> None:
    """Refuse a write for a key this node does not hold under its ring, unless the sender
    knows a newer ring than ours: an ack from a node about to drop the key must not count,
    and a copy nobody will look for is not kept."""
    _check_partition(request, request.app[STORE].partition(name), epoch)


def _check_partition(request: web.Request, partition: int, epoch: int) -> None:
    gossip = request.app[MEMBERSHIP]
    if epoch > gossip.ring_state.epoch:
        return
    counted, extra = transition.write_targets(partition, gossip.ring, gossip.previous)
    if gossip.node_id not in counted and gossip.node_id not in extra:
        raise errors.StaleRing(f"this node does not hold the key under ring epoch "
                               f"{gossip.ring_state.epoch} (sender's: {epoch})")


async def _replica_read(request: web.Request, msg: ReplicaRead) -> Message:
    versions = local_view(request.app[STORE], request.app[HINTS], _name(msg.bucket, msg.key))
    return ReplicaReadReply(vclock.encode_versions(versions) if versions.siblings else None)


async def _hinted_write(request: web.Request, msg: HintedWrite) -> Message:
    """Keep a write for a down owner as a hint (this node is its fallback)."""
    name = _name(msg.bucket, msg.key)
    versions = vclock.decode_versions(msg.versions)
    store, gossip, metrics = request.app[STORE], request.app[MEMBERSHIP], request.app[METRICS]
    if msg.target == gossip.node_id:  # the owner itself, back already: no hint needed
        # as a replica write: a corrupt local record is replaced, never a 500 (issue 15 part 6)
        changed = (await store.merge(name, versions, overwrite_corrupt=True)).changed
        return ReplicaAck(changed, gossip.ring_state.epoch)
    added = await request.app[HINTS].add(msg.target, name, store.storage_key(name), versions,
                                         wall_ms())
    if not added.stored:
        metrics.count_hints_dropped("full")
        log.warning("hint refused: the queue for its target is full", extra={"fields": {
            "target": msg.target, "limit": request.app[CONFIG].hint_max_bytes}})
        raise errors.HintsFull(f"hints for {msg.target} are at the bound")
    if not added.merged:
        metrics.hints_stored.inc()
    return ReplicaAck(True, gossip.ring_state.epoch)


async def _handoff_batch(request: web.Request, msg: HandoffBatch) -> Message:
    """Hints a fallback kept for this node: fold them into the replica."""
    store = request.app[STORE]
    for skey, _ in msg.records:
        if len(skey) < 2:
            raise errors.BadRequest("a handed-off storage key is too short")
        _check_partition(request, int.from_bytes(skey[:2], "big"), msg.epoch)
    changed = await store.merge_raw(list(msg.records))
    return Ack(changed > 0)


def _partition(request: web.Request, partition: int) -> int:
    if not 0 <= partition < (1 << request.app[STORE].partition_bits):
        raise errors.BadRequest(f"no partition {partition}")
    return partition


async def _tree_roots(request: web.Request, msg: TreeRoots) -> Message:
    store = request.app[STORE]
    partitions = [_partition(request, p) for p in msg.partitions]
    return TreeRootsReply(tuple(await store.tree_roots(partitions)))


async def _tree_children(request: web.Request, msg: TreeChildren) -> Message:
    tree = request.app[STORE].tree_view(_partition(request, msg.partition))
    if len(msg.nodes) > tree.leaf_count:
        raise errors.BadRequest("too many tree nodes asked for")
    try:
        return TreeChildrenReply(tuple(tuple(tree.children(level, index))
                                       for level, index in msg.nodes))
    except (IndexError, ValueError) as exc:
        raise errors.BadRequest(f"no such tree node: {exc}") from exc


async def _leaf_items(request: web.Request, msg: LeafItems) -> Message:
    store = request.app[STORE]
    partition = _partition(request, msg.partition)
    if any(not 0 <= leaf < antientropy.DEFAULT_LEAVES for leaf in msg.leaves):
        raise errors.BadRequest("leaf index out of range")
    items = await batching.off_loop(store.leaf_items, partition, set(msg.leaves))
    return LeafItemsReply(tuple(sorted(items.items())))


async def _fetch_records(request: web.Request, msg: FetchRecords) -> Message:
    if len(msg.skeys) > 2_000:
        raise errors.BadRequest("at most 2000 keys per fetch")
    records = await batching.off_loop(request.app[STORE].records, list(msg.skeys),
                                      batching.MAX_BATCH_BYTES)
    return RecordsReply(tuple(records))


async def _purge_tombstones(request: web.Request, msg: PurgeTombstones) -> Message:
    store, removed = request.app[STORE], 0
    for skey, digest in msg.items:
        removed += await store.purge_tombstone(skey, digest)
    if removed:
        request.app[METRICS].count_scrub("tombstones_removed", removed)
    return Ack(removed > 0)


async def _coordinate_write(request: web.Request, msg: CoordinateWrite) -> Message:
    coord = request.app[COORDINATOR]
    if not 1 <= msg.w <= coord.n:
        raise errors.BadRequest(f"w must be 1..{coord.n}")
    result = await coord.put(_name(msg.bucket, msg.key), vclock.decode_context(msg.context),
                             msg.value, msg.content_type, w=msg.w, sloppy=msg.sloppy,
                             forward=False)
    return WriteReply(vclock.encode_versions(result.versions), result.acks, result.n,
                      result.hinted)


async def _list_keys(request: web.Request, msg: ListKeys) -> Message:
    bucket = keys.validate_bucket(msg.bucket.decode("ascii", "replace"))
    limit = max(1, min(msg.limit, 10_001))
    items = request.app[STORE].list_live(bucket, msg.prefix, msg.after, limit)
    return ListKeysReply(tuple(items))


async def _gossip_syn(request: web.Request, msg: GossipSyn) -> Message:
    return request.app[MEMBERSHIP].handle_syn(msg)


async def _gossip_ack2(request: web.Request, msg: GossipAck2) -> Message:
    request.app[MEMBERSHIP].handle_ack2(msg)
    return Ack(True)


async def _ring_announce(request: web.Request, msg: RingAnnounce) -> Message:
    request.app[MEMBERSHIP].handle_announce(msg)
    return Ack(True)


async def _epoch_prepare(request: web.Request, msg: EpochPrepare) -> Message:
    return request.app[RING_CHANGER].handle_prepare(msg)


async def _epoch_accept(request: web.Request, msg: EpochAccept) -> Message:
    return request.app[RING_CHANGER].handle_accept(msg)


async def _partitions_held(request: web.Request, msg: PartitionsHeld) -> Message:
    store = request.app[STORE]
    limit = 1 << store.partition_bits
    return PartitionsHeldReply(tuple(held_partitions(store, msg.partitions, limit)))


async def _partition_fetch(request: web.Request, msg: PartitionFetch) -> Message:
    store = request.app[STORE]
    if not 0 <= msg.partition < (1 << store.partition_bits):
        raise errors.BadRequest(f"no partition {msg.partition}")
    records, next_after = await batching.off_loop(
        store.read_partition, msg.partition, msg.after,
        max(1, min(msg.max_bytes, BATCH_BYTES * 8)), max(1, min(msg.max_keys, BATCH_KEYS * 4)))
    return PartitionBatch(tuple(records), next_after)


_HANDLERS = {
    GossipSyn: _gossip_syn,
    GossipAck2: _gossip_ack2,
    RingAnnounce: _ring_announce,
    EpochPrepare: _epoch_prepare,
    EpochAccept: _epoch_accept,
    PartitionsHeld: _partitions_held,
    PartitionFetch: _partition_fetch,
    ReplicaWrite: _replica_write,
    HintedWrite: _hinted_write,
    HandoffBatch: _handoff_batch,
    TreeRoots: _tree_roots,
    TreeChildren: _tree_children,
    LeafItems: _leaf_items,
    FetchRecords: _fetch_records,
    PurgeTombstones: _purge_tombstones,
    ReplicaRead: _replica_read,
    CoordinateWrite: _coordinate_write,
    ListKeys: _list_keys,
}
