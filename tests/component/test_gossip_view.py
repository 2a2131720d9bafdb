"""Gossip publishes one immutable ClusterView: the same object while nothing changed, a new
one when the ring, a member entry or a member's liveness changed, so a service that took a
view at the start of a request keeps a consistent picture however gossip moves on."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfsring.core.failure import Liveness
from dfsring.core.membership import MemberState, Status
from dfsring.gossip import Gossiper, GossipSettings
from dfsring.ring import RingMember
from dfsring.transport.messages import GossipAck2
from dfsring.transport.rpc import RpcClient

pytestmark = pytest.mark.component


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _gossiper(tmp_path: Path, clock: Clock) -> Gossiper:
    return Gossiper(node_id="node1", address="127.0.0.1:1", zone="z", seeds=(),
                    settings=GossipSettings(), rpc=RpcClient("secret"),
                    state_file=tmp_path / "cluster.json", clock=clock)


async def test_the_view_is_replaced_only_when_the_cluster_changes(tmp_path: Path) -> None:
    clock = Clock()
    gossip = _gossiper(tmp_path, clock)
    first = gossip.cluster_view()
    assert first.epoch == 1 and first.node_id == "node1"
    assert gossip.cluster_view() is first  # nothing changed: the same snapshot

    peer = MemberState("node2", "127.0.0.1:2", "z", Status.JOINING, 1, 1, 0)
    gossip.handle_ack2(GossipAck2(gossip.ring_state.cluster, (peer.to_wire(),), None))
    learned = gossip.cluster_view()
    assert learned is not first
    assert learned.address_of("node2") == "127.0.0.1:2" and learned.is_alive("node2")
    assert "node2" not in first.members.members  # the old snapshot did not change

    clock.now += 3600  # node2 silent for an hour: the detector holds it down
    silent = gossip.cluster_view()
    assert silent is not learned
    assert silent.liveness_of("node2") is Liveness.DOWN and not silent.is_alive("node2")
    assert learned.is_alive("node2")
    assert gossip.cluster_view() is silent

    grown = gossip.ring_state.successor([*gossip.ring_state.members,
                                         RingMember("node2", "z")], keep_previous=True)
    assert gossip.adopt_ring(grown)
    moved = gossip.cluster_view()
    assert moved.epoch == 2 and silent.epoch == 1
    assert not moved.settled and moved.previous == moved.previous_rings != ()
    assert moved.ring is gossip.ring
