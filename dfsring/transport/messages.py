"""The typed catalogue of node-to-node messages (frozen dataclasses <-> msgpack).

Wire form: a msgpack array `[WIRE_VERSION, kind, field1, field2, ...]` in the dataclass's field
order. Every field is checked against its declared type on decode: peer input is hostile
until proven otherwise, and a malformed message is a clear MessageError, never a crash deep in
a service. Dispatch is by the registered `kind`, never by attribute name (Garage's SyncRpc enum;
counter-example: rpcudp's __getattr__).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, Union, get_type_hints

import msgpack

from dfsring.core.manifest import MAX_CHUNK_SIZE
from dfsring.core.ringstate import MAX_EPOCH
from dfsring.foundation.errors import DfsError
from dfsring.foundation.errors import (
    MessageError as MessageError,  # its home before dfsring.foundation.errors
)

WIRE_VERSION = 1
MAX_LIST = 100_000
MAX_INT = 2**63 - 1
"""Every integer on the wire is in 0..MAX_INT unless its class's LIMITS say less: a signed
64-bit integer in any peer, and no field of ours is ever negative (issue 23)."""
MAX_LIST_LIMIT = 10_001
MAX_REPLICAS = 64
MAX_PARTITIONS = 1 << 20
MAX_BATCH = 1 << 30


M = TypeVar("M", bound="Message")
_REGISTRY: dict[str, type[Message]] = {}


@dataclass(frozen=True)
class Message:
    KIND: ClassVar[str] = ""
    LIMITS: ClassVar[dict[str, int]] = {}
    """Field name -> the largest value a top-level integer field may carry, checked on
    decode with the types: epochs, counts, limits and sizes are refused out of range before
    any handler sees them. Indexes that depend on the node (a partition within its ring's
    partition count) are checked by the handler."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.KIND:
            if cls.KIND in _REGISTRY:
                raise TypeError(f"message kind {cls.KIND!r} registered twice")
            _REGISTRY[cls.KIND] = cls

    def encode(self) -> bytes:
        fields = [getattr(self, f.name) for f in dataclasses.fields(self)]
        raw: bytes = msgpack.packb([WIRE_VERSION, self.KIND, *fields], use_bin_type=True)
        return raw


def decode(raw: bytes, expected: type[M] | None = None) -> M:
    """Decode and type-check a message; `expected` pins the kind a caller is waiting for."""
    try:
        items = msgpack.unpackb(raw, use_list=True, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError) as exc:
        raise MessageError(f"not msgpack: {exc}") from exc
    if not isinstance(items, list) or len(items) < 2:
        raise MessageError("a message is [version, kind, ...fields]")
    version, kind, *values = items
    if type(version) is not int or version != WIRE_VERSION:  # 1.0 and True equal 1
        raise MessageError(f"wire version {version!r} not understood (we speak {WIRE_VERSION})")
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError(f"unknown message kind {kind!r}")
    if expected is not None and cls is not expected and cls is not ErrorReply:
        raise MessageError(f"expected {expected.KIND}, got {kind}")
    return typing.cast(M, _build(cls, values))


def kind_of(name: str) -> type[Message] | None:
    return _REGISTRY.get(name)


def kinds() -> tuple[type[Message], ...]:
    """Every registered message kind (tests iterate it: each needs a hostile sample)."""
    return tuple(_REGISTRY.values())


_HINTS: dict[str, dict[str, Any]] = {}  # one entry per registered kind, so bounded


def _hints(cls: type[Message]) -> dict[str, Any]:
    """A class's field types, resolved once (get_type_hints re-evaluates the string
    annotations on every call: ~100 us, more than decoding a small message)."""
    found = _HINTS.get(cls.KIND)
    if found is None:
        found = _HINTS[cls.KIND] = get_type_hints(cls)
    return found


def _build(cls: type[Message], values: list[Any]) -> Message:
    fields = dataclasses.fields(cls)
    if len(values) != len(fields):
        raise MessageError(f"{cls.KIND}: expected {len(fields)} fields, got {len(values)}")
    hints = _hints(cls)
    args = {}
    for f, value in zip(fields, values, strict=True):
        args[f.name] = _check(value, hints[f.name], f"{cls.KIND}.{f.name}")
        limit = cls.LIMITS.get(f.name)
        if limit is not None and isinstance(args[f.name], int) and args[f.name] > limit:
            raise MessageError(f"{cls.KIND}.{f.name}: {args[f.name]} is past {limit}")
    return cls(**args)


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check(value, option, where)
            except MessageError:
                continue
        raise MessageError(f"{where}: {type(value).__name__} is not {hint}")
    if hint is type(None):
        if value is None:
            return None
        raise MessageError(f"{where}: expected nil")
    if origin is tuple:
        return _check_tuple(value, typing.get_args(hint), where)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_INT:
            raise MessageError(f"{where}: {value} is out of range 0..{MAX_INT}")
        return value
    if hint in (str, bytes, bool) and type(value) is hint:
        return value
    raise MessageError(f"{where}: expected {getattr(hint, '__name__', hint)}, "
                       f"got {type(value).__name__}")


def _check_tuple(value: Any, args: tuple[Any, ...], where: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise MessageError(f"{where}: expected an array")
    if len(args) == 2 and args[1] is Ellipsis:
        if len(value) > MAX_LIST:
            raise MessageError(f"{where}: more than {MAX_LIST} items")
        return tuple(_check(v, args[0], f"{where}[]") for v in value)
    if len(value) != len(args):
        raise MessageError(f"{where}: expected {len(args)} items")
    return tuple(_check(v, a, f"{where}[]") for v, a in zip(value, args, strict=True))


# --- the catalogue --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaWrite(Message):
    """Fold these versions into the receiver's replica (causal join; idempotent)."""

    KIND: ClassVar[str] = "replica-write"
    LIMITS: ClassVar[dict[str, int]] = {"epoch": MAX_EPOCH}
    bucket: bytes
    key: bytes
    versions: bytes  # dfsring.core.vclock.encode_versions
    epoch: int  # the coordinator's ring epoch: a replica on a newer ring that no longer
    #             holds the key refuses, so a lagging coordinator never counts its ack


@dataclass(frozen=True)
class ReplicaRead(Message):
    KIND: ClassVar[str] = "replica-read"
    bucket: bytes
    key: bytes


@dataclass(frozen=True)
class ReplicaReadReply(Message):
    KIND: ClassVar[str] = "replica-read-reply"
    versions: bytes | None  # None: nothing stored here


@dataclass(frozen=True)
class CoordinateWrite(Message):
    """A client write forwarded to a replica of the key, which coordinates it."""

    KIND: ClassVar[str] = "coordinate-write"
    LIMITS: ClassVar[dict[str, int]] = {"w": MAX_REPLICAS, "epoch": MAX_EPOCH}
    bucket: bytes
    key: bytes
    context: str
    value: bytes | None  # None: a delete
    content_type: str
    w: int
    sloppy: bool
    epoch: int


@dataclass(frozen=True)
class WriteReply(Message):
    KIND: ClassVar[str] = "write-reply"
    LIMITS: ClassVar[dict[str, int]] = {"acks": MAX_REPLICAS, "n": MAX_REPLICAS,
                                        "hinted": MAX_REPLICAS}
    versions: bytes
    acks: int
    n: int
    hinted: int


@dataclass(frozen=True)
class ListKeys(Message):
    KIND: ClassVar[str] = "list-keys"
    LIMITS: ClassVar[dict[str, int]] = {"limit": MAX_LIST_LIMIT}
    bucket: bytes
    prefix: bytes
    after: bytes | None
    limit: int


@dataclass(frozen=True)
class ListPartition(Message):
    """ListKeys within one partition (the grouped system tables, dfsring.core.keys): the
    replica scans that partition only. A new kind rather than a field of ListKeys, so
    nodes that predate it refuse it cleanly (unknown kind) instead of misreading it."""

    KIND: ClassVar[str] = "list-partition"
    LIMITS: ClassVar[dict[str, int]] = {"limit": MAX_LIST_LIMIT, "partition": MAX_PARTITIONS}
    bucket: bytes
    prefix: bytes
    after: bytes | None
    limit: int
    partition: int


@dataclass(frozen=True)
class ListKeysReply(Message):
    KIND: ClassVar[str] = "list-keys-reply"
    items: tuple[tuple[bytes, bytes], ...]  # (storage suffix, full key), in suffix order


@dataclass(frozen=True)
class Ack(Message):
    KIND: ClassVar[str] = "ack"
    changed: bool


@dataclass(frozen=True)
class ReplicaAck(Message):
    """A replica's (or a fallback's) durable ack of a ReplicaWrite or HintedWrite, naming the
    ring epoch it applied the write under: the coordinator counts it toward W only under
    that ring or a newer one (dfsring.core.writequorum)."""

    KIND: ClassVar[str] = "replica-ack"
    LIMITS: ClassVar[dict[str, int]] = {"epoch": MAX_EPOCH}
    changed: bool
    epoch: int


@dataclass(frozen=True)
class ErrorReply(Message):
    """A peer's refusal, carried back so the caller can re-raise the same domain error."""

    KIND: ClassVar[str] = "error"
    code: str  # the error's peer_code: bad-request, quorum-not-met, corrupt-value, ...
    detail: str
    needed: int
    acked: int

    @classmethod
    def of(cls, exc: DfsError, detail: str | None = None) -> ErrorReply:
        """The reply that carries `exc` to the caller (dfsring.foundation.errors: peer_code and
        peer_figures); `detail` replaces its message where the edge adds context."""
        needed, acked = exc.peer_figures()
        return cls(exc.peer_code, (str(exc) if detail is None else detail)[:500], needed, acked)


# --- membership: gossip (dfsring.gossip) -----------------------------------------------------

# dfsring.core.membership.MemberState.to_wire; the last fields are the acceptor nonce
# (dfsring.core.epochs) and the client API address
MemberWire = tuple[str, str, str, str, int, int, int, str, str]
RingMemberWire = tuple[str, str, int, str]  # node id, zone, weight, acceptor nonce
RingWire = tuple[str, int, tuple[RingMemberWire, ...], tuple[tuple[RingMemberWire, ...], ...]]


@dataclass(frozen=True)
class GossipSyn(Message):
    """Push-pull round, step 1: the versions the sender holds (a digest, not the entries)."""

    KIND: ClassVar[str] = "gossip-syn"
    LIMITS: ClassVar[dict[str, int]] = {"ring_epoch": MAX_EPOCH}
    cluster: str
    sender: str
    digest: tuple[tuple[str, int, int], ...]  # (node id, incarnation, heartbeat)
    ring_epoch: int
    ring_digest: str
    removed: tuple[str, ...]


@dataclass(frozen=True)
class GossipAck(Message):
    """Step 2: entries newer than the digest, the ids the receiver wants, and its ring if
    newer; a sender with the newer ring includes it in step 3."""

    KIND: ClassVar[str] = "gossip-ack"
    LIMITS: ClassVar[dict[str, int]] = {"ring_epoch": MAX_EPOCH}
    cluster: str
    entries: tuple[MemberWire, ...]
    wanted: tuple[str, ...]
    ring_epoch: int
    ring: RingWire | None
    removed: tuple[str, ...]


@dataclass(frozen=True)
class GossipAck2(Message):
    KIND: ClassVar[str] = "gossip-ack2"
    cluster: str
    entries: tuple[MemberWire, ...]
    ring: RingWire | None


# --- membership: ring epochs (dfsring.replication.ringchange) -------------------------------------


@dataclass(frozen=True)
class EpochPrepare(Message):
    """Paxos phase 1a for ring epoch `slot`; `ring` is the proposer's ring (epoch slot-1),
    which a lagging acceptor adopts first (it was chosen, so adopting it is safe)."""

    KIND: ClassVar[str] = "epoch-prepare"
    LIMITS: ClassVar[dict[str, int]] = {"slot": MAX_EPOCH}
    slot: int
    ballot: tuple[int, str]
    ring: RingWire


@dataclass(frozen=True)
class EpochPromise(Message):
    KIND: ClassVar[str] = "epoch-promise"
    ok: bool
    promised: tuple[int, str] | None
    accepted_ballot: tuple[int, str] | None
    accepted: RingWire | None
    ring: RingWire  # the acceptor's ring: a proposer that is behind learns it from here


@dataclass(frozen=True)
class EpochAccept(Message):
    KIND: ClassVar[str] = "epoch-accept"
    LIMITS: ClassVar[dict[str, int]] = {"slot": MAX_EPOCH}
    slot: int
    ballot: tuple[int, str]
    value: RingWire


@dataclass(frozen=True)
class EpochAccepted(Message):
    KIND: ClassVar[str] = "epoch-accepted"
    ok: bool
    ring: RingWire


@dataclass(frozen=True)
class RingAnnounce(Message):
    """A chosen ring, pushed to every member right away; gossip would get it there too."""

    KIND: ClassVar[str] = "ring-announce"
    ring: RingWire


@dataclass(frozen=True)
class EpochChosen(Message):
    """Do you know ring (`epoch`, `ring_id`) chosen? Asked of the members of the asker's ring
    before it adopts a newer ring a peer told it of (dfsring.core.ringproof)."""

    KIND: ClassVar[str] = "epoch-chosen"
    LIMITS: ClassVar[dict[str, int]] = {"epoch": MAX_EPOCH}
    epoch: int
    ring_id: str


@dataclass(frozen=True)
class EpochChosenReply(Message):
    """`knows`: "chosen", "accepted" (then `ballot` is the one it was accepted under) or
    "unknown" (dfsring.core.ringproof.Answer)."""

    KIND: ClassVar[str] = "epoch-chosen-reply"
    knows: str
    ballot: tuple[int, str] | None


# --- ownership transfers (dfsring.replication.transfers) ------------------------------------------


@dataclass(frozen=True)
class PartitionFetch(Message):
    """Stream one partition's records after storage key `after` (None: from the start)."""

    KIND: ClassVar[str] = "partition-fetch"
    LIMITS: ClassVar[dict[str, int]] = {"partition": MAX_PARTITIONS, "max_bytes": MAX_BATCH,
                                        "max_keys": MAX_BATCH}
    partition: int
    after: bytes | None
    max_bytes: int
    max_keys: int


@dataclass(frozen=True)
class PartitionsHeld(Message):
    """Which of these partitions hold any data here: a new owner skips empty ones."""

    KIND: ClassVar[str] = "partitions-held"
    partitions: tuple[int, ...]


@dataclass(frozen=True)
class PartitionsHeldReply(Message):
    KIND: ClassVar[str] = "partitions-held-reply"
    partitions: tuple[int, ...]


@dataclass(frozen=True)
class PartitionBatch(Message):
    KIND: ClassVar[str] = "partition-batch"
    records: tuple[tuple[bytes, bytes], ...]  # (storage key, stored record), in key order
    next_after: bytes | None  # None: the partition is exhausted


# --- hinted handoff (dfsring.replication.handoff) -------------------------------------------------


@dataclass(frozen=True)
class HintedWrite(Message):
    """Keep these versions for `target`, a down owner of the key, and hand them over when it
    is back (a fallback's part of a sloppy write)."""

    KIND: ClassVar[str] = "hinted-write"
    bucket: bytes
    key: bytes
    versions: bytes  # dfsring.core.vclock.encode_versions
    target: str


@dataclass(frozen=True)
class HandoffBatch(Message):
    """Hints delivered to the owner they were kept for: fold each record into the replica."""

    KIND: ClassVar[str] = "handoff-batch"
    LIMITS: ClassVar[dict[str, int]] = {"epoch": MAX_EPOCH}
    records: tuple[tuple[bytes, bytes], ...]  # (storage key, stored record)
    epoch: int  # the sender's ring epoch, as in ReplicaWrite


# --- anti-entropy (dfsring.antientropy) --------------------------------------------------------


@dataclass(frozen=True)
class TreeRoots(Message):
    """The Merkle roots of these partitions on the receiver (one round trip per peer finds
    every partition the two replicas disagree on)."""

    KIND: ClassVar[str] = "tree-roots"
    partitions: tuple[int, ...]


@dataclass(frozen=True)
class TreeRootsReply(Message):
    KIND: ClassVar[str] = "tree-roots-reply"
    roots: tuple[bytes, ...]  # in the order asked


@dataclass(frozen=True)
class TreeChildren(Message):
    """The children of these inner nodes of one partition's tree: one level of the walk."""

    KIND: ClassVar[str] = "tree-children"
    LIMITS: ClassVar[dict[str, int]] = {"partition": MAX_PARTITIONS}
    partition: int
    nodes: tuple[tuple[int, int], ...]  # (level, index)


@dataclass(frozen=True)
class TreeChildrenReply(Message):
    KIND: ClassVar[str] = "tree-children-reply"
    children: tuple[tuple[bytes, ...], ...]  # per node asked, in order


@dataclass(frozen=True)
class LeafItems(Message):
    """(storage key, version digest) of the receiver's records in these leaves."""

    KIND: ClassVar[str] = "leaf-items"
    LIMITS: ClassVar[dict[str, int]] = {"partition": MAX_PARTITIONS}
    partition: int
    leaves: tuple[int, ...]


@dataclass(frozen=True)
class LeafItemsReply(Message):
    KIND: ClassVar[str] = "leaf-items-reply"
    items: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class FetchRecords(Message):
    """The receiver's stored records of these keys (missing and corrupt ones left out)."""

    KIND: ClassVar[str] = "fetch-records"
    skeys: tuple[bytes, ...]


@dataclass(frozen=True)
class RecordsReply(Message):
    KIND: ClassVar[str] = "records-reply"
    records: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class PurgeTombstones(Message):
    """Delete each key whose record is still exactly this tombstone (by digest): every owner
    was seen holding it, past the grace period."""

    KIND: ClassVar[str] = "purge-tombstones"
    items: tuple[tuple[bytes, bytes], ...]  # (storage key, version digest)


# --- files: chunks (dfsring.files) ------------------------------------------------------------
# Served on POST /internal/v1/files/{kind} (dfsring.files.replica), whose body limit is
# sized for one chunk rather than for a key's siblings.


@dataclass(frozen=True)
class ChunkHave(Message):
    """Which of these chunks do you hold? With `touch`, the holder marks the ones it has as
    relied on now, so its garbage collector keeps them for at least the grace period: an
    upload is about to reference them without sending them (dfsring.files.gc)."""

    KIND: ClassVar[str] = "files/chunk-have"
    ids: tuple[bytes, ...]
    touch: bool


@dataclass(frozen=True)
class ChunkHaveReply(Message):
    KIND: ClassVar[str] = "files/chunk-have-reply"
    present: tuple[bytes, ...]


@dataclass(frozen=True)
class ChunkPut(Message):
    """Store the chunk whose `size` bytes follow this message in the request body (a framed
    call, dfsring.transport.rpc.RpcClient.call_with_payload: the bytes are not copied into msgpack),
    verified against its id first; `repair` replaces a copy already held (the sender found it
    corrupt)."""

    KIND: ClassVar[str] = "files/chunk-put"
    LIMITS: ClassVar[dict[str, int]] = {"size": MAX_CHUNK_SIZE}
    cid: bytes
    size: int
    repair: bool


@dataclass(frozen=True)
class ChunkGet(Message):
    KIND: ClassVar[str] = "files/chunk-get"
    cid: bytes


@dataclass(frozen=True)
class ChunkData(Message):
    """The reply to ChunkGet: the chunk's `size` bytes follow it in the body as stored (a framed
    reply; the reader verifies them against the id); None: not held here."""

    KIND: ClassVar[str] = "files/chunk-data"
    LIMITS: ClassVar[dict[str, int]] = {"size": MAX_CHUNK_SIZE}
    size: int | None


# --- access (dfsring.replication.access) ------------------------------------------------------


@dataclass(frozen=True)
class AccessChanged(Message):
    """A key or bucket record was changed (deleted, disabled, rotated, its grants or settings
    edited): drop it from your cache now, so the change applies before the cache's TTL.
    Best effort; the TTL bounds the staleness of a node that missed it. Answered with Ack."""

    KIND: ClassVar[str] = "access-changed"
    table: str  # "keys" or "buckets"
    name: str  # the access key id or the bucket name
