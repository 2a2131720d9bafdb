"""Ring epochs: Paxos acceptor/proposer rules, their safety under any schedule, and planning.

The safety property is the one of "Paxos Made Simple" (Lamport 2001, §2): at most one value is
chosen per slot, whatever messages are lost, reordered or duplicated, and however proposers
interleave. Acceptor state goes through to_json/from_json at every step, as it would through
the fsynced file.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfsring.core.epochs import (
    AcceptorState,
    Ballot,
    Promise,
    Proposal,
    admit,
    advance,
    claimant,
    fresh,
    next_members,
    on_accept,
    on_prepare,
    plan_next,
)
from dfsring.core.ringstate import MAX_PREVIOUS, RingState
from dfsring.ring import RingMember

pytestmark = pytest.mark.unit

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SAFETY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SLOT = 2
BASE = RingState("c", SLOT - 1, tuple(RingMember(f"a{i}") for i in range(5)))


def ring_for(node: str, epoch: int = SLOT) -> RingState:
    """A distinct candidate ring for `epoch`, identified by one extra member."""
    return RingState("c", epoch, (*BASE.members, RingMember(f"new-{node}")), (BASE.members,))


A, B = Ballot(1, "a"), Ballot(1, "b")
RING_P, RING_Q = ring_for("p"), ring_for("q")


# -- Ballot and AcceptorState encodings -----------------------------------------------------


def test_ballots_order_by_round_then_node_id() -> None:
    assert Ballot(1, "z") < Ballot(2, "a")
    assert Ballot(1, "a") < Ballot(1, "b")
    assert sorted([Ballot(2, "a"), Ballot(1, "b"), Ballot(1, "a")]) == [
        Ballot(1, "a"), Ballot(1, "b"), Ballot(2, "a")]


@given(st.integers(0, 2**40), st.text(min_size=1, max_size=8))
def test_ballot_wire_round_trip(round_: int, node_id: str) -> None:
    ballot = Ballot(round_, node_id)
    assert Ballot.from_wire(ballot.to_wire()) == ballot
    assert Ballot.from_wire(list(json.loads(json.dumps(ballot.to_wire())))) == ballot


@pytest.mark.parametrize("raw", [None, 3, "ab", (1,), (1, "a", 2), (-1, "a"), (True, "a"),
                                 (1.0, "a"), (1, ""), (1, 2), ("1", "a")])
def test_ballot_from_wire_rejects_garbage(raw: Any) -> None:
    with pytest.raises(ValueError):
        Ballot.from_wire(raw)


def json_round_trip(state: AcceptorState) -> AcceptorState:
    return AcceptorState.from_json(json.loads(json.dumps(state.to_json())))


@pytest.mark.parametrize("state", [
    AcceptorState(1),
    AcceptorState(SLOT, A),
    AcceptorState(SLOT, B, (A, RING_P)),
])
def test_acceptor_state_json_round_trip(state: AcceptorState) -> None:
    assert json_round_trip(state) == state


@pytest.mark.parametrize("data", [
    None, [], "x", {}, {"slot": 1}, {"slot": 0, "promised": None, "accepted": None},
    {"slot": True, "promised": None, "accepted": None},
    {"slot": "2", "promised": None, "accepted": None},
    {"slot": 2, "promised": [1], "accepted": None},
    {"slot": 2, "promised": None, "accepted": {"ballot": [1, "a"], "value": RING_P.to_wire()}},
    {"slot": 2, "promised": [1, "a"], "accepted": {"ballot": [2, "a"],
                                                   "value": RING_P.to_wire()}},
    {"slot": 3, "promised": [1, "a"], "accepted": {"ballot": [1, "a"],
                                                   "value": RING_P.to_wire()}},
    {"slot": 2, "promised": [1, "a"], "accepted": {"ballot": [1, "a"], "value": [1, 2]}},
    {"slot": 2, "promised": [1, "a"], "accepted": [[1, "a"], RING_P.to_wire()]},
])
def test_acceptor_state_from_json_rejects_garbage(data: Any) -> None:
    with pytest.raises(ValueError):
        AcceptorState.from_json(data)


# -- acceptor rules --------------------------------------------------------------------------


def test_promise_only_to_a_strictly_higher_ballot() -> None:
    state, promise = on_prepare(AcceptorState(SLOT), SLOT, A)
    assert promise == Promise(True, None, A) and state.promised == A
    again, promise = on_prepare(state, SLOT, A)
    assert promise == Promise(False, None, A) and again == state
    lower, promise = on_prepare(AcceptorState(SLOT, B), SLOT, A)
    assert promise == Promise(False, None, B) and lower.promised == B


def test_promise_reports_the_accepted_value() -> None:
    state = AcceptorState(SLOT, A, (A, RING_P))
    state, promise = on_prepare(state, SLOT, B)
    assert promise == Promise(True, (A, RING_P), B)
    assert state == AcceptorState(SLOT, B, (A, RING_P))


def test_accept_at_or_above_the_promise() -> None:
    state, ok = on_accept(AcceptorState(SLOT, A), SLOT, A, RING_P)
    assert ok and state == AcceptorState(SLOT, A, (A, RING_P))
    state, ok = on_accept(state, SLOT, B, RING_Q)
    assert ok and state == AcceptorState(SLOT, B, (B, RING_Q))
    refused, ok = on_accept(state, SLOT, A, RING_P)
    assert not ok and refused == state


def test_accept_without_a_promise_and_refuse_a_value_of_another_epoch() -> None:
    assert on_accept(AcceptorState(SLOT), SLOT, A, RING_P)[1]
    assert not on_accept(AcceptorState(SLOT), SLOT, A, ring_for("p", SLOT + 1))[1]


def test_stale_slot_is_refused_unchanged() -> None:
    state = AcceptorState(SLOT + 1, A)
    assert on_prepare(state, SLOT, B) == (state, Promise(False, None, None))
    assert on_accept(state, SLOT, B, RING_P) == (state, False)


def test_later_slot_advances_first() -> None:
    behind = AcceptorState(SLOT - 1, B, (B, ring_for("x", SLOT - 1)))
    state, promise = on_prepare(behind, SLOT, A)
    assert promise.ok and promise.accepted is None
    assert state == AcceptorState(SLOT, A)
    state, ok = on_accept(behind, SLOT, A, RING_P)
    assert ok and state == AcceptorState(SLOT, A, (A, RING_P))


def test_advance_moves_forward_only() -> None:
    state = AcceptorState(SLOT, B, (A, RING_P))
    assert advance(state, SLOT - 1) is state
    assert advance(state, SLOT) == AcceptorState(SLOT + 1)
    assert advance(state, SLOT + 4) == AcceptorState(SLOT + 5)


# -- proposer --------------------------------------------------------------------------------

ACCEPTORS = frozenset({"a0", "a1", "a2", "a3", "a4"})


def test_proposal_rejects_an_empty_acceptor_set_and_a_value_for_another_slot() -> None:
    with pytest.raises(ValueError):
        Proposal(SLOT, A, frozenset(), RING_P)
    with pytest.raises(ValueError):
        Proposal(SLOT + 1, A, ACCEPTORS, RING_P)


def test_phase1_needs_a_majority_and_ignores_strangers_and_repeats() -> None:
    proposal = Proposal(SLOT, A, ACCEPTORS, RING_P)
    for node in ("a0", "a0", "zz", "a1"):
        proposal.on_promise(node, Promise(True, None, A))
    assert not proposal.phase1_done
    with pytest.raises(RuntimeError):
        proposal.value_to_propose()
    proposal.on_promise("a2", Promise(True, None, A))
    assert proposal.phase1_done and not proposal.phase1_failed
    assert proposal.value_to_propose() == RING_P and proposal.proposing_own


def test_phase1_fails_once_a_majority_is_out_of_reach() -> None:
    proposal = Proposal(SLOT, A, ACCEPTORS, RING_P)
    proposal.on_promise("a0", Promise(False, None, Ballot(7, "z")))
    proposal.on_promise("a1", Promise(False, None, Ballot(3, "z")))
    proposal.on_promise("a1", Promise(True, None, A))
    assert not proposal.phase1_failed
    proposal.on_promise("a2", Promise(False, None, None))
    assert proposal.phase1_failed and proposal.failed
    assert proposal.highest_seen() == Ballot(7, "z")


def test_completes_the_highest_accepted_value_and_freezes_it() -> None:
    proposal = Proposal(SLOT, Ballot(5, "p"), ACCEPTORS, RING_P)
    proposal.on_promise("a0", Promise(True, (Ballot(2, "x"), ring_for("x")), Ballot(5, "p")))
    proposal.on_promise("a1", Promise(True, (Ballot(3, "y"), ring_for("y")), Ballot(5, "p")))
    proposal.on_promise("a2", Promise(True, None, Ballot(5, "p")))
    assert proposal.value_to_propose() == ring_for("y") and not proposal.proposing_own
    proposal.on_promise("a3", Promise(True, (Ballot(4, "z"), ring_for("z")), Ballot(5, "p")))
    assert proposal.value_to_propose() == ring_for("y")


def test_phase2_chosen_and_failed() -> None:
    proposal = Proposal(SLOT, A, ACCEPTORS, RING_P)
    proposal.on_accepted("a0", True)
    for node in ("a0", "a1", "a2"):
        proposal.on_promise(node, Promise(True, None, A))
    for node, ok in (("a0", True), ("a0", False), ("a1", True), ("zz", True), ("a2", False)):
        proposal.on_accepted(node, ok)
    assert not proposal.chosen and not proposal.failed
    proposal.on_accepted("a3", True)
    assert proposal.chosen
    other = Proposal(SLOT, A, ACCEPTORS, RING_P)
    for node in ("a0", "a1", "a2"):
        other.on_promise(node, Promise(True, None, A))
    for node in ("a0", "a1", "a2"):
        other.on_accepted(node, False)
    assert other.failed and not other.chosen
    assert other.highest_seen() is None


# -- safety under arbitrary schedules --------------------------------------------------------


@dataclass
class Cluster:
    """Acceptors (state kept only as JSON text), proposals, and an unordered network."""

    acceptors: dict[str, str]
    proposers: tuple[str, ...]
    network: list[tuple[Any, ...]] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    last_round: dict[str, int] = field(default_factory=dict)
    phase2: dict[Ballot, RingState] = field(default_factory=dict)
    votes: dict[tuple[Ballot, RingState], set[str]] = field(default_factory=dict)
    chosen: set[RingState] = field(default_factory=set)
    learned: set[RingState] = field(default_factory=set)

    def load(self, node: str) -> AcceptorState:
        return AcceptorState.from_json(json.loads(self.acceptors[node]))

    def store(self, node: str, state: AcceptorState) -> None:
        self.acceptors[node] = json.dumps(state.to_json())

    def start(self, which: int, round_: int) -> None:
        pid = self.proposers[which % len(self.proposers)]
        round_ = max(round_, self.last_round.get(pid, -1) + 1)
        self.last_round[pid] = round_
        ballot = Ballot(round_, pid)
        self.proposals.append(Proposal(SLOT, ballot, frozenset(self.acceptors), ring_for(pid)))
        index = len(self.proposals) - 1
        self.network += [("prepare", index, node) for node in sorted(self.acceptors)]

    def deliver(self, message: tuple[Any, ...]) -> None:
        kind, index, node, *rest = message
        proposal = self.proposals[index]
        if kind == "prepare":
            state, promise = on_prepare(self.load(node), SLOT, proposal.ballot)
            self.store(node, state)
            self.network.append(("promise", index, node, promise))
        elif kind == "promise":
            self.on_promise(index, node, rest[0])
        elif kind == "accept":
            value = proposal.value_to_propose()
            assert value.epoch == SLOT, "a vote from an older slot leaked into this one"
            assert self.phase2.setdefault(proposal.ballot, value) == value, "one value a ballot"
            state, ok = on_accept(self.load(node), SLOT, proposal.ballot, value)
            self.store(node, state)
            if ok:
                self.vote(node, proposal.ballot, value)
            self.network.append(("accepted", index, node, ok))
        else:
            proposal.on_accepted(node, rest[0])
            if proposal.chosen:
                self.learned.add(proposal.value_to_propose())

    def on_promise(self, index: int, node: str, promise: Promise) -> None:
        """Phase 2 starts when phase 1 reaches a majority. The value is asked again at each
        accept, as a shell might: it must not change once phase 2 has begun."""
        proposal = self.proposals[index]
        was_done = proposal.phase1_done
        proposal.on_promise(node, promise)
        if proposal.phase1_done and not was_done:
            self.network += [("accept", index, n) for n in sorted(self.acceptors)]

    def vote(self, node: str, ballot: Ballot, value: RingState) -> None:
        """Record an acceptance; a value a majority accepted under one ballot is chosen, by
        definition (§2.1), whether or not any proposer learns it."""
        voters = self.votes.setdefault((ballot, value), set())
        voters.add(node)
        if len(voters) >= len(self.acceptors) // 2 + 1:
            self.chosen.add(value)


STALE = AcceptorState(SLOT - 1, Ballot(99, "z"), (Ballot(99, "z"), ring_for("old", SLOT - 1)))
"""An acceptor one epoch behind, with a vote in the decided slot that must not carry over."""

KINDS = ("deliver",) * 17 + ("start", "drop", "duplicate")
"""Step kinds, drawn uniformly (integers would favour the small ones). Starts and losses are
kept rare, 1 in 20 each, or proposals pre-empt each other before any value gets chosen and a
broken rule goes unnoticed; shrinking moves towards plain deliveries. `min_size` is what
makes schedules long: hypothesis otherwise averages about five elements a list."""

steps = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 63), st.integers(0, 7)),
                 min_size=50, max_size=150)


@SAFETY
@given(
    n_acceptors=st.integers(1, 5),
    proposers=st.lists(st.sampled_from(["a0", "a1", "p", "q", "r"]), min_size=1, max_size=3,
                       unique=True),
    behind=st.lists(st.booleans(), min_size=5, max_size=5),
    schedule=steps,
)
def test_at_most_one_value_is_chosen_per_slot(
    n_acceptors: int, proposers: list[str], behind: list[bool],
    schedule: list[tuple[str, int, int]],
) -> None:
    cluster = Cluster({}, tuple(proposers))
    for i in range(n_acceptors):
        cluster.store(f"a{i}", STALE if behind[i] else AcceptorState(SLOT))
    for op, x, y in schedule:
        if op == "start" or not cluster.network:
            cluster.start(x, y)
            continue
        at = x % len(cluster.network)
        if op == "drop":
            del cluster.network[at]
            continue
        message = cluster.network[at] if op == "duplicate" else cluster.network.pop(at)
        cluster.deliver(message)
        assert len(cluster.chosen) <= 1
        assert cluster.learned <= cluster.chosen


def forgotten(node: str) -> AcceptorState:
    """What a node's acceptor comes back as after its data dir was wiped (same node id): a
    fresh memory with a new nonce, sitting out until a chosen ring lists that nonce."""
    return fresh(SLOT, f"{node}-{secrets.token_hex(4)}")


def forgotten_as_landed(node: str) -> AcceptorState:
    """The rule before issue 15: an empty state for the next slot that votes at once."""
    return AcceptorState(SLOT)


AMNESIA_KINDS = ("deliver",) * 16 + ("start", "drop", "duplicate", "amnesia")
"""As KINDS, with an acceptor losing its whole state (a wiped data dir, same node id) 1 step
in 20, after which it keeps answering as whatever `forgotten` makes of it."""

amnesia_steps = st.lists(st.tuples(st.sampled_from(AMNESIA_KINDS), st.integers(0, 63),
                                   st.integers(0, 7)), min_size=50, max_size=150)


def run_with_amnesia(cluster: Cluster, schedule: list[tuple[str, int, int]],
                     forget: Any) -> None:
    for op, x, y in schedule:
        if op == "amnesia":
            node = sorted(cluster.acceptors)[x % len(cluster.acceptors)]
            cluster.store(node, forget(node))
            continue
        if op == "start" or not cluster.network:
            cluster.start(x, y)
            continue
        at = x % len(cluster.network)
        if op == "drop":
            del cluster.network[at]
            continue
        message = cluster.network[at] if op == "duplicate" else cluster.network.pop(at)
        cluster.deliver(message)
        assert len(cluster.chosen) <= 1, f"two rings chosen for one epoch: {cluster.chosen}"
        assert cluster.learned <= cluster.chosen


@SAFETY
@given(
    n_acceptors=st.integers(1, 5),
    proposers=st.lists(st.sampled_from(["a0", "a1", "p", "q", "r"]), min_size=1, max_size=3,
                       unique=True),
    schedule=amnesia_steps,
)
def test_paxos_acceptor_amnesia_never_chooses_two_rings(
    n_acceptors: int, proposers: list[str], schedule: list[tuple[str, int, int]],
) -> None:
    """Issue 15 part 2: an acceptor that lost its promises (wiped data dir, same node id) must
    not vote as if it remembered them. The votes it cast before are still counted in the
    ballots it helped choose; if it votes again from an empty state, a second majority can
    form without any acceptor that remembers the chosen ring."""
    cluster = Cluster({}, tuple(proposers))
    for i in range(n_acceptors):
        cluster.store(f"a{i}", AcceptorState(SLOT))
    run_with_amnesia(cluster, schedule, forgotten)


def test_the_amnesia_model_catches_an_acceptor_voting_from_an_empty_state() -> None:
    """The model can fail: with the landed rule (a wiped acceptor votes again from an empty
    state) it finds two rings chosen for one epoch, the schedule hypothesis first found."""
    schedule = [("deliver", 1, 0)] + [("deliver", 0, 0)] * 8 + [("amnesia", 0, 0)] + [
        ("deliver", 0, 0)] * 40
    cluster = Cluster({"a0": json.dumps(AcceptorState(SLOT).to_json())}, ("a0", "a1"))
    with pytest.raises(AssertionError, match="two rings chosen"):
        run_with_amnesia(cluster, schedule, forgotten_as_landed)
    cluster = Cluster({"a0": json.dumps(AcceptorState(SLOT).to_json())}, ("a0", "a1"))
    run_with_amnesia(cluster, schedule, forgotten)
    assert len(cluster.chosen) == 1


def test_a_fresh_acceptor_votes_only_from_the_slot_after_a_ring_listing_its_nonce() -> None:
    state = fresh(1, "n1")
    assert on_prepare(state, SLOT, A) == (state, Promise(False, None, None))
    assert on_accept(state, SLOT, A, RING_P) == (state, False)
    old = RingState("c", SLOT - 1, (RingMember("a0", acceptor="old"),))
    assert admit(state, old, "a0") == state
    listed = RingState("c", SLOT - 1, (RingMember("a0", acceptor="n1"),))
    admitted = admit(advance(state, SLOT - 1), listed, "a0")
    assert admitted.voting_from == SLOT and admitted.nonce == "n1"
    assert on_prepare(admitted, SLOT, A)[1].ok
    assert advance(admitted, SLOT + 3).voting_from == SLOT
    assert json_round_trip(admitted) == admitted
    legacy = AcceptorState.from_json({"slot": 2, "promised": None, "accepted": None})
    assert legacy.voting_from == 1 and legacy.nonce == ""


def test_a_clean_run_chooses_and_a_later_proposer_completes_it() -> None:
    cluster = Cluster({}, ("p", "q"))
    for i in range(3):
        cluster.store(f"a{i}", AcceptorState(SLOT))
    cluster.start(0, 1)
    while cluster.network:
        cluster.deliver(cluster.network.pop(0))
    assert cluster.learned == cluster.chosen == {ring_for("p")}
    cluster.start(1, 2)
    while cluster.network:
        cluster.deliver(cluster.network.pop(0))
    assert not cluster.proposals[1].proposing_own
    assert cluster.learned == {ring_for("p")}


# -- claimant and planning -------------------------------------------------------------------


def test_claimant_is_the_lowest_live_member() -> None:
    ring = RingState("c", 3, (RingMember("n2"), RingMember("n1"), RingMember("n3")))
    assert claimant(ring, lambda n: True) == "n1"
    assert claimant(ring, lambda n: n != "n1") == "n2"
    assert claimant(ring, lambda n: False) is None
    assert claimant(RingState.empty(), lambda n: True) is None


POOL = [f"n{i}" for i in range(8)]
ids = st.sampled_from(POOL)
member_sets = st.lists(st.builds(RingMember, ids, st.sampled_from(["", "z1", "z2"]),
                                 st.integers(1, 3)),
                       min_size=1, max_size=6, unique_by=lambda m: m.node_id)
rings = st.builds(RingState, st.just("c"), st.integers(1, 20), member_sets,
                  st.lists(member_sets, max_size=MAX_PREVIOUS).map(tuple))
changes = st.fixed_dictionaries({
    "joining": st.lists(st.builds(RingMember, ids, st.sampled_from(["", "z3"])), max_size=3),
    "leaving": st.lists(ids, max_size=3),
    "removed": st.lists(ids, max_size=2),
})


def expected_ids(ring: RingState, change: dict[str, Any]) -> set[str]:
    gone = set(change["leaving"]) | set(change["removed"])
    joined = {m.node_id for m in change["joining"]} - ring.member_ids - set(change["removed"])
    return (ring.member_ids - gone) | joined


@PROPERTY
@given(rings, changes)
def test_next_members_is_the_set_arithmetic(ring: RingState, change: dict[str, Any]) -> None:
    result = next_members(ring, **change)
    want = expected_ids(ring, change)
    if not want or want == ring.member_ids:
        assert result is None
        return
    assert result is not None
    assert [m.node_id for m in result] == sorted(want)
    kept = {m.node_id: m for m in ring.members}
    assert all(kept.get(m.node_id, m) == m for m in result)


def test_next_members_cannot_empty_the_cluster_or_readmit_the_removed() -> None:
    ring = RingState("c", 4, (RingMember("a"), RingMember("b")))
    assert next_members(ring, joining=(), leaving=("a",), removed=("b",)) is None
    assert next_members(ring, joining=(RingMember("a", "z9"),), leaving=(), removed=()) is None
    assert next_members(ring, joining=(RingMember("c"),), leaving=(), removed=("c",)) is None
    twice = next_members(ring, joining=(RingMember("c", "z1"), RingMember("c", "z2")),
                         leaving=(), removed=())
    assert twice == (RingMember("a"), RingMember("b"), RingMember("c", "z1"))


@PROPERTY
@given(rings, changes, st.booleans())
def test_plan_next_successor(ring: RingState, change: dict[str, Any], settled: bool) -> None:
    planned = plan_next(ring, settled=settled, **change)
    members = next_members(ring, **change)
    if members is None or (not settled and len(ring.previous) >= MAX_PREVIOUS):
        assert planned is None
        return
    assert planned is not None
    assert (planned.cluster, planned.epoch, planned.members) == ("c", ring.epoch + 1, members)
    older = () if settled else ring.previous
    assert planned.previous == (ring.members, *older)[:MAX_PREVIOUS]


def test_plan_next_waits_on_a_full_stack_even_to_remove() -> None:
    """No ring is ever dropped from the stack: its owners may hold the only copies."""
    members = (RingMember("a"), RingMember("b"))
    full = RingState("c", 9, members, ((RingMember("a"),),) * MAX_PREVIOUS)
    join = {"joining": (RingMember("c"),), "leaving": (), "removed": ()}
    assert plan_next(full, settled=False, **join) is None
    assert plan_next(full, settled=True, **join) is not None
    assert plan_next(full, joining=(), leaving=(), removed=("b",), settled=False) is None
    removal = plan_next(full, joining=(), leaving=(), removed=("b",), settled=True)
    assert removal is not None and removal.members == (RingMember("a"),)
    assert removal.previous == (members,)


def test_a_renewed_acceptor_nonce_is_a_ring_change_that_moves_no_partition() -> None:
    ring = RingState("c", 4, (RingMember("a", acceptor="old"), RingMember("b", acceptor="x")))
    assert next_members(ring, joining=(), leaving=(), removed=(), renewed={"a": "old"}) is None
    planned = plan_next(ring, joining=(), leaving=(), removed=(), settled=True,
                        renewed={"a": "new"})
    assert planned is not None and planned.epoch == 5
    assert [m.acceptor for m in planned.members] == ["new", "x"]
    assert planned.digest() != ring.successor(ring.members, keep_previous=False).digest()
    before, after = ring.ring(3, 4), planned.ring(3, 4)
    assert [after.preference_list(p) for p in range(16)] == [
        before.preference_list(p) for p in range(16)]
    assert RingState.from_wire(planned.to_wire()) == planned
    legacy = ("c", 4, (("a", "", 1), ("b", "", 1)), ())
    assert RingState.from_wire(legacy).members[0].acceptor == ""
