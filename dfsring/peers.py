"""What the background repair services need of membership: the ring, whether it is settled,
and how to reach a peer that is alive. dfsring.gossip.Gossiper provides it; a protocol keeps
the services testable without gossip and free of its internals."""

from __future__ import annotations

import time
from typing import Protocol

from dfsring.ring import Ring


class Peers(Protocol):
    @property
    def ring(self) -> Ring: ...

    @property
    def settled(self) -> bool: ...

    def address_of(self, node_id: str) -> str: ...

    def is_alive(self, node_id: str) -> bool: ...


def wall_ms() -> int:
    """Wall-clock milliseconds, for timestamps shown to people and for ages (hints,
    tombstones); never for ordering versions (dfsring.vclock orders by causality)."""
    return time.time_ns() // 1_000_000
