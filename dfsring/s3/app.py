"""The S3 listener: one aiohttp application served on ``--s3-port`` (issue 19).

Every request, in order:

1. A request id (``x-amz-request-id``, also ``x-amz-id-2``) on every answer, success or
   error.
2. CORS: a browser preflight (OPTIONS with Origin and Access-Control-Request-Method) is
   answered before authentication from the bucket's rules (else the node's ``--cors-*``);
   any other request with an Origin gets its allow headers on whatever answer it gets
   (dfsring.http.cors's on_response_prepare hook).
3. Admission (``admit``): the operation from method, raw path, Host and sub-resources
   (dfsring.s3.routing), the caller (dfsring.s3.auth), the grant it needs. With
   ``Expect: 100-continue`` admission runs in the route's expect handler, which aiohttp
   calls before the body is sent and before any middleware: a refused upload gets its XML
   error (and the connection closed) without the client ever sending the body; an admitted
   one gets "100 Continue" only then.
4. Per-key request and bandwidth limits (dfsring.http.keylimits, shared with the native
   API: one budget per key per node).
5. The operation's handler (dfsring.s3.handlers_*), which streams bodies both ways.
6. Errors: an S3Error is S3 XML (Code, Message, Resource, RequestId), with no body on HEAD
   and 304; anything else is translated (dfsring.s3.translate), 5xx logged once with the
   request id, never a traceback on the wire.

There is one catch-all route: S3's operations are not paths but (method, path shape,
sub-resource) triples, which routing.resolve maps with one table. /health is not served
here (a bucket named "health" is).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.typedefs import Middleware

from dfsring.core import cors
from dfsring.core.access import Need
from dfsring.core.ratelimit import KeyLimits
from dfsring.foundation.config import NodeConfig
from dfsring.foundation.metrics import NodeMetrics
from dfsring.http.auth import PRINCIPAL
from dfsring.http.cors import CORS_HEADERS, add_cors_headers, node_rules
from dfsring.http.keylimits import LimitMetrics, make_limits_middleware
from dfsring.http.middleware import REQUEST_ID, new_request_id
from dfsring.replication.access.service import AccessService
from dfsring.s3 import (
    handlers_buckets,
    handlers_listing,
    handlers_multipart,
    handlers_objects,
    xml,
)
from dfsring.s3.auth import S3Auth, log_audit
from dfsring.s3.context import REQUEST_ID_HEADERS, Edge, Handler, S3Request
from dfsring.s3.errors import S3Error
from dfsring.s3.model import ObjectLayer
from dfsring.s3.routing import parse_target, resolve
from dfsring.s3.translate import to_s3_error

log = logging.getLogger("dfsring.s3")
EDGE = web.AppKey("s3_edge", Edge)
CONTEXT = web.RequestKey("s3_request", S3Request)  # the admitted request
OPERATION = web.RequestKey("s3_operation", str)  # the operation's name once routed (metrics)
MAX_HEADER_FIELD = 8190
MAX_HEADERS = 100
HANDLERS: Mapping[str, Handler] = {
    **handlers_buckets.HANDLERS, **handlers_objects.HANDLERS,
    **handlers_multipart.HANDLERS, **handlers_listing.HANDLERS,
}


def build_s3_app(cfg: NodeConfig, layer: ObjectLayer, access: AccessService, *,
                 metrics: NodeMetrics | None = None, limits: KeyLimits | None = None,
                 limit_metrics: LimitMetrics | None = None,
                 auth: S3Auth | None = None) -> web.Application:
    """The S3 application (module docstring). ``limits``/``limit_metrics``: the per-key
    limits and their counters, shared with the native API (None: no per-key limits);
    ``metrics``: the node's request counters, labelled ``s3:<Operation>``."""
    registry = metrics.registry if metrics is not None else None
    edge = Edge(cfg, layer, access, auth or S3Auth(cfg, access, registry=registry))
    middlewares: list[Middleware] = [_front(edge, metrics)]
    if limits is not None and limit_metrics is not None:
        # the native API's middleware: the same callable shape, typed as a plain Callable
        middlewares.append(cast(Middleware, make_limits_middleware(limits, limit_metrics)))
    app = web.Application(middlewares=middlewares, client_max_size=1 << 20,
                          handler_args={"max_field_size": MAX_HEADER_FIELD,
                                        "max_headers": MAX_HEADERS})
    app[EDGE] = edge
    app.on_response_prepare.append(add_cors_headers)
    app.router.add_route("*", "/{tail:.*}", _dispatch, expect_handler=_expect(edge))
    return app


async def admit(edge: Edge, request: web.Request) -> S3Request:
    """Route, authenticate and authorize a request (once: the expect handler may have)."""
    done = request.get(CONTEXT)
    if isinstance(done, S3Request):
        return done
    target = parse_target(request.raw_path, request.headers.get("Host"), edge.cfg.s3_domain)
    route = resolve(request.method, target, request.query, request.headers)
    request[OPERATION] = route.op
    authn = await edge.auth.authenticate(request)
    await edge.auth.authorize(request, authn, route.need, route.bucket)
    if authn.principal is not None:  # anonymous: absent, as on the native API
        request[PRINCIPAL] = authn.principal
    ctx = S3Request(request, edge, route, authn, _request_id(request))
    request[CONTEXT] = ctx
    return ctx


def _request_id(request: web.Request) -> str:
    rid = request.get(REQUEST_ID)
    if not isinstance(rid, str):
        rid = new_request_id()
        request[REQUEST_ID] = rid
    return rid


async def _dispatch(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    assert isinstance(ctx, S3Request)  # _front admitted it
    return await HANDLERS[ctx.route.op](ctx)


def _front(edge: Edge, metrics: NodeMetrics | None) -> Middleware:
    default_rules = node_rules(edge.cfg)

    async def rules_for(request: web.Request) -> tuple[cors.CorsRule, ...]:
        try:
            bucket = parse_target(request.raw_path, request.headers.get("Host"),
                                  edge.cfg.s3_domain).bucket
            own = await edge.access.bucket_cors(bucket) if bucket is not None else None
        except Exception:  # no rules we can read: refusing a browser is safe
            return ()
        return default_rules if own is None else own

    async def preflight(request: web.Request, origin: str) -> web.StreamResponse:
        method = request.headers["Access-Control-Request-Method"]
        allowed = cors.preflight(await rules_for(request), origin, method,
                                 request.headers.get("Access-Control-Request-Headers"))
        if allowed is None:
            raise S3Error("AccessDenied", "CORSResponse: This CORS request is not allowed. "
                          "This is usually because the evalution of Origin, request method / "
                          "Access-Control-Request-Method or Access-Control-Request-Headers "
                          "are not whitelisted by the resource's CORS spec.")
        return web.Response(status=200, headers=allowed)

    async def run(request: web.Request, handler: Callable[[web.Request],
                                                          Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            if origin is None or "Access-Control-Request-Method" not in request.headers:
                raise S3Error("InvalidRequest", "Insufficient information. Origin request "
                              "header needed.")
            return await preflight(request, origin)
        if origin is not None:
            request[CORS_HEADERS] = cors.actual(await rules_for(request), origin,
                                                request.method)
        ctx = await admit(edge, request)
        try:
            resp = await handler(request)
        except Exception as exc:
            if ctx.route.need is Need.OWNER:  # an owner action is audited however it ends
                log_audit(request, ctx.authn.principal, "allowed", "failed",
                          to_s3_error(exc, ctx.request_id).status, op=ctx.route.op)
            raise
        if ctx.route.need is Need.OWNER:
            log_audit(request, ctx.authn.principal, "allowed", "done", resp.status,
                      op=ctx.route.op)
        return resp

    @web.middleware
    async def front(request: web.Request, handler: Callable[[web.Request],
                                                            Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        rid = _request_id(request)
        started = time.perf_counter()
        try:
            resp = await run(request, handler)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            resp = error_response(request, exc, rid)
        if not resp.prepared:
            for name in REQUEST_ID_HEADERS:
                resp.headers[name] = rid
        if metrics is not None:
            label = f"s3:{request.get(OPERATION, 'unrouted')}"
            metrics.requests.labels(label, request.method, str(resp.status)).inc()
            metrics.latency.labels(label, request.method).observe(
                time.perf_counter() - started)
        return resp

    return front


def _expect(edge: Edge) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    async def expect_handler(request: web.Request) -> web.StreamResponse | None:
        """Expect: 100-continue is answered only once the request is admitted; a refusal
        is sent instead of "100 Continue", and the connection closed (the body never came)."""
        rid = _request_id(request)
        try:
            if request.headers.get("Expect", "").lower() != "100-continue":
                raise S3Error("InvalidRequest", "the only Expect this server knows is "
                              "100-continue")
            if request.method != "OPTIONS":
                await admit(edge, request)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            resp = error_response(request, exc, rid)
            for name in REQUEST_ID_HEADERS:
                resp.headers[name] = rid
            resp.force_close()
            return resp
        if request.version == HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    return expect_handler


def error_response(request: web.Request, exc: Exception, rid: str) -> web.Response:
    """The S3 error answer for ``exc``; logs it (5xx with its traceback, once)."""
    err = to_s3_error(exc, rid)
    fields = {"request_id": rid, "method": request.method, "path": request.path[:200],
              "status": err.status, "code": err.code, "detail": err.message[:300],
              "peer": request.remote}
    if err.status >= 500:
        log.error("s3 request failed", extra={"fields": fields},
                  exc_info=None if isinstance(exc, S3Error) else exc)
    else:
        log.info("s3 request refused", extra={"fields": fields})
    if not err.resource:
        err = S3Error(err.code, err.message, resource=request.path[:1024], headers=err.headers)
    headers = dict(err.headers)
    if request.method == "HEAD" or err.status == 304:
        return web.Response(status=err.status, headers=headers)
    return web.Response(status=err.status, body=xml.render_error(err, rid),
                        content_type="application/xml", headers=headers)
