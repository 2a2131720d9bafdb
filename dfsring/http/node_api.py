"""Operational endpoints: health, Prometheus metrics, this node's stats and local replicas."""

from __future__ import annotations

import base64
import os
import time

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dfsring import __version__, errors, keys
from dfsring.http.appkeys import CONFIG, MEMBERSHIP, METRICS, STATE, STORE
from dfsring.http.kv_api import rfc3339
from dfsring.vclock import Sibling


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/node/stats", stats)
    app.router.add_get("/v1/node/local/kv/{bucket}/{key:.+}", local_versions)
    app.router.add_get("/v1/cluster/ring", ring)
    app.router.add_get("/v1/cluster/members", members)


def _json(doc: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """"ok" only when the node can serve correctly: not stopping, and all seeds known."""
    state, cfg, membership = request.app[STATE], request.app[CONFIG], request.app[MEMBERSHIP]
    status = "stopping" if state.stopping else "ok" if membership.complete else "joining"
    doc = {"status": status, "node_id": state.node_id, "address": cfg.advertise,
           "pid": os.getpid(), "version": __version__, "members": len(membership.members),
           "missing_seeds": membership.missing_seeds, "ring_hash": membership.ring.hash,
           "uptime_s": round(time.monotonic() - state.started_at, 3)}
    return _json(doc, 200 if status == "ok" else 503)


async def ring(request: web.Request) -> web.Response:
    return _json(request.app[MEMBERSHIP].ring.to_json())


async def members(request: web.Request) -> web.Response:
    """Static membership reports every known member as up; failure detection (the
    membership issue) will make status each node's local view."""
    return _json([{"node_id": m.node_id, "address": m.address, "zone": m.zone,
                   "status": "up"} for m in request.app[MEMBERSHIP].members])


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def stats(request: web.Request) -> web.Response:
    store, m = request.app[STORE], request.app[METRICS]
    doc = {"node_id": request.app[STATE].node_id, "keys": store.stats.keys,
           "bytes": store.stats.bytes, "hints_pending": 0, "transfers_pending": 0,
           "repaired_keys": m.repaired_total, "corrupt_found": m.corrupt_total,
           "engine": store.engine.info()}
    return _json(doc)


async def local_versions(request: web.Request) -> web.Response:
    """The versions stored on THIS node only: the ground truth tests and operators check."""
    store = request.app[STORE]
    name = keys.object_name(request.match_info["bucket"], request.match_info["key"])
    try:
        versions = store.get(name)
    except errors.CorruptValue:
        request.app[METRICS].count_corrupt()
        raise
    if not versions.siblings:
        raise errors.NotFound("no versions of this key on this node")
    return _json({"node_id": request.app[STATE].node_id, "partition": store.partition(name),
                  "clock": versions.clock.to_dict(),
                  "siblings": [_sibling(s) for s in versions.siblings]})


def _sibling(sib: Sibling) -> dict[str, object]:
    return {"dot": list(sib.dot), "tombstone": sib.is_tombstone,
            "value_b64": base64.b64encode(sib.value).decode() if sib.value is not None else None,
            "content_type": sib.content_type, "modified": rfc3339(sib.modified_ms)}
