"""The files services' background loops as workers (dfsring.foundation.worker).

==========  ====================  ====================================================
worker      interval              busy when / notes
==========  ====================  ====================================================
files-gc    gc_interval ±20%      waits first; a skipped round is logged
chunk-sync  chunk_sync ±20%       waits first
chunk-scrub scrub_interval ±20%   waits first
==========  ====================  ====================================================
"""

from __future__ import annotations

import logging

from dfsring.files.wiring import FilesNode
from dfsring.foundation.config import NodeConfig
from dfsring.foundation.worker import Schedule, Worker, WorkResult, idle

log = logging.getLogger("dfsring.node")


def files_workers(files: FilesNode, cfg: NodeConfig) -> list[Worker]:
    async def gc() -> WorkResult:
        report = await files.gc.run_once()
        if report.skipped:
            log.info("file garbage collection skipped", extra={"fields": {
                "reason": report.skipped}})
        return WorkResult.IDLE
    return [Worker("files-gc", gc, _later(cfg.gc_interval)),
            Worker("chunk-sync", idle(files.sync.sync_once), _later(cfg.chunk_sync_interval)),
            Worker("chunk-scrub", idle(files.sync.scrub_once), _later(cfg.scrub_interval))]


def _later(interval_s: float) -> Schedule:
    """The files loops: first run one interval after start, then every interval ±20%."""
    return Schedule(interval_s, jitter=0.2, first_wait=True)
