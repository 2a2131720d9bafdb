"""The replication services' background loops as workers (dfsring.foundation.worker).

The services keep their logic and expose one unit of work (``run_once``, ``sync_once``...);
this module only says how often each runs and what counts as busy. Schedules are the ones the
loops had before they shared a shape (the files loops are in dfsring.files.workers; node.py
puts them all under one supervisor):

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
==========  ====================  ====================================================
"""

from __future__ import annotations

import logging

from dfsring.antientropy import ExchangeService
from dfsring.foundation.errors import RpcError
from dfsring.foundation.worker import Schedule, Worker, WorkResult, idle
from dfsring.gossip import Gossiper
from dfsring.replication.discovery import Discovery
from dfsring.replication.handoff import TICK_S, HandoffService
from dfsring.replication.ringchange import RingChanger
from dfsring.replication.scrub import Scrubber
from dfsring.replication.transfers import IDLE_S, TransferService


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
