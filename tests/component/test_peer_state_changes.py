"""Issue 23 part 2: membership and ring changes from peers are checked before they apply.

The probe's two findings, pinned on an in-process cluster (dfsring.testing.localcluster): one
`gossip-syn` naming a live node in its removed list evicted that node for good, and one
`ring-announce` at epoch 2^64-1 was refused with 400 yet adopted and persisted, so no later
epoch could be agreed. Legitimate removal (an operator's remove of a down node, agreed as a
new ring epoch) must still work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfsring.core.failure import Liveness
from dfsring.core.membership import Status
from dfsring.core.ringstate import RingState
from dfsring.testing.localcluster import CLUSTER, InProcessCluster, start_cluster
from dfsring.testing.wait import async_wait_until
from dfsring.transport.messages import (
    ErrorReply,
    GossipAck2,
    GossipSyn,
    RingAnnounce,
)

pytestmark = pytest.mark.component


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    cluster = await start_cluster(tmp_path, 3)
    try:
        yield cluster
    finally:
        await cluster.stop()


async def _gossip_rounds(cluster: InProcessCluster, rounds: int) -> None:
    for _ in range(rounds):
        for node in cluster.nodes:
            await node.svc.membership.run_once()


async def test_a_gossip_syn_naming_a_live_node_removed_does_not_evict_it(
        cluster: InProcessCluster) -> None:
    ring = cluster.nodes[0].svc.membership.ring_state
    syn = GossipSyn(CLUSTER, "n1", (), ring.epoch, ring.digest(), ("n2",))
    for node_id in ("n1", "n2", "n3"):
        await cluster.deliver(node_id, syn)
    await _gossip_rounds(cluster, 3)

    n2 = cluster.node("n2").svc.membership
    assert n2.me.status is Status.UP and n2.complete
    for node in cluster.nodes:
        assert node.svc.membership.status_of("n2") is Status.UP
        assert "n2" not in node.svc.membership.view.removed
        assert "n2" in node.svc.membership.ring_state.member_ids


async def test_a_ring_announce_at_epoch_2_64_minus_1_is_neither_adopted_nor_persisted(
        cluster: InProcessCluster) -> None:
    ring = cluster.nodes[0].svc.membership.ring_state
    files = {n.node_id: (n.data_dir.path / "cluster.json").read_bytes() for n in cluster.nodes}
    wire = (ring.cluster, 2**64 - 1, ring.to_wire()[2], ())
    for node in cluster.nodes:
        reply = await cluster.deliver(node.node_id, RingAnnounce(wire))
        assert isinstance(reply, ErrorReply) and reply.code == "bad-request"
    await _gossip_rounds(cluster, 2)

    for node in cluster.nodes:
        assert node.svc.membership.ring_state.epoch == 1
        assert (node.data_dir.path / "cluster.json").read_bytes() == files[node.node_id] or (
            node.svc.membership.ring_state == ring)
    # and the next epoch can still be agreed
    n1 = cluster.node("n1").svc
    chosen = await n1.ring_changer.propose(RingState(CLUSTER, 2, ring.members, (ring.members,)))
    assert chosen is not None and chosen.epoch == 2
    for node in cluster.nodes:
        assert node.svc.membership.ring_state.epoch == 2


async def test_an_operators_remove_of_a_down_node_still_takes_it_out_through_a_new_epoch(
        cluster: InProcessCluster) -> None:
    n1 = cluster.node("n1").svc
    cluster.network.isolate(cluster.node("n3").address)
    async def n3_down() -> bool:
        return n1.membership.liveness("n3") is Liveness.DOWN

    await async_wait_until(n3_down, timeout=20.0, interval=0.05, message="n1 holds n3 down")
    n1.membership.remove("n3")  # what POST /v1/cluster/remove/n3 does once n3 is down

    async def out_of_ring() -> bool:
        await n1.ring_changer.run_once()
        return all("n3" not in cluster.node(i).svc.membership.ring_state.member_ids
                   for i in ("n1", "n2"))

    await async_wait_until(out_of_ring, timeout=20.0, interval=0.05,
                           message="an agreed epoch without n3")

    async def left_everywhere() -> bool:  # the removed mark reaches n2 by gossip
        return all(cluster.node(i).svc.membership.status_of("n3") is Status.LEFT
                   for i in ("n1", "n2"))

    await async_wait_until(left_everywhere, timeout=20.0, interval=0.05,
                           message="n3 is LEFT to n1 and n2")


async def test_a_relayed_entry_saying_a_ring_member_left_is_not_merged(
        cluster: InProcessCluster) -> None:
    """A node reports `left` only once a chosen ring no longer lists it, so an entry saying a
    ring member left did not come from its subject: a stranger marking n2 LEFT."""
    n2 = cluster.node("n2").svc.membership.me
    forged = (n2.node_id, n2.address, n2.zone, "left", n2.incarnation, n2.heartbeat + 1000,
              n2.synced_epoch, n2.acceptor, n2.api)
    for node_id in ("n1", "n3"):
        await cluster.deliver(node_id, GossipAck2(CLUSTER, (forged,), None))
    for node_id in ("n1", "n3"):
        assert cluster.node(node_id).svc.membership.status_of("n2") is Status.UP


async def test_a_relayed_entry_at_incarnation_2_63_minus_1_cannot_silence_its_subject(
        cluster: InProcessCluster) -> None:
    """An entry at the largest incarnation beats every entry its subject can ever send (it
    cannot refute past 2^63-1), so its heartbeats would go unseen and it would look down
    for good. A relayed entry may move a node's incarnation by at most INCARNATION_WINDOW."""
    n2 = cluster.node("n2").svc.membership.me
    forged = (n2.node_id, "127.0.0.9:9", n2.zone, "up", 2**63 - 1, 0, n2.synced_epoch,
              n2.acceptor, n2.api)
    reply = await cluster.deliver("n1", GossipAck2(CLUSTER, (forged,), None))
    assert not isinstance(reply, ErrorReply)  # the rest of an ack2 still merges
    held = cluster.node("n1").svc.membership.view.members["n2"]
    assert (held.incarnation, held.address) == (n2.incarnation, n2.address)
