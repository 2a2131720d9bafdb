"""Gossip decodes what peers send through membership.View.from_wire, so it refuses exactly
what from_wire refuses (a node named twice, a bad entry, more than MAX_MEMBERS), with the same
message, before merging any of it; the refusal is logged and the node keeps gossiping.

Before, gossip decoded entries one by one with its own code: duplicate entries, the member
bound and the removed ids were never checked."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dfsring.core import membership
from dfsring.core.membership import MemberState, Status, View
from dfsring.gossip import Gossiper, GossipSettings
from dfsring.transport.messages import Ack, GossipAck, GossipAck2, GossipSyn
from dfsring.transport.rpc import MSGPACK, RPC_PATH, RpcClient

# joining: an unknown node that no ring places is taken only when it says so (core.removals)
PEER = MemberState("node2", "127.0.0.1:2", "z", Status.JOINING, 1, 5, 0)
BAD_ADDRESS = ("node3", "no-port", "z", "up", 1, 1, 0, "", "")
MALFORMED: dict[str, tuple[Any, Any]] = {  # (entries, removed) that from_wire refuses
    "a node named twice": ((PEER.to_wire(), PEER.to_wire()), ()),
    "an entry without a port": ((BAD_ADDRESS,), ()),
    "too many entries": (tuple(MemberState(f"n{i}", "127.0.0.1:2", "z", Status.UP, 1, 1, 0)
                               .to_wire() for i in range(membership.MAX_MEMBERS + 1)), ()),
    "an empty removed id": ((), ("",)),
    "a removed id twice": ((), ("node9", "node9")),
}


@pytest.fixture
async def gossip(tmp_path: Path) -> AsyncIterator[Gossiper]:
    rpc = RpcClient("secret")
    yield Gossiper(node_id="node1", address="127.0.0.1:1", zone="z", seeds=(),
                   settings=GossipSettings(), rpc=rpc, state_file=tmp_path / "cluster.json")
    await rpc.close()


def _refusal(entries: Any, removed: Any) -> str:
    with pytest.raises(ValueError) as caught:
        View.from_wire((entries, removed, membership.RingState.empty().to_wire()))
    return str(caught.value)


@pytest.mark.parametrize("case", [c for c, (_, removed) in MALFORMED.items() if not removed])
def test_an_ack2_with_a_malformed_view_is_refused_as_from_wire_refuses_it(
        gossip: Gossiper, case: str) -> None:
    entries, removed = MALFORMED[case]
    before = gossip.view
    with pytest.raises(ValueError) as caught:
        gossip.handle_ack2(GossipAck2(gossip.ring_state.cluster, entries, None))
    assert str(caught.value) == _refusal(entries, removed)
    assert gossip.view == before


@pytest.mark.parametrize("case", [c for c, (entries, _) in MALFORMED.items() if not entries])
def test_a_syn_with_malformed_removed_ids_is_refused_and_merges_nothing(
        gossip: Gossiper, case: str) -> None:
    _, removed = MALFORMED[case]
    before = gossip.view
    with pytest.raises(ValueError) as caught:
        gossip.handle_syn(GossipSyn(gossip.ring_state.cluster, "node2", (), 0, "", removed))
    assert str(caught.value) == _refusal((), removed)
    assert gossip.view == before


def test_a_syn_with_a_malformed_digest_is_refused(gossip: Gossiper) -> None:
    with pytest.raises(ValueError, match="malformed digest"):
        gossip.handle_syn(GossipSyn("", "node2", (("node2", -1, 0),), 0, "", ()))


def _peer_answering(ack: GossipAck) -> web.Application:
    """A peer that answers every syn with `ack` (and takes the ack2 that may follow)."""

    async def syn(request: web.Request) -> web.Response:
        return web.Response(body=ack.encode(), content_type=MSGPACK)

    async def ack2(request: web.Request) -> web.Response:
        return web.Response(body=Ack(True).encode(), content_type=MSGPACK)

    app = web.Application()
    app.router.add_post(RPC_PATH + "gossip-syn", syn)
    app.router.add_post(RPC_PATH + "gossip-ack2", ack2)
    return app


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_ack_is_logged_and_gossip_goes_on(
        gossip: Gossiper, case: str, caplog: pytest.LogCaptureFixture) -> None:
    entries, removed = MALFORMED[case]
    bad = GossipAck(gossip.ring_state.cluster, entries, (), 0, None, removed)
    good = GossipAck(gossip.ring_state.cluster, (PEER.to_wire(),), (), 0, None, ())
    before = gossip.view
    async with TestServer(_peer_answering(bad)) as server:
        with caplog.at_level(logging.WARNING, logger="dfsring.core.membership"):
            await gossip._guarded(f"{server.host}:{server.port}")  # one round, as run_once
    warned = [r for r in caplog.records if r.getMessage() == "malformed gossip from a peer"]
    assert len(warned) == 1
    assert warned[0].fields["error"] == _refusal(entries, removed)  # type: ignore[attr-defined]
    assert gossip.view == before
    async with TestServer(_peer_answering(good)) as server:
        await gossip.exchange(f"{server.host}:{server.port}")
    assert gossip.view.members["node2"] == PEER
