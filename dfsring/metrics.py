"""Prometheus metrics of one node, on a registry of its own (tests run several nodes' code in
one process, and a per-node registry keeps their series apart)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("dfsring_http_requests", "HTTP requests by route and status",
                                ("route", "method", "status"), registry=r)
        self.latency = Histogram("dfsring_http_request_seconds", "HTTP request latency",
                                 ("route", "method"), buckets=_LATENCY_BUCKETS, registry=r)
        self.corrupt_found = Counter("dfsring_corrupt_values_found",
                                     "stored values that failed their checksum", registry=r)
        self.read_repairs = Counter("dfsring_read_repairs", "replicas repaired after a read",
                                    ("outcome",), registry=r)
        self.keys = Gauge("dfsring_keys_stored", "keys held by this node", registry=r)
        self.bytes = Gauge("dfsring_bytes_stored", "bytes of versions held by this node",
                           registry=r)

        self.corrupt_total = 0
        self.repaired_total = 0

    def count_corrupt(self) -> None:
        """Stats need plain numbers; prometheus counters are write-only by design."""
        self.corrupt_total += 1
        self.corrupt_found.inc()

    def count_repair(self, outcome: str) -> None:
        if outcome == "ok":
            self.repaired_total += 1
        self.read_repairs.labels(outcome).inc()

    def bind_store(self, keys: Callable[[], float], size: Callable[[], float]) -> None:
        """Gauges read live counters at scrape time instead of being pushed on every write."""
        self.keys.set_function(keys)
        self.bytes.set_function(size)
