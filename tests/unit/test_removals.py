"""Expiry of the removed-member set (dfsring.core.removals) and why an expired id stays out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dfsring.core import membership
from dfsring.core.membership import MemberState, Status, View, admissible_entries
from dfsring.core.removals import GRACE_S, MAX_REMOVED, expire, placed, stamped, to_expire
from dfsring.core.ringstate import RingState
from dfsring.ring import RingMember

DAY = 86_400.0


def entry(node_id: str, status: Status = Status.UP, incarnation: int = 1) -> MemberState:
    return MemberState(node_id, "127.0.0.1:1", "z", status, incarnation, 0, 0)


def ring(epoch: int, ids: tuple[str, ...], previous: tuple[str, ...] = ()) -> RingState:
    prev = (tuple(RingMember(i, "z") for i in previous),) if previous else ()
    return RingState("c1", epoch, tuple(RingMember(i, "z") for i in ids), prev)


RING = ring(5, ("a", "b", "c"), previous=("a", "b", "c", "x"))
IDS = ("a", "b", "c", "x", "gone", "old", "me")


@given(st.dictionaries(st.sampled_from(IDS), st.floats(0, 10 * DAY)),
       st.floats(0, 10 * DAY), st.sets(st.sampled_from(IDS)))
def test_only_marks_whose_removal_took_effect_expire(stamps: dict[str, float], now: float,
                                                     removed: set[str]) -> None:
    view = View({i: entry(i) for i in IDS}, frozenset(removed), RING)
    gone = to_expire(view, stamps, max(now, *stamps.values(), 0.0), "me")
    assert gone <= view.removed
    assert not gone & placed(RING)  # ring members' pending requests and old owners stay
    assert "me" not in gone
    for node_id in gone:  # expired by age: none younger than the grace (no cap reached here)
        assert max(now, *stamps.values(), 0.0) - stamps.get(node_id, 1e18) >= GRACE_S


def test_a_mark_expires_after_the_grace_with_its_entry() -> None:
    view = View({i: entry(i) for i in ("a", "b", "c", "gone")}, frozenset({"gone", "a"}),
                ring(6, ("a", "b", "c")))
    stamps = stamped({}, view.removed, 0.0)
    assert to_expire(view, stamps, GRACE_S - 1, "a") == frozenset()
    gone = to_expire(view, stamps, GRACE_S, "a")
    assert gone == {"gone"}
    after = expire(view, gone)
    assert "gone" not in after.members and after.removed == {"a"}
    assert after.ring == view.ring


def test_past_the_cap_the_oldest_marks_go_first() -> None:
    ids = [f"n{i:04d}" for i in range(MAX_REMOVED + 10)]
    view = View({i: entry(i) for i in ids}, frozenset(ids), ring(2, ("a",)))
    stamps = {n: float(i) for i, n in enumerate(ids)}  # n0000 is the oldest
    gone = to_expire(view, stamps, float(len(ids)), "a")
    assert gone == set(ids[:10])
    assert len(expire(view, gone).removed) == MAX_REMOVED


def test_stamps_keep_their_time_and_follow_the_set() -> None:
    first = stamped({}, {"x", "y"}, 10.0)
    assert first == {"x": 10.0, "y": 10.0}
    assert stamped(first, {"y", "z"}, 20.0) == {"y": 10.0, "z": 20.0}


def test_stale_gossip_of_an_expired_removed_node_cannot_bring_it_back() -> None:
    """The regression this expiry must not open: after the mark and the entry are gone, the
    removed node's old entry (relayed late, or sent by the node itself restarted with a higher
    incarnation) is an unknown node no ring places, and it is not taken."""
    current = ring(9, ("a", "b", "c"))
    view = View({i: entry(i) for i in ("a", "b", "c")}, frozenset(), current)
    stale = [entry("gone", Status.UP, 3), entry("gone", Status.UP, 4000),
             entry("gone", Status.LEFT, 5), entry("gone", Status.LEAVING, 6)]
    for e in stale:
        assert admissible_entries(view, [e], current.member_ids,
                                  placed=placed(current)) == []
    # and the removal lists of peers that still hold the mark do not re-add it here either
    assert membership.admissible_removals(view, ["gone"], lambda _n: True) == frozenset()


def test_unknown_nodes_a_ring_places_or_that_join_are_still_taken() -> None:
    current = ring(9, ("a", "b"), previous=("a", "b", "old"))
    view = View({"a": entry("a")}, frozenset(), current)
    incoming = [entry("b"), entry("old", Status.LEFT), entry("new", Status.JOINING)]
    kept = admissible_entries(view, incoming, current.member_ids, placed=placed(current))
    assert [e.node_id for e in kept] == ["b", "old", "new"]
    # a node without a ring (joining) takes every entry: it has nothing to judge by
    assert len(admissible_entries(View(), [entry("z")], frozenset(), placed=None)) == 1
