"""Agreeing on the next ring epoch: single-decree Paxos per epoch, and what the next ring is.

Pure: no clocks, sockets or files. The shell persists `AcceptorState` (fsync) before it
answers, sends the messages and feeds the replies to a `Proposal`.

Why consensus. A join, leave or remove produces epoch E+1 from epoch E. If two nodes could
each mint "epoch E+1" on their own, two different rings would carry the same number and
nodes holding the same epoch would disagree about ownership (the precondition of
dfsring.core.ringstate). So every epoch E+1 is one instance ("slot") of single-decree Paxos
(Lamport, "Paxos Made Simple", 2001, §2) whose acceptors are the members of epoch E; a
value is chosen once a majority of them accepted it under one ballot, and a node adopts
E+1 only once it is chosen. Dynamo itself leaves membership changes to an administrator
(§4.8.1); this is how we make them safe without one.

The rules, as in the paper (§2.2):

* phase 1: an acceptor promises a ballot strictly greater than any it promised, and
  reports the highest-ballot value it has accepted;
* phase 2: an acceptor accepts ``(ballot, value)`` unless it promised a higher ballot;
* a proposer that heard promises from a majority proposes the value accepted under the
  highest ballot among them, or its own value if none had accepted anything.

Invariant (P2 of the paper): once a value is chosen in a slot, every higher ballot that
reaches phase 2 proposes that same value, so at most one value is ever chosen per slot.
Ballots are ``(round, node_id)``: the node id breaks ties, so two proposers never share one.

Who proposes: the `claimant`, the lowest-id member believed alive. Liveness only picks the
proposer; safety never depends on it (two claimants just compete with ballots).

Acceptor amnesia (issue 15). Paxos assumes an acceptor never forgets a promise or a vote. A
node whose data dir was wiped (disk replaced) and that comes back with the same node id has
forgotten both; if it voted again from an empty state, the majority that chose a ring could
lose the one member that remembered it, and a second ring could be chosen for the same epoch
(tests/unit/test_epochs.py finds exactly that on the old rule). Two cures are usual: a fresh
acceptor identity that the others must first re-admit, or sitting out until caught up. We do
the first, enforced on the acceptor's side, which is the second with a precise end:

* every acceptor state carries a ``nonce``, created with the state and persisted with it; a
  wiped node gets a new one. Each ring member records the nonce of its acceptor (RingMember
  ``acceptor``), and each node gossips its own, so the claimant sees a member whose nonce
  differs from the ring's and proposes the same members with the new nonce (a re-admission
  epoch, which moves no data: placement ignores the nonce);
* an acceptor votes only in slots ``>= voting_from``. A new state starts `UNADMITTED`
  (votes nowhere); `admit` sets ``voting_from = E + 1`` once it holds a chosen ring E that
  lists its own nonce.

Why that is safe: an acceptor votes in slot S only after ring S-1 was chosen (a proposer
holds ring S-1 as current, and accepted values must be epoch S). A ring listing the new
nonce was proposed after the nonce existed, so after the wipe; hence every slot
``>= voting_from`` is one whose previous ring was chosen after the wipe, in which the node's
forgotten earlier life cannot have voted. The forgotten votes still count where they were cast
(nothing is un-counted), and the new life never casts a second, contradicting one: it is a
new acceptor that joined late, which Paxos tolerates. Sitting out "until it learned the latest
ring from peers" needs a bound on the newest ring chosen before the wipe, which no peer can
give for sure (membership may have moved on); the nonce is that bound, made explicit (Paxos
Made Live, Chandra et al. 2007, §5.1, lets a replica with a lost disk rejoin only after an
instance started after its loss completed, for the same reason). The price: a cluster whose
wiped members are a majority of the ring cannot choose the re-admission and stays at its epoch
until an operator intervenes, as it would if they were down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from dfsring.core.ringstate import MAX_PREVIOUS, RingState
from dfsring.ring import RingMember

MAX_ROUND = 2**40
"""The largest ballot round a peer may send: a proposer moves past the highest round it has
seen, so a round near 2^63 would leave it no next ballot any acceptor could decode."""


@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """A Paxos proposal number: ordered by round, then node id (Paxos Made Simple §2.5)."""

    round: int
    node_id: str

    def to_wire(self) -> tuple[int, str]:
        return (self.round, self.node_id)

    @classmethod
    def from_wire(cls, raw: Any) -> Ballot:
        """Inverse of to_wire (a list is accepted too); ValueError for anything else."""
        try:
            round_, node_id = raw
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a ballot is (round, node_id), got {raw!r}") from exc
        if not _is_int(round_) or not 0 <= round_ <= MAX_ROUND:
            raise ValueError(f"a ballot round is an integer in 0..{MAX_ROUND}, got {round_!r}")
        if not isinstance(node_id, str) or not node_id:
            raise ValueError(f"a ballot node id is a non-empty string, got {node_id!r}")
        return cls(round_, node_id)


Accepted = tuple[Ballot, RingState]
"""An acceptor's vote: the ballot and the ring it accepted under it."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


UNADMITTED = 2**63 - 1
"""``voting_from`` of an acceptor no chosen ring lists yet: it votes in no slot."""


@dataclass(frozen=True, slots=True)
class AcceptorState:
    """What a node must persist (fsync) before answering a prepare/accept.

    "An acceptor records its intended response in stable storage before actually sending
    the response" (Paxos Made Simple §2.5): an acceptor that forgot a promise could accept a
    lower ballot after it, and a chosen value could be overwritten.

    Invariants: ``slot >= 1``; an accepted value is for this slot (``value.epoch == slot``)
    and its ballot is at most the promised one. ``nonce`` names this acceptor's memory (a new
    one with every new state, see the module docstring) and it votes only in slots
    ``>= voting_from``; the defaults describe a state written before nonces existed, which
    votes as it always did.
    """

    slot: int
    promised: Ballot | None = None
    accepted: Accepted | None = None
    nonce: str = ""
    voting_from: int = 1

    def __post_init__(self) -> None:
        if not _is_int(self.slot) or self.slot < 1:
            raise ValueError(f"slot must be an integer >= 1, got {self.slot!r}")
        if not isinstance(self.nonce, str) or len(self.nonce) > 64:
            raise ValueError(f"nonce must be a string of at most 64 characters, got "
                             f"{self.nonce!r:.80}")
        if not _is_int(self.voting_from) or not 1 <= self.voting_from <= UNADMITTED:
            raise ValueError(f"voting_from must be an integer >= 1, got {self.voting_from!r}")
        if self.accepted is None:
            return
        ballot, value = self.accepted
        if value.epoch != self.slot:
            raise ValueError(f"accepted epoch {value.epoch} is not for slot {self.slot}")
        if self.promised is None or ballot > self.promised:
            raise ValueError("an accepted ballot cannot exceed the promised ballot")

    def to_json(self) -> dict[str, Any]:
        accepted = None
        if self.accepted is not None:
            ballot, value = self.accepted
            accepted = {"ballot": ballot.to_wire(), "value": value.to_wire()}
        promised = None if self.promised is None else self.promised.to_wire()
        return {"slot": self.slot, "promised": promised, "accepted": accepted,
                "nonce": self.nonce, "voting_from": self.voting_from}

    @classmethod
    def from_json(cls, data: Any) -> AcceptorState:
        """Inverse of to_json; ValueError for anything that is not a valid state."""
        try:
            raw_promised, raw_accepted = data["promised"], data["accepted"]
            promised = None if raw_promised is None else Ballot.from_wire(raw_promised)
            accepted = None
            if raw_accepted is not None:
                accepted = (Ballot.from_wire(raw_accepted["ballot"]),
                            RingState.from_wire(raw_accepted["value"]))
            return cls(data["slot"], promised, accepted, data.get("nonce", ""),
                       data.get("voting_from", 1))
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"malformed acceptor state: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class Promise:
    """An acceptor's phase-1 answer. ``promised`` is its promise after the prepare: the
    ballot itself when ``ok``, the higher ballot that beat it otherwise (None if the slot was
    stale, since a promise for another slot says nothing about this one)."""

    ok: bool
    accepted: Accepted | None
    promised: Ballot | None


def fresh(slot: int, nonce: str) -> AcceptorState:
    """A new acceptor memory (first start, or a wiped data dir): it votes nowhere until a
    chosen ring lists ``nonce`` (see `admit`)."""
    if not nonce:
        raise ValueError("a fresh acceptor needs a nonce")
    return AcceptorState(slot, nonce=nonce, voting_from=UNADMITTED)


def admit(state: AcceptorState, ring: RingState, node_id: str) -> AcceptorState:
    """``state`` allowed to vote from slot ``ring.epoch + 1`` on, if the chosen ``ring`` lists
    this node with this acceptor's nonce (that ring was chosen after the nonce was made)."""
    if not state.nonce or state.voting_from <= ring.epoch + 1:
        return state
    if any(m.node_id == node_id and m.acceptor == state.nonce for m in ring.members):
        return replace(state, voting_from=ring.epoch + 1)
    return state


def advance(state: AcceptorState, committed_epoch: int) -> AcceptorState:
    """The state for slot ``committed_epoch + 1`` once the node adopted that epoch.

    Everything about the old slot is dropped: it is decided, so nothing can be lost. Never
    moves backwards: an older epoch leaves the state as it is. The nonce and ``voting_from``
    belong to the acceptor, not to the slot, and are kept.
    """
    if committed_epoch >= state.slot:
        return AcceptorState(committed_epoch + 1, nonce=state.nonce,
                             voting_from=state.voting_from)
    return state


def on_prepare(state: AcceptorState, slot: int, ballot: Ballot) -> tuple[AcceptorState, Promise]:
    """Phase 1b: promise iff ``ballot`` is strictly above every ballot promised in this slot.

    A prepare for a later slot means this node is behind (the proposer holds the committed
    epoch ``slot - 1``, which the caller adopts from the message); it advances first. An
    acceptor sitting out this slot (``slot < voting_from``) refuses without changing.
    """
    if slot < state.slot or slot < state.voting_from:
        return state, Promise(False, None, None)
    state = advance(state, slot - 1)
    if state.promised is not None and ballot <= state.promised:
        return state, Promise(False, None, state.promised)
    state = replace(state, promised=ballot)
    return state, Promise(True, state.accepted, ballot)


def on_accept(
    state: AcceptorState, slot: int, ballot: Ballot, value: RingState
) -> tuple[AcceptorState, bool]:
    """Phase 2b: accept unless a higher ballot was promised. A value that is not epoch
    ``slot`` is refused: it cannot be the ring this slot decides."""
    if slot < state.slot or slot < state.voting_from or value.epoch != slot:
        return state, False
    state = advance(state, slot - 1)
    if state.promised is not None and ballot < state.promised:
        return state, False
    return replace(state, promised=ballot, accepted=(ballot, value)), True


class Proposal:
    """Pure proposer state machine for one slot (phase 1 then phase 2).

    Replies from non-acceptors and repeated replies are ignored, so no acceptor counts twice.
    The value to propose is fixed the moment phase 1 reaches a majority: promises that
    arrive later must not change it, or two acceptors could accept different values under
    one ballot.

    The caller picks a ballot it never used before, even across restarts (§2.5: a proposer
    remembers the highest-numbered proposal it tried), e.g. one round above both its last
    ballot and `highest_seen`.
    """

    __slots__ = (
        "_acceptors",
        "_accepts",
        "_ballot",
        "_majority",
        "_phase2_value",
        "_promises",
        "_refusals",
        "_slot",
        "_value",
    )

    def __init__(
        self, slot: int, ballot: Ballot, acceptors: frozenset[str], value: RingState
    ) -> None:
        if not acceptors:
            raise ValueError("a proposal needs at least one acceptor")
        if value.epoch != slot:
            raise ValueError(f"value has epoch {value.epoch}, the slot is {slot}")
        self._slot = slot
        self._ballot = ballot
        self._acceptors = acceptors
        self._value = value
        self._majority = len(acceptors) // 2 + 1
        self._promises: dict[str, Promise] = {}
        self._refusals: dict[str, Promise] = {}
        self._accepts: dict[str, bool] = {}
        self._phase2_value: RingState | None = None

    @property
    def slot(self) -> int:
        return self._slot

    @property
    def ballot(self) -> Ballot:
        return self._ballot

    @property
    def acceptors(self) -> frozenset[str]:
        return self._acceptors

    @property
    def majority(self) -> int:
        return self._majority

    def on_promise(self, node_id: str, promise: Promise) -> None:
        if node_id not in self._acceptors or node_id in self._promises | self._refusals:
            return
        if promise.ok:
            self._promises[node_id] = promise
            if self._phase2_value is None and self.phase1_done:
                self._phase2_value = _highest_accepted(self._promises.values(), self._value)
        else:
            self._refusals[node_id] = promise

    @property
    def phase1_done(self) -> bool:
        return len(self._promises) >= self._majority

    @property
    def phase1_failed(self) -> bool:
        return len(self._refusals) > len(self._acceptors) - self._majority

    def value_to_propose(self) -> RingState:
        """The value accepted under the highest ballot among the promises, else our own.

        Only meaningful after phase 1 (RuntimeError before): P2c needs a majority's reports.
        """
        if self._phase2_value is None:
            raise RuntimeError("phase 1 has not reached a majority")
        return self._phase2_value

    @property
    def proposing_own(self) -> bool:
        """True when phase 2 carries our own value, False when completing someone else's."""
        return self.value_to_propose() == self._value

    def on_accepted(self, node_id: str, ok: bool) -> None:
        if node_id not in self._acceptors or node_id in self._accepts or not self.phase1_done:
            return
        self._accepts[node_id] = ok

    @property
    def chosen(self) -> bool:
        return sum(self._accepts.values()) >= self._majority

    @property
    def failed(self) -> bool:
        refused = len(self._accepts) - sum(self._accepts.values())
        return self.phase1_failed or refused > len(self._acceptors) - self._majority

    def highest_seen(self) -> Ballot | None:
        """The highest ballot refusals reported, so the next attempt can use its round + 1."""
        seen = [p.promised for p in self._refusals.values() if p.promised is not None]
        return max(seen, default=None)


def _highest_accepted(promises: Iterable[Promise], own: RingState) -> RingState:
    accepted = [p.accepted for p in promises if p.accepted is not None]
    if not accepted:
        return own
    return max(accepted, key=lambda pair: pair[0])[1]


def claimant(ring: RingState, alive: Callable[[str], bool]) -> str | None:
    """The member that proposes the next epoch: the lowest node id believed alive.

    A deterministic choice so that usually only one node proposes; if views of liveness
    differ, two claimants compete and Paxos ballots keep it safe.
    """
    return next((m.node_id for m in ring.members if alive(m.node_id)), None)


def next_members(
    ring: RingState,
    *,
    joining: Iterable[RingMember],
    leaving: Iterable[str],
    removed: Iterable[str],
    renewed: Mapping[str, str] | None = None,
) -> tuple[RingMember, ...] | None:
    """``members - leaving - removed + joining``, sorted by id; None if nothing changes.

    A joiner that is already a member (or listed twice) keeps its current entry, and a
    removed node cannot join in the same change. The result is never empty: a cluster cannot
    leave entirely, so such a change gives None. ``renewed`` maps members to the acceptor
    nonce they now hold (a wiped member re-admitted, see the module docstring); their entry is
    otherwise kept.
    """
    gone = set(leaving) | set(removed)
    refused = set(removed)
    nonces = renewed or {}
    kept = [replace(m, acceptor=nonces.get(m.node_id, m.acceptor))
            for m in ring.members if m.node_id not in gone]
    ids = ring.member_ids
    for member in joining:
        if member.node_id not in ids and member.node_id not in refused:
            kept.append(member)
            ids |= {member.node_id}
    result = tuple(sorted(kept, key=lambda m: m.node_id))
    if not result or result == ring.members:
        return None
    return result


def plan_next(
    ring: RingState,
    *,
    joining: Iterable[RingMember],
    leaving: Iterable[str],
    removed: Iterable[str],
    settled: bool,
    renewed: Mapping[str, str] | None = None,
) -> RingState | None:
    """The successor of ``ring`` for this change, or None if there is none to propose.

    ``settled``: every transfer into ``ring`` is known complete, so its previous rings can be
    forgotten. Otherwise they stay consulted, and every change waits once MAX_PREVIOUS rings
    are stacked, removals included: dropping the oldest ring would stop consulting owners
    that may hold the only copies of writes acknowledged under it. (A dead member blocking a
    full stack is brought back, after which the transfers finish.)
    """
    removed = tuple(removed)
    members = next_members(ring, joining=joining, leaving=leaving, removed=removed,
                           renewed=renewed)
    if members is None:
        return None
    if not settled and len(ring.previous) >= MAX_PREVIOUS:
        return None
    return ring.successor(members, keep_previous=not settled)
