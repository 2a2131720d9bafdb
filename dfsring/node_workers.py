"""Every background loop of a node as a dfsring.worker.Worker, built from its services.

The services keep their logic and expose one unit of work (``run_once``, ``sync_once``...);
this module only says how often each runs and what counts as busy. Schedules are the ones the
loops had before they shared a shape:

==========  ====================  ====================================================
worker      interval              busy when / notes
==========  ====================  ====================================================
gossip      gossip_interval ±10%  never: a tick starts exchanges without awaiting them
discovery   gossip_interval       done once a ring is known (at once if one is)
ringchange  gossip_interval       RpcError/ValueError: an attempt failed (warning)
transfers   1 s, or ring change   woken by the ring-change subscription
handoff     0.25 s                delivery and hint expiry (drop_expired) per target
exchange    ae_interval ±50%      a round found differing partitions; waits first
scrub       scrub_interval        first pass at start
files-gc    gc_interval ±20%      waits first; a skipped round is logged
chunk-sync  chunk_sync ±20%       waits first
chunk-scrub scrub_interval ±20%   waits first
==========  ====================  ====================================================
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from dfsring.config import NodeConfig
from dfsring.discovery import Discovery
from dfsring.exchange import ExchangeService
from dfsring.files.wiring import FilesNode
from dfsring.gossip import Gossiper
from dfsring.handoff import TICK_S, HandoffService
from dfsring.ringchange import RingChanger
from dfsring.rpc import RpcError
from dfsring.scrub import Scrubber
from dfsring.transfers import IDLE_S, TransferService
from dfsring.worker import Schedule, Supervisor, Worker, WorkResult

log = logging.getLogger("dfsring.node")


def idle(unit: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[WorkResult]]:
    """A unit that always catches up in one go: the worker waits its interval after it."""
    async def work() -> WorkResult:
        await unit()
        return WorkResult.IDLE
    return work


def gossip_worker(gossip: Gossiper, interval_s: float) -> Worker:
    async def work() -> WorkResult:
        gossip.tick()
        return WorkResult.IDLE
    return Worker("gossip", work, Schedule(interval_s, jitter=0.1))


def discovery_worker(discovery: Discovery, interval_s: float) -> Worker:
    async def work() -> WorkResult:
        if discovery.done:
            return WorkResult.DONE
        await discovery.run_once()
        return WorkResult.DONE if discovery.done else WorkResult.IDLE
    return Worker("discovery", work, Schedule(interval_s, jitter=0.0))


def ringchange_worker(changer: RingChanger, interval_s: float) -> Worker:
    return Worker("ringchange", idle(changer.run_once), Schedule(interval_s, jitter=0.0),
                  expected=(RpcError, ValueError), expected_level=logging.WARNING)


def transfers_worker(transfers: TransferService) -> Worker:
    return Worker("transfers", idle(transfers.run_once), Schedule(IDLE_S, jitter=0.0),
                  wake_event=transfers.wakeup)


def handoff_worker(handoff: HandoffService) -> Worker:
    return Worker("handoff", idle(handoff.run_once), Schedule(TICK_S, jitter=0.0))


def exchange_worker(exchange: ExchangeService, interval_s: float) -> Worker:
    async def work() -> WorkResult:
        return WorkResult.BUSY if await exchange.run_once() else WorkResult.IDLE
    # waits first: right after a start the failure detector knows nobody yet
    return Worker("exchange", work, Schedule(interval_s, jitter=0.5, first_wait=True),
                  expected=(RpcError,))


def scrub_worker(scrubber: Scrubber, interval_s: float) -> Worker:
    return Worker("scrub", idle(scrubber.run_pass), Schedule(interval_s, jitter=0.0))


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


def build_supervisor(cfg: NodeConfig, *, gossip: Gossiper, discovery: Discovery,
                     changer: RingChanger, transfers: TransferService,
                     handoff: HandoffService, exchange: ExchangeService, scrubber: Scrubber,
                     files: FilesNode) -> Supervisor:
    """The node's one supervisor, holding every background worker (not yet started)."""
    supervisor = Supervisor()
    workers = [gossip_worker(gossip, cfg.gossip_interval),
               discovery_worker(discovery, cfg.gossip_interval),
               ringchange_worker(changer, cfg.gossip_interval),
               transfers_worker(transfers),
               handoff_worker(handoff),
               exchange_worker(exchange, cfg.ae_interval),
               scrub_worker(scrubber, cfg.scrub_interval),
               *files_workers(files, cfg)]
    for worker in workers:
        supervisor.add(worker)
    return supervisor
