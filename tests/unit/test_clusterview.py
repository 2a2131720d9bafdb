"""The cluster view: one immutable snapshot answers every routing question the same way.

Its helpers must agree with the pure rules they wrap (dfsring.core.transition, dfsring.core.keys),
the
fallback picker must hand out the stand-ins a read later asks (sloppy quorum, Dynamo §4.6),
and a node the ring names before gossip brought it is down and unreachable, never a KeyError.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core import keys, transition
from dfsring.core.clusterview import ClusterView, FallbackPicker, FixedView, substitutes
from dfsring.core.failure import Liveness
from dfsring.core.membership import MemberState, Status, View
from dfsring.core.ringstate import RingState
from dfsring.ring import Ring, RingMember
from dfsring.testing.views import view_of
from dfsring.transport.rpc import PeerUnavailable

pytestmark = pytest.mark.unit

POOL = [f"n{i}" for i in range(8)]


def _ring(n: int = 6, epoch: int = 2) -> Ring:
    return Ring.build([RingMember(f"n{i}") for i in range(n)], replicas=3, partition_bits=6,
                      epoch=epoch)


def test_picker_hands_out_live_fallbacks_once_each_in_ring_order() -> None:
    ring = _ring()
    order = list(ring.fallbacks(3))
    dead = {order[0]}
    picker = FallbackPicker(ring.fallbacks(3), lambda n: n not in dead)
    handed = [picker.next() for _ in order]
    assert handed == [*order[1:], None]


@given(st.sets(st.integers(0, 5), max_size=6), st.integers(0, 63))
def test_a_read_asks_the_stand_ins_a_write_used(dead_idx: set[int], partition: int) -> None:
    """With one view of liveness, the stand-in a read consults for each down owner is the
    fallback a sloppy write handed that owner's share to (owners replaced in list order)."""
    ring = _ring()
    dead = {f"n{i}" for i in dead_idx}
    view = view_of(ring, "n0", down=dead - {"n0"})
    owners = view.owners(partition)
    picker = view.fallback_picker(partition, owners)
    used = {}
    for owner in owners:
        if not view.is_alive(owner):
            stand_in = picker.next()
            if stand_in is None:
                break
            used[owner] = stand_in
    subs = substitutes(owners, view.fallbacks(partition), view.is_alive)
    assert subs == used
    assert all(view.is_alive(s) and s not in owners for s in subs.values())
    assert len(set(subs.values())) == len(subs)


@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=6, unique=True),
       st.lists(st.sampled_from(POOL), max_size=6, unique=True), st.booleans(),
       st.integers(0, 63))
def test_helpers_agree_with_the_transition_rules(now: list[str], before: list[str],
                                                 settled: bool, partition: int) -> None:
    current = Ring.build([RingMember(n) for n in now], replicas=3, partition_bits=6, epoch=3)
    older = Ring.build([RingMember(n) for n in before], replicas=3, partition_bits=6, epoch=2)
    view = dataclasses.replace(view_of(current, now[0], previous=(older,)), settled=settled)
    previous = () if settled else (older,)
    assert view.previous == previous
    assert view.rings == (current, *previous)
    assert view.write_targets(partition) == transition.write_targets(partition, current,
                                                                     previous)
    assert view.read_groups(partition) == transition.read_groups(partition, current, previous)
    assert view.owners(partition) == current.preference_list(partition)


@functools.cache
def _single(bits: int) -> ClusterView:
    return view_of(Ring.build([RingMember("a")], replicas=1, partition_bits=bits, epoch=1), "a")


@settings(deadline=None)
@given(st.text(min_size=1, max_size=20), st.sampled_from([1, 6, 10, 16]))
def test_partition_of_a_name_is_the_stores_rule(key: str, bits: int) -> None:
    name = keys.object_name("b", key)
    assert _single(bits).partition(name) == keys.partition_of(b"b", key.encode(), bits)


def test_a_ring_member_gossip_has_not_brought_is_down_and_unreachable() -> None:
    ring = _ring(3)
    me = MemberState("n0", "127.0.0.1:7000", "", Status.UP, 1, 0, 2)
    rs = RingState("c", ring.epoch, ring.members)
    view = ClusterView("n0", View({"n0": me}, frozenset(), rs), ring)
    assert view.liveness_of("n1") is Liveness.DOWN
    assert not view.is_alive("n1")
    with pytest.raises(PeerUnavailable, match="not yet known"):
        view.address_of("n1")
    assert view.address_of("n0") == "127.0.0.1:7000"
    assert view.is_alive("n0")


def test_this_node_is_up_whatever_the_detector_map_says() -> None:
    view = view_of(_ring(3), "n0")
    view = dataclasses.replace(view, liveness={"n0": Liveness.DOWN, "n1": Liveness.SUSPECT})
    assert view.is_alive("n0")
    assert view.is_alive("n1")  # suspect is not down: still asked


def test_a_view_is_immutable() -> None:
    view = view_of(_ring(3), "n0", down={"n2"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.settled = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        view.liveness["n2"] = Liveness.UP  # type: ignore[index]
    assert FixedView(view).cluster_view() is view


def test_build_makes_the_rings_of_the_agreed_ring_state() -> None:
    founded = RingState("c", 1, (RingMember("n0"), RingMember("n1")))
    grown = founded.successor([*founded.members, RingMember("n2")], keep_previous=False)
    entries = {n: MemberState(n, f"{n}.invalid:1", "", Status.UP, 1, 0, 1)
               for n in ("n0", "n1", "n2")}
    view = ClusterView.build("n0", View(entries, frozenset(), grown), replicas=2,
                             partition_bits=4, settled=False)
    assert view.ring == grown.ring(2, 4)
    assert view.previous == grown.previous_rings(2, 4)
    assert view.epoch == 2
    assert view.synced() == {"n0": 1, "n1": 1, "n2": 1}
    assert view.status_of("n2") is Status.UP
