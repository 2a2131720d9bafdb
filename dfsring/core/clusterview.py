"""One immutable picture of the cluster, as this node sees it at one moment. Pure.

Membership (dfsring.gossip) is the only writer of cluster state; every service that routes
a request or repairs data reads a `ClusterView` from it at the start of an operation and
uses that one snapshot to the end. So one write's owners, fallbacks, liveness checks and
addresses all come from the same ring and the same opinion of who is up, however the
gossip loop moves on meanwhile (a write that must notice a newer ring, dfsring.core.writequorum,
asks for a fresh view on purpose). Riak's split is the model: `riak_core_apl` has one call
that fetches the ring and a pure variant that takes the ring as an argument.

Invariants of a view:
* ``ring`` is built from ``members.ring`` (the agreed RingState), ``previous_rings`` from
  its older member lists; ``previous`` is empty once the transition is settled (the old
  owners' copies are no longer needed, dfsring.core.transition).
* ``liveness`` holds this node's failure-detector opinion of every member entry at the
  moment the view was taken (phi accrual, Hayashibara et al. 2004). This node is always UP;
  a node the ring names but gossip has not brought yet is DOWN (it cannot be reached).
* ``address_of`` raises PeerUnavailable for such a node, so a caller moves on to the next
  replica instead of failing the request (commit ac22195).

Also here, because every coordinator must pick the same stand-ins from the same view:
`FallbackPicker` and `substitutes`, the sloppy-quorum choice of fallbacks (Dynamo §4.6),
shared by key/value writes and reads (dfsring.replication.coordinator) and chunk writes
(dfsring.files.chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from dfsring.core import keys, membership, transition
from dfsring.core.failure import Liveness
from dfsring.core.keys import ObjectName
from dfsring.core.membership import MemberState, Status, View
from dfsring.core.ringstate import RingState
from dfsring.foundation.errors import PeerUnavailable
from dfsring.ring import Ring


@dataclass(frozen=True)
class ClusterView:
    """This node's snapshot of ring, previous rings, members and liveness (module docstring)."""

    node_id: str
    members: View
    ring: Ring
    previous_rings: tuple[Ring, ...] = ()
    settled: bool = True
    liveness: Mapping[str, Liveness] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "liveness", MappingProxyType(dict(self.liveness)))

    @classmethod
    def build(cls, node_id: str, members: View, *, replicas: int, partition_bits: int,
              settled: bool = True, liveness: Mapping[str, Liveness] | None = None,
              ) -> ClusterView:
        """A view with its rings built from ``members.ring`` (tests, and gossip's first)."""
        rs = members.ring
        return cls(node_id, members, rs.ring(replicas, partition_bits),
                   rs.previous_rings(replicas, partition_bits), settled, liveness or {})

    # --- rings -----------------------------------------------------------------------------

    @property
    def ring_state(self) -> RingState:
        return self.members.ring

    @property
    def epoch(self) -> int:
        return self.ring.epoch

    @property
    def previous(self) -> tuple[Ring, ...]:
        """Older rings still holding data: empty once this epoch's transfers are settled."""
        return () if self.settled else self.previous_rings

    @property
    def rings(self) -> tuple[Ring, ...]:
        """The current ring, then the older ones still holding data."""
        return (self.ring, *self.previous)

    def partition(self, name: ObjectName) -> int:
        return keys.name_partition(name, self.ring.partition_bits)

    def owners(self, partition: int) -> tuple[str, ...]:
        """The partition's preference list under the current ring, primary first."""
        return self.ring.preference_list(partition)

    def write_targets(self, partition: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(counted owners, old owners also sent the write): dfsring.core.transition."""
        return transition.write_targets(partition, self.ring, self.previous)

    def read_groups(self, partition: int) -> tuple[tuple[str, ...], ...]:
        return transition.read_groups(partition, self.ring, self.previous)

    def fallbacks(self, partition: int) -> Iterator[str]:
        return self.ring.fallbacks(partition)

    def fallback_picker(self, partition: int, exclude: Iterable[str] = ()) -> FallbackPicker:
        """Stand-ins for this partition's unreachable owners, as every coordinator with this
        view would pick them."""
        return FallbackPicker(self.fallbacks(partition), self.is_alive, exclude)

    # --- members ---------------------------------------------------------------------------

    @property
    def me(self) -> MemberState:
        return self.members.members[self.node_id]

    @property
    def address(self) -> str:
        return self.me.address

    def address_of(self, node_id: str) -> str:
        """A member's address; PeerUnavailable for a node the ring names before gossip has
        brought its member entry (an adopted ring can run ahead of the member list), so
        callers treat it as unreachable for now instead of failing with a KeyError."""
        member = self.members.members.get(node_id)
        if member is None:
            raise PeerUnavailable(node_id, "address not yet known (its member entry has not "
                                           "arrived by gossip)")
        return member.address

    def liveness_of(self, node_id: str) -> Liveness:
        if node_id == self.node_id:
            return Liveness.UP
        if node_id not in self.members.members:
            return Liveness.DOWN
        return self.liveness.get(node_id, Liveness.UP)

    def is_alive(self, node_id: str) -> bool:
        """Not held down by the failure detector (UP or SUSPECT)."""
        return self.liveness_of(node_id) is not Liveness.DOWN

    def status_of(self, node_id: str) -> Status:
        """LEFT for a removed node, else what it says; KeyError for one never heard of."""
        return membership.effective_status(self.members, node_id)

    def synced(self) -> dict[str, int]:
        """node -> the newest ring epoch whose data it holds (dfsring.core.transition)."""
        return {m.node_id: m.synced_epoch for m in self.members.members.values()}


class ViewSource(Protocol):
    """Where a service gets the current view (dfsring.gossip.Gossiper; a fixed view in
    tests)."""

    def cluster_view(self) -> ClusterView: ...


class Membership(ViewSource, Protocol):
    """ViewSource plus the changes ring changes and transfers make to membership; only
    those two services write, everything else reads."""

    def subscribe(self, listener: Callable[[], None]) -> None: ...

    def adopt_ring(self, ring: RingState) -> bool: ...

    async def announce(self, ring: RingState, node_ids: Iterable[str]) -> None: ...

    def set_synced(self, epoch: int) -> None: ...

    def set_status(self, status: Status) -> None: ...


@dataclass(frozen=True)
class FixedView:
    """A ViewSource that always returns one view: for tests that hand a service a cluster."""

    view: ClusterView

    def cluster_view(self) -> ClusterView:
        return self.view


class FallbackPicker:
    """Hands out stand-ins for unreachable owners, each at most once per request, in the
    ring's fallback order, skipping nodes held down, so every coordinator with the same view
    picks the same ones and a read later finds the hints where the write left them."""

    def __init__(self, candidates: Iterable[str], alive: Callable[[str], bool],
                 exclude: Iterable[str] = ()) -> None:
        self._candidates: Iterator[str] = iter(candidates)
        self._alive = alive
        self._skip = set(exclude)

    def next(self) -> str | None:
        for node in self._candidates:
            if node not in self._skip and self._alive(node):
                self._skip.add(node)
                return node
        return None


def substitutes(owners: Iterable[str], fallbacks: Iterable[str],
                alive: Callable[[str], bool], exclude: Iterable[str] = ()) -> dict[str, str]:
    """For each owner held down, the fallback a sloppy write would have used in its place
    (owner -> fallback), in the same order as `FallbackPicker` hands them out."""
    picker = FallbackPicker(fallbacks, alive, exclude)
    out: dict[str, str] = {}
    for owner in owners:
        if not alive(owner):
            stand_in = picker.next()
            if stand_in is None:
                break
            out[owner] = stand_in
    return out
