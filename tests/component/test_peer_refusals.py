"""Issue 23 part 2: a peer message that is refused changes nothing, for every message kind.

One node of an in-process cluster (dfsring.testing.localcluster: the real handler table, real
storage, no sockets) gets a hostile or invalid instance of every registered message kind.
Each must be refused (an ErrorReply, or no handler at all for a reply kind), and the node's
ring, member view, settled epoch, acceptor memory, persisted files, store contents and hints
must be exactly what they were. `HOSTILE` must name every kind in the catalogue: a new
message kind without a hostile sample fails `test_every_message_kind_has_a_hostile_sample`.

Gossip is off, so nothing but the messages sent here can change a node's state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dfsring.core.keys import object_name
from dfsring.core.ringstate import RingState
from dfsring.core.vclock import VersionVector, encode_versions
from dfsring.ring import RingMember
from dfsring.testing.localcluster import CLUSTER, InProcessCluster, LocalNode, start_cluster
from dfsring.transport import messages as m
from dfsring.transport.messages import ErrorReply, Message

pytestmark = pytest.mark.component
HUGE = 2**64 - 1
CID = bytes(32)
Sample = Callable[["Ctx"], Message]


class Ctx:
    """What a sample is built from: the target node's ring and a real stored version."""

    def __init__(self, node: LocalNode, versions: bytes) -> None:
        self.ring: RingState = node.svc.membership.ring_state
        self.versions = versions
        self.peer = next(i for i in sorted(self.ring.member_ids) if i != node.node_id)

    def ring_at(self, epoch: int, members: tuple[RingMember, ...] | None = None,
                previous: tuple[tuple[RingMember, ...], ...] | None = None) -> Any:
        """A ring wire at `epoch` (built by hand: RingState itself refuses absurd epochs)."""
        ms = self.ring.members if members is None else members
        prev = (self.ring.members,) if previous is None else previous
        return (self.ring.cluster, epoch, tuple((x.node_id, x.zone, x.weight, x.acceptor)
                                                for x in ms),
                tuple(tuple((x.node_id, x.zone, x.weight, x.acceptor) for x in p)
                      for p in prev))


def _reply(kind: type[Message]) -> list[Sample]:
    """A reply kind: no node answers it, whatever it says."""
    samples: dict[type[Message], Sample] = {
        m.ReplicaReadReply: lambda c: m.ReplicaReadReply(None),
        m.WriteReply: lambda c: m.WriteReply(c.versions, 3, 3, 0),
        m.ListKeysReply: lambda c: m.ListKeysReply(()),
        m.Ack: lambda c: m.Ack(True),
        m.ReplicaAck: lambda c: m.ReplicaAck(True, HUGE),
        m.ErrorReply: lambda c: m.ErrorReply("bad-request", "x", 0, 0),
        m.GossipAck: lambda c: m.GossipAck(CLUSTER, (), (), HUGE, c.ring_at(HUGE), (c.peer,)),
        m.EpochPromise: lambda c: m.EpochPromise(True, None, None, None, c.ring_at(HUGE)),
        m.EpochAccepted: lambda c: m.EpochAccepted(True, c.ring_at(HUGE)),
        m.EpochChosenReply: lambda c: m.EpochChosenReply("chosen", None),
        m.PartitionsHeldReply: lambda c: m.PartitionsHeldReply((0,)),
        m.PartitionBatch: lambda c: m.PartitionBatch(((b"\0\0k", b"r"),), None),
        m.TreeRootsReply: lambda c: m.TreeRootsReply((b"r",)),
        m.TreeChildrenReply: lambda c: m.TreeChildrenReply(((b"c",),)),
        m.LeafItemsReply: lambda c: m.LeafItemsReply(((b"k", b"d"),)),
        m.RecordsReply: lambda c: m.RecordsReply(((b"k", b"r"),)),
        m.ChunkHaveReply: lambda c: m.ChunkHaveReply((CID,)),
        m.ChunkData: lambda c: m.ChunkData(1),
    }
    return [samples[kind]]


HOSTILE: dict[str, list[Sample]] = {
    "replica-write": [
        # a far-future epoch made the replica skip its ownership check and store anything
        lambda c: m.ReplicaWrite(b"b", b"hostile", c.versions, HUGE),
        lambda c: m.ReplicaWrite(b"b", b"hostile", c.versions, -1),
        lambda c: m.ReplicaWrite(b"b", b"hostile", b"not versions", c.ring.epoch),
    ],
    "replica-read": [lambda c: m.ReplicaRead(b"\xff", b"k")],
    "coordinate-write": [
        lambda c: m.CoordinateWrite(b"b", b"hostile", "", b"v", "text/plain", 0, True, 1),
        lambda c: m.CoordinateWrite(b"b", b"hostile", "", b"v", "text/plain", HUGE, True, 1),
    ],
    "list-keys": [lambda c: m.ListKeys(b"b", b"", None, -1)],
    "list-partition": [lambda c: m.ListPartition(b"b", b"", None, 10, HUGE),
                       lambda c: m.ListPartition(b"b", b"", None, 10, (1 << 20) - 1),
                       lambda c: m.ListPartition(b"\xff", b"", None, 10, 0)],
    "gossip-syn": [
        lambda c: m.GossipSyn("another-cluster", c.peer, (), 1, "", ()),
        lambda c: m.GossipSyn(CLUSTER, c.peer, ((c.peer, HUGE, 0),), 1, "", ()),
        lambda c: m.GossipSyn(CLUSTER, c.peer, (), HUGE, "", ()),
    ],
    "gossip-ack2": [
        lambda c: m.GossipAck2(CLUSTER, (), c.ring_at(HUGE)),
        lambda c: m.GossipAck2(CLUSTER, (), c.ring_at(c.ring.epoch + 1_000_000)),
        lambda c: m.GossipAck2(CLUSTER,
                               ((c.peer, "127.0.0.9:1", "", "left", HUGE, 0, 0, "", ""),), None),
    ],
    "ring-announce": [
        lambda c: m.RingAnnounce(c.ring_at(HUGE)),
        lambda c: m.RingAnnounce(c.ring_at(2**63 - 1)),
        lambda c: m.RingAnnounce(c.ring_at(c.ring.epoch + 1_000_000)),
        # the next epoch, but not descended from this node's ring: it was never chosen
        lambda c: m.RingAnnounce(c.ring_at(c.ring.epoch + 1, (RingMember("evil"),),
                                           ((RingMember("evil"),),))),
        # the next epoch, descended from this node's ring, but no acceptor accepted it
        lambda c: m.RingAnnounce(c.ring_at(c.ring.epoch + 1)),
    ],
    "epoch-prepare": [
        lambda c: m.EpochPrepare(2**62, (1, "p~1"), c.ring.to_wire()),
        lambda c: m.EpochPrepare(HUGE, (1, "p~1"), c.ring_at(HUGE - 1)),
        lambda c: m.EpochPrepare(c.ring.epoch + 1, (HUGE, "p~1"), c.ring.to_wire()),
        # the proposer's ring is a plausible next epoch that was never chosen
        lambda c: m.EpochPrepare(c.ring.epoch + 2, (1, "p~1"), c.ring_at(c.ring.epoch + 1)),
    ],
    "epoch-chosen": [lambda c: m.EpochChosen(HUGE, "x"),
                     lambda c: m.EpochChosen(2**62, "x")],
    "epoch-accept": [
        lambda c: m.EpochAccept(2**62, (1, "p~1"), c.ring_at(2**62)),
        lambda c: m.EpochAccept(c.ring.epoch + 1, (1, "p~1"), c.ring_at(HUGE)),
    ],
    "partitions-held": [lambda c: m.PartitionsHeld((HUGE,)),
                        lambda c: m.PartitionsHeld((1 << 20,))],
    "partition-fetch": [lambda c: m.PartitionFetch(1 << 20, None, 1, 1),
                        lambda c: m.PartitionFetch(0, None, -1, HUGE)],
    "hinted-write": [
        # a hint kept for a node nobody knows is held (and retried) for good
        lambda c: m.HintedWrite(b"b", b"hostile", c.versions, "nobody"),
        lambda c: m.HintedWrite(b"b", b"hostile", c.versions, ""),
    ],
    "handoff-batch": [
        lambda c: m.HandoffBatch(((b"\0", b"r"),), 1),
        lambda c: m.HandoffBatch(((b"\xff\xffk", b"r"),), HUGE),
    ],
    "tree-roots": [lambda c: m.TreeRoots((1 << 20,))],
    "tree-children": [lambda c: m.TreeChildren(0, ((99, 99),)),
                      lambda c: m.TreeChildren(HUGE, ())],
    "leaf-items": [lambda c: m.LeafItems(0, (10**9,))],
    "fetch-records": [lambda c: m.FetchRecords(tuple(b"k%d" % i for i in range(2_001)))],
    "purge-tombstones": [lambda c: m.PurgeTombstones(((b"\xff\xffk", b"d"),)),
                         lambda c: m.PurgeTombstones(((b"", b""),))],
    "files/chunk-have": [lambda c: m.ChunkHave((b"short",), True)],
    "files/chunk-put": [lambda c: m.ChunkPut(CID, HUGE, False),
                        lambda c: m.ChunkPut(CID, -1, True)],
    "files/chunk-get": [lambda c: m.ChunkGet(b"short")],
    "access-changed": [lambda c: m.AccessChanged("secrets", "DK0000000000000000"),
                       lambda c: m.AccessChanged("keys", "not\nan id")],
    **{kind.KIND: _reply(kind) for kind in (
        m.ReplicaReadReply, m.WriteReply, m.ListKeysReply, m.Ack, m.ReplicaAck, m.ErrorReply,
        m.GossipAck, m.EpochPromise, m.EpochAccepted, m.EpochChosenReply,
        m.PartitionsHeldReply, m.PartitionBatch,
        m.TreeRootsReply, m.TreeChildrenReply, m.LeafItemsReply, m.RecordsReply,
        m.ChunkHaveReply, m.ChunkData)},
}
CASES = [(kind, i) for kind, samples in sorted(HOSTILE.items()) for i in range(len(samples))]


def test_every_message_kind_has_a_hostile_sample() -> None:
    assert set(HOSTILE) == {k.KIND for k in m.kinds()}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    cluster = await start_cluster(tmp_path, 3, gossip=False, chunk_size=65_536)
    try:
        yield cluster
    finally:
        await cluster.stop()


def _state(node: LocalNode) -> dict[str, Any]:
    """Everything a peer message could change on a node, read without changing it."""
    svc = node.svc
    g = svc.membership
    store = svc.store
    records = [store.read_partition(p, None, 1 << 30, 1 << 20)[0]
               for p in range(1 << store.partition_bits)]
    files = sorted((str(p.relative_to(node.data_dir.path)), p.read_bytes())
                   for p in node.data_dir.path.rglob("*")
                   if p.is_file() and p.suffix in (".json", "") and "lock" not in p.name)
    return {"ring": g.ring_state, "view": g.view, "settled": g.settled_epoch,
            "status": g.me.status, "acceptor": svc.ring_changer.acceptor, "records": records,
            "hints": (svc.hints.targets(), svc.hints.pending, svc.hints.pending_bytes),
            "files": files}


async def _stored_versions(cluster: InProcessCluster) -> tuple[LocalNode, bytes]:
    """A real write (the canary) and its stored versions on one of its owners."""
    name = object_name("b", "canary")
    owner = cluster.node(cluster.owners(name)[0])
    await owner.svc.coordinator.put(name, VersionVector(), b"canary", "text/plain", w=3)
    return owner, encode_versions(owner.svc.store.get(name))


@pytest.mark.parametrize(("kind", "index"), CASES, ids=[f"{k}-{i}" for k, i in CASES])
async def test_a_refused_peer_message_changes_nothing(
        cluster: InProcessCluster, kind: str, index: int) -> None:
    node, versions = await _stored_versions(cluster)
    msg = HOSTILE[kind][index](Ctx(node, versions))
    assert msg.KIND == kind
    before = _state(node)

    cls = node.svc.peer.knows(kind)
    if cls is not None:
        answer = await node.svc.peer.answer(cls, msg.encode(), ())
        assert answer.status >= 400, f"{kind} sample {index} was accepted: {answer.message}"
        assert isinstance(answer.message, ErrorReply)
    else:
        assert m.kind_of(kind) is not None  # a reply kind: refused as no such route

    assert _state(node) == before
