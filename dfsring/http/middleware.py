"""The middleware every request passes: a request id, error translation, metrics and logs.

Handlers raise domain errors (dfsring.foundation.errors) or aiohttp's HTTP exceptions; nothing
below this
layer knows about status codes. An unexpected exception is logged with its traceback and
answered with a 500 problem, and the node keeps serving.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from dfsring.foundation import errors
from dfsring.foundation.metrics import NodeMetrics
from dfsring.http.problems import REQUEST_ID_HEADER, from_error, problem

log = logging.getLogger("dfsring.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.RequestKey("request_id", str)


def new_request_id() -> str:
    return secrets.token_hex(8)


def _route_label(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


def make_middleware(metrics: NodeMetrics) -> Callable[[web.Request, Handler],
                                                      Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = new_request_id()
        request[REQUEST_ID] = rid
        started = time.perf_counter()
        try:
            resp = await handler(request)
            resp.headers[REQUEST_ID_HEADER] = rid
        except errors.DfsError as exc:
            resp = from_error(exc, rid)
            metrics.problems.labels(errors.public_class(exc).problem).inc()
            # 501/505 refuse a protocol this node does not speak: a rejection, not a failure
            refused = isinstance(exc, (errors.VersionNotSupported, errors.NotImplementedCoding))
            _log_error(request, resp.status, str(exc), exc, failed=not refused)
        except web.HTTPException as exc:
            resp = _from_http_exception(exc, rid)
            _log_error(request, resp.status, exc.reason, None, failed=exc.status >= 500)
        except Exception as exc:
            log.exception("unhandled error", extra={"fields": {"request_id": rid,
                                                                 "path": request.path}})
            resp = problem(500, "internal", "Internal error", "an unexpected error occurred; "
                           "see the node log for request_id", rid)
            del exc
        route = _route_label(request)
        metrics.requests.labels(route, request.method, str(resp.status)).inc()
        metrics.latency.labels(route, request.method).observe(time.perf_counter() - started)
        return resp

    return middleware


def _from_http_exception(exc: web.HTTPException, rid: str) -> web.StreamResponse:
    if exc.status < 400:
        exc.headers[REQUEST_ID_HEADER] = rid
        return exc
    slug = {404: "no-such-route", 405: "method-not-allowed", 413: "payload-too-large"}.get(
        exc.status, "http-error")
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return problem(exc.status, slug, exc.reason, exc.text or exc.reason, rid, headers=headers)


def _log_error(request: web.Request, status: int, detail: str,
               exc: BaseException | None, *, failed: bool) -> None:
    fields = {"request_id": request[REQUEST_ID], "method": request.method,
              "path": request.path[:200], "status": status, "detail": detail[:300],
              "peer": request.remote}
    if failed and status >= 500:
        log.error("request failed", extra={"fields": fields}, exc_info=exc)
    else:
        log.info("request rejected", extra={"fields": fields})
