"""Prometheus metrics of the files services, on the node's own registry
(dfsring.foundation.metrics)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

SYNC = (  # dfsring.files.chunksync's counters: (name, help)
    ("chunk_sync_passes", "completed chunk anti-entropy passes"),
    ("chunks_pushed", "chunks this node copied to owners that lacked them"),
    ("chunk_bytes_pushed", "bytes of chunks this node copied to owners that lacked them"),
    ("stray_chunks_dropped", "chunks this node held without owning them, deleted once every "
                             "owner had them"),
    ("chunk_scrub_passes", "completed chunk scrub passes"),
    ("corrupt_chunks_repaired", "chunks found corrupt here and replaced by a good copy"),
)


class FileMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.uploaded = Counter("dfsring_file_bytes_uploaded",
                                "bytes of files stored through this node", registry=r)
        self.served = Counter("dfsring_file_bytes_served",
                              "bytes of files sent to clients by this node", registry=r)
        self.chunks = Counter("dfsring_file_chunks",
                              "chunks of uploads through this node (result: new, deduplicated)",
                              ("result",), registry=r)
        self.collected = Counter("dfsring_chunks_collected",
                                 "unreferenced chunks deleted by this node's collector",
                                 registry=r)
        self.versions_pruned = Counter("dfsring_file_versions_pruned",
                                       "file versions removed by retention", registry=r)
        self.sync = {name: Counter(f"dfsring_{name}", text, registry=r) for name, text in SYNC}
        self.stored = Gauge("dfsring_chunks_stored", "chunks held by this node", registry=r)
        self.stored_bytes = Gauge("dfsring_chunk_bytes_stored", "bytes of chunks held by this "
                                  "node", registry=r)

    def bind_store(self, count: Callable[[], float], size: Callable[[], float]) -> None:
        self.stored.set_function(count)
        self.stored_bytes.set_function(size)

    def upload(self, size: int, chunks: int, new: int) -> None:
        self.uploaded.inc(size)
        self.chunks.labels("new").inc(new)
        self.chunks.labels("deduplicated").inc(chunks - new)

    def count_sync(self, name: str, amount: int = 1) -> None:
        """name: one of SYNC's names."""
        self.sync[name].inc(amount)
