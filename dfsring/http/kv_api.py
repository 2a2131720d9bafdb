"""The key/value HTTP API (CONTRACT.md "Keys and values").

Validation happens here, before anything is stored: names, quorum knobs, the causal context,
the body's size (refused before it is read when Content-Length says so) and the time a client
may take to send it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
from aiohttp import web

from dfsring.core import actors, keys, quorum, validate, vclock
from dfsring.core.vclock import Sibling, Versions, VersionVector
from dfsring.foundation import errors
from dfsring.http import params
from dfsring.http.appkeys import CONFIG, COORDINATOR
from dfsring.http.body import read_body
from dfsring.http.middleware import REQUEST_ID
from dfsring.http.problems import problem
from dfsring.replication.peers import wall_ms

CONTEXT_HEADER = "Dfs-Context"
CONSISTENCY_HEADER = "Dfs-Consistency"
MAX_LIST_LIMIT = 10_000
DEFAULT_LIST_LIMIT = 1_000
MAX_CONTENT_TYPE = validate.MAX_CONTENT_TYPE
PREFIX = "/v1/kv/"
KEY_ROUTE = r"{key:[\s\S]+}"  # any character, newlines included (NUL: 400 invalid-key)
_PUT_PARAMS = frozenset({"w", "sloppy"})
_GET_PARAMS = frozenset({"r", "sloppy"})
_LIST_PARAMS = frozenset({"prefix", "limit", "cursor"})


def setup(app: web.Application) -> None:
    app.router.add_put(PREFIX + "{bucket}/" + KEY_ROUTE, put_value)
    app.router.add_get(PREFIX + "{bucket}/" + KEY_ROUTE, get_value)  # HEAD too (allow_head)
    app.router.add_delete(PREFIX + "{bucket}/" + KEY_ROUTE, delete_value)
    app.router.add_get("/v1/kv/{bucket}", list_keys)
    app.router.add_route("*", "/v1/kv/{bucket}/", empty_key)


async def empty_key(request: web.Request) -> web.StreamResponse:
    raise errors.InvalidKey("key must not be empty")


def _check_params(request: web.Request, allowed: frozenset[str]) -> None:
    params.serving(request, allowed)
    keys.validate_user_bucket(request.match_info["bucket"])  # system buckets are not the API's


def _name(request: web.Request) -> keys.ObjectName:
    """The name from the raw path, percent-decoded once (dfsring.http.params.path_tail)."""
    return validate.user_name(*params.path_tail(request, PREFIX))


def _level(request: web.Request, param: str, default: int, n: int) -> int:
    raw = params.level_text(request, param, CONSISTENCY_HEADER)
    return quorum.resolve_level(raw, n, default)


def _sloppy(request: web.Request) -> bool:
    raw = request.query.get("sloppy", "true").lower()
    if raw not in ("true", "false"):
        raise errors.BadRequest("sloppy must be true or false")
    return raw == "true"


def _context(request: web.Request) -> VersionVector:
    """The client's context: a token this cluster could have issued, or 400 invalid-context
    (a forged actor or counter would let a write cover dots never minted, dfsring.core.actors)."""
    token = request.headers.get(CONTEXT_HEADER, "")
    context = vclock.decode_context(token.strip())
    problem_ = actors.context_problem(context, wall_ms())
    if problem_ is not None:
        raise errors.InvalidContext(f"context token: {problem_}")
    return context


def _content_type(request: web.Request) -> str:
    return validate.content_type(request.headers.get("Content-Type",
                                                     "application/octet-stream"))


def _write_headers(result_versions: Versions, acks: int, n: int, hinted: int) -> dict[str, str]:
    return {CONTEXT_HEADER: vclock.encode_context(result_versions.clock),
            "Dfs-Acks": f"{acks}/{n}", "Dfs-Hinted": str(hinted)}


async def put_value(request: web.Request) -> web.StreamResponse:
    return await _write(request, delete=False)


async def delete_value(request: web.Request) -> web.StreamResponse:
    return await _write(request, delete=True)


async def _write(request: web.Request, *, delete: bool) -> web.StreamResponse:
    cfg, coord = request.app[CONFIG], request.app[COORDINATOR]
    _check_params(request, _PUT_PARAMS)
    name = _name(request)
    w = _level(request, "w", cfg.w, coord.n)
    sloppy = _sloppy(request)
    context = _context(request)
    if delete:
        value, ctype = None, ""
        if CONTEXT_HEADER not in request.headers:
            # "Delete this key" means the versions there now: take them from a quorum read,
            # or the tombstone would be a mere sibling of the value it was meant to remove.
            context = (await coord.get(name, r=min(cfg.r, coord.n))).clock
    else:
        ctype = _content_type(request)
        value = await read_body(request, cfg.max_value_size, cfg.request_timeout)
    result = await coord.put(name, context, value, ctype, w=w, sloppy=sloppy)
    return web.Response(status=204,
                        headers=_write_headers(result.versions, result.acks, result.n,
                                               result.hinted))


async def get_value(request: web.Request) -> web.StreamResponse:
    cfg, coord = request.app[CONFIG], request.app[COORDINATOR]
    _check_params(request, _GET_PARAMS)
    name = _name(request)
    r = _level(request, "r", cfg.r, coord.n)
    versions = await coord.get(name, r=r, sloppy=_sloppy(request))
    return versions_response(versions, request)


def versions_response(versions: Versions, request: web.Request) -> web.StreamResponse:
    """200 for one live value, 300 for siblings, 404 (with context if a tombstone) otherwise."""
    ctx = {CONTEXT_HEADER: vclock.encode_context(versions.clock)} if versions.siblings else {}
    live = versions.live()
    if not live:
        return problem(404, "not-found", "Not found", "no live value under this key",
                       request[REQUEST_ID], headers=ctx)
    if len(live) == 1:
        sib = live[0]
        return web.Response(status=200, body=sib.value, headers={
            **ctx, "Content-Type": served_type(sib.content_type),
            "Last-Modified": _http_date(sib.modified_ms)})
    doc = {"context": ctx[CONTEXT_HEADER], "siblings": [_sibling_json(s) for s in live]}
    return web.Response(status=300, body=orjson.dumps(doc), headers=ctx,
                        content_type="application/json")


def served_type(stored: str) -> str:
    """The stored content type, unless it could not have passed dfsring.core.validate (a
    record from before that check, issue 23): a CR or LF in a header cut every read short."""
    try:
        return validate.content_type(stored) if stored else vclock.DEFAULT_CONTENT_TYPE
    except errors.BadRequest:
        return vclock.DEFAULT_CONTENT_TYPE


def _sibling_json(sib: Sibling) -> dict[str, str]:
    return {"value_b64": base64.b64encode(sib.value or b"").decode(),
            "content_type": sib.content_type, "modified": rfc3339(sib.modified_ms)}


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _http_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


async def list_keys(request: web.Request) -> web.StreamResponse:
    _check_params(request, _LIST_PARAMS)
    bucket = keys.validate_bucket(request.match_info["bucket"])
    prefix_s = request.query.get("prefix", "")
    prefix = prefix_s.encode("utf-8", "surrogatepass")
    if len(prefix) > keys.MAX_KEY_BYTES:
        raise errors.BadRequest("prefix longer than the longest key")
    limit = parse_limit(request.query.get("limit"))
    after = decode_cursor(request.query.get("cursor"))
    found = await request.app[COORDINATOR].list_keys(bucket, prefix, after, limit + 1)
    page, more = found[:limit], len(found) > limit
    cursor = encode_cursor(page[-1][0]) if more and page else None
    return web.json_response({"keys": [k.decode("utf-8", "replace") for _, k in page],
                              "cursor": cursor}, dumps=lambda o: orjson.dumps(o).decode())


def parse_limit(raw: str | None) -> int:
    """ASCII digits only (``isdigit`` takes "²", which ``int`` refuses: a 500 once)."""
    if raw is None:
        return DEFAULT_LIST_LIMIT
    return params.ascii_int(raw, "limit", 1, MAX_LIST_LIMIT)


def encode_cursor(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_cursor(raw: str | None) -> bytes | None:
    return params.b64_cursor(raw, keys.MAX_KEY_BYTES)
