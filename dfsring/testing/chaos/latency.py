"""Latency of recorded operations, by phase and by whether they touch a given node. Pure."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from dfsring.testing.chaos.history import OpRecord, Outcome

Key = tuple[str, str]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


@dataclass(frozen=True)
class LatencySample:
    count: int
    p50: float
    p99: float
    max: float

    def __str__(self) -> str:
        return (f"n={self.count} p50 {self.p50 * 1000:.0f} ms, p99 {self.p99 * 1000:.0f} ms, "
                f"max {self.max * 1000:.0f} ms")


def sample(latencies: Sequence[float]) -> LatencySample:
    return LatencySample(len(latencies), percentile(latencies, 50), percentile(latencies, 99),
                         max(latencies))


def away_from(records: Iterable[OpRecord], node: str, owners: Mapping[Key, Collection[str]],
              start: float, end: float) -> list[float]:
    """Latencies of ok operations started in [start, end) that never involve `node`: sent to
    another node, for a key `node` does not own."""
    return [r.latency for r in records
            if r.outcome is Outcome.OK and start <= r.start < end and r.node != node
            and node not in owners.get((r.bucket, r.key), (node,))]


def involving(records: Iterable[OpRecord], node: str, owners: Mapping[Key, Collection[str]],
              start: float, end: float) -> list[float]:
    """Latencies of ok operations started in [start, end) sent to `node` or for its keys."""
    return [r.latency for r in records
            if r.outcome is Outcome.OK and start <= r.start < end
            and (r.node == node or node in owners.get((r.bucket, r.key), ()))]
