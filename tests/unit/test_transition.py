"""Ownership in transition: write targets, read groups, what a node fetches, and progress.

Ring chains are built the way the cluster builds them, with `plan_next` from a founding
member set, so `previous` holds what real epochs would hold.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfsring.core.epochs import plan_next
from dfsring.core.ringstate import RingState
from dfsring.core.transition import (
    TransferProgress,
    incoming,
    not_owned,
    read_groups,
    sources,
    transition_complete,
    write_targets,
)
from dfsring.ring import Ring, RingMember

pytestmark = pytest.mark.unit

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

POOL = [f"n{i}" for i in range(10)]
member_sets = st.lists(st.sampled_from(POOL), min_size=1, max_size=7, unique=True)
shapes = st.tuples(st.integers(1, 3), st.integers(4, 6))


@st.composite
def ring_chains(draw: st.DrawFn) -> RingState:
    """A founding ring followed by up to four joins, leaves or removals, settled or not."""
    state = RingState("c", 1, tuple(RingMember(n) for n in draw(member_sets)))
    for _ in range(draw(st.integers(0, 4))):
        change = draw(st.fixed_dictionaries({
            "joining": st.lists(st.sampled_from(POOL).map(RingMember), max_size=2),
            "leaving": st.lists(st.sampled_from(POOL), max_size=2),
            "removed": st.lists(st.sampled_from(POOL), max_size=1),
        }))
        state = plan_next(state, settled=draw(st.booleans()), **change) or state
    return state


def rings_of(state: RingState, shape: tuple[int, int]) -> tuple[Ring, tuple[Ring, ...]]:
    replicas, bits = shape
    return state.ring(replicas, bits), state.previous_rings(replicas, bits)


@PROPERTY
@given(ring_chains(), shapes)
def test_incoming_is_owned_now_and_missing_from_some_previous_ring(
    state: RingState, shape: tuple[int, int]
) -> None:
    current, previous = rings_of(state, shape)
    for node in current.node_ids():
        parts = incoming(node, current, previous)
        assert parts == tuple(sorted(parts))
        for p in parts:
            assert node in current.preference_list(p)
            assert any(node not in ring.preference_list(p) for ring in previous)
            assert sources(p, node, previous), "someone held what a new owner must fetch"
        if not previous:
            assert parts == ()


@PROPERTY
@given(ring_chains(), shapes, st.lists(st.sampled_from(POOL), max_size=3))
def test_sources_are_previous_owners_without_self_or_excluded(
    state: RingState, shape: tuple[int, int], exclude: list[str]
) -> None:
    current, previous = rings_of(state, shape)
    for node in POOL:
        for p in range(current.partitions):
            found = sources(p, node, previous, exclude)
            assert node not in found and not set(found) & set(exclude)
            assert len(set(found)) == len(found)
            owners = {n for ring in previous for n in ring.preference_list(p)}
            assert set(found) == owners - {node, *exclude}


@PROPERTY
@given(member_sets, st.sampled_from(POOL), shapes, st.booleans())
def test_a_joining_node_fetches_every_partition_it_owns(
    ids: list[str], joiner: str, shape: tuple[int, int], settled: bool
) -> None:
    base = RingState("c", 3, tuple(RingMember(n) for n in ids if n != joiner))
    if not base.members:
        return
    state = plan_next(base, joining=[RingMember(joiner)], leaving=(), removed=(),
                      settled=settled)
    assert state is not None
    current, previous = rings_of(state, shape)
    owned = current.partitions_of(joiner)
    assert incoming(joiner, current, previous) == owned
    assert all(sources(p, joiner, previous) for p in owned)


@PROPERTY
@given(ring_chains(), shapes)
def test_write_targets_count_current_owners_and_reach_every_previous_one(
    state: RingState, shape: tuple[int, int]
) -> None:
    current, previous = rings_of(state, shape)
    for p in range(current.partitions):
        counted, extra = write_targets(p, current, previous)
        assert counted == current.preference_list(p)
        assert not set(counted) & set(extra) and len(set(extra)) == len(extra)
        everyone = {n for ring in (current, *previous) for n in ring.preference_list(p)}
        assert set(counted) | set(extra) == everyone
        if not previous:
            assert extra == ()


@PROPERTY
@given(ring_chains(), shapes, st.data())
def test_read_groups_meet_every_write_quorum_of_every_ring(
    state: RingState, shape: tuple[int, int], data: st.DataObject
) -> None:
    current, previous = rings_of(state, shape)
    p = data.draw(st.integers(0, current.partitions - 1))
    groups = read_groups(p, current, previous)
    assert groups[0] == current.preference_list(p)
    assert len({frozenset(g) for g in groups}) == len(groups)
    written_under = data.draw(st.sampled_from((current, *previous)))
    plist = written_under.preference_list(p)
    n = len(plist)
    w = data.draw(st.integers(1, n))
    write_set = set(data.draw(st.permutations(plist))[:w])
    group = next(g for g in groups if set(g) == set(plist))
    r = n - w + 1
    read_set = set(data.draw(st.permutations(group))[:r])
    assert write_set & read_set


def test_read_groups_collapse_rings_with_the_same_owners() -> None:
    members = tuple(RingMember(n) for n in ("a", "b"))
    same = RingState("c", 2, members, (members,))
    current, previous = rings_of(same, (2, 4))
    assert all(len(read_groups(p, current, previous)) == 1 for p in range(16))


@PROPERTY
@given(ring_chains(), shapes, st.lists(st.integers(0, 63), max_size=20))
def test_not_owned_is_held_minus_owned(
    state: RingState, shape: tuple[int, int], held: list[int]
) -> None:
    current, _ = rings_of(state, shape)
    held = [p % current.partitions for p in held]
    for node in current.node_ids():
        owned = set(current.partitions_of(node))
        assert not_owned(node, current, held) == tuple(sorted(set(held) - owned))


A, B = RingMember("a"), RingMember("b")
MOVING = RingState("c", 5, (A, B), ((A,),))


@pytest.mark.parametrize(("state", "synced", "complete"), [
    (RingState("c", 5, (A, B)), {}, True),
    (MOVING, {}, False),
    (MOVING, {"a": 5}, False),
    (MOVING, {"a": 5, "b": 4}, False),
    (MOVING, {"a": 5, "b": 5}, True),
    (MOVING, {"a": 6, "b": 7, "gone": 1}, True),
    (MOVING, {"b": 5, "x": 9}, False),
])
def test_transition_complete(state: RingState, synced: dict[str, int], complete: bool) -> None:
    assert transition_complete(state, synced) is complete


# -- TransferProgress ------------------------------------------------------------------------


def test_progress_before_any_work() -> None:
    progress = TransferProgress(10, started_at=100.0, now=100.0)
    assert progress.rate == 0.0 and progress.eta_s is None and progress.fraction == 0.0


def test_progress_rate_and_eta() -> None:
    progress = TransferProgress(10, started_at=100.0, now=100.0)
    progress = progress.add(now=104.0, partitions=2, bytes_=4000, keys=40)
    assert progress.rate == 1000.0
    assert progress.eta_s == 16.0
    assert progress.fraction == 0.2
    done = progress.add(now=120.0, partitions=8)
    assert done.eta_s == 0.0 and done.fraction == 1.0
    assert done.to_json()["keys_done"] == 40


def test_progress_nothing_to_do_and_clock_going_back() -> None:
    assert TransferProgress(0).eta_s == 0.0 and TransferProgress(0).fraction == 1.0
    progress = TransferProgress(4, 1, 10, 1, started_at=50.0, now=40.0)
    assert progress.rate == 0.0 and progress.eta_s is None
    assert progress.add(now=30.0).now == 40.0


@pytest.mark.parametrize("kwargs", [
    {"partitions_total": -1},
    {"partitions_total": 1, "partitions_done": 2},
    {"partitions_total": 1, "bytes_done": -5},
])
def test_progress_rejects_impossible_counters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TransferProgress(**kwargs)
