"""Operational endpoints: health, Prometheus metrics, this node's stats and local replicas."""

from __future__ import annotations

import base64
import os
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dfsring import __version__
from dfsring.core import keys
from dfsring.core.membership import Status
from dfsring.core.vclock import Sibling
from dfsring.foundation import errors
from dfsring.http import opsmetrics, params
from dfsring.http.appkeys import (
    CONFIG,
    DISCOVERY,
    EXCHANGE,
    HINTS,
    MEMBERSHIP,
    METRICS,
    REFILL,
    STATE,
    STORE,
    TRANSFERS,
    WORKERS,
)
from dfsring.http.kv_api import KEY_ROUTE, decode_cursor, encode_cursor, parse_limit, rfc3339
from dfsring.http.problems import json_doc


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/node/stats", stats)
    app.router.add_get("/v1/node/local/kv/{bucket}/" + KEY_ROUTE, local_versions)
    app.router.add_get("/v1/node/local/kv/{bucket}", local_keys)


async def health(request: web.Request) -> web.Response:
    """"ok" only when the node can serve correctly: not stopping, and it knows its ring.

    ``refilling``: it rejoined as itself without its data and its peers have not refilled it
    yet (dfsring.core.refill); it serves (reads go to quorum) but its own replicas are incomplete.
    ``founding``: why a node without a ring founds, joins or waits (dfsring.core.founding)."""
    state, cfg, gossip = request.app[STATE], request.app[CONFIG], request.app[MEMBERSHIP]
    if state.stopping:
        status = "stopping"
    elif gossip.me.status is Status.LEFT:
        status = "left"
    else:
        status = "ok" if gossip.complete else "joining"
    doc = {"status": status, "node_id": state.node_id, "address": cfg.advertise,
           "api_address": cfg.advertise_api, "insecure": cfg.insecure,
           "pid": os.getpid(), "version": __version__, "members": len(gossip.ring.members),
           "ring_epoch": gossip.ring_state.epoch, "ring_hash": gossip.ring.hash,
           "uptime_s": round(time.monotonic() - state.started_at, 3)}
    refill = request.app[REFILL]
    doc["refilling"] = not refill.check()
    if doc["refilling"]:
        doc["refill"] = {**refill.progress_json(),
                         "since_s": round(time.monotonic() - gossip.refill_started, 1)}
    founding = request.app[DISCOVERY].state_json()
    if founding is not None:
        doc["founding"] = founding
    return json_doc(doc, 200 if status == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    request.app[METRICS].ae_oldest.set(request.app[EXCHANGE].oldest_unexchanged_s())
    gossip = request.app[MEMBERSHIP]
    snap = opsmetrics.snapshot((gossip.liveness(m.node_id) for m in gossip.ring.members),
                               request.app[CONFIG].data_dir)
    # generate_latest only calls .collect(): the joined view needs no registration
    body = generate_latest(opsmetrics.joined(request.app[METRICS].registry, snap))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def stats(request: web.Request) -> web.Response:
    store, m, hint_store = request.app[STORE], request.app[METRICS], request.app[HINTS]
    doc = {"node_id": request.app[STATE].node_id, "keys": store.stats.keys,
           "bytes": store.stats.bytes, "hints_pending": hint_store.pending,
           "hints_pending_bytes": hint_store.pending_bytes,
           "hints_by_target": {t: {"count": s.count, "bytes": s.bytes}
                               for t, s in hint_store.stats.items()},
           "hints_delivered": m.hints_delivered_total, "hints_dropped": m.hints_dropped_total,
           "transfers_pending": request.app[TRANSFERS].pending(),
           "ring_epoch": request.app[MEMBERSHIP].ring_state.epoch,
           "refilling": not request.app[REFILL].check(),
           "refill": request.app[REFILL].progress_json(),
           "repaired_keys": m.repaired_total + m.ae["repaired_in"] + m.ae["corrupt_repaired"],
           "corrupt_found": m.corrupt_total,
           "antientropy": {**m.ae, "oldest_unexchanged_s": round(
               request.app[EXCHANGE].oldest_unexchanged_s(), 1),
               "last_exchange_nodes_fetched": request.app[EXCHANGE].last_nodes_fetched},
           "engine": store.engine.info(),
           "workers": request.app[WORKERS].status_json()}
    return json_doc(doc)


async def local_versions(request: web.Request) -> web.Response:
    """The versions stored on THIS node only: the ground truth tests and operators check."""
    store = request.app[STORE]
    name = keys.object_name(*params.path_tail(request, "/v1/node/local/kv/"))
    try:
        versions = store.get(name)
    except errors.CorruptValue:
        request.app[METRICS].count_corrupt()
        raise
    if not versions.siblings:
        raise errors.NotFound("no versions of this key on this node")
    return json_doc({"node_id": request.app[STATE].node_id, "partition": store.partition(name),
                  "clock": versions.clock.to_dict(),
                  "siblings": [_sibling(s) for s in versions.siblings]})


_LOCAL_KEYS_QUERY = frozenset({"limit", "cursor"})


async def local_keys(request: web.Request) -> web.Response:
    """The live keys of a bucket stored on THIS node (no quorum): where data really is."""
    params.check_query(request, _LOCAL_KEYS_QUERY)
    bucket = keys.validate_bucket(request.match_info["bucket"])
    limit = parse_limit(request.query.get("limit"))
    after = decode_cursor(request.query.get("cursor"))
    found = request.app[STORE].list_live(bucket, b"", after, limit + 1)
    page, more = found[:limit], len(found) > limit
    return json_doc({"keys": [k.decode("utf-8", "replace") for _, k in page],
                  "cursor": encode_cursor(page[-1][0]) if more and page else None})


def _sibling(sib: Sibling) -> dict[str, object]:
    return {"dot": list(sib.dot), "tombstone": sib.is_tombstone,
            "value_b64": base64.b64encode(sib.value).decode() if sib.value is not None else None,
            "content_type": sib.content_type, "modified": rfc3339(sib.modified_ms)}
