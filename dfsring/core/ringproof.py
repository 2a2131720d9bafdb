"""Proof that a ring was chosen, asked of the acceptors before a node adopts it. Pure.

Why (issue 23). A node adopts only chosen rings (dfsring.core.epochs), but a ring reaches it
from a peer: a proposer's announce, gossip, a prepare carrying the proposer's ring. Any
holder of the cluster secret can send a ring that is merely consistent with ours (epoch + 1,
our members) although no Paxos round chose it, and `ringstate.adoption_problem` cannot tell
(it checks consistency, not choice). So a node that is told of a ring newer than its own,
and has not itself seen it chosen, first asks the acceptors of its own ring (it dials them
itself, at the addresses it holds; it does not trust the sender) what they know of it.

What counts. Let ``E`` be the asking node's epoch and ``A`` the members of ring ``E`` (the
acceptors of slot ``E + 1``), ``m = |A| // 2 + 1``. Each answer is one of

* ``CHOSEN``: the acceptor holds that ring, or remembers having held it (`ChosenLog`). A
  member adopts only chosen rings (this very rule, by induction from the founding ring and
  the rings its own proposals got chosen), so one honest such answer already proves it;
* ``ACCEPTED`` under ballot ``b``: the acceptor accepted it in slot ``E + 1`` and has not yet
  adopted it (it drops that memory once it adopts, so the proposer's announce races with it);
* ``UNKNOWN``.

The ring is proven when ``#CHOSEN + #ACCEPTED(b) >= m`` for some single ballot ``b``,
counting ACCEPTED only for epoch ``E + 1``. A majority accepting the same value under
different ballots does not make it chosen (Paxos Made Simple §2.2; e.g. A: V@1, B: V@3,
C: W@2, then a ballot-4 proposer hearing A and C completes W), hence one ballot. Requiring a
majority even of CHOSEN answers, where one honest answer would do, means a forger must
control a majority of the addresses we hold for our own ring's members, not one.

A node far behind (epoch ``E``, told of ``E + k``) is answered CHOSEN by every member of
ring ``E`` that has since caught up, so it learns the newest ring in one step; the limit is
that a majority of ring ``E``'s members must still be reachable, which is what choosing
``E + 1`` needed too.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dfsring.core.epochs import AcceptorState, Ballot
from dfsring.core.ringstate import EPOCH_WINDOW, RingState

LOG_SIZE = EPOCH_WINDOW
"""Chosen rings an acceptor remembers (by id) after it moved past them: as far back as a
node may lag and still be told of a ring (ringstate.EPOCH_WINDOW)."""


class Knows(enum.StrEnum):
    CHOSEN = "chosen"
    ACCEPTED = "accepted"
    UNKNOWN = "unknown"


def ring_id(ring: RingState) -> str:
    """The identity of a chosen ring: its content as agreed, not whether it has settled (a
    ring and its own settled copy are the same choice, ringstate.adoption_problem)."""
    return ring.settled().digest()


@dataclass(frozen=True, slots=True)
class Answer:
    """One acceptor's answer; ``ballot`` is set exactly for ACCEPTED."""

    knows: Knows
    ballot: Ballot | None = None

    def __post_init__(self) -> None:
        if (self.knows is Knows.ACCEPTED) != (self.ballot is not None):
            raise ValueError("an answer carries a ballot exactly when it says accepted")

    def to_wire(self) -> tuple[str, tuple[int, str] | None]:
        return (self.knows.value, None if self.ballot is None else self.ballot.to_wire())

    @classmethod
    def from_wire(cls, knows: Any, ballot: Any) -> Answer:
        """ValueError for an unknown word or a ballot that does not fit it."""
        try:
            word = Knows(knows)
        except ValueError as exc:
            raise ValueError(f"an answer is one of {[k.value for k in Knows]}") from exc
        return cls(word, None if ballot is None else Ballot.from_wire(ballot))


@dataclass(frozen=True, slots=True)
class ChosenLog:
    """The ids of the last `LOG_SIZE` chosen rings a node held, by epoch (in memory only: a
    restarted node still vouches for the ring it holds, which is persisted)."""

    ids: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", MappingProxyType(dict(self.ids)))

    def with_ring(self, ring: RingState) -> ChosenLog:
        """This log with `ring` (a chosen one) in it, the oldest epochs dropped past LOG_SIZE."""
        if not ring.epoch or self.ids.get(ring.epoch) == ring_id(ring):
            return self
        ids = {**self.ids, ring.epoch: ring_id(ring)}
        keep = sorted(ids)[-LOG_SIZE:]
        return ChosenLog({e: ids[e] for e in keep})

    def knows(self, epoch: int, rid: str) -> bool:
        return self.ids.get(epoch) == rid


def answer(acceptor: AcceptorState, held: RingState, log: ChosenLog, epoch: int,
           rid: str) -> Answer:
    """What an acceptor holding ring `held` answers about ring (`epoch`, `rid`)."""
    if (held.epoch == epoch and ring_id(held) == rid) or log.knows(epoch, rid):
        return Answer(Knows.CHOSEN)
    if acceptor.accepted is not None and acceptor.slot == epoch:
        ballot, value = acceptor.accepted
        if ring_id(value) == rid:
            return Answer(Knows.ACCEPTED, ballot)
    return Answer(Knows.UNKNOWN)


def majority(current: RingState) -> int:
    return len(current.members) // 2 + 1


def proven(current: RingState, candidate: RingState, answers: Mapping[str, Answer]) -> bool:
    """Whether these answers (node id -> answer) prove `candidate` chosen to a node holding
    `current` (module docstring). Answers from nodes outside ``current`` count for nothing."""
    acceptors = current.member_ids
    counted = {n: a for n, a in answers.items() if n in acceptors}
    chosen = sum(1 for a in counted.values() if a.knows is Knows.CHOSEN)
    per_ballot: dict[Ballot, int] = {}
    if candidate.epoch == current.epoch + 1:
        for a in counted.values():
            if a.ballot is not None:
                per_ballot[a.ballot] = per_ballot.get(a.ballot, 0) + 1
    return bool(acceptors) and chosen + max(per_ballot.values(), default=0) >= majority(current)


def hopeless(current: RingState, candidate: RingState, answers: Mapping[str, Answer]) -> bool:
    """Whether no answer still to come can make `candidate` proven (stop asking early)."""
    best = {n: Answer(Knows.CHOSEN) for n in current.member_ids - answers.keys()}
    return not proven(current, candidate, {**answers, **best})
