"""Where chunks live and in which order to look for them. Pure.

A chunk is named by its SHA-256 digest (dfsring.contenthash), which is already uniformly
distributed, so its partition is simply the digest's top bits: no second hash, and any node
(or an operator with ``sha256sum``) can tell where a chunk belongs. The partition's preference
list on the ring holds the chunk, as it would hold a key of that partition (Dynamo §4.2-4.3);
chunks never change, so any copy anywhere is as good as any other.

Reads try, in order: this node if it holds a copy (no network), the owners under the current
ring that the failure detector holds up (primary first), the owners under older rings still in
transition, the remaining members in the ring's fallback order (a chunk written with a sloppy
quorum, or not yet moved after a ring change), and last the nodes believed down (the detector
may be behind). Every node appears once; this node only if it has a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from dfsring.contenthash import CHUNK_ID_BYTES
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
