"""Laws of dfsring.core.membership: the merge is a join-semilattice, push-pull converges, and the
decoders turn any garbage into ValueError.

The strategies draw from small alphabets (three ids, two addresses, versions 0..2) so that
views collide often: same id at the same version with different content included.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfsring.core.membership import (
    MAX_MEMBERS,
    MemberState,
    Status,
    View,
    digest,
    digest_from_wire,
    digest_to_wire,
    effective_status,
    entries_for,
    entries_from_wire,
    entries_to_wire,
    ids_from_wire,
    merge,
    merge_entries,
    newer_than,
    wanted,
    with_removed,
    with_ring,
)
from dfsring.core.ringstate import RingState
from dfsring.ring import RingMember

pytestmark = pytest.mark.unit

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

IDS = ("a", "b", "c")
small = st.integers(0, 2)


def member(node_id: str = "a", inc: int = 0, hb: int = 0, **kw: object) -> MemberState:
    fields: dict[str, object] = {"address": "h:1", "zone": "", "status": Status.UP,
                                 "synced_epoch": 0, **kw}
    return MemberState(node_id, incarnation=inc, heartbeat=hb, **fields)  # type: ignore[arg-type]


def member_states(node_id: st.SearchStrategy[str] | None = None,
                  ) -> st.SearchStrategy[MemberState]:
    ids = st.sampled_from(IDS) if node_id is None else node_id
    return st.builds(MemberState, ids, st.sampled_from(["h1:1", "[::1]:2"]),
                     st.sampled_from(["", "z"]), st.sampled_from(list(Status)), small, small,
                     small)


ring_members = st.builds(RingMember, st.sampled_from(IDS), st.sampled_from(["", "z"]),
                         st.integers(1, 2))
member_sets = st.lists(ring_members, max_size=3, unique_by=lambda m: m.node_id)
ring_states = st.one_of(
    st.just(RingState.empty()),
    st.builds(RingState, st.sampled_from(["c"]), st.integers(0, 2), member_sets,
              st.lists(member_sets, max_size=2)),
)


@st.composite
def views(draw: st.DrawFn) -> View:
    entries = draw(st.lists(member_states(), max_size=4))
    removed = draw(st.frozensets(st.sampled_from(IDS)))
    return View({m.node_id: m for m in entries}, removed, draw(ring_states))


def content_of(node_id: str, inc: int, hb: int) -> MemberState:
    """The one entry a correct node writes at a version (so push-pull can converge)."""
    return MemberState(node_id, f"h{(inc + hb) % 2}:7000", "z" * (inc % 2),
                       list(Status)[(3 * inc + hb) % 4], inc, hb, hb // 2)


@st.composite
def consistent_views(draw: st.DrawFn) -> View:
    versions = draw(st.dictionaries(st.sampled_from(IDS), st.tuples(small, small)))
    return View({i: content_of(i, inc, hb) for i, (inc, hb) in versions.items()})


# -- the semilattice ---------------------------------------------------------------------------


@PROPERTY
@given(views(), views())
def test_merge_is_commutative(a: View, b: View) -> None:
    assert merge(a, b) == merge(b, a)


@PROPERTY
@given(views(), views(), views())
def test_merge_is_associative(a: View, b: View, c: View) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@PROPERTY
@given(views())
def test_merge_is_idempotent(a: View) -> None:
    assert merge(a, a) == a


@PROPERTY
@given(views(), views())
def test_merge_is_an_upper_bound(a: View, b: View) -> None:
    m = merge(a, b)
    assert merge(m, a) == m and merge(m, b) == m
    for side in (a, b):
        for node_id, entry in side.members.items():
            assert m.members[node_id].version() >= entry.version()
        assert side.removed <= m.removed
        assert (m.ring.epoch, m.ring.digest()) in {(r.epoch, r.digest()) for r in (a.ring, b.ring)}
        assert m.ring.epoch >= side.ring.epoch


@PROPERTY
@given(views(), st.lists(member_states()))
def test_merge_entries_is_merge_with_a_view_of_them(a: View, entries: list[MemberState]) -> None:
    by_id = View({}, a.removed, a.ring)
    for e in entries:
        by_id = merge(by_id, View({e.node_id: e}, a.removed, a.ring))
    assert merge_entries(a, entries) == merge(a, by_id)


@PROPERTY
@given(views(), ring_states, st.frozensets(st.sampled_from(IDS)))
def test_with_ring_and_with_removed_agree_with_merge(a: View, ring: RingState,
                                                     ids: frozenset[str]) -> None:
    assert with_ring(a, ring) == merge(a, View(a.members, a.removed, ring))
    assert with_removed(a, ids) == merge(a, View(a.members, ids, a.ring))


def test_equal_versions_with_different_content_still_merge_deterministically() -> None:
    x, y = member(zone="z1"), member(zone="z2")
    assert merge(View({"a": x}), View({"a": y})) == merge(View({"a": y}), View({"a": x}))


def test_a_restart_beats_any_heartbeat_of_the_previous_life() -> None:
    old, new = member(inc=1, hb=900), member(inc=2, hb=0, status=Status.JOINING)
    assert merge(View({"a": old}), View({"a": new})).members["a"] == new


def test_a_settled_ring_beats_its_unsettled_copy() -> None:
    me = RingMember("a")
    unsettled = RingState.found("c", me).successor([me, RingMember("b")], keep_previous=False)
    settled = unsettled.settled()
    assert with_ring(View(ring=unsettled), settled).ring == settled
    assert with_ring(View(ring=settled), unsettled).ring == settled
    newer = settled.successor([me], keep_previous=True)
    assert with_ring(View(ring=settled), newer).ring == newer


def test_with_ring_and_with_removed_return_the_same_view_when_nothing_changes() -> None:
    view = View({"a": member()}, frozenset({"b"}), RingState.found("c", RingMember("a")))
    assert with_ring(view, RingState.empty()) is view
    assert with_removed(view, ["b"]) is view


# -- the view ----------------------------------------------------------------------------------


@PROPERTY
@given(views())
def test_view_equality_and_hash_are_by_content(a: View) -> None:
    copy = View(dict(reversed(list(a.members.items()))), set(a.removed), a.ring)  # type: ignore[arg-type]
    assert copy == a and hash(copy) == hash(a)
    assert list(a.members) == sorted(a.members)


def test_view_members_are_read_only() -> None:
    source = {"a": member()}
    view = View(source)
    source["b"] = member("b")
    assert list(view.members) == ["a"]
    with pytest.raises(TypeError):
        view.members["b"] = member("b")  # type: ignore[index]


def test_view_rejects_an_entry_filed_under_another_id() -> None:
    with pytest.raises(ValueError, match="filed under"):
        View({"b": member("a")})


def test_effective_status() -> None:
    view = View({"a": member(status=Status.LEAVING), "b": member("b")}, frozenset({"b"}))
    assert effective_status(view, "a") is Status.LEAVING
    assert effective_status(view, "b") is Status.LEFT
    with pytest.raises(KeyError):
        effective_status(view, "c")


def test_removal_survives_stale_gossip_and_restarts() -> None:
    view = with_removed(View({"a": member()}), ["a"])
    view = merge_entries(view, [member(inc=5, hb=3, status=Status.UP)])
    assert effective_status(view, "a") is Status.LEFT


# -- push-pull ---------------------------------------------------------------------------------


def push_pull(a: View, b: View) -> tuple[View, View]:
    """One Syn / Ack / Ack2 round started by A (Cassandra's Gossiper), through the wire."""
    syn = msgpack.unpackb(msgpack.packb(digest_to_wire(digest(a))))
    d_a = digest_from_wire(syn)
    ack = msgpack.unpackb(msgpack.packb((entries_to_wire(newer_than(b, d_a)), wanted(b, d_a))))
    a = merge_entries(a, entries_from_wire(ack[0]))
    ack2 = msgpack.unpackb(msgpack.packb(entries_to_wire(entries_for(a, ids_from_wire(ack[1])))))
    return a, merge_entries(b, entries_from_wire(ack2))


@PROPERTY
@given(consistent_views(), consistent_views())
def test_push_pull_converges_members_in_one_round(a: View, b: View) -> None:
    a2, b2 = push_pull(a, b)
    assert a2.members == b2.members == merge(a, b).members


@PROPERTY
@given(consistent_views(), consistent_views())
def test_push_pull_sends_only_what_differs(a: View, b: View) -> None:
    d_a = digest(a)
    for entry in newer_than(b, d_a):
        assert entry.node_id not in a.members or a.members[entry.node_id] != entry
    for node_id in wanted(b, d_a):
        assert b.members.get(node_id) != a.members[node_id]
    assert newer_than(a, digest(a)) == [] and wanted(a, digest(a)) == []


@PROPERTY
@given(views(), views())
def test_push_pull_plus_removed_and_ring_equals_merge(a: View, b: View) -> None:
    # Entries colliding at one version are the one case digests cannot see; make them agree.
    b = View({i: a.members.get(i, m) if a.members.get(i, m).version() == m.version() else m
              for i, m in b.members.items()}, b.removed, b.ring)
    a2, b2 = push_pull(a, b)
    a2, b2 = with_ring(with_removed(a2, b.removed), b.ring), with_ring(with_removed(b2, a.removed),
                                                                       a.ring)
    assert a2 == b2 == merge(a, b)


def test_newer_than_and_wanted_are_sorted() -> None:
    view = View({i: member(i, hb=1) for i in "cab"})
    peer = {"z": (0, 0), "b": (0, 5), "y": (0, 0)}
    assert [m.node_id for m in newer_than(view, peer)] == ["a", "c"]
    assert wanted(view, peer) == ["b", "y", "z"]
    assert [m.node_id for m in entries_for(view, ["c", "x", "a", "a"])] == ["a", "c"]


# -- the wire ----------------------------------------------------------------------------------


@PROPERTY
@given(member_states(st.text(min_size=1, max_size=255)))
def test_member_round_trips_through_msgpack(m: MemberState) -> None:
    raw = msgpack.unpackb(msgpack.packb(m.to_wire()))
    assert MemberState.from_wire(raw) == m
    assert MemberState.from_wire(m.to_wire()) == m
    assert type(MemberState.from_wire(raw).status) is Status


@PROPERTY
@given(views())
def test_view_round_trips_through_msgpack(v: View) -> None:
    assert View.from_wire(msgpack.unpackb(msgpack.packb(v.to_wire()))) == v


@PROPERTY
@given(consistent_views())
def test_digest_round_trips_through_msgpack(v: View) -> None:
    assert digest_from_wire(msgpack.unpackb(msgpack.packb(digest_to_wire(digest(v))))) == digest(v)


GOOD = ("a", "h:1", "", "up", 0, 0, 0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "9-element array"),
        ("abcdefg", "9-element array"),
        (GOOD[:6], "9-element array"),
        ((*GOOD, 0), "acceptor must be a string"),
        ((*GOOD, "n", 0), "api must be a string"),
        ((*GOOD, "n", "nohost"), "host:port"),
        ((*GOOD, "n", "h:0"), "port must be 1..65535"),
        ((*GOOD, "n", "h:1", 0), "9-element array"),
        (("", *GOOD[1:]), "node_id must not be empty"),
        ((1, *GOOD[1:]), "node_id must be a string"),
        (("a" * 256, *GOOD[1:]), "node_id is longer than 255"),
        (("a", "h", *GOOD[2:]), "host:port"),
        (("a", ":1", *GOOD[2:]), "host:port"),
        (("a", "::1:1", *GOOD[2:]), "host:port"),
        (("a", "h:0", *GOOD[2:]), "port must be 1..65535"),
        (("a", "h:65536", *GOOD[2:]), "port must be 1..65535"),
        (("a", "h:+1", *GOOD[2:]), "port must be 1..65535"),
        (("a", "h:x", *GOOD[2:]), "port must be 1..65535"),
        (("a", "h:1", "z" * 256, *GOOD[3:]), "zone is longer than 255"),
        ((*GOOD[:3], "UP", *GOOD[4:]), "status must be one of"),
        ((*GOOD[:3], 1, *GOOD[4:]), "status must be one of"),
        ((*GOOD[:4], -1, 0, 0), "incarnation must be in"),
        ((*GOOD[:4], 0, True, 0), "heartbeat must be an integer"),
        ((*GOOD[:4], 0, 0, 1.0), "synced_epoch must be an integer"),
        ((*GOOD[:4], 2**63, 0, 0), "incarnation must be in"),
    ],
)
def test_from_wire_rejects_malformed_entries(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MemberState.from_wire(raw)


def test_addresses_accepted() -> None:
    for address in ("h:1", "10.0.0.1:65535", "[::1]:7000", "node-3.example.org:8080"):
        assert member(address=address).address == address


def test_decoders_bound_the_number_of_members() -> None:
    entries = [member(f"n{i}").to_wire() for i in range(MAX_MEMBERS)]
    assert len(entries_from_wire(entries)) == MAX_MEMBERS
    with pytest.raises(ValueError, match="more than 1024"):
        entries_from_wire([*entries, member("extra").to_wire()])
    with pytest.raises(ValueError, match="more than 1024"):
        ids_from_wire([f"n{i}" for i in range(MAX_MEMBERS + 1)])
    with pytest.raises(ValueError, match="more than 1024"):
        digest_from_wire([(f"n{i}", 0, 0) for i in range(MAX_MEMBERS + 1)])
    with pytest.raises(ValueError, match="more than 1024"):
        View.from_wire([[*entries, member("extra").to_wire()], [], RingState.empty().to_wire()])


def test_decoders_reject_a_node_named_twice() -> None:
    with pytest.raises(ValueError, match="twice"):
        entries_from_wire([GOOD, GOOD])
    with pytest.raises(ValueError, match="twice"):
        ids_from_wire(["a", "a"])
    with pytest.raises(ValueError, match="twice"):
        digest_from_wire([("a", 0, 0), ("a", 0, 1)])


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=8) | st.sampled_from([*GOOD, "h:1", "left"]),
    lambda inner: st.lists(inner, max_size=8)
    | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=30,
)


@st.composite
def near_misses(draw: st.DrawFn) -> list[object]:
    """A valid entry with one field swapped for garbage: reaches the deeper checks."""
    raw = list(GOOD)
    raw[draw(st.integers(0, 6))] = draw(msgpack_values)
    return raw


RING = ("c", 2, (("a", "", 1),), ((("a", "z", 2),),))


@st.composite
def near_miss_rings(draw: st.DrawFn) -> list[object]:
    raw = list(RING)
    raw[draw(st.integers(0, 3))] = draw(msgpack_values)
    return raw


DECODERS = [MemberState.from_wire, View.from_wire, entries_from_wire, ids_from_wire,
            digest_from_wire]


@PROPERTY
@given(st.sampled_from(DECODERS),
       msgpack_values | near_misses() | st.lists(near_misses(), max_size=3)
       | st.tuples(st.lists(near_misses(), max_size=2), msgpack_values,
                   msgpack_values | near_miss_rings()))
def test_decoders_raise_only_value_error(decode: object, raw: object) -> None:
    try:
        decode(raw)  # type: ignore[operator]
    except ValueError:
        pass
