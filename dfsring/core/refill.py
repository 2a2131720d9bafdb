"""When a node that rejoined without its data counts as refilled (issue 15).

A node whose data dir was lost and that rejoined as itself keeps its ring ownership, so no
transfer brings its data back (transfers move partitions between owners of two rings) and
hints cover only writes made while it was away. Anti-entropy does (dfsring.antientropy): every
exchange of a partition with a peer merges both replicas. A write acknowledged with W >= 2
of N = 3 may sit on any two owners, so one peer per partition is not enough: the node is
*refilled* once, since it rejoined, it completed one anti-entropy exchange of each partition
it owns with every other owner of that partition (equal roots count: nothing to move).

Pure bookkeeping; the exchange service reports each completed (peer, partition) exchange, and
membership holds the persisted `refilling` flag this clears.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from dfsring.ring import Ring

log = logging.getLogger("dfsring.core.refill")
Pair = tuple[int, str]


class Refilling(Protocol):
    """What refill tracking needs of membership (dfsring.gossip.Gossiper provides it)."""

    node_id: str
    refilling: bool

    @property
    def ring(self) -> Ring: ...

    def set_refilled(self) -> None: ...


def pairs(ring: Ring, node_id: str) -> set[Pair]:
    """Every (partition, other owner) this node must have exchanged with to be refilled."""
    return {(p, peer) for p in ring.partitions_of(node_id)
            for peer in ring.preference_list(p) if peer != node_id}


class RefillTracker:
    def __init__(self, topology: Refilling) -> None:
        self.topology = topology
        self._done: set[Pair] = set()
        self._ring: Ring | None = None
        self._remaining: set[Pair] = set()
        self._total = 0

    def _current(self) -> set[Pair]:
        ring = self.topology.ring
        if ring is not self._ring:
            self._ring = ring
            needed = pairs(ring, self.topology.node_id)
            self._total = len(needed)
            self._remaining = needed - self._done
        return self._remaining

    def exchanged(self, peer: str, partition: int) -> None:
        """Anti-entropy finished one exchange of `partition` with `peer`."""
        if not self.topology.refilling:
            return
        self._done.add((partition, peer))
        self._current().discard((partition, peer))
        self.check()

    def check(self) -> bool:
        """True once refilled; clears the flag when the last pair is done."""
        if not self.topology.refilling:
            return True
        if self._current() or not self._ring or not self._ring.partitions_of(
                self.topology.node_id):
            return False
        self.topology.set_refilled()
        return True

    def progress_json(self) -> dict[str, Any]:
        remaining = self._current()
        return {"exchanges_total": self._total, "exchanges_done": self._total - len(remaining),
                "peers_pending": sorted({peer for _p, peer in remaining})}
