"""Typed application state (aiohttp web.AppKey) shared by the HTTP handlers."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from dfsring.antientropy import ExchangeService
from dfsring.core.refill import RefillTracker
from dfsring.foundation.config import NodeConfig
from dfsring.foundation.metrics import NodeMetrics
from dfsring.foundation.worker import Supervisor
from dfsring.gossip import Gossiper
from dfsring.replication.coordinator import Coordinator
from dfsring.replication.discovery import Discovery
from dfsring.replication.handoff import HandoffService
from dfsring.replication.ringchange import RingChanger
from dfsring.replication.transfers import TransferService
from dfsring.storage.hintstore import HintStore
from dfsring.storage.localstore import LocalStore


@dataclass
class NodeState:
    """What /health reports; `stopping` flips first on shutdown so balancers drain us."""

    node_id: str
    started_at: float
    stopping: bool = False


CONFIG = web.AppKey("config", NodeConfig)
COORDINATOR = web.AppKey("coordinator", Coordinator)
MEMBERSHIP = web.AppKey("membership", Gossiper)
RING_CHANGER = web.AppKey("ring_changer", RingChanger)
TRANSFERS = web.AppKey("transfers", TransferService)
STORE = web.AppKey("store", LocalStore)
HINTS = web.AppKey("hints", HintStore)
HANDOFF = web.AppKey("handoff", HandoffService)
EXCHANGE = web.AppKey("exchange", ExchangeService)
METRICS = web.AppKey("metrics", NodeMetrics)
STATE = web.AppKey("state", NodeState)
DISCOVERY = web.AppKey("discovery", Discovery)
REFILL = web.AppKey("refill", RefillTracker)
WORKERS = web.AppKey("workers", Supervisor)
