"""Issue 23 part 2, the pure rules: which rings a node adopts, which removals it takes from a
peer, and the numeric bounds every peer message is decoded with."""

from __future__ import annotations

import msgpack
import pytest

from dfsring.core.membership import (
    INCARNATION_WINDOW,
    MemberState,
    Status,
    View,
    admissible_entries,
    admissible_removals,
)
from dfsring.core.membership import effective_status as status
from dfsring.core.ringstate import EPOCH_WINDOW, MAX_EPOCH, RingState, adoption_problem
from dfsring.ring import RingMember
from dfsring.transport.messages import (
    WIRE_VERSION,
    MessageError,
    ReplicaWrite,
    RingAnnounce,
    decode,
)

A, B, C = RingMember("a"), RingMember("b"), RingMember("c")
RING = RingState("c1", 5, (A, B, C))


def entry(node_id: str, status_: Status = Status.UP) -> MemberState:
    return MemberState(node_id, "127.0.0.1:1", "", status_, 1, 1, 0)


def test_a_ring_past_max_epoch_cannot_exist() -> None:
    with pytest.raises(ValueError, match="epoch must be in"):
        RingState("c1", MAX_EPOCH + 1, (A,))
    with pytest.raises(ValueError):
        RingState.from_wire(("c1", 2**64 - 1, (("a", "", 1, ""),), ()))


@pytest.mark.parametrize(("ring", "refused"), [
    (RING.successor((A, B), keep_previous=False), None),  # the chosen next epoch
    (RING.successor((A, B), keep_previous=False).settled(), None),  # its settled copy
    (RING.settled(), None),
    (RingState("c1", 3, (A,)), None),  # older: ignored by the caller, not refused
    (RingState("c1", 5 + EPOCH_WINDOW, (A,)), None),
    (RingState("c1", 6 + EPOCH_WINDOW, (A,)), "more than"),
    (RingState("c1", MAX_EPOCH, (A,)), "more than"),
    (RingState("c2", 6, (A,), ((A, B, C),)), "cluster"),
    (RingState("c1", 5, (A, B)), "different ring at our epoch"),
    (RingState("c1", 6, (A,), ((A, B),)), "does not descend"),
])
def test_which_rings_a_node_at_epoch_5_adopts(ring: RingState, refused: str | None) -> None:
    problem = adoption_problem(RING, ring)
    assert (problem is None) if refused is None else (refused in (problem or ""))


def test_a_node_without_a_ring_takes_what_its_seeds_give() -> None:
    assert adoption_problem(RingState.empty(), RingState("c9", MAX_EPOCH, (A,))) is None


def test_a_peer_cannot_remove_a_live_member_or_a_joining_node() -> None:
    view = View({"a": entry("a"), "b": entry("b"), "c": entry("c"),
                 "j": entry("j", Status.JOINING), "gone": entry("gone")},
                frozenset(), RingState("c1", 5, (A, B, C)))
    down = {"c"}
    taken = admissible_removals(view, ["a", "c", "j", "gone", "unknown"], down.__contains__)
    assert taken == {"c", "gone"}  # a down member (a request) and one the ring dropped


def test_a_removed_id_is_left_only_once_the_ring_no_longer_lists_it() -> None:
    ring = RingState("c1", 5, (A, B, C))
    view = View({"a": entry("a"), "b": entry("b"), "c": entry("c")}, frozenset({"c"}), ring)
    assert status(view, "c") is Status.UP  # a request, waiting for its epoch
    agreed = View(view.members, view.removed, ring.successor((A, B), keep_previous=False))
    assert status(agreed, "c") is Status.LEFT


def _raw(kind: str, *fields: object) -> bytes:
    packed: bytes = msgpack.packb([WIRE_VERSION, kind, *fields], use_bin_type=True)
    return packed


@pytest.mark.parametrize("epoch", [-1, MAX_EPOCH + 1, 2**63 - 1, 2**64 - 1])
def test_a_replica_write_with_an_epoch_out_of_range_is_refused_on_decode(epoch: int) -> None:
    with pytest.raises(MessageError):
        decode(_raw("replica-write", b"b", b"k", b"v", epoch), ReplicaWrite)


def test_a_ring_announce_at_epoch_2_64_minus_1_is_refused_on_decode() -> None:
    with pytest.raises(MessageError, match="out of range"):
        decode(_raw("ring-announce", ("c1", 2**64 - 1, [], [])), RingAnnounce)
    with pytest.raises(ValueError):  # and within int64, past MAX_EPOCH, by the ring itself
        RingState.from_wire(decode(_raw("ring-announce", ("c1", 2**63 - 1, [], [])),
                                   RingAnnounce).ring)


def test_a_relayed_entry_saying_a_ring_member_left_is_dropped() -> None:
    left = [entry("a", Status.LEFT), entry("gone", Status.LEFT), entry("b", Status.LEAVING)]
    kept = admissible_entries(View(), left, frozenset({"a", "b"}))
    assert [e.node_id for e in kept] == ["gone", "b"]


def test_a_relayed_entry_may_move_an_incarnation_by_at_most_the_window() -> None:
    view = View({"a": entry("a")})  # incarnation 1
    far = MemberState("a", "127.0.0.1:1", "", Status.UP, 2 + INCARNATION_WINDOW, 0, 0)
    near = MemberState("a", "127.0.0.1:1", "", Status.UP, 1 + INCARNATION_WINDOW, 0, 0)
    huge = MemberState("new", "127.0.0.1:1", "", Status.UP, 2**63 - 1, 0, 0)
    assert admissible_entries(view, [far, huge], frozenset()) == []
    assert admissible_entries(view, [near], frozenset()) == [near]
