"""The admin API of keys and buckets (docs/API.md "Access"; issue 18 parts 1, 2, 8).

What each route needs is in dfsring.http.auth.ROUTE_NEEDS: keys are the admin's, a bucket's
grants and settings its owner's, creating a bucket the admin's. Bodies are small JSON
objects, read with a size cap and checked field by field (400 with the field named). A
secret is in an answer exactly twice in its life: the one that creates the key and the one
that rotates it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from dfsring.core import accessrecords as ar
from dfsring.core import cors, keys
from dfsring.core.access import Principal, Role
from dfsring.core.accessrecords import BucketRecord, KeyRecord
from dfsring.foundation import errors
from dfsring.http.appkeys import CONFIG
from dfsring.http.auth import ACCESS, PRINCIPAL
from dfsring.http.body import read_body
from dfsring.http.problems import json_doc
from dfsring.replication.access.service import NewSecret

MAX_BODY = 4096
MAX_CORS_BODY = 64 * 1024
MAX_EXPIRES_S = 10 * 366 * 86_400
ROOT_OWNER = "root"
_KEY_ACTIONS = ("disable", "enable", "rotate", "limits")


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/admin/keys", create_key)
    app.router.add_get("/v1/admin/keys", list_keys)
    app.router.add_get("/v1/admin/keys/{access_key}", show_key)
    app.router.add_delete("/v1/admin/keys/{access_key}", delete_key)
    app.router.add_post("/v1/admin/keys/{access_key}/{action}", key_action)
    app.router.add_put("/v1/buckets/{bucket}", create_bucket)
    app.router.add_get("/v1/buckets/{bucket}", show_bucket)
    app.router.add_put("/v1/buckets/{bucket}/settings", bucket_settings)
    app.router.add_put("/v1/buckets/{bucket}/grants/{access_key}", put_grant)
    app.router.add_delete("/v1/buckets/{bucket}/grants/{access_key}", delete_grant)
    app.router.add_get("/v1/buckets/{bucket}/cors", show_cors)
    app.router.add_put("/v1/buckets/{bucket}/cors", put_cors)
    app.router.add_delete("/v1/buckets/{bucket}/cors", delete_cors)


# --- documents -----------------------------------------------------------------------------


def _time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def key_doc(rec: KeyRecord) -> dict[str, Any]:
    """A key as the API shows it: never its secret, sealed or not."""
    return {"access_key": rec.access_key, "name": rec.name, "created": _time(rec.created_ms),
            "expires": _time(rec.expires_ms), "disabled": rec.disabled, "admin": rec.admin,
            "grants": {b: ar.role_name(r) for b, r in sorted(rec.grants.items())},
            "rotation": rec.rotation, "rate": rec.rate, "bandwidth": rec.bandwidth}


def _secret_doc(new: NewSecret) -> dict[str, Any]:
    return {**key_doc(new.record), "secret_key": new.secret,
            "warning": "the secret is shown only now: store it safely"}


def bucket_doc(bucket: str, rec: BucketRecord | None, grants: dict[str, Role]) -> dict[str, Any]:
    return {"bucket": bucket, "created": _time(rec.created_ms) if rec else None,
            "owner": rec.owner if rec else None,
            "public_read": rec.public_read if rec else False,
            "cors": None if rec is None or rec.cors is None else cors.rules_doc(rec.cors),
            "grants": {k: ar.role_name(r) for k, r in sorted(grants.items())}}


# --- bodies --------------------------------------------------------------------------------


async def _body(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    raw = await read_body(request, MAX_BODY, request.app[CONFIG].request_timeout)
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise errors.BadRequest("the body must be a JSON object")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise errors.BadRequest(f"unknown field(s) {', '.join(unknown)[:200]}; allowed: "
                                f"{', '.join(sorted(allowed))}")
    return doc


def _bool_field(doc: dict[str, Any], name: str, default: bool) -> bool:
    value = doc.get(name, default)
    if type(value) is not bool:
        raise errors.BadRequest(f"{name} must be true or false")
    return value


def _access_key(request: web.Request) -> str:
    text = request.match_info["access_key"]
    try:
        return ar.validate_access_key(text)
    except ValueError as exc:
        raise errors.BadRequest(str(exc)) from exc


def _bucket(request: web.Request) -> str:
    bucket = request.match_info["bucket"]
    keys.validate_user_bucket(bucket)
    return bucket


def _principal(request: web.Request) -> Principal | None:
    found = request.get(PRINCIPAL)
    return found if isinstance(found, Principal) else None


# --- keys ----------------------------------------------------------------------------------


async def create_key(request: web.Request) -> web.Response:
    doc = await _body(request, frozenset({"name", "expires_in_s", "admin"}))
    try:
        name = ar.validate_name(doc.get("name", ""))
    except ValueError as exc:
        raise errors.BadRequest(str(exc)) from exc
    expires = doc.get("expires_in_s")
    if expires is not None and (type(expires) is not int or not 1 <= expires <= MAX_EXPIRES_S):
        raise errors.BadRequest(f"expires_in_s must be an integer from 1 to {MAX_EXPIRES_S}")
    new = await request.app[ACCESS].create_key(name=name, expires_in_s=expires,
                                               admin=_bool_field(doc, "admin", False))
    return json_doc(_secret_doc(new), 201)


async def list_keys(request: web.Request) -> web.Response:
    found = await request.app[ACCESS].list_keys()
    return json_doc({"keys": [key_doc(r) for r in found]})


async def show_key(request: web.Request) -> web.Response:
    return json_doc(key_doc(await request.app[ACCESS].get_key(_access_key(request))))


async def delete_key(request: web.Request) -> web.Response:
    await request.app[ACCESS].delete_key(_access_key(request))
    return web.Response(status=204)


async def key_action(request: web.Request) -> web.Response:
    access_key, action = _access_key(request), request.match_info["action"]
    service = request.app[ACCESS]
    if action == "rotate":
        return json_doc(_secret_doc(await service.rotate(access_key)))
    if action == "limits":
        return json_doc(key_doc(await service.set_limits(access_key,
                                                         **await _limits_body(request))))
    if action not in _KEY_ACTIONS:
        raise errors.NotFound(f"no key action {action[:40]!r}; one of {', '.join(_KEY_ACTIONS)}")
    return json_doc(key_doc(await service.set_disabled(access_key, action == "disable")))


async def _limits_body(request: web.Request) -> dict[str, Any]:
    """{"rate": requests/s, "bandwidth": bytes/s}: each optional, null for the node's
    (--key-rate, --key-bandwidth), 0 for none. A field left out is left as it is."""
    doc = await _body(request, frozenset({"rate", "bandwidth"}))
    if not doc:
        raise errors.BadRequest("give rate and/or bandwidth (null: the node's, 0: none)")
    out: dict[str, Any] = {}
    if "rate" in doc:
        rate = doc["rate"]
        if rate is not None and (type(rate) not in (int, float) or not 0 <= rate <= ar.MAX_RATE):
            raise errors.BadRequest(f"rate must be null or requests/s from 0 to {ar.MAX_RATE:g}")
        out["rate"] = None if rate is None else float(rate)
    if "bandwidth" in doc:
        bandwidth = doc["bandwidth"]
        if bandwidth is not None and (type(bandwidth) is not int
                                      or not 0 <= bandwidth <= ar.MAX_BANDWIDTH):
            raise errors.BadRequest("bandwidth must be null or bytes/s from 0 to "
                                    f"{ar.MAX_BANDWIDTH}")
        out["bandwidth"] = bandwidth
    return out


# --- buckets -------------------------------------------------------------------------------


async def create_bucket(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    doc = await _body(request, frozenset({"public_read", "owner"}))
    principal = _principal(request)
    owner = doc.get("owner", principal.access_key if principal else ROOT_OWNER)
    if not isinstance(owner, str) or len(owner) > ar.MAX_NAME or not owner.isprintable():
        raise errors.BadRequest("owner must be an access key id")
    record = await request.app[ACCESS].create_bucket(
        bucket, owner=owner, public_read=_bool_field(doc, "public_read", False))
    grants = {owner: Role.OWNER} if ar.ACCESS_KEY_RE.fullmatch(owner) else {}
    return json_doc(bucket_doc(bucket, record, grants), 201)


async def show_bucket(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    record, grants = await request.app[ACCESS].get_bucket(bucket)
    return json_doc(bucket_doc(bucket, record, grants))


async def bucket_settings(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    doc = await _body(request, frozenset({"public_read"}))
    if "public_read" not in doc:
        raise errors.BadRequest("public_read is required")
    principal = _principal(request)
    record = await request.app[ACCESS].set_public(
        bucket, _bool_field(doc, "public_read", False),
        owner=principal.access_key if principal else ROOT_OWNER)
    return json_doc(bucket_doc(bucket, record, {}))


async def put_grant(request: web.Request) -> web.Response:
    bucket, access_key = _bucket(request), _access_key(request)
    doc = await _body(request, frozenset({"role"}))
    try:
        role = ar.parse_role(doc.get("role"))
    except ValueError as exc:
        raise errors.BadRequest(str(exc)) from exc
    record = await request.app[ACCESS].set_grant(bucket, access_key, role)
    return json_doc({"bucket": bucket, "access_key": access_key,
                     "role": ar.role_name(role), "key": key_doc(record)})


async def delete_grant(request: web.Request) -> web.Response:
    bucket, access_key = _bucket(request), _access_key(request)
    await request.app[ACCESS].set_grant(bucket, access_key, None)
    return web.Response(status=204)


# --- CORS ----------------------------------------------------------------------------------


def _cors_doc(bucket: str, rules: tuple[cors.CorsRule, ...] | None) -> dict[str, Any]:
    """``rules`` null: the bucket has none of its own and the node's (--cors-*) apply."""
    return {"bucket": bucket, "rules": None if rules is None else cors.rules_doc(rules)}


async def show_cors(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    record, _ = await request.app[ACCESS].tables.read_bucket(bucket)
    return json_doc(_cors_doc(bucket, None if record is None else record.cors))


async def put_cors(request: web.Request) -> web.Response:
    """Replace the bucket's rules with the body's: a JSON list of rules (or {"rules": [...]}),
    at most cors.MAX_RULES of at most cors.MAX_ORIGINS origins; an empty list allows no
    origin at all on this bucket, whatever the node's options say."""
    bucket = _bucket(request)
    raw = await read_body(request, MAX_CORS_BODY, request.app[CONFIG].request_timeout)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.BadRequest(f"the body is not JSON: {exc}") from exc
    try:
        rules = cors.parse_rules(doc)
    except ValueError as exc:
        raise errors.BadRequest(str(exc)) from exc
    if len(orjson.dumps(cors.rules_doc(rules))) > cors.MAX_ENCODED:
        raise errors.BadRequest(f"the rules take more than {cors.MAX_ENCODED} bytes; use fewer "
                                "or shorter origins (a *.domain pattern covers many)")
    principal = _principal(request)
    record = await request.app[ACCESS].set_cors(
        bucket, rules, owner=principal.access_key if principal else ROOT_OWNER)
    return json_doc(_cors_doc(bucket, record.cors))


async def delete_cors(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    principal = _principal(request)
    await request.app[ACCESS].set_cors(bucket, None,
                                       owner=principal.access_key if principal else ROOT_OWNER)
    return web.Response(status=204)
