"""Authentication and authorization of every client request (issue 18 parts 1-3, 7).

Placed after the request-id middleware (dfsring.http.middleware), so every refusal is a
problem document with a request id. For each request:

1. The route's need comes from one table, ``ROUTE_NEEDS`` (method, route) -> Need. A route
   missing from it is refused (fail closed); tests/component/test_auth_routes.py enumerates
   the real app's routes so a new one cannot slip through. Peer messages are not routed
   here at all: they have their own listener (``--peer-port``) and the cluster secret.
2. Credentials (dfsring.core.authparse): ``Authorization: Bearer ACCESS:SECRET``,
   ``X-Api-Key: ACCESS:SECRET``, or AWS Signature V4 in the Authorization header or a
   presigned query (dfsring.core.sigv4, service ``s3``, region ``--s3-region``), checked
   against the raw path and query as received. A header-signed request that changes
   something (any method but GET/HEAD/OPTIONS) is refused if its signature was seen before
   within twice the clock-skew bound (a replay); presigned URLs are meant to be reused until
   they expire. A signed payload hash is checked against the body as it is read
   (dfsring.http.body). Two methods at once, or a malformed value, is refused like bad
   credentials.
3. The root credentials (``--admin-access-key/--admin-secret-key``) are admin and owner of
   every bucket; other keys are checked against the key table
   (dfsring.replication.access.service: constant-time, one answer for every bad case).
4. dfsring.core.access.decide: no principal -> 401 unauthenticated; a principal lacking
   the grant -> 403 forbidden naming it (``missing_grant``), worded the same whether or not
   the bucket exists.

Failed authentications are counted (``dfsring_auth_refusals_total{reason}``) and limited per
source address with a token bucket: past ``FAILURE_BURST`` failures (refilled at
``FAILURE_RATE`` per second) a source's credentials are not even checked for the
Retry-After it is told (429). Every refusal, and every admin or owner action, is one line
of the ``dfsring.audit`` logger: who, what, from where, the decision, why, the status and
the request id, never a secret.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from dfsring.core import keys, sigv4
from dfsring.core.access import Need, Principal, Role, decide
from dfsring.core.authparse import UNKNOWN_KEY_SECRET, KeyPair, SigV4Credential, parse_credentials
from dfsring.core.ratelimit import KeyedBuckets
from dfsring.core.replay import ReplayCache
from dfsring.foundation import errors
from dfsring.foundation.config import NodeConfig
from dfsring.http.body import SIGNED_PAYLOAD
from dfsring.http.console.sessions import CSRF_HEADER, SESSION_COOKIE, SessionTable
from dfsring.http.middleware import REQUEST_ID, Handler
from dfsring.replication.access.service import AccessService

audit = logging.getLogger("dfsring.audit")
ACCESS = web.AppKey("access", AccessService)
PRINCIPAL = web.RequestKey("principal", Principal)
Guard = Need
FAILURE_RATE = 1.0  # failed authentications per second per source, refilled
FAILURE_BURST = 20.0
MAX_SOURCES = 10_000
MAX_SKEW_S = 900.0  # as S3: a signed request's X-Amz-Date within 15 minutes of ours
REPLAY_ENTRIES = 100_000  # signatures of changing requests remembered (see ReplayCache)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STREAMING = "STREAMING-"
REFUSED = "credentials not accepted"

_R, _W, _O, _A, _N = Need.READ, Need.WRITE, Need.OWNER, Need.ADMIN, Need.AUTHENTICATED
_KV_KEY, _FILE_PATH = "/v1/kv/{bucket}/{key}", "/v1/files/{bucket}/{path}"


def _reads(route: str, need: Need) -> dict[tuple[str, str], Guard]:
    return {("GET", route): need, ("HEAD", route): need}


ROUTE_NEEDS: dict[tuple[str, str], Guard] = {
    **_reads("/health", Need.PUBLIC),
    **_reads("/metrics", Need.PUBLIC),  # ADMIN with --metrics-auth (need_of)
    **_reads("/v1/node/stats", _N),
    **_reads("/v1/cluster/members", _N),
    **_reads("/v1/cluster/ring", _N),
    **_reads("/v1/cluster/transfers", _N),
    **_reads("/v1/cluster/dashboard", _N),  # the console (dfsring.http.console)
    **_reads("/v1/node/figures", _N),
    ("POST", "/v1/console/login"): Need.PUBLIC,  # checks the key itself, failures limited
    ("POST", "/v1/console/logout"): _N,
    **_reads("/v1/console/session", _N),
    **_reads("/v1/console/buckets", _N),
    **_reads("/v1/console/chunks/{bucket}/{path}", _R),
    **_reads("/ui", Need.PUBLIC),
    **_reads("/ui/{asset}", Need.PUBLIC),
    **_reads("/v1/openapi.json", Need.PUBLIC),
    **_reads("/v1/docs", Need.PUBLIC),
    **_reads("/v1/docs/{asset}", Need.PUBLIC),
    ("POST", "/v1/cluster/leave"): _A,
    ("POST", "/v1/cluster/remove/{node_id}"): _A,
    ("POST", "/v1/cluster/join"): _A,
    **_reads("/v1/node/local/kv/{bucket}/{key}", _A),
    **_reads("/v1/node/local/kv/{bucket}", _A),
    ("POST", "/v1/node/gc"): _A,
    **_reads("/v1/node/chunks", _A),
    **_reads(_KV_KEY, _R), ("PUT", _KV_KEY): _W, ("DELETE", _KV_KEY): _W,
    **_reads("/v1/kv/{bucket}", _R),
    ("*", "/v1/kv/{bucket}/"): _R,  # only ever answers 400 (an empty key)
    **_reads(_FILE_PATH, _R), ("PUT", _FILE_PATH): _W, ("DELETE", _FILE_PATH): _W,
    **_reads("/v1/files/{bucket}", _R),
    ("*", "/v1/files/{bucket}/"): _R,  # only ever answers 400 (an empty path)
    ("POST", "/v1/admin/keys"): _A,
    **_reads("/v1/admin/keys", _A),
    **_reads("/v1/admin/keys/{access_key}", _A),
    ("DELETE", "/v1/admin/keys/{access_key}"): _A,
    ("POST", "/v1/admin/keys/{access_key}/{action}"): _A,
    ("PUT", "/v1/buckets/{bucket}"): _A,
    **_reads("/v1/buckets/{bucket}", _O),
    ("PUT", "/v1/buckets/{bucket}/settings"): _O,
    ("PUT", "/v1/buckets/{bucket}/grants/{access_key}"): _O,
    ("DELETE", "/v1/buckets/{bucket}/grants/{access_key}"): _O,
    ("POST", "/v1/admin/tls/reload"): _A,
    **_reads("/v1/buckets/{bucket}/cors", _O),
    ("PUT", "/v1/buckets/{bucket}/cors"): _O,
    ("DELETE", "/v1/buckets/{bucket}/cors"): _O,
}


def auth_enforced(cfg: NodeConfig) -> bool:
    """Always, unless the operator chose --insecure (a node does not start without root
    credentials otherwise, dfsring.node)."""
    return not cfg.insecure


def root_problem(cfg: NodeConfig) -> str | None:
    """Why the root credentials cannot work, if they cannot: one given without the other
    would leave a node that refuses everyone, or looks configured and is not."""
    if bool(cfg.admin_access_key) != bool(cfg.admin_secret_key):
        return ("give both --admin-access-key and --admin-secret-key (or "
                "DFSRING_ADMIN_ACCESS_KEY and DFSRING_ADMIN_SECRET_KEY), or neither")
    return None


def route_of(request: web.Request) -> tuple[str, str] | None:
    """(method, canonical route) of a matched request; None when no route matched (the
    router answers 404/405 itself, which says nothing the API docs do not)."""
    info = request.match_info
    if info.http_exception is not None:
        return None
    route = info.route
    resource = route.resource
    if resource is None:
        return None
    return route.method, resource.canonical


def need_of(route: tuple[str, str], cfg: NodeConfig) -> Guard:
    """The route's need; Forbidden("admin") for a route not in the table (fail closed)."""
    guard = ROUTE_NEEDS.get(route)
    if guard is None:
        raise errors.Forbidden("admin", "this route has no access rule; refused")
    if route[1] == "/metrics" and cfg.metrics_auth:
        return Need.ADMIN
    return guard


class AuthMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refusals = Counter("dfsring_auth_refusals", "requests refused by authentication "
                                "or authorization, by reason", ("reason",), registry=registry)


class FailureLimit:
    """Failed authentications per source address, as a token bucket per source. A source
    whose bucket holds less than one token is refused without its credentials being
    checked, until the refill gives it one: the bucket itself says for how long."""

    def __init__(self, rate: float = FAILURE_RATE, burst: float = FAILURE_BURST,
                 max_sources: int = MAX_SOURCES) -> None:
        self.buckets = KeyedBuckets(rate, burst, max_sources)

    def blocked_for(self, source: str, now_s: float) -> float:
        short = 1.0 - self.buckets.tokens(source, now_s)
        return max(0.0, short / self.buckets.rate)

    def failed(self, source: str, now_s: float) -> float:
        """Record a failure; the seconds the source is now blocked for (0: not blocked)."""
        return self.buckets.take(source, 1.0, now_s)


def log_audit(request: web.Request, principal: Principal | None, decision: str, reason: str,
              status: int, claimed: str | None = None) -> None:
    """One audit line. ``claimed``: the access key id a refused caller gave (never its
    secret), so that guessing at one key shows in the log."""
    route = route_of(request)
    audit.info("access", extra={"fields": {
        "who": principal.access_key if principal is not None else "anonymous",
        "claimed": claimed[:64] if claimed else "-",
        "method": request.method, "route": route[1] if route else "unmatched",
        "path": request.path[:200], "bucket": request.match_info.get("bucket", "-"),
        "peer": request.remote or "-", "decision": decision, "reason": reason,
        "status": status, "request_id": request.get(REQUEST_ID, "-")}})


Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def make_auth_middleware(cfg: NodeConfig, access: AccessService, metrics: AuthMetrics,
                         limit: FailureLimit | None = None,
                         clock: Callable[[], float] = time.monotonic,
                         wall_clock: Callable[[], float] = time.time,
                         sessions: SessionTable | None = None) -> Middleware:
    """``sessions``: the console's session table (dfsring.http.console.sessions); a request with
    no credentials but its session cookie is the session's key, and one that changes
    something must also carry the CSRF header. Its ``clock`` is this ``clock``."""
    failures = limit or FailureLimit()
    replays = ReplayCache(REPLAY_ENTRIES, 2 * MAX_SKEW_S)

    def refuse(request: web.Request, principal: Principal | None, reason: str,
               exc: errors.DfsError, claimed: str | None = None) -> errors.DfsError:
        metrics.refusals.labels(reason).inc()
        log_audit(request, principal, "refused", reason, exc.status, claimed)
        return exc

    def check_signature(request: web.Request, cred: SigV4Credential, secret: str) -> str:
        return sigv4.verify(cred, method=request.method, raw_path=request.raw_path,
                            raw_query=request.rel_url.raw_query_string,
                            headers=list(request.headers.items()), secret_key=secret,
                            region=cfg.s3_region, now_s=wall_clock(),
                            max_skew_s=MAX_SKEW_S)

    async def signed(request: web.Request, cred: SigV4Credential) -> Principal:
        """The principal of a SigV4-signed request. An unknown key is checked against a
        dummy secret, so it fails the same way, after the same work, as a wrong one; a
        failed check re-reads the key once (a rotation elsewhere)."""
        found = await access.signing_key(cred.access_key)
        try:
            payload = check_signature(request, cred, found[1] if found else UNKNOWN_KEY_SECRET)
        except errors.Unauthenticated as exc:
            if str(exc) != sigv4.SIGNATURE_MISMATCH or found is None:
                raise
            found = await access.signing_key(cred.access_key, reread=True)
            payload = check_signature(request, cred, found[1] if found else UNKNOWN_KEY_SECRET)
        if found is None:
            raise errors.Unauthenticated(sigv4.SIGNATURE_MISMATCH)
        if payload.startswith(STREAMING):
            raise errors.BadRequest("aws-chunked (STREAMING-*) payloads are not supported; "
                                    "send UNSIGNED-PAYLOAD or the body's SHA-256")
        if (not cred.presigned and request.method not in SAFE_METHODS
                and replays.check_and_record(cred.signature, clock())):
            raise errors.Unauthenticated("replayed request: this signature was already used")
        if payload != "UNSIGNED-PAYLOAD":
            request[SIGNED_PAYLOAD] = payload.lower()
        return found[0]

    async def from_session(request: web.Request) -> Principal | None:
        """The console session's principal; None without a session cookie."""
        token = request.cookies.get(SESSION_COOKIE)
        if sessions is None or not token:
            return None
        session = sessions.get(token, clock())
        if session is None:
            raise refuse(request, None, "bad_session", errors.Unauthenticated(
                "the console session expired or is unknown; log in again"))
        if (request.method not in SAFE_METHODS
                and not session.csrf_ok(request.headers.get(CSRF_HEADER))):
            raise refuse(request, None, "csrf", errors.Forbidden(
                "csrf", f"a session's changing request needs the {CSRF_HEADER} header"),
                session.access_key)
        try:
            return await access.authenticate(session.access_key, session.secret_key)
        except errors.Unauthenticated:
            sessions.drop(token)  # the key was disabled, deleted or rotated
            raise refuse(request, None, "bad_session", errors.Unauthenticated(REFUSED),
                         session.access_key) from None

    async def authenticate(request: web.Request) -> Principal | None:
        try:
            creds = parse_credentials(request.headers, list(request.query.items()))
        except errors.Unauthenticated as exc:
            raise refuse(request, None, "malformed", exc) from None
        if creds is None:
            return await from_session(request)
        source = request.remote or "-"
        wait = failures.blocked_for(source, clock())
        if wait > 0:
            raise refuse(request, None, "rate_limited", errors.TooManyRequests(
                "too many failed authentications from this address", wait), creds.access_key)
        try:
            if isinstance(creds, KeyPair):
                return await access.authenticate(creds.access_key, creds.secret_key)
            return await signed(request, creds)
        except errors.Unauthenticated as exc:
            wait = failures.failed(source, clock())
            if wait > 0:
                raise refuse(request, None, "rate_limited", errors.TooManyRequests(
                    "too many failed authentications from this address", wait),
                    creds.access_key) from None
            # SigV4's details (skew, expiry, replay, mismatch) say nothing of the key
            shown = exc if isinstance(creds, SigV4Credential) else errors.Unauthenticated(REFUSED)
            raise refuse(request, None, "bad_credentials", shown, creds.access_key) from None

    async def authorize(request: web.Request, need: Need) -> Principal | None:
        principal = await authenticate(request)
        bucket = request.match_info.get("bucket")
        if bucket is not None:
            keys.validate_bucket(bucket)  # 400 invalid-key, before any table read
        settings = None  # read only when it can matter: a read the grants do not allow
        if (need is Need.READ and bucket is not None
                and not (principal and (principal.admin
                                        or principal.grants.get(bucket, 0) >= Role.READ))):
            settings = await access.bucket_settings(bucket)
        try:
            decide(principal, need, bucket, settings)
        except errors.Unauthenticated as exc:
            raise refuse(request, principal, "missing", exc) from None
        except errors.Forbidden as exc:
            raise refuse(request, principal, "forbidden", exc) from None
        return principal

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_of(request)
        if route is None or not auth_enforced(cfg):
            return await handler(request)
        try:
            guard = need_of(route, cfg)
        except errors.Forbidden as exc:
            raise refuse(request, None, "no_rule", exc) from None
        if guard is Need.PUBLIC:
            return await handler(request)
        principal = await authorize(request, guard)
        request[PRINCIPAL] = principal
        if guard not in (Need.ADMIN, Need.OWNER):
            return await handler(request)
        return await _audited(request, handler, principal)

    return auth_middleware


async def _audited(request: web.Request, handler: Handler,
                   principal: Principal | None) -> web.StreamResponse:
    """Run an admin or owner action and write its audit line with the status it got."""
    try:
        resp = await handler(request)
    except errors.DfsError as exc:
        log_audit(request, principal, "allowed", "failed", errors.public_class(exc).status)
        raise
    except web.HTTPException as exc:
        log_audit(request, principal, "allowed", "failed", exc.status)
        raise
    log_audit(request, principal, "allowed", "done", resp.status)
    return resp
