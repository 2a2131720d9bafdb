"""A ring epoch: the agreed, numbered membership every node builds its Ring from.

Pure. Ownership changes only through a new epoch (a join, leave or remove), agreed by the
members of the previous epoch (dfsring.core.epochs), so two nodes holding the same epoch number hold
the same `RingState` and build the same `Ring`. Liveness never enters here: a down node keeps
its partitions (Dynamo §4.8.1, explicit membership changes).

`previous` lists the member sets of earlier epochs whose data transfers were not known to be
complete when this epoch was agreed, newest first. While it is non-empty, the data of a
partition may still sit only on its owners under one of those rings, so reads consult them
and writes reach them too (dfsring.core.transition); a node stops using them once every member of
this epoch reports the epoch synced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dfsring.ring import Ring, RingMember

MAX_PREVIOUS = 4
"""Ring changes stack at most this deep before earlier transfers must finish."""

MAX_EPOCH = 2**40
"""The largest epoch any ring may carry: a ring change a second for 34 000 years, and far
below 2^63, so ``epoch + 1`` (the next slot) and ``epoch + EPOCH_WINDOW`` always fit a signed
64-bit integer in any peer (issue 23: a ring at 2^64-1 left no next epoch to agree)."""

EPOCH_WINDOW = 64
"""How far past its own epoch a node adopts a ring it is told of (see `adoption_problem`)."""

MemberWire = tuple[str, str, int, str]
RingWire = tuple[str, int, tuple[MemberWire, ...], tuple[tuple[MemberWire, ...], ...]]


def _canonical(members: Iterable[RingMember]) -> tuple[RingMember, ...]:
    return tuple(sorted(members, key=lambda m: m.node_id))


@dataclass(frozen=True, slots=True)
class RingState:
    cluster: str
    epoch: int
    members: tuple[RingMember, ...]
    previous: tuple[tuple[RingMember, ...], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", _canonical(self.members))
        object.__setattr__(self, "previous", tuple(_canonical(p) for p in self.previous))
        if not 0 <= self.epoch <= MAX_EPOCH:
            raise ValueError(f"epoch must be in 0..{MAX_EPOCH}, got {self.epoch}")
        ids = [m.node_id for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValueError("a node appears twice in the ring")
        if len(self.previous) > MAX_PREVIOUS:
            raise ValueError(f"more than {MAX_PREVIOUS} previous rings")

    @classmethod
    def empty(cls) -> RingState:
        """No ring yet: a node that has not founded or joined a cluster."""
        return cls("", 0, ())

    @classmethod
    def found(cls, cluster: str, me: RingMember) -> RingState:
        """Epoch 1 of a new cluster whose only member is its founder."""
        return cls(cluster, 1, (me,))

    @property
    def member_ids(self) -> frozenset[str]:
        return frozenset(m.node_id for m in self.members)

    @property
    def in_transition(self) -> bool:
        return bool(self.previous)

    def successor(self, members: Iterable[RingMember], *, keep_previous: bool) -> RingState:
        """The next epoch with these members. `keep_previous`: the transfers into this epoch
        are not known complete, so its own previous rings stay consulted too."""
        older = self.previous if keep_previous else ()
        chain = (self.members, *older) if self.members else older  # never truncated: raises
        #         (ValueError) past MAX_PREVIOUS rather than forget a ring still holding data
        return RingState(self.cluster, self.epoch + 1, tuple(members), chain)

    def settled(self) -> RingState:
        """The same epoch with its transfers complete (nothing older to consult)."""
        return RingState(self.cluster, self.epoch, self.members, ())

    def digest(self) -> str:
        """Identity of the agreed content (not of the settled flag, which is local)."""
        body = repr((self.cluster, self.epoch, [_member_key(m) for m in self.members],
                     [[(m.node_id, m.zone, m.weight) for m in p] for p in self.previous]))
        return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()

    def ring(self, replicas: int, partition_bits: int) -> Ring:
        return Ring.build(self.members, replicas=replicas, partition_bits=partition_bits,
                          epoch=self.epoch)

    def previous_rings(self, replicas: int, partition_bits: int) -> tuple[Ring, ...]:
        return tuple(Ring.build(p, replicas=replicas, partition_bits=partition_bits,
                                epoch=self.epoch - 1 - i)
                     for i, p in enumerate(self.previous) if p)

    def to_wire(self) -> RingWire:
        return (self.cluster, self.epoch, tuple(_member_wire(m) for m in self.members),
                tuple(tuple(_member_wire(m) for m in p) for p in self.previous))

    @classmethod
    def from_wire(cls, wire: Any) -> RingState:
        """Inverse of to_wire; ValueError for anything that is not a well-formed ring."""
        try:
            cluster, epoch, members, previous = wire
            if not isinstance(cluster, str) or type(epoch) is not int:
                raise TypeError("cluster is a string, epoch an integer")
            return cls(cluster, epoch, tuple(_member_from(m) for m in members),
                       tuple(tuple(_member_from(m) for m in p) for p in previous))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed ring state: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "epoch": self.epoch,
                "members": [{"node_id": m.node_id, "zone": m.zone} for m in self.members],
                "previous": [[m.node_id for m in p] for p in self.previous]}


def adoption_problem(current: RingState, ring: RingState) -> str | None:
    """Why a node holding `current` must not adopt `ring` a peer sent it; None if it may.

    Only chosen rings may be adopted (dfsring.core.epochs), and a refusal must change nothing,
    so this is checked before anything is merged or persisted (issue 23). The rule:

    * a node without a ring (joining, founding) takes what its seeds give it: it has nothing
      to compare against;
    * another cluster's ring never (the caller raises WrongCluster for that);
    * at our epoch, only our own ring or its settled copy: Paxos chose one ring per epoch;
    * at epoch ``ours + 1``, a ring still in transition carries its proof of descent: every
      chosen successor is planned from the ring before it (`RingState.successor`), so its
      newest previous ring is exactly our members. Its settled copy no longer carries it;
    * at most `EPOCH_WINDOW` epochs past ours: epochs are chosen one at a time, each by a
      majority of the ring before, so a cluster never runs far ahead of a live member, and a
      forged far-future epoch cannot leave the cluster without a next epoch to agree on.

    This is a check of consistency, not of authenticity: a peer holding the cluster secret
    can still forge a plausible successor (peer identity is a separate issue).
    """
    if not current.epoch:
        return None
    if ring.cluster != current.cluster:
        return f"ring of cluster {ring.cluster!r}, ours is {current.cluster!r}"
    if ring.epoch == current.epoch and ring.settled() != current.settled():
        return f"a different ring at our epoch {ring.epoch}: only one is ever chosen"
    if ring.epoch > current.epoch + EPOCH_WINDOW:
        return (f"epoch {ring.epoch} is more than {EPOCH_WINDOW} past ours ({current.epoch}):"
                " epochs are chosen one at a time")
    if (ring.epoch == current.epoch + 1 and ring.previous
            and ring.previous[0] != current.members):
        return (f"epoch {ring.epoch} does not descend from our epoch {current.epoch}: its "
                "previous members are not ours")
    return None


def _member_key(m: RingMember) -> tuple[str, ...] | tuple[str, str, int]:
    """What a member contributes to the digest; members without an acceptor nonce keep the
    digest they had before nonces existed."""
    if m.acceptor:
        return (m.node_id, m.zone, str(m.weight), m.acceptor)
    return (m.node_id, m.zone, m.weight)


def _member_wire(m: RingMember) -> MemberWire:
    return (m.node_id, m.zone, m.weight, m.acceptor)


def _member_from(raw: Any) -> RingMember:
    """(node_id, zone, weight[, acceptor]): the acceptor nonce is optional (older rings)."""
    if type(raw) not in (list, tuple) or len(raw) not in (3, 4):
        raise ValueError("a ring member is (node_id, zone, weight, acceptor)")
    node_id, zone, weight = raw[:3]
    acceptor = raw[3] if len(raw) == 4 else ""
    if not isinstance(node_id, str) or not node_id or not isinstance(zone, str):
        raise ValueError("a ring member is (node_id, zone, weight, acceptor)")
    if type(weight) is not int or not 1 <= weight <= 64:
        raise ValueError("a member's weight is 1..64")
    if not isinstance(acceptor, str) or len(acceptor) > 64:
        raise ValueError("a member's acceptor nonce is a string of at most 64 characters")
    return RingMember(node_id, zone, weight, acceptor)
