"""CORS at the edge (issue 18 part 6): preflights answered, allow headers on every answer.

The decision is dfsring.core.cors; this module finds the rules and writes the headers:

* The rules of a request on a bucket route are the bucket's own (its record, cached like
  its other settings: a change reaches every node within 5 s), else the node's
  (``--cors-*``). Other routes use the node's. A bucket record that cannot be read now
  gives no rules: refusing a browser is safe, guessing is not.
* A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
  answered here, before authentication, because browsers send no credentials on it: 204
  with the allow headers, or 403 problem. It resolves the route of the method it asks for,
  so a route that does not exist is refused too. No ``OPTIONS`` route is added to the
  router: an ``OPTIONS`` that is not a preflight gets the router's 405 as before, and the
  route table (dfsring.http.auth.ROUTE_NEEDS) is unchanged.
* Every other request with an Origin gets its allow headers stored on the request and
  written by an ``on_response_prepare`` hook, so error answers (401, 403, 429, ...) carry
  them too and a browser app can read the problem document.
"""

from __future__ import annotations

from aiohttp import web

from dfsring.core import cors, keys
from dfsring.core.cors import CorsRule
from dfsring.foundation import errors
from dfsring.foundation.config import ConfigError, NodeConfig
from dfsring.http.auth import Middleware
from dfsring.http.middleware import Handler
from dfsring.replication.access.service import AccessService

CORS_HEADERS = web.RequestKey("cors_headers", dict[str, str])
REQUEST_METHOD = "Access-Control-Request-Method"
REQUEST_HEADERS = "Access-Control-Request-Headers"
REFUSED = "no CORS rule allows this origin with this method and these headers"


def node_rules(cfg: NodeConfig) -> tuple[CorsRule, ...]:
    """The node's rule from its options (none without --cors-origins); ConfigError naming
    the option when a value is not usable."""
    if not cfg.cors_origins:
        return ()
    try:
        return (cors.make_rule(cfg.cors_origins, cfg.cors_methods, cfg.cors_headers,
                               cfg.cors_max_age),)
    except ValueError as exc:
        raise ConfigError(f"--cors-origins/--cors-methods/--cors-headers/--cors-max-age: "
                          f"{exc}") from exc


def make_cors_middleware(cfg: NodeConfig, access: AccessService) -> Middleware:
    default = node_rules(cfg)

    async def rules_for(bucket: str | None) -> tuple[CorsRule, ...]:
        if bucket is None:
            return default
        try:
            keys.validate_bucket(bucket)
            own = await access.bucket_cors(bucket)
        except errors.DfsError:
            return ()
        return default if own is None else own

    async def answer_preflight(request: web.Request, origin: str) -> web.StreamResponse:
        method = request.headers[REQUEST_METHOD]
        if method not in cors.METHODS:
            raise errors.Forbidden("cors", REFUSED)
        match = await request.app.router.resolve(request.clone(method=method))
        if match.http_exception is not None:
            raise errors.Forbidden("cors", REFUSED)
        rules = await rules_for(match.get("bucket"))
        headers = cors.preflight(rules, origin, method, request.headers.get(REQUEST_HEADERS))
        if headers is None:
            request[CORS_HEADERS] = cors.actual(rules, None, method)
            raise errors.Forbidden("cors", REFUSED)
        return web.Response(status=204, headers=headers)

    @web.middleware
    async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            if default:
                request[CORS_HEADERS] = {"Vary": "Origin"}
            return await handler(request)
        if request.method == "OPTIONS" and REQUEST_METHOD in request.headers:
            return await answer_preflight(request, origin)
        info = request.match_info
        bucket = info.get("bucket") if info.http_exception is None else None
        request[CORS_HEADERS] = cors.actual(await rules_for(bucket), origin, request.method)
        return await handler(request)

    return cors_middleware


async def add_cors_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare: the headers the middleware chose, on whatever answer is sent."""
    for name, value in request.get(CORS_HEADERS, {}).items():
        before = response.headers.get(name) if name == "Vary" else None
        response.headers[name] = f"{before}, {value}" if before else value
