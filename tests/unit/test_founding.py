"""Founding decisions (dfsring.core.founding) and refill bookkeeping (dfsring.core.refill): pure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.cli.render import refill_line
from dfsring.core.founding import Action, decide
from dfsring.core.refill import pairs
from dfsring.core.ringstate import RingState
from dfsring.ring import Ring, RingMember

pytestmark = pytest.mark.unit

A, B, C = "10.0.0.1:7070", "10.0.0.2:7070", "10.0.0.3:7070"
SEEDS = (A, B, C)
CLUSTER = RingState("c1", 4, (RingMember("n1"), RingMember("n2"), RingMember("n3")))


def test_a_wiped_first_seed_rejoins_when_any_seed_lists_it() -> None:
    verdict = decide(node_id="n1", address=A, seeds=SEEDS, answers={C: CLUSTER})
    assert verdict.action is Action.REJOIN and verdict.ring == CLUSTER


def test_a_stranger_joins_the_cluster_a_seed_knows() -> None:
    verdict = decide(node_id="n9", address=A, seeds=SEEDS, answers={B: None, C: CLUSTER})
    assert verdict.action is Action.JOIN and verdict.ring == CLUSTER


def test_the_first_seed_founds_only_once_every_seed_answered_without_a_cluster() -> None:
    waiting = decide(node_id="n1", address=A, seeds=SEEDS, answers={B: None})
    assert waiting.action is Action.WAIT and C in waiting.detail
    assert decide(node_id="n1", address=A, seeds=SEEDS,
                  answers={B: None, C: RingState.empty()}).action is Action.FOUND


def test_other_seeds_wait_for_the_first_and_seeds_omitting_self_say_so() -> None:
    assert decide(node_id="n2", address=B, seeds=SEEDS,
                  answers={A: None, C: None}).action is Action.WAIT
    omitted = decide(node_id="n4", address="10.0.0.4:7070", seeds=SEEDS, answers={})
    assert omitted.action is Action.WAIT and "omit" in omitted.detail
    assert decide(node_id="n1", address=A, seeds=(), answers={}).action is Action.FOUND


def test_bootstrap_expect_founds_by_the_lowest_address_once_enough_answer() -> None:
    few = decide(node_id="n2", address=B, seeds=SEEDS, answers={}, bootstrap_expect=2)
    assert few.action is Action.WAIT and "1 seed(s)" in few.detail
    assert decide(node_id="n2", address=B, seeds=SEEDS, answers={C: None},
                  bootstrap_expect=2).action is Action.FOUND
    assert decide(node_id="n3", address=C, seeds=SEEDS, answers={B: None},
                  bootstrap_expect=2).action is Action.WAIT
    assert decide(node_id="n7", address=C, seeds=SEEDS, answers={B: CLUSTER},
                  bootstrap_expect=2).action is Action.JOIN


@settings(max_examples=200, deadline=None)
@given(answered=st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=3,
                         max_size=3), expect=st.integers(0, 3))
def test_at_most_one_founder_when_seed_lists_agree(answered: list[tuple[bool, bool, bool]],
                                                  expect: int) -> None:
    """With identical seed lists, whatever subset each node reaches, no two nodes found
    unless their reached sets differ in a way bootstrap-expect allows; by default only the
    first seed ever founds."""
    founders = set()
    for i, me in enumerate(SEEDS):
        answers = {s: None for j, s in enumerate(SEEDS) if j != i and answered[i][j]}
        if decide(node_id=f"n{i}", address=me, seeds=SEEDS, answers=answers,
                  bootstrap_expect=expect).action is Action.FOUND:
            founders.add(me)
    if expect == 0:
        assert founders <= {A}
    if expect >= 2 and all(all(row) for row in answered):
        assert founders == {A}


def test_refill_needs_every_other_owner_of_every_partition() -> None:
    ring = Ring.build([RingMember("n1"), RingMember("n2"), RingMember("n3")], replicas=3,
                      partition_bits=4)
    needed = pairs(ring, "n1")
    assert len(needed) == 16 * 2 and {peer for _p, peer in needed} == {"n2", "n3"}


def test_status_shows_refilling_members() -> None:
    stats = {"n1": {"refilling": True, "refill": {"exchanges_done": 3, "exchanges_total": 8}},
             "n2": {"refilling": False}, "n3": None}
    assert refill_line(stats) == "refilling (rejoined without its data): n1 (3/8 exchanges)"
    assert refill_line({"n2": {"refilling": False}}) == ""
