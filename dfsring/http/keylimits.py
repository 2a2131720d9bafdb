"""Request rate and bandwidth per access key (issue 18 part 6).

Two token buckets per key (dfsring.core.ratelimit.KeyedBuckets), on this node only: a
cluster of N nodes lets a key make N times the rate if it spreads its requests.

* Requests: ``--key-rate`` per second, ``--key-burst`` at once.
* Bytes: ``--key-bandwidth`` per second with a burst of one second's worth. A request is let
  in if the key has tokens for the body its Content-Length announces (up to the burst), and
  is charged the bytes actually read (a request refused before its body is read, say 413,
  costs none, whatever it announced); a read's answer is charged when it is sent. Both may
  leave the key in debt (a large file is sent whole), which its next requests wait for.

Past either limit: 429 ``too-many-requests`` with Retry-After, counted by reason in
``dfsring_rate_limited_total{reason}``. Only authenticated requests are limited, the root
key and admin keys included (a leaked admin key should not be able to flood a node
either); anonymous traffic (public buckets, /health) is bounded by the connection limits.
At most ratelimit.MAX_KEYS keys are tracked (the least recently used are forgotten first).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from dfsring.core.access import Principal
from dfsring.core.ratelimit import KeyLimits
from dfsring.foundation import errors
from dfsring.foundation.config import NodeConfig
from dfsring.http.auth import PRINCIPAL, Middleware
from dfsring.http.middleware import Handler


class LimitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.limited = Counter("dfsring_rate_limited", "requests refused with 429 by a "
                               "per-key limit, by reason", ("reason",), registry=registry)


def _answer_bytes(request: web.Request, resp: web.StreamResponse) -> int:
    if request.method != "GET":  # HEAD: the length is announced, nothing is sent
        return 0
    if resp.prepared:  # streamed by its handler (a file): what was written
        return resp.body_length
    if isinstance(resp, web.Response) and isinstance(resp.body, bytes | bytearray):
        return len(resp.body)
    return resp.content_length or 0


def key_limits(cfg: NodeConfig) -> KeyLimits:
    return KeyLimits(cfg.key_rate, cfg.key_burst, cfg.key_bandwidth)


def make_limits_middleware(limits: KeyLimits, metrics: LimitMetrics,
                           clock: Callable[[], float] = time.monotonic) -> Middleware:
    """Placed after the auth middleware, which sets the request's principal."""

    @web.middleware
    async def limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        principal = request.get(PRINCIPAL)
        if not isinstance(principal, Principal):
            return await handler(request)
        key = principal.access_key
        declared = request.content_length or 0
        refused = limits.admit(key, declared, clock(), principal.rate, principal.bandwidth)
        if refused is not None:
            reason, wait = refused
            metrics.limited.labels(reason).inc()
            raise errors.TooManyRequests(
                f"this key is past its {'request rate' if reason == 'requests' else 'bandwidth'}"
                " on this node", wait)
        try:
            resp = await handler(request)
        finally:  # the body as read, not as announced (a refused request reads none)
            limits.sent(key, request.content.total_bytes, clock(), principal.bandwidth)
        limits.sent(key, _answer_bytes(request, resp), clock(), principal.bandwidth)
        return resp

    return limits_middleware
