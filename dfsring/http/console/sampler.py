"""Samples this node's counters into a bounded series when figures are asked for (the
charts' data).

The imperative shell around dfsring.http.console.figures: it reads the node's Prometheus registry
(requests by status, the latency histogram), the repair counters /v1/node/stats reports, and
the bytes the client API read and wrote (counted by ``bytes_middleware``), and keeps the last
SERIES_POINTS points (``FigureSampler.sample_if_due``).
"""

from __future__ import annotations

import logging
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
    """The node's figure series, sampled when somebody asks for figures (the console polls
    every few seconds while open), at most once per ``every_s``.

    It used to be a loop of its own sampling every two seconds on every node whether or not
    a console was open: a registry walk on the event loop for nobody, and a hand-made
    background loop beside the node's supervised workers. Rates come from two samples, so
    the first is taken when the node starts."""

    def __init__(self, metrics: NodeMetrics, counter: ByteCounter,
                 every_s: float = SAMPLE_EVERY_S, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.metrics, self.counter, self.every_s, self.clock = metrics, counter, every_s, clock
        self.series = Series(SERIES_POINTS)

    def run_once(self) -> None:
        self.series.add(read_sample(self.metrics, self.counter, self.clock()))

    def sample_if_due(self) -> None:
        last = self.series.last
        if last is None or self.clock() - last.t >= self.every_s:
            self.run_once()
