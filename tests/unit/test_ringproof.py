"""The proof of choice a node asks for before adopting a newer ring (dfsring.core.ringproof).

The central property, checked against random Paxos runs of dfsring.core.epochs: whenever the
acceptors' answers prove a ring, no other ring is or can later be chosen for that epoch. And
the converse the cluster needs to move on: a ring a majority accepted under one ballot is
proven.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core import epochs
from dfsring.core.epochs import AcceptorState, Ballot
from dfsring.core.ringproof import (
    LOG_SIZE,
    Answer,
    ChosenLog,
    Knows,
    answer,
    hopeless,
    proven,
    ring_id,
)
from dfsring.core.ringstate import RingState
from dfsring.ring import RingMember

IDS = ("a", "b", "c", "d", "e")


def ring(epoch: int, ids: tuple[str, ...] = IDS[:3], previous: bool = False) -> RingState:
    members = tuple(RingMember(i, "z") for i in ids)
    prev = (tuple(RingMember(i, "z") for i in IDS[:3]),) if previous else ()
    return RingState("c1", epoch, members, prev)


CURRENT = ring(5)
VALUES = (ring(6, IDS[:4], previous=True), ring(6, IDS[:2], previous=True),
          ring(6, (*IDS[:3], "e"), previous=True))


def _answers(states: dict[str, AcceptorState], value: RingState) -> dict[str, Answer]:
    return {n: answer(s, CURRENT, ChosenLog(), value.epoch, ring_id(value))
            for n, s in states.items()}


def _chosen(states: dict[str, AcceptorState], history: list[tuple[str, Ballot, RingState]],
            ) -> set[str]:
    """Values chosen at some point: a majority accepted them under one ballot."""
    per: dict[tuple[Ballot, str], set[str]] = {}
    for node, ballot, value in history:
        per.setdefault((ballot, ring_id(value)), set()).add(node)
    need = len(states) // 2 + 1
    return {rid for (_b, rid), nodes in per.items() if len(nodes) >= need}


# One step of a run: proposer round r, value index v, the acceptors its prepare reaches, the
# acceptors its accept reaches (any reply may be lost, so any subsets).
STEP = st.tuples(st.integers(1, 6), st.sampled_from(("p", "q")), st.integers(0, 2),
                 st.sets(st.sampled_from(IDS[:3])), st.sets(st.sampled_from(IDS[:3])))


def _run(steps: list[tuple[int, str, int, set[str], set[str]]],
         states: dict[str, AcceptorState],
         history: list[tuple[str, Ballot, RingState]]) -> None:
    for round_, who, v, prepared, accepted in steps:
        ballot = Ballot(round_, who)
        proposal = epochs.Proposal(6, ballot, frozenset(states), VALUES[v])
        for node in sorted(prepared):
            states[node], promise = epochs.on_prepare(states[node], 6, ballot)
            proposal.on_promise(node, promise)
        if not proposal.phase1_done:
            continue
        value = proposal.value_to_propose()
        for node in sorted(accepted):
            states[node], ok = epochs.on_accept(states[node], 6, ballot, value)
            if ok:
                history.append((node, ballot, value))


@settings(max_examples=400, deadline=None)
@given(st.lists(STEP, max_size=8), st.lists(STEP, max_size=8))
def test_a_proven_ring_is_the_only_one_ever_chosen_for_its_epoch(before: list, after: list,
                                                                  ) -> None:
    states = {n: AcceptorState(6) for n in IDS[:3]}
    history: list[tuple[str, Ballot, RingState]] = []
    _run(before, states, history)
    proofs = {ring_id(v) for v in VALUES if proven(CURRENT, v, _answers(states, v))}
    assert len(proofs) <= 1
    _run(after, states, history)  # the cluster goes on trying after the proof
    if proofs:
        assert _chosen(states, history) <= proofs, (proofs, history)


@settings(max_examples=200, deadline=None)
@given(st.lists(STEP, max_size=8))
def test_a_value_chosen_under_one_ballot_is_proven_while_its_acceptors_hold_it(steps: list,
                                                                                ) -> None:
    states = {n: AcceptorState(6) for n in IDS[:3]}
    history: list[tuple[str, Ballot, RingState]] = []
    _run(steps, states, history)
    held = {}
    for node, state in states.items():
        if state.accepted is not None:
            held.setdefault(state.accepted, set()).add(node)
    for (_ballot, value), nodes in held.items():
        if len(nodes) >= 2:
            assert proven(CURRENT, value, _answers(states, value))


def test_one_value_accepted_by_a_majority_under_different_ballots_is_not_proven() -> None:
    """Paxos Made Simple §2.2: A: V@1, B: V@3, C: W@2 lets a ballot-4 proposer hearing A and
    C complete W, so V is not chosen."""
    v, w = VALUES[0], VALUES[1]
    states = {"a": AcceptorState(6, Ballot(1, "p"), (Ballot(1, "p"), v)),
              "b": AcceptorState(6, Ballot(3, "p"), (Ballot(3, "p"), v)),
              "c": AcceptorState(6, Ballot(2, "q"), (Ballot(2, "q"), w))}
    assert not proven(CURRENT, v, _answers(states, v))
    assert not proven(CURRENT, w, _answers(states, w))


def test_ring_announce_of_an_unchosen_ring_is_not_proven() -> None:
    """The finding: a consistent epoch + 1 no acceptor accepted is refused."""
    forged = ring(6, IDS[:3], previous=True)
    states = {n: AcceptorState(6) for n in IDS[:3]}
    assert not proven(CURRENT, forged, _answers(states, forged))
    assert hopeless(CURRENT, forged, _answers(states, forged))


def test_members_that_hold_a_later_ring_vouch_for_a_node_far_behind() -> None:
    later = ring(9, IDS[:3])
    held = {n: answer(AcceptorState(10), later, ChosenLog(), 9, ring_id(later))
            for n in ("a", "b")}
    assert proven(CURRENT, later, held)
    assert not proven(CURRENT, later, {"a": held["a"]})  # one of three is not a majority


def test_accepted_counts_only_for_the_next_epoch_and_only_from_members() -> None:
    later = ring(7, IDS[:3])
    acc = Answer(Knows.ACCEPTED, Ballot(1, "p"))
    assert not proven(CURRENT, later, {"a": acc, "b": acc, "c": acc})
    assert not proven(CURRENT, VALUES[0], {"x": Answer(Knows.CHOSEN),
                                           "y": Answer(Knows.CHOSEN)})
    assert proven(CURRENT, VALUES[0], {"a": acc, "x": Answer(Knows.CHOSEN),
                                       "b": Answer(Knows.CHOSEN)})


def test_a_ring_and_its_settled_copy_are_one_choice() -> None:
    value = VALUES[0]
    assert ring_id(value) == ring_id(value.settled())
    log = ChosenLog().with_ring(value.settled())
    assert answer(AcceptorState(7), ring(6), log, 6, ring_id(value)).knows is Knows.CHOSEN


@given(st.lists(st.integers(1, 500), max_size=300))
def test_chosen_log_is_bounded_and_keeps_the_newest(epochs_seen: list[int]) -> None:
    log = ChosenLog()
    for e in epochs_seen:
        log = log.with_ring(ring(e))
    assert len(log.ids) <= LOG_SIZE
    newest = sorted(set(epochs_seen))[-LOG_SIZE:]
    assert sorted(log.ids) == newest
    for e in newest:
        assert log.knows(e, ring_id(ring(e)))


@pytest.mark.parametrize(("knows", "ballot"), [("maybe", None), ("chosen", [1, "p"]),
                                               ("accepted", None), ("accepted", [-1, "p"]),
                                               (3, None)])
def test_malformed_answers_are_refused(knows: object, ballot: object) -> None:
    with pytest.raises(ValueError):
        Answer.from_wire(knows, ballot)
