"""GET /v1/cluster/dashboard: the whole cluster's figures in one document (issue 20 part 9).

The node asked draws the members and the ring from its own gossip view (the same documents as
/v1/cluster/members and /v1/cluster/ring, which ``dfsring status`` reads) and asks every other
member for its own figures at GET /v1/node/figures (keys, disk, hints, repair age, incoming
transfers, and its chart series), all at once, each bounded by MEMBER_TIMEOUT_S. A member that
does not answer in time is shown with ``figures: null`` and ``error`` saying why: one silent
node never holds the page. The fan-out authenticates with this node's root credentials (every
node of a cluster holds them); it only ever reads.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from dfsring.core.membership import Status
from dfsring.foundation.config import NodeConfig
from dfsring.http.appkeys import CONFIG, EXCHANGE, HINTS, MEMBERSHIP, METRICS, STATE, STORE
from dfsring.http.cluster_api import member_rows, transfers_doc
from dfsring.http.console.figures import Point, totals
from dfsring.http.console.sampler import ByteCounter, FigureSampler
from dfsring.http.problems import json_doc

MEMBER_TIMEOUT_S = 2.0
MAX_FIGURES_BYTES = 256 * 1024
FIGURES_PATH = "/v1/node/figures"
SAMPLER = web.AppKey("console_sampler", FigureSampler)
BYTES = web.AppKey("console_bytes", ByteCounter)
FANOUT = web.AppKey("console_fanout", aiohttp.ClientSession)


def setup(app: web.Application, counter: ByteCounter) -> None:
    app[BYTES] = counter
    app.cleanup_ctx.append(_background)
    app.router.add_get(FIGURES_PATH, figures)
    app.router.add_get("/v1/cluster/dashboard", dashboard)


async def _background(app: web.Application) -> AsyncIterator[None]:
    sampler = FigureSampler(app[METRICS], app[BYTES])
    sampler.run_once()
    app[SAMPLER] = sampler
    cfg = app[CONFIG]
    connector = aiohttp.TCPConnector(limit=64, ssl=_client_ssl(cfg))
    app[FANOUT] = aiohttp.ClientSession(connector=connector, headers=_root_headers(cfg))
    try:
        yield
    finally:
        await app[FANOUT].close()


def _client_ssl(cfg: NodeConfig) -> ssl.SSLContext | bool:
    if not cfg.tls_cert:
        return False
    return ssl.create_default_context(cafile=cfg.tls_ca or None)


def _root_headers(cfg: NodeConfig) -> dict[str, str]:
    if cfg.admin_access_key and cfg.admin_secret_key:
        return {"X-Api-Key": f"{cfg.admin_access_key}:{cfg.admin_secret_key}"}
    return {}


def _disk(cfg: NodeConfig) -> dict[str, int] | None:
    try:
        usage = shutil.disk_usage(cfg.data_dir)
    except OSError:
        return None
    return {"total": usage.total, "used": usage.used, "free": usage.free}


def local_figures(app: web.Application) -> dict[str, Any]:
    """This node's own figures: what one row of the cluster page shows."""
    store, sampler, hints = app[STORE], app[SAMPLER], app[HINTS]
    sampler.sample_if_due()
    points = sampler.series.points
    return {"node_id": app[STATE].node_id, "keys": store.stats.keys,
            "bytes": store.stats.bytes, "disk": _disk(app[CONFIG]),
            "hints_pending": hints.pending, "hints_pending_bytes": hints.pending_bytes,
            "repair_age_s": round(app[EXCHANGE].oldest_unexchanged_s(), 1),
            "repaired_keys": int(sampler.series.last.repairs) if sampler.series.last else 0,
            "transfers": transfers_doc(app),
            "latest": points[-1].to_json() if points else None,
            "series": sampler.series.to_json()}


async def figures(request: web.Request) -> web.Response:
    return json_doc(local_figures(request.app))


async def _member_figures(app: web.Application, row: dict[str, Any],
                          scheme: str) -> tuple[dict[str, Any] | None, str | None]:
    """A member's figures, or None and why not, within MEMBER_TIMEOUT_S."""
    address = str(row.get("api_address") or "")
    if not address:
        return None, "no client API address known yet"
    url = f"{scheme}://{address}{FIGURES_PATH}"
    try:
        async with asyncio.timeout(MEMBER_TIMEOUT_S):
            async with app[FANOUT].get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    return None, f"answered {resp.status}"
                body = bytearray()
                async for piece in resp.content.iter_chunked(64 * 1024):
                    body += piece
                    if len(body) > MAX_FIGURES_BYTES:
                        return None, "answer too large"
        doc = orjson.loads(body)
    except TimeoutError:
        return None, f"no answer within {MEMBER_TIMEOUT_S:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        return None, f"unreachable: {type(exc).__name__}"
    except orjson.JSONDecodeError:
        return None, "answer is not JSON"
    if not isinstance(doc, dict):
        return None, "answer is not a JSON object"
    return doc, None


def _latest(doc: dict[str, Any] | None) -> Point | None:
    latest = doc.get("latest") if doc else None
    if not isinstance(latest, dict):
        return None
    try:
        return Point(float(latest["t"]), float(latest["requests_per_s"]),
                     float(latest["errors_per_s"]),
                     None if latest["p99_ms"] is None else float(latest["p99_ms"]),
                     float(latest["bytes_in_per_s"]), float(latest["bytes_out_per_s"]),
                     float(latest["repairs_per_s"]))
    except (KeyError, TypeError, ValueError):
        return None


async def dashboard(request: web.Request) -> web.Response:
    app = request.app
    gossip = app[MEMBERSHIP]
    rows = member_rows(gossip)
    scheme = "https" if app[CONFIG].tls_cert else "http"
    me = gossip.node_id

    async def one(row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        if row["node_id"] == me:
            return local_figures(app), None
        if row["gossip_status"] == str(Status.LEFT):
            return None, "left the cluster"
        return await _member_figures(app, row, scheme)

    answers = await asyncio.gather(*(one(r) for r in rows))
    members = [{**row, "figures": doc, "error": why}
               for row, (doc, why) in zip(rows, answers, strict=True)]
    ring, state = gossip.ring, gossip.ring_state
    doc = {"node_id": me, "generated_ms": int(time.time() * 1000),
           "ring": {"epoch": state.epoch, "in_transition": not gossip.settled,
                    "partitions": 1 << ring.partition_bits, "hash": ring.hash,
                    "members": sorted(state.member_ids)},
           "liveness": {s: sum(1 for r in rows if r["liveness"] == s)
                        for s in ("up", "suspect", "down")},
           "members": members,
           "totals": totals([_latest(d) for d, _ in answers])}
    return json_doc(doc)
