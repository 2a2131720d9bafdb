"""Where chunks live and in which order to look for them. Pure.

A chunk is named by its SHA-256 digest (dfsring.core.contenthash), which is already uniformly
distributed, so its partition is simply the digest's top bits: no second hash, and any node
(or an operator with ``sha256sum``) can tell where a chunk belongs. The partition's preference
list on the ring holds the chunk, as it would hold a key of that partition (Dynamo §4.2-4.3);
chunks never change, so any copy anywhere is as good as any other.

Reads try, in order: this node if it holds a copy (no network), the owners under the current
ring that the failure detector holds up (primary first), the owners under older rings still in
transition, the remaining members in the ring's fallback order (a chunk written with a sloppy
quorum, or not yet moved after a ring change), and last the nodes believed down (the detector
may be behind). Every node appears once; this node only if it has a copy.

Chunk anti-entropy (dfsring.files.chunksync) asks ``sync_plan`` which peers must hold the
chunks a node has and which of them it holds without owning them (strays), ``pushes`` whether
it is the holder that copies a chunk to the owners lacking it, and ``droppable`` which strays
every owner now holds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dfsring.core.contenthash import CHUNK_ID_BYTES
from dfsring.ring import Ring


def chunk_partition(cid: bytes, partition_bits: int) -> int:
    """The partition of a chunk: the top ``partition_bits`` bits of its digest."""
    if len(cid) != CHUNK_ID_BYTES:
        raise ValueError(f"a chunk id is {CHUNK_ID_BYTES} bytes")
    if not 1 <= partition_bits <= 16:
        raise ValueError("partition_bits must be in 1..16")
    return int.from_bytes(cid[:2], "big") >> (16 - partition_bits)


def owners(ring: Ring, cid: bytes) -> tuple[str, ...]:
    return ring.preference_list(chunk_partition(cid, ring.partition_bits))


def fallbacks(ring: Ring, cid: bytes) -> list[str]:
    return list(ring.fallbacks(chunk_partition(cid, ring.partition_bits)))


def read_order(cid: bytes, rings: Sequence[Ring], self_id: str, has_local: bool,
               is_alive: Callable[[str], bool]) -> list[str]:
    """Every node that may hold the chunk, most promising first (module docstring)."""
    current = rings[0]
    candidates: list[str] = [self_id] if has_local else []
    candidates += owners(current, cid)
    for ring in rings[1:]:
        candidates += owners(ring, cid)
    candidates += fallbacks(current, cid)
    ordered = [n for n in dict.fromkeys(candidates) if n != self_id or has_local]
    up = [n for n in ordered if n == self_id or is_alive(n)]
    return up + [n for n in ordered if n not in up]


def spread(ids: Iterable[bytes], ring: Ring) -> dict[str, list[bytes]]:
    """node -> the chunk ids it owns, for batched calls (ids in the order given)."""
    out: dict[str, list[bytes]] = {}
    for cid in ids:
        for node in owners(ring, cid):
            out.setdefault(node, []).append(cid)
    return out


@dataclass(frozen=True)
class SyncPlan:
    """What a holder checks for a batch of its chunks under one ring."""

    peers: dict[str, list[bytes]] = field(default_factory=dict)  # other owner -> its ids
    stray: list[bytes] = field(default_factory=list)  # held here, not owned here


def sync_plan(ids: Iterable[bytes], ring: Ring, self_id: str) -> SyncPlan:
    """For each other owner, the ids (in the order given) it should hold; and the strays."""
    plan = SyncPlan()
    for cid in ids:
        nodes = owners(ring, cid)
        if self_id not in nodes:
            plan.stray.append(cid)
        for node in nodes:
            if node != self_id:
                plan.peers.setdefault(node, []).append(cid)
    return plan


def droppable(stray: Iterable[bytes], ring: Ring,
              held: Mapping[str, Collection[bytes]]) -> list[bytes]:
    """The strays every owner confirmed it holds (``held``: owner -> ids it confirmed). A
    chunk with no owner at all (a ring without members) is never droppable."""
    out = []
    for cid in stray:
        nodes = owners(ring, cid)
        if nodes and all(cid in held.get(node, ()) for node in nodes):
            out.append(cid)
    return out


def pushes(cid: bytes, ring: Ring, self_id: str, held: Mapping[str, Collection[bytes]]) -> bool:
    """Whether this node, which holds the chunk, is the one to copy it to the owners that
    lack it: the first owner in preference order that holds it (``held``: what the other
    owners confirmed), or, if no owner does, this node (a stray). So a chunk missing on one
    owner is sent once, not once by every holder."""
    for node in owners(ring, cid):
        if node == self_id or cid in held.get(node, ()):
            return node == self_id
    return True
