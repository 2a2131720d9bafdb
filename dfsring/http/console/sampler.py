"""Samples this node's counters every few seconds into a bounded series (the charts' data).

The imperative shell around dfsring.http.console.figures: it reads the node's Prometheus registry
(requests by status, the latency histogram), the repair counters /v1/node/stats reports, and
the bytes the client API read and wrote (counted by ``bytes_middleware``), and keeps the last
SERIES_POINTS points. One background task per node (``run_forever``), stopped with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from dfsring.foundation.metrics import NodeMetrics
from dfsring.http.console.figures import Buckets, Sample, Series

log = logging.getLogger("dfsring.http.console")
SAMPLE_EVERY_S = 2.0
SERIES_POINTS = 90  # three minutes of history at SAMPLE_EVERY_S
REQUESTS = "dfsring_http_requests_total"
LATENCY = "dfsring_http_request_seconds_bucket"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ByteCounter:
    """Bytes the client API read from request bodies and wrote in responses."""

    bytes_in: int = 0
    bytes_out: int = 0


def bytes_middleware(counter: ByteCounter) -> Callable[[web.Request, Handler],
                                                       Awaitable[web.StreamResponse]]:
    """Counts body bytes in and out of every answered request (an error answer's small
    problem document is not counted: the outer middleware builds it)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await handler(request)
        finally:
            counter.bytes_in += request.content.total_bytes
        counter.bytes_out += resp.body_length if resp.prepared else (resp.content_length or 0)
        return resp

    return middleware


def read_sample(metrics: NodeMetrics, counter: ByteCounter, now: float) -> Sample:
    """A snapshot of the node's cumulative counters (sums over every route)."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == REQUESTS:
                requests += s.value
                if s.labels.get("status", "").startswith("5"):
                    errors += s.value
            elif s.name == LATENCY:
                bound = float(s.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + s.value
    latency: Buckets = tuple(sorted(buckets.items()))
    repairs = float(metrics.repaired_total + metrics.ae["repaired_in"]
                    + metrics.ae["corrupt_repaired"])
    return Sample(now, requests, errors, float(counter.bytes_in), float(counter.bytes_out),
                  repairs, latency)


class FigureSampler:
    """run_once() (tests) / run_forever() (the node) over one Series."""

    def __init__(self, metrics: NodeMetrics, counter: ByteCounter,
                 every_s: float = SAMPLE_EVERY_S, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.metrics, self.counter, self.every_s, self.clock = metrics, counter, every_s, clock
        self.series = Series(SERIES_POINTS)

    def run_once(self) -> None:
        self.series.add(read_sample(self.metrics, self.counter, self.clock()))

    async def run_forever(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:  # a figure is never worth the node: log and go on
                log.exception("console sampler failed")
            await asyncio.sleep(self.every_s * random.uniform(0.9, 1.1))


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
