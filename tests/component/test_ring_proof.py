"""A ring is adopted only with proof that it was chosen (dfsring.core.ringproof), on an
in-process cluster: the forged next ring is refused whichever door it comes through, the
chosen one still reaches everyone, and a member that missed epochs while cut off catches up
through gossip once its old ring's members vouch for the newest ring."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfsring.core.ringstate import RingState
from dfsring.testing.localcluster import InProcessCluster, start_cluster
from dfsring.testing.wait import async_wait_until
from dfsring.transport.messages import (
    EpochChosen,
    EpochChosenReply,
    ErrorReply,
    GossipAck2,
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


def _forged(cluster: InProcessCluster) -> RingState:
    """Epoch + 1 with the same members, descended from the current ring: consistent with
    every check of the ring itself, and never proposed."""
    ring = cluster.node("n1").svc.membership.ring_state
    return ring.successor(ring.members, keep_previous=False)


async def test_a_forged_next_ring_is_not_adopted_through_announce_or_gossip(
        cluster: InProcessCluster) -> None:
    forged = _forged(cluster)
    n2 = cluster.node("n2").svc
    reply = await cluster.deliver("n2", RingAnnounce(forged.to_wire()))
    assert isinstance(reply, ErrorReply) and reply.code == "bad-request"
    await cluster.deliver("n2", GossipAck2(forged.cluster, (), forged.to_wire()))
    await n2.ring_changer.prover.settle(forged)
    assert n2.membership.ring_state.epoch == forged.epoch - 1
    answer = await cluster.deliver("n1", EpochChosen(forged.epoch, "0" * 32))
    assert isinstance(answer, EpochChosenReply) and answer.knows == "unknown"
    # and the real next epoch is still agreed and reaches every member by its announce
    chosen = await cluster.node("n1").svc.ring_changer.propose(
        RingState(forged.cluster, forged.epoch, forged.members, forged.previous))
    assert chosen is not None
    for node in cluster.nodes:
        assert node.svc.membership.ring_state.epoch == forged.epoch


async def test_a_member_that_missed_two_epochs_catches_up_by_gossip_with_proof(
        cluster: InProcessCluster) -> None:
    n1, n3 = cluster.node("n1").svc, cluster.node("n3").svc
    start = n1.membership.ring_state
    cluster.network.isolate(cluster.node("n3").address)
    for _ in range(2):  # n1 and n2 are a majority: two epochs chosen without n3
        ring = n1.membership.ring_state
        assert await n1.ring_changer.propose(
            ring.successor(ring.members, keep_previous=False)) is not None
    assert n3.membership.ring_state.epoch == start.epoch
    cluster.network.heal()

    async def caught_up() -> bool:
        return n3.membership.ring_state == n1.membership.ring_state

    await async_wait_until(caught_up, timeout=20.0, interval=0.05,
                           message="n3 to adopt the newest ring, proven by n1 and n2")
    assert n3.membership.ring_state.epoch == start.epoch + 2
