"""Coordinating reads and writes of keys.

The single-node coordinator (N=1) of the foundation: it makes the new version locally and
answers once it is durable. The replicated coordinator (ring, quorum, read repair) keeps the
same interface, so the HTTP edge does not change when replication lands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dfsring import errors
from dfsring.keys import ObjectName
from dfsring.localstore import LocalStore
from dfsring.metrics import NodeMetrics
from dfsring.vclock import Versions, VersionVector


@dataclass(frozen=True, slots=True)
class WriteResult:
    versions: Versions
    acks: int
    n: int
    hinted: int = 0


class Coordinator(Protocol):
    @property
    def n(self) -> int: ...

    async def put(self, name: ObjectName, context: VersionVector, value: bytes | None,
                  content_type: str, *, w: int, sloppy: bool = True) -> WriteResult: ...

    async def get(self, name: ObjectName, *, r: int) -> Versions: ...


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class LocalCoordinator:
    """N=1: this node is the only replica of every key."""

    def __init__(self, store: LocalStore, metrics: NodeMetrics,
                 now_ms: Callable[[], int] = wall_ms) -> None:
        self.store = store
        self.metrics = metrics
        self.now_ms = now_ms

    @property
    def n(self) -> int:
        return 1

    async def put(self, name: ObjectName, context: VersionVector, value: bytes | None,
                  content_type: str, *, w: int, sloppy: bool = True) -> WriteResult:
        versions = await self.store.coordinate(name, context, value, content_type, self.now_ms())
        return WriteResult(versions, acks=1, n=1)

    async def get(self, name: ObjectName, *, r: int) -> Versions:
        try:
            return self.store.get(name)
        except errors.CorruptValue:
            self.metrics.count_corrupt()
            raise
