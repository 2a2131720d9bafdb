"""Typed application state (aiohttp web.AppKey) shared by the HTTP handlers."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from dfsring.config import NodeConfig
from dfsring.coordinator import Coordinator
from dfsring.discovery import Discovery
from dfsring.exchange import ExchangeService
from dfsring.gossip import Gossiper
from dfsring.handoff import HandoffService
from dfsring.hintstore import HintStore
from dfsring.localstore import LocalStore
from dfsring.metrics import NodeMetrics
from dfsring.refill import RefillTracker
from dfsring.ringchange import RingChanger
from dfsring.transfers import TransferService
from dfsring.worker import Supervisor


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
