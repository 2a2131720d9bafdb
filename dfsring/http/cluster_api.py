"""Cluster endpoints: members, ring, transfers, and the explicit membership changes.

Join, leave and remove only *request* a change (202): the claimant turns the request into
the next ring epoch and transfers move the data; the caller follows progress on
/v1/cluster/transfers and /v1/cluster/members (the CLI's --wait does exactly that).
"""

from __future__ import annotations

import re

from aiohttp import web

from dfsring.core.failure import Liveness
from dfsring.core.membership import Status
from dfsring.foundation import errors
from dfsring.gossip import Gossiper
from dfsring.http.appkeys import HANDOFF, HINTS, MEMBERSHIP, STATE, STORE, TRANSFERS
from dfsring.http.problems import json_doc

_ADDRESS = re.compile(r"[A-Za-z0-9.\-\[\]:]{1,255}:[0-9]{1,5}")


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/cluster/members", members)
    app.router.add_get("/v1/cluster/ring", ring)
    app.router.add_get("/v1/cluster/transfers", transfers)
    app.router.add_post("/v1/cluster/leave", leave)
    app.router.add_post("/v1/cluster/remove/{node_id}", remove)
    app.router.add_post("/v1/cluster/join", join)


async def members(request: web.Request) -> web.Response:
    """Every member this node knows, with *this node's* opinion of its liveness."""
    return json_doc(member_rows(request.app[MEMBERSHIP]))


def member_rows(gossip: Gossiper) -> list[dict[str, object]]:
    """The members document (also drawn by the console's dashboard, dfsring.http.console)."""
    view = gossip.cluster_view()  # one snapshot: each gossip.liveness() would judge them all
    ring = view.ring
    rows: list[dict[str, object]] = []
    for m in view.members.members.values():  # in node id order (core.membership.View)
        status = view.status_of(m.node_id)
        liveness = view.liveness_of(m.node_id)
        shown = str(status)
        if status in (Status.UP, Status.JOINING, Status.LEAVING) and liveness is not Liveness.UP:
            shown = str(liveness)
        rows.append({"node_id": m.node_id, "address": m.address, "api_address": m.api,
                     "zone": m.zone,
                     "status": shown, "liveness": str(liveness),
                     "gossip_status": str(status), "incarnation": m.incarnation,
                     "phi": round(min(gossip.phi(m.node_id), 1e6), 2),
                     "in_ring": m.node_id in view.members.ring.member_ids,
                     "partitions": len(ring.partitions_of(m.node_id)),
                     "synced_epoch": m.synced_epoch, "self": m.node_id == gossip.node_id})
    return rows


async def ring(request: web.Request) -> web.Response:
    gossip = request.app[MEMBERSHIP]
    doc = gossip.ring.to_json()
    state = gossip.ring_state
    doc.update({"cluster": state.cluster, "in_transition": not gossip.settled,
                "previous": [[m.node_id for m in p] for p in state.previous]})
    return json_doc(doc)


async def transfers(request: web.Request) -> web.Response:
    return json_doc(transfers_doc(request.app))


def transfers_doc(app: web.Application) -> dict[str, object]:
    """This node's transfers document (also part of the console's dashboard)."""
    gossip, service = app[MEMBERSHIP], app[TRANSFERS]
    state = gossip.ring_state
    synced = gossip.synced()
    fetching = not gossip.settled and gossip.me.synced_epoch < state.epoch
    incoming = service.progress_json() if fetching else {
        "partitions_total": 0, "partitions_done": 0, "bytes_done": 0, "keys_done": 0,
        "bytes_per_s": 0.0, "keys_per_s": 0.0, "eta_s": None, "active": []}
    return {"node_id": gossip.node_id, "epoch": state.epoch,
            "in_transition": not gossip.settled, "incoming": incoming,
            "unsynced_members": sorted(n for n in state.member_ids
                                       if synced.get(n, 0) < state.epoch),
            "dropped_partitions": service.dropped_partitions,
            "hints_pending": app[HINTS].pending,
            "hints": app[HANDOFF].progress_json()}


async def leave(request: web.Request) -> web.Response:
    gossip = request.app[MEMBERSHIP]
    state = gossip.ring_state
    if gossip.node_id not in state.member_ids:
        raise errors.Conflict("this node is not a ring member")
    others = state.member_ids - {gossip.node_id}
    view = gossip.cluster_view()
    if not any(view.status_of(n) is not Status.LEAVING for n in others):
        raise errors.Conflict("this is the last member; a cluster cannot leave entirely")
    gossip.set_status(Status.LEAVING)
    return json_doc({"node_id": gossip.node_id, "status": "leaving"}, 202)


async def remove(request: web.Request) -> web.Response:
    gossip = request.app[MEMBERSHIP]
    target = request.match_info["node_id"]
    if target not in gossip.view.members:
        raise errors.NotFound(f"no member {target!r}")
    if target == gossip.node_id:
        raise errors.Conflict("a node cannot remove itself; use POST /v1/cluster/leave")
    if gossip.liveness(target) is not Liveness.DOWN:
        raise errors.Conflict(f"{target} is not down in this node's view; stop it first, or "
                              "have it leave (POST /v1/cluster/leave on that node)")
    gossip.remove(target)
    return json_doc({"removed": target}, 202)


async def join(request: web.Request) -> web.Response:
    gossip, store = request.app[MEMBERSHIP], request.app[STORE]
    seed = request.query.get("seed", "")
    if not _ADDRESS.fullmatch(seed) or not 0 < int(seed.rpartition(":")[2]) < 65536:
        raise errors.BadRequest("seed must be HOST:PORT")
    if seed == gossip.address:
        raise errors.BadRequest("seed is this node itself")
    state = gossip.ring_state
    if len(state.member_ids - {gossip.node_id}) > 0:
        raise errors.Conflict("this node is already in a cluster with other members")
    if store.stats.keys > 0:
        raise errors.Conflict("this node holds data; only an empty node can join a cluster")
    gossip.reset_to_join(seed)
    return json_doc({"node_id": request.app[STATE].node_id, "status": "joining", "seed": seed},
                 202)
