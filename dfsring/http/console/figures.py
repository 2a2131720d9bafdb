"""Rates and latency quantiles from two samples of a node's cumulative counters.

Pure: a Sample is a snapshot of monotonically growing counters (Prometheus semantics), and
the figures the dashboard draws (requests/s, p99, bytes in/out per second, repairs/s) are
differences of two snapshots over the time between them. A counter that went backwards (the
node restarted) counts from zero, as Prometheus' ``rate()`` does.

p99 comes from the latency histogram's cumulative buckets: the first bucket upper bound whose
share of the window's requests reaches 99% (the bucket's bound, an upper estimate, not an
interpolation: the dashboard's "p99 below X"). None when the window saw no request.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

Buckets = tuple[tuple[float, float], ...]
"""(upper bound in seconds, cumulative count), bounds ascending, the last +inf."""


@dataclass(frozen=True)
class Sample:
    t: float  # monotonic seconds
    requests: float
    errors: float  # responses with status >= 500
    bytes_in: float
    bytes_out: float
    repairs: float
    latency: Buckets = ()


@dataclass(frozen=True)
class Point:
    """One point of the dashboard's charts: the rates over (previous sample, this one]."""

    t: float
    requests_per_s: float
    errors_per_s: float
    p99_ms: float | None
    bytes_in_per_s: float
    bytes_out_per_s: float
    repairs_per_s: float

    def to_json(self) -> dict[str, object]:
        return {"t": round(self.t, 3), "requests_per_s": round(self.requests_per_s, 2),
                "errors_per_s": round(self.errors_per_s, 2),
                "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 2),
                "bytes_in_per_s": round(self.bytes_in_per_s, 1),
                "bytes_out_per_s": round(self.bytes_out_per_s, 1),
                "repairs_per_s": round(self.repairs_per_s, 2)}


def growth(before: float, after: float) -> float:
    """How much a counter grew; a reset (after < before) counts from zero."""
    return after - before if after >= before else after


def quantile(before: Buckets, after: Buckets, q: float) -> float | None:
    """The q-quantile's bucket bound (seconds) of the observations between two histograms
    with the same bounds; None without observations or when the bounds differ."""
    if len(before) != len(after) and before:
        return None
    counts = [growth(before[i][1] if before else 0.0, c) for i, (_, c) in enumerate(after)]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    goal = q * total
    for (bound, _), seen in zip(after, counts, strict=True):
        if seen >= goal:
            return bound if math.isfinite(bound) else after[-2][0] if len(after) > 1 else None
    return None


def point(before: Sample, after: Sample) -> Point:
    """The rates between two samples (after.t > before.t)."""
    span = max(after.t - before.t, 1e-6)

    def rate(a: float, b: float) -> float:
        return growth(a, b) / span

    p99 = quantile(before.latency, after.latency, 0.99)
    return Point(after.t, rate(before.requests, after.requests),
                 rate(before.errors, after.errors), None if p99 is None else p99 * 1000.0,
                 rate(before.bytes_in, after.bytes_in), rate(before.bytes_out, after.bytes_out),
                 rate(before.repairs, after.repairs))


class Series:
    """The last ``size`` points of a node's figures, bounded (a deque), oldest first."""

    def __init__(self, size: int) -> None:
        self.points: deque[Point] = deque(maxlen=size)
        self.last: Sample | None = None

    def add(self, sample: Sample) -> None:
        if self.last is not None and sample.t > self.last.t:
            self.points.append(point(self.last, sample))
        self.last = sample

    def to_json(self) -> list[dict[str, object]]:
        return [p.to_json() for p in self.points]


def totals(points: Sequence[Point | None]) -> dict[str, float | None]:
    """The cluster's figures from each member's latest point: sums, and the worst p99."""
    seen = [p for p in points if p is not None]
    p99s = [p.p99_ms for p in seen if p.p99_ms is not None]
    return {"requests_per_s": round(sum(p.requests_per_s for p in seen), 2),
            "errors_per_s": round(sum(p.errors_per_s for p in seen), 2),
            "p99_ms": round(max(p99s), 2) if p99s else None,
            "bytes_in_per_s": round(sum(p.bytes_in_per_s for p in seen), 1),
            "bytes_out_per_s": round(sum(p.bytes_out_per_s for p in seen), 1),
            "repairs_per_s": round(sum(p.repairs_per_s for p in seen), 2)}
