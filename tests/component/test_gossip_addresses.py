"""A ring can name a node before gossip has brought that node's member entry.

Seen in the "ownership moves under load" chaos scenario (seed 104702): a node adopted the ring
that added node6 from a ring announcement before any gossip round had carried node6's entry;
a write it forwarded to node6 then failed with ``KeyError: 'node6'`` inside the coordinator
and the client got a 500 for a well-formed request. Such a node is unreachable for now, like
a peer that does not answer: the caller moves on to the next replica or answers 503.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dfsring.gossip import Gossiper, GossipSettings
from dfsring.ring import RingMember
from dfsring.transport.rpc import PeerUnavailable, RpcClient


async def test_ring_member_unknown_to_gossip_is_unavailable_not_a_keyerror_500(
        tmp_path: Path) -> None:
    rpc = RpcClient("secret")
    gossip = Gossiper(node_id="node1", address="127.0.0.1:1", zone="z", seeds=(),
                      settings=GossipSettings(), rpc=rpc, state_file=tmp_path / "cluster.json")
    founded = gossip.ring_state
    assert founded.epoch == 1
    grown = founded.successor([*founded.members, RingMember("node6", "z")],
                              keep_previous=True)
    assert gossip.adopt_ring(grown)
    assert "node6" in gossip.ring_state.member_ids
    with pytest.raises(PeerUnavailable, match="not yet known"):
        gossip.address_of("node6")
    assert gossip.address_of("node1") == "127.0.0.1:1"
