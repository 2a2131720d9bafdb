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
        self.problems = Counter("dfsring_request_problems",
                                "requests (client API and peer listener) answered with an "
                                "error, by problem type (quorum-not-met: too few replicas "
                                "acknowledged in time)",
                                ("problem",), registry=r)
        self.problems.labels("quorum-not-met")  # present at 0, so alerts see a series
        self.corrupt_found = Counter("dfsring_corrupt_values_found",
                                     "stored values that failed their checksum", registry=r)
        self.read_repairs = Counter("dfsring_read_repairs", "replicas repaired after a read",
                                    ("outcome",), registry=r)
        self.hints_stored = Counter("dfsring_hints_stored",
                                    "hints taken for a down owner (new, not folded)", registry=r)
        self.hints_delivered = Counter("dfsring_hints_delivered",
                                       "hints handed over to their owner", registry=r)
        self.hints_dropped = Counter("dfsring_hints_dropped",
                                     "hints dropped (reason: full, expired); left to "
                                     "anti-entropy", ("reason",), registry=r)
        self.hints_pending = Gauge("dfsring_hints_pending", "hints held for a down owner",
                                   ("target",), registry=r)
        self.hints_pending_bytes = Gauge("dfsring_hints_pending_bytes",
                                         "bytes of hints held for a down owner", ("target",),
                                         registry=r)
        self.ae_exchanges = Counter("dfsring_ae_exchanges",
                                    "partitions compared with another replica", registry=r)
        self.ae_repaired = Counter("dfsring_ae_keys_repaired",
                                   "keys anti-entropy repaired (in: here; out: on the peer)",
                                   ("direction",), registry=r)
        self.ae_bytes = Counter("dfsring_ae_bytes", "bytes anti-entropy sent or received "
                                "(hashes, digests, records)", registry=r)
        self.ae_nodes = Counter("dfsring_ae_tree_nodes_fetched",
                                "Merkle tree hashes fetched from peers", registry=r)
        self.corrupt_repaired = Counter("dfsring_corrupt_values_repaired",
                                        "quarantined values re-fetched from a replica",
                                        registry=r)
        self.tombstones_removed = Counter("dfsring_tombstones_removed",
                                          "tombstones purged once every owner held them",
                                          registry=r)
        self.tree_rebuilds = Counter("dfsring_tree_rebuilds",
                                     "partitions whose Merkle leaves were rebuilt from the data",
                                     registry=r)
        self.scrub_passes = Counter("dfsring_scrub_passes", "completed scrub passes",
                                    registry=r)
        self.ae_oldest = Gauge("dfsring_ae_oldest_unexchanged_seconds",
                               "age of the least recently exchanged partition", registry=r)
        self.keys = Gauge("dfsring_keys_stored", "keys held by this node", registry=r)
        self.bytes = Gauge("dfsring_bytes_stored", "bytes of versions held by this node",
                           registry=r)
        self.conns_open = Gauge("dfsring_connections_open",
                                "connections the client listener holds (the peer listener "
                                "has its own, uncounted here)", registry=r)
        self.conns_max = Gauge("dfsring_connections_max",
                               "the client listener's connection cap (--max-connections; the "
                               "peer listener has the same)", registry=r)
        self.conns_refused = Counter("dfsring_connections_refused",
                                     "connections refused at a cap (reason: listener, source)",
                                     ("reason",), registry=r)
        self.conns_closed = Counter("dfsring_connections_closed",
                                    "connections the node closed on a limit (reason: evicted, "
                                    "header_timeout, idle_timeout, slow_upload)", ("reason",),
                                    registry=r)
        self.ring_proofs = Counter("dfsring_ring_proofs",
                                   "newer rings peers told of, proven chosen by our ring's "
                                   "acceptors or refused (outcome: proven, refused)",
                                   ("outcome",), registry=r)

        self.corrupt_total = 0
        self.repaired_total = 0
        self.hints_delivered_total = 0
        self.hints_dropped_total = 0
        self._hint_targets: set[str] = set()
        self.ae = {"exchanges": 0, "repaired_in": 0, "repaired_out": 0, "bytes": 0,
                   "tree_nodes_fetched": 0, "corrupt_repaired": 0, "tombstones_removed": 0,
                   "tree_rebuilds": 0, "scrub_passes": 0}

    def count_ring_proof(self, outcome: str) -> None:
        self.ring_proofs.labels(outcome).inc()

    def count_corrupt(self) -> None:
        """Stats need plain numbers; prometheus counters are write-only by design."""
        self.corrupt_total += 1
        self.corrupt_found.inc()

    def count_repair(self, outcome: str) -> None:
        if outcome == "ok":
            self.repaired_total += 1
        self.read_repairs.labels(outcome).inc()

    def count_hints_delivered(self, count: int) -> None:
        self.hints_delivered_total += count
        self.hints_delivered.inc(count)

    def count_hints_dropped(self, reason: str, count: int = 1) -> None:
        self.hints_dropped_total += count
        self.hints_dropped.labels(reason).inc(count)

    def show_hints(self, pending: dict[str, tuple[int, int]]) -> None:
        """Per-target gauges; targets whose queue emptied are removed, not left at 0."""
        for target in set(self._hint_targets) - set(pending):
            self.hints_pending.remove(target)
            self.hints_pending_bytes.remove(target)
        for target, (count, size) in pending.items():
            self.hints_pending.labels(target).set(count)
            self.hints_pending_bytes.labels(target).set(size)
        self._hint_targets = set(pending)

    def count_ae_exchanges(self, count: int) -> None:
        self.ae["exchanges"] += count
        self.ae_exchanges.inc(count)

    def count_ae_repaired(self, direction: str, count: int) -> None:
        self.ae[f"repaired_{direction}"] += count
        self.ae_repaired.labels(direction).inc(count)

    def count_ae_bytes(self, count: int) -> None:
        self.ae["bytes"] += count
        self.ae_bytes.inc(count)

    def count_ae_nodes(self, count: int) -> None:
        self.ae["tree_nodes_fetched"] += count
        self.ae_nodes.inc(count)

    def count_scrub(self, what: str, count: int = 1) -> None:
        """what: corrupt_repaired, tombstones_removed, tree_rebuilds or scrub_passes."""
        self.ae[what] += count
        {"corrupt_repaired": self.corrupt_repaired,
         "tombstones_removed": self.tombstones_removed,
         "tree_rebuilds": self.tree_rebuilds,
         "scrub_passes": self.scrub_passes}[what].inc(count)

    def bind_store(self, keys: Callable[[], float], size: Callable[[], float]) -> None:
        """Gauges read live counters at scrape time instead of being pushed on every write."""
        self.keys.set_function(keys)
        self.bytes.set_function(size)

    def bind_connections(self, open_now: Callable[[], float], cap: int) -> None:
        self.conns_open.set_function(open_now)
        self.conns_max.set(cap)

    def count_conn_refused(self, reason: str) -> None:
        self.conns_refused.labels(reason).inc()

    def count_conn_closed(self, reason: str) -> None:
        self.conns_closed.labels(reason).inc()
