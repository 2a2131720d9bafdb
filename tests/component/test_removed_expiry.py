"""A removal mark expires after its grace period on a real Gossiper (dfsring.core.removals):
the mark and the removed node's entry go, the expiry survives a restart (the times are
persisted), and stale gossip of the removed node does not bring it back."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfsring.core.membership import MemberState, Status
from dfsring.core.removals import GRACE_S
from dfsring.gossip import Gossiper, GossipSettings
from dfsring.ring import RingMember
from dfsring.storage import clusterfile
from dfsring.transport.messages import GossipAck2, GossipSyn
from dfsring.transport.rpc import RpcClient

pytestmark = pytest.mark.component


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _gossiper(tmp_path: Path, wall: Clock) -> Gossiper:
    return Gossiper(node_id="node1", address="127.0.0.1:1", zone="z", seeds=(),
                    settings=GossipSettings(), rpc=RpcClient("secret"),
                    state_file=tmp_path / "cluster.json", wall=wall)


def _removed_node2(gossip: Gossiper) -> None:
    """node2 joins (epoch 2), is removed by the operator, leaves the ring (epoch 3), and the
    transfers of epoch 3 settle (node2's ring is no longer consulted)."""
    joiner = MemberState("node2", "127.0.0.1:2", "z", Status.JOINING, 1, 1, 0)
    gossip.handle_ack2(GossipAck2(gossip.ring_state.cluster, (joiner.to_wire(),), None))
    one = gossip.ring_state
    assert gossip.adopt_ring(one.successor([*one.members, RingMember("node2", "z")],
                                           keep_previous=False))
    gossip.remove("node2")
    two = gossip.ring_state
    assert gossip.adopt_ring(two.successor(one.members, keep_previous=False))
    assert "node2" in gossip.view.removed and "node2" in gossip.view.members
    assert gossip.expire_removed() == frozenset()  # not before the transfers settled...
    gossip.set_synced(gossip.ring_state.epoch)  # ...what the transfer service reports
    assert gossip.settled


async def test_a_removal_mark_expires_after_its_grace_even_across_a_restart(
        tmp_path: Path) -> None:
    wall = Clock(1_000_000.0)
    gossip = _gossiper(tmp_path, wall)
    _removed_node2(gossip)

    wall.now += GRACE_S - 10
    assert gossip.expire_removed() == frozenset()
    restarted = _gossiper(tmp_path, wall)  # the times are persisted: no fresh grace
    assert "node2" in restarted.view.removed
    wall.now += 10
    assert restarted.expire_removed() == {"node2"}
    assert "node2" not in restarted.view.removed and "node2" not in restarted.view.members
    saved = clusterfile.load(tmp_path / "cluster.json")
    assert saved is not None and not saved.removed and not saved.removed_at
    assert all(p.node_id != "node2" for p in saved.peers)


async def test_stale_gossip_of_an_expired_removed_node_cannot_bring_it_back(
        tmp_path: Path) -> None:
    wall = Clock(1_000_000.0)
    gossip = _gossiper(tmp_path, wall)
    _removed_node2(gossip)
    wall.now += GRACE_S
    assert gossip.expire_removed() == {"node2"}
    cluster = gossip.ring_state.cluster

    stale = MemberState("node2", "127.0.0.1:2", "z", Status.UP, 7, 99, 2)  # a later life
    gossip.handle_ack2(GossipAck2(cluster, (stale.to_wire(),), None))
    gossip.handle_syn(GossipSyn(cluster, "node3", (), gossip.ring_state.epoch,
                                gossip.ring_state.digest(), ("node2",)))  # a peer's old mark
    assert "node2" not in gossip.view.members and "node2" not in gossip.view.removed
    assert gossip.ring_state.member_ids == {"node1"}
