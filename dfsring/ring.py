"""The ring: which nodes hold each partition, as an immutable value computed from membership.

Pure. A key's partition is fixed by the top bits of its hash (`dfsring.core.keys.partition_of`);
the ring only maps partitions to nodes, so a membership change moves partitions, never keys
between partitions (Swift's ring, `swift/common/ring/ring.py`; Dynamo §6.2, strategy 3: fixed,
equal-sized partitions decouple partitioning from placement).

Placement is consistent hashing with virtual nodes (Dynamo §4.2; riak_core `chash.erl`):

* every member owns ``vnodes * weight`` tokens, token ``i`` of node ``n`` being the first word
  of the 128-bit x64 mmh3 hash of ``f"{n}/{i}"`` (`vnode_token`), so tokens depend on
  nothing but the node's own id and never on the other members;
* partition ``p`` sits at the *start* of its key range, position ``p << (64 - partition_bits)``
  on the 64-bit ring, and its walk visits tokens clockwise from the first token at or after
  that position, the same way Dynamo walks from a key's position (§4.2);
* its preference list is the first ``replicas`` distinct nodes of that walk (Dynamo §4.3),
  preferring nodes whose zone is not yet in the list while unused zones remain, then the
  earliest nodes the walk skipped (Swift places replicas "as unique as possible" across
  zones). A member without a zone is its own failure domain;
* its fallbacks (Dynamo §4.6 hinted handoff; Swift's `get_more_nodes`; riak_core
  `riak_core_apl:get_apl_ann` secondaries) are every other member, in the order the same walk
  meets them.

Without zones, adding a node therefore only moves the replica slots its tokens take over,
about ``1/len(members)`` of all slots, and removing one moves only its own slots (Dynamo
§4.2, "departure or arrival of a node only affects its immediate neighbors").

Which replica is listed *first* (the primary, the usual coordinator, Dynamo §4.5) is balanced
separately: with 256 random tokens per node a node's share of first positions varies by about
±1.3% (one standard deviation, 1/sqrt(vnodes) of the mean), too loose for the ±4% bound at
five nodes: about one random five-node cluster in 160 broke it in our measurements. Walking
partitions in index order, the primary is the first node of the list that has not yet led its
weighted share of partitions, ``ceil(partitions * weight / total_weight)``: "consistent
hashing with bounded loads" (Mirrokni, Thorup, Zadimoghaddam, 2016) applied to the order
inside the list only. The *set* of replicas, and so all data placement and movement, stays
plain consistent hashing; only the choice of coordinator shifts (adding a sixth node to five
changes about 18% of primaries, against 1/6 without balancing).

Invariants: no node appears twice in a preference list; when at least ``replicas`` zones
exist every preference list spans ``replicas`` zones; building from the same members (in any
input order), replicas, partition_bits, vnodes and epoch gives the same lists and the same
`Ring.hash` on any machine.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import mmh3

from dfsring.core.keys import DEFAULT_PARTITION_BITS, MAX_PARTITION_BITS

DEFAULT_REPLICAS = 3
DEFAULT_VNODES = 256
TOKEN_BITS = 64

ZoneKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class RingMember:
    """A node as the ring sees it: its id, its failure domain and its relative capacity.

    ``weight`` multiplies the node's number of virtual-node tokens, so a node of weight 2
    covers about twice the ring of a node of weight 1 (Dynamo §4.2, heterogeneity). Its share
    of replica slots grows less than linearly, since a node is at most once in each list.
    """

    node_id: str
    zone: str = ""
    weight: int = 1
    acceptor: str = ""
    """The nonce of this member's Paxos acceptor memory (dfsring.core.epochs); placement ignores
    it. Empty in rings written before nonces existed."""


def vnode_token(node_id: str, index: int) -> int:
    """Position of a node's ``index``-th token on the 64-bit ring (deterministic everywhere).

    x64 mmh3 is fixed here, whatever the machine, so every node computes the same ring.
    """
    return mmh3.hash64(f"{node_id}/{index}", 0, True, signed=False)[0]


@dataclass(frozen=True)
class Ring:
    """An immutable partition -> preference-list map; build one with `Ring.build`.

    Every preference list is computed once, at construction, so lookups are O(1). A new
    membership means a new `Ring`; `epoch` says which one is newer and is part of `hash`.
    """

    epoch: int
    partition_bits: int
    replicas: int
    members: tuple[RingMember, ...]
    vnodes: int = DEFAULT_VNODES
    _owners: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _lists: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False)
    _by_node: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    _digest: str = field(init=False, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        members: Iterable[RingMember],
        *,
        replicas: int = DEFAULT_REPLICAS,
        partition_bits: int = DEFAULT_PARTITION_BITS,
        vnodes: int = DEFAULT_VNODES,
        epoch: int = 0,
    ) -> Ring:
        """The ring of these members; the input order does not matter (members are sorted)."""
        return cls(epoch, partition_bits, replicas, tuple(members), vnodes)

    def __post_init__(self) -> None:
        members = tuple(sorted(self.members, key=lambda m: m.node_id))
        _validate(members, self.replicas, self.partition_bits, self.vnodes, self.epoch)
        positions, owners = _tokens(members, self.vnodes)
        starts = _walk_starts(positions, self.partition_bits)
        zone_of = {m.node_id: _zone_key(m) for m in members}
        want = min(self.replicas, len(members))
        walked = [_pick(_walk(owners, start, len(members)), want, zone_of) for start in starts]
        lists = _balance_primaries(walked, members)
        set_ = object.__setattr__
        set_(self, "members", members)
        set_(self, "_owners", owners)
        set_(self, "_starts", starts)
        set_(self, "_lists", lists)
        set_(self, "_by_node", _partitions_by_node(lists, members))
        set_(self, "_digest", _digest(self.epoch, self.partition_bits, self.replicas, lists))

    @property
    def partitions(self) -> int:
        """Number of partitions, ``2 ** partition_bits``."""
        return 1 << self.partition_bits

    @property
    def hash(self) -> str:
        """Stable hex digest of epoch, partition_bits, replicas and every preference list.

        Two nodes agree on placement exactly when their hashes match, so gossip can compare
        rings by this string alone.
        """
        return self._digest

    def node_ids(self) -> tuple[str, ...]:
        """Member ids, sorted."""
        return tuple(m.node_id for m in self.members)

    def preference_list(self, partition: int) -> tuple[str, ...]:
        """The nodes that hold ``partition``, primary first (Dynamo §4.3).

        Shorter than ``replicas`` only when the ring has fewer members than that.
        """
        return self._lists[self._check(partition)]

    def fallbacks(self, partition: int) -> Iterator[str]:
        """Every member not in the preference list, once each, in the order the walk meets them.

        These are the stand-ins for unreachable replicas (sloppy quorum and hinted handoff,
        Dynamo §4.6); the order is fixed so every coordinator picks the same stand-ins.
        """
        preferred = set(self._lists[self._check(partition)])
        start = self._starts[partition]
        return (n for n in _walk(self._owners, start, len(self.members)) if n not in preferred)

    def partitions_of(self, node_id: str) -> tuple[int, ...]:
        """Partitions whose preference list holds ``node_id``, ascending; () for a non-member."""
        return self._by_node.get(node_id, ())

    def primary_share(self) -> dict[str, float]:
        """Fraction of partitions each member is listed first for (0.0 for none)."""
        counts = dict.fromkeys(self.node_ids(), 0)
        for plist in self._lists:
            if plist:
                counts[plist[0]] += 1
        return {node: count / self.partitions for node, count in counts.items()}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description for the admin API and debugging."""
        return {
            "epoch": self.epoch,
            "hash": self.hash,
            "partitions": self.partitions,
            "replicas": self.replicas,
            "members": [{"node_id": m.node_id, "zone": m.zone} for m in self.members],
            "owners": {str(p): list(plist) for p, plist in enumerate(self._lists)},
        }

    def _check(self, partition: int) -> int:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is outside 0..{self.partitions - 1}")
        return partition


def _validate(
    members: Sequence[RingMember], replicas: int, partition_bits: int, vnodes: int, epoch: int
) -> None:
    """Reject arguments that would give a meaningless or silently surprising ring."""
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    if not 1 <= partition_bits <= MAX_PARTITION_BITS:
        raise ValueError(f"partition_bits must be in 1..{MAX_PARTITION_BITS}, got {partition_bits}")
    if vnodes < 1:
        raise ValueError(f"vnodes must be at least 1, got {vnodes}")
    if epoch < 0:
        raise ValueError(f"epoch must not be negative, got {epoch}")
    seen: set[str] = set()
    for member in members:
        if not member.node_id:
            raise ValueError("a ring member has an empty node_id")
        if member.node_id in seen:
            raise ValueError(f"duplicate node_id {member.node_id!r} in ring members")
        if member.weight < 1:
            raise ValueError(f"member {member.node_id!r} has weight {member.weight}; minimum 1")
        seen.add(member.node_id)


def _tokens(members: Sequence[RingMember], vnodes: int) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """All tokens sorted by position (ties by node id), as parallel position/owner tuples."""
    pairs = sorted(
        (vnode_token(m.node_id, i), m.node_id) for m in members for i in range(vnodes * m.weight)
    )
    return tuple(p for p, _ in pairs), tuple(n for _, n in pairs)


def _walk_starts(positions: Sequence[int], partition_bits: int) -> tuple[int, ...]:
    """Per partition, the index of the first token at or after the partition's start."""
    if not positions:
        return (0,) * (1 << partition_bits)
    shift = TOKEN_BITS - partition_bits
    size = len(positions)
    return tuple(
        bisect.bisect_left(positions, p << shift) % size for p in range(1 << partition_bits)
    )


def _zone_key(member: RingMember) -> ZoneKey:
    """A member's failure domain; a member without a zone is a domain of its own."""
    return (member.zone, "") if member.zone else ("", member.node_id)


def _walk(owners: Sequence[str], start: int, member_count: int) -> Iterator[str]:
    """Distinct nodes in the order met walking clockwise from token ``start``, once round."""
    seen: set[str] = set()
    size = len(owners)
    for step in range(size):
        if len(seen) == member_count:
            return
        node = owners[(start + step) % size]
        if node not in seen:
            seen.add(node)
            yield node


def _pick(walk: Iterator[str], want: int, zone_of: dict[str, ZoneKey]) -> list[str]:
    """The first ``want`` nodes of ``walk``, a node of a new zone first while any remain.

    Nodes met in a zone already used wait in ``deferred``; once every zone is used they are
    taken first, in walk order, then the walk continues (Swift's "as unique as possible").
    """
    zone_count = len(set(zone_of.values()))
    chosen: list[str] = []
    used: set[ZoneKey] = set()
    deferred: list[str] = []
    for node in walk:
        if zone_of[node] in used:
            deferred.append(node)
            continue
        chosen.append(node)
        used.add(zone_of[node])
        if len(chosen) == want:
            return chosen
        if len(used) == zone_count:
            break
    for node in chain(deferred, walk):
        if len(chosen) == want:
            break
        chosen.append(node)
    return chosen


def _balance_primaries(
    walked: Sequence[list[str]], members: Sequence[RingMember]
) -> tuple[tuple[str, ...], ...]:
    """Move to the front of each list its first node still under its share of primaries.

    Bounded loads (Mirrokni, Thorup, Zadimoghaddam 2016), in partition order so the result is
    deterministic. When every node of a list is at its cap the walk order stands.
    """
    total = sum(m.weight for m in members)
    partitions = len(walked)
    cap = {m.node_id: math.ceil(partitions * m.weight / total) for m in members}
    led = dict.fromkeys(cap, 0)
    lists: list[tuple[str, ...]] = []
    for plist in walked:
        if not plist:
            lists.append(())
            continue
        lead = next((n for n in plist if led[n] < cap[n]), plist[0])
        led[lead] += 1
        lists.append((lead, *(n for n in plist if n != lead)))
    return tuple(lists)


def _partitions_by_node(
    lists: Sequence[tuple[str, ...]], members: Sequence[RingMember]
) -> dict[str, tuple[int, ...]]:
    """Inverse of the preference lists: node -> partitions it replicates."""
    held: dict[str, list[int]] = {m.node_id: [] for m in members}
    for partition, plist in enumerate(lists):
        for node in plist:
            held[node].append(partition)
    return {node: tuple(parts) for node, parts in held.items()}


def _digest(
    epoch: int, partition_bits: int, replicas: int, lists: Sequence[tuple[str, ...]]
) -> str:
    """blake2b of a canonical JSON encoding: unambiguous for any node id, any platform."""
    payload = json.dumps(
        [epoch, partition_bits, replicas, lists], separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.blake2b(payload.encode("ascii"), digest_size=16).hexdigest()
