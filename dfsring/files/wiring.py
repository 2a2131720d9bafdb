"""Building the files services of one node, and their start and stop (called by dfsring.node)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from dfsring.core.chunker import ChunkParams
from dfsring.core.clusterview import ViewSource
from dfsring.files.chunks import ChunkReplicator
from dfsring.files.chunkstore import ChunkStore
from dfsring.files.chunksync import ChunkSync, SyncSettings
from dfsring.files.clock import VersionClock
from dfsring.files.gc import FileGC, GcSettings, LocalList
from dfsring.files.metrics import FileMetrics
from dfsring.files.service import FileService, FileSettings
from dfsring.files.versions import Retention
from dfsring.foundation.config import NodeConfig
from dfsring.replication.coordinator import Coordinator
from dfsring.transport import Transport


@dataclass
class FilesNode:
    store: ChunkStore
    chunks: ChunkReplicator
    service: FileService
    gc: FileGC
    # gc and sync run as workers of the node's supervisor (dfsring.replication.workers)
    sync: ChunkSync

    async def open(self) -> None:
        await asyncio.to_thread(self.store.open)

    async def stop(self) -> None:
        await self.service.close()


def retention_of(cfg: NodeConfig) -> Retention:
    return Retention(cfg.file_retention_versions or None, cfg.file_retention_days or None)


def build_files(cfg: NodeConfig, data_path: Path, node_id: str, *, coordinator: Coordinator,
                views: ViewSource, rpc: Transport, local_list: LocalList,
                count_corrupt: Callable[[], None], ready: Callable[[], bool],
                registry: CollectorRegistry | None = None) -> FilesNode:
    store = ChunkStore(data_path / "chunks", durable=cfg.durable)
    metrics = FileMetrics(registry)
    metrics.bind_store(lambda: store.stats.count, lambda: store.stats.bytes)
    chunks = ChunkReplicator(node_id=node_id, store=store, views=views, rpc=rpc,
                             deadline_s=cfg.request_timeout,
                             count_corrupt=count_corrupt)
    retention = retention_of(cfg)
    settings = FileSettings(params=ChunkParams.for_average(cfg.chunk_size), r=cfg.r, w=cfg.w,
                            retention=retention, grace_s=cfg.gc_grace)
    service = FileService(coordinator=coordinator, chunks=chunks, clock=VersionClock(node_id),
                          settings=settings, metrics=metrics)
    gc = FileGC(node_id=node_id, store=store, files=service, views=views, rpc=rpc,
                local_list=local_list, deadline_s=cfg.request_timeout,
                settings=GcSettings(grace_s=cfg.gc_grace, interval_s=cfg.gc_interval,
                                    retention=retention),
                ready=ready)
    sync = ChunkSync(node_id=node_id, store=store, replicas=chunks, views=views,
                     settings=SyncSettings(interval_s=cfg.chunk_sync_interval, rate=cfg.ae_rate,
                                           grace_s=cfg.gc_grace,
                                           scrub_interval_s=cfg.scrub_interval,
                                           scrub_rate=cfg.scrub_rate),
                     metrics=metrics, referenced=gc.referenced_among, ready=ready)
    return FilesNode(store, chunks, service, gc, sync)
