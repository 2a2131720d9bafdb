"""The console's own routes: /ui and its assets, login/logout, who-am-I, bucket list.

Login takes an API key (access key + secret) as JSON, checks it with the access service
like any credential, and answers with two cookies (dfsring.http.console.sessions): ``dfs_session``
(HttpOnly, SameSite=Strict, Secure when the node speaks TLS) and ``dfs_csrf`` (readable by
the page, sent back as the X-Csrf-Token header). Failed logins count against the same kind of
per-source limit as failed credentials (dfsring.http.auth.FailureLimit), so the form is no
faster oracle than the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from dfsring.core import accessrecords as ar
from dfsring.core.access import Principal, Role
from dfsring.foundation import errors
from dfsring.http.appkeys import CONFIG, COORDINATOR, STATE
from dfsring.http.auth import ACCESS, PRINCIPAL, FailureLimit
from dfsring.http.body import read_body
from dfsring.http.console.assets import ASSETS, SECURITY_HEADERS, read_asset
from dfsring.http.console.sessions import CSRF_COOKIE, SESSION_COOKIE, SessionTable
from dfsring.http.problems import json_doc

SESSIONS = web.AppKey("console_sessions", SessionTable)
LOGIN_LIMIT = web.AppKey("console_login_limit", FailureLimit)
MAX_LOGIN_BODY = 4096
LOGIN_BODY_WAIT_S = 10.0
MAX_BUCKETS = 1000
UI_ASSETS = frozenset({"app.js", "app.css"})


def setup(app: web.Application, sessions: SessionTable) -> None:
    app[SESSIONS] = sessions
    app[LOGIN_LIMIT] = FailureLimit()
    app.router.add_get("/ui", page)
    app.router.add_get("/ui/{asset}", asset)
    app.router.add_post("/v1/console/login", login)
    app.router.add_post("/v1/console/logout", logout)
    app.router.add_get("/v1/console/session", whoami)
    app.router.add_get("/v1/console/buckets", buckets)


def _static(name: str) -> web.Response:
    return web.Response(body=read_asset(name), content_type=ASSETS[name], charset="utf-8",
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


async def page(request: web.Request) -> web.Response:
    return _static("index.html")


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name not in UI_ASSETS:
        raise errors.NotFound("no such console asset")
    return _static(name)


def principal_doc(principal: Principal) -> dict[str, Any]:
    return {"access_key": principal.access_key, "admin": principal.admin,
            "grants": {b: Role(r).name.lower() for b, r in sorted(principal.grants.items())}}


async def _login_body(request: web.Request) -> tuple[str, str]:
    """The key pair of a login. JSON only: a cross-site HTML form cannot send that content
    type without a CORS preflight, so no other site can log a browser in (login CSRF)."""
    if request.content_type != "application/json":
        raise errors.BadRequest("log in with Content-Type: application/json")
    raw = await read_body(request, MAX_LOGIN_BODY, LOGIN_BODY_WAIT_S)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.BadRequest("the body must be JSON: {access_key, secret_key}") from None
    if not isinstance(doc, dict) or set(doc) != {"access_key", "secret_key"}:
        raise errors.BadRequest("the body must be exactly {access_key, secret_key}")
    access, secret = doc["access_key"], doc["secret_key"]
    if not (isinstance(access, str) and isinstance(secret, str) and 0 < len(access) <= 128
            and 0 < len(secret) <= 256):
        raise errors.BadRequest("access_key and secret_key must be non-empty strings")
    return access, secret


async def login(request: web.Request, clock: Callable[[], float] = time.monotonic
                ) -> web.Response:
    limit, source = request.app[LOGIN_LIMIT], request.remote or "-"
    wait = limit.blocked_for(source, clock())
    if wait > 0:
        raise errors.TooManyRequests("too many failed logins from this address", wait)
    access_key, secret = await _login_body(request)
    try:
        principal = await request.app[ACCESS].authenticate(access_key, secret)
    except errors.Unauthenticated:
        limit.failed(source, clock())
        raise errors.Unauthenticated("credentials not accepted") from None
    session = request.app[SESSIONS].create(access_key, secret, clock())
    resp = json_doc({**principal_doc(principal), "csrf": session.csrf})
    secure = request.secure or bool(request.app[CONFIG].tls_cert)
    max_age = int(request.app[SESSIONS].ttl_s)
    resp.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="Strict",
                    secure=secure, path="/", max_age=max_age)
    resp.set_cookie(CSRF_COOKIE, session.csrf, httponly=False, samesite="Strict",
                    secure=secure, path="/", max_age=max_age)
    return resp


async def logout(request: web.Request) -> web.Response:
    request.app[SESSIONS].drop(request.cookies.get(SESSION_COOKIE))
    resp = web.Response(status=204)
    resp.del_cookie(SESSION_COOKIE, path="/")
    resp.del_cookie(CSRF_COOKIE, path="/")
    return resp


def _principal(request: web.Request) -> Principal:
    principal: Principal | None = request.get(PRINCIPAL)
    if principal is None:  # only with --insecure: no credentials at all
        return Principal("anonymous", admin=True)
    return principal


async def whoami(request: web.Request) -> web.Response:
    doc = principal_doc(_principal(request))
    doc["node_id"] = request.app[STATE].node_id
    return json_doc(doc)


async def buckets(request: web.Request) -> web.Response:
    """An admin sees every bucket of the bucket table (up to MAX_BUCKETS); any other key the
    buckets it holds a grant on, with its role: what the file browser offers."""
    principal = _principal(request)
    if not principal.admin:
        rows = [{"name": b, "role": Role(r).name.lower()}
                for b, r in sorted(principal.grants.items())]
        return json_doc({"buckets": rows, "truncated": False})
    found = await request.app[COORDINATOR].list_keys(ar.BUCKETS_BUCKET.encode("ascii"), b"",
                                                    None, MAX_BUCKETS + 1)
    names = [full.decode("utf-8", "replace") for _, full in found]
    rows = [{"name": n, "role": "owner"} for n in names[:MAX_BUCKETS]]
    return json_doc({"buckets": rows, "truncated": len(names) > MAX_BUCKETS})
