"""What a chunk holder checks and what it may let go (dfsring.files.placement.sync_plan and
droppable, the pure part of dfsring.files.chunksync)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dfsring.files import placement
from dfsring.ring import Ring, RingMember

RING5 = Ring.build([RingMember(f"n{i}") for i in range(1, 6)], replicas=3, partition_bits=8)
RING2 = Ring.build([RingMember(f"n{i}") for i in range(1, 3)], replicas=3, partition_bits=8)
ids = st.lists(st.binary(min_size=32, max_size=32), unique=True, max_size=40)
members = st.sampled_from([*RING5.node_ids(), "outsider"])


@given(ids, members)
def test_every_other_owner_is_asked_for_exactly_its_chunks(chunks: list[bytes], me: str) -> None:
    plan = placement.sync_plan(chunks, RING5, me)
    for node in RING5.node_ids():
        expected = [c for c in chunks if node in placement.owners(RING5, c) and node != me]
        assert plan.peers.get(node, []) == expected  # in the order given, once each
    assert me not in plan.peers
    assert plan.stray == [c for c in chunks if me not in placement.owners(RING5, c)]


@given(ids, members, st.data())
def test_a_stray_is_droppable_exactly_when_every_owner_holds_it(
        chunks: list[bytes], me: str, data: st.DataObject) -> None:
    plan = placement.sync_plan(chunks, RING5, me)
    held = {node: set(data.draw(st.lists(st.sampled_from(chunks)) if chunks else st.just([])))
            for node in RING5.node_ids()}
    doomed = placement.droppable(plan.stray, RING5, held)
    assert set(doomed) <= set(plan.stray)
    for cid in plan.stray:
        everywhere = all(cid in held[n] for n in placement.owners(RING5, cid))
        assert (cid in doomed) == everywhere


@given(ids)
def test_an_owner_that_did_not_answer_keeps_every_stray(chunks: list[bytes]) -> None:
    plan = placement.sync_plan(chunks, RING5, "outsider")
    assert plan.stray == chunks
    for silent in RING5.node_ids():
        held = {n: set(chunks) for n in RING5.node_ids() if n != silent}
        doomed = placement.droppable(plan.stray, RING5, held)
        assert doomed == [c for c in chunks if silent not in placement.owners(RING5, c)]


@given(ids)
def test_a_small_cluster_owns_everything_everywhere(chunks: list[bytes]) -> None:
    """Fewer members than N: every member owns every chunk, so nothing is ever stray."""
    for me in RING2.node_ids():
        plan = placement.sync_plan(chunks, RING2, me)
        assert plan.stray == []
        other = next(n for n in RING2.node_ids() if n != me)
        assert plan.peers.get(other, []) == chunks


@given(st.binary(min_size=32, max_size=32),
       st.sets(st.sampled_from([*RING5.node_ids(), "x1", "x2"]), min_size=1))
def test_exactly_one_owner_holding_a_chunk_sends_it(cid: bytes, holders: set[str]) -> None:
    """Each holder learns from the owners which of them hold it; one of them copies it on,
    and a non-owner only when no owner holds it."""
    owners = placement.owners(RING5, cid)
    held = {n: {cid} for n in holders if n in owners}
    senders = [n for n in holders if placement.pushes(cid, RING5, n, held)]
    if held:
        assert senders == [next(n for n in owners if n in holders)]
    else:
        assert sorted(senders) == sorted(holders)  # strays only: each sends (rare, harmless)
