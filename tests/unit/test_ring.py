"""Properties of the ring from the issue: balance, minimal movement, zones, determinism.

The balance and movement properties use the default vnodes (256) and partition_bits (10).
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dfsring.core.keys import partition_of
from dfsring.ring import Ring, RingMember, vnode_token

pytestmark = pytest.mark.unit

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

node_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=16)
five_ids = st.lists(node_ids, min_size=5, max_size=5, unique=True)


def members_of(ids: list[str]) -> list[RingMember]:
    return [RingMember(node_id) for node_id in ids]


def slots(ring: Ring) -> set[tuple[int, str]]:
    """Every (partition, node) replica slot of the ring."""
    return {(p, n) for p in range(ring.partitions) for n in ring.preference_list(p)}


def zone_key(member: RingMember) -> str:
    return member.zone or f"own:{member.node_id}"


@st.composite
def zoned_members(draw: st.DrawFn) -> list[RingMember]:
    ids = draw(st.lists(node_ids, min_size=1, max_size=9, unique=True))
    zones = st.sampled_from(["", "za", "zb", "zc", "zd"])
    return [RingMember(i, zone=draw(zones), weight=draw(st.integers(1, 3))) for i in ids]


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "members", "message"),
    [
        ({}, [RingMember("a"), RingMember("a")], "duplicate node_id 'a'"),
        ({}, [RingMember("")], "empty node_id"),
        ({}, [RingMember("a", weight=0)], "weight 0"),
        ({"replicas": 0}, [RingMember("a")], "replicas must be at least 1"),
        ({"partition_bits": 0}, [RingMember("a")], "partition_bits must be in 1..16"),
        ({"partition_bits": 17}, [RingMember("a")], "partition_bits must be in 1..16"),
        ({"vnodes": 0}, [RingMember("a")], "vnodes must be at least 1"),
        ({"epoch": -1}, [RingMember("a")], "epoch must not be negative"),
    ],
)
def test_build_rejects_bad_arguments(kwargs: dict, members: list[RingMember], message: str):
    with pytest.raises(ValueError, match=message):
        Ring.build(members, **kwargs)


def test_partition_out_of_range_is_rejected():
    ring = Ring.build(members_of(["a", "b"]), partition_bits=4)
    with pytest.raises(ValueError, match=r"outside 0\.\.15"):
        ring.preference_list(16)
    with pytest.raises(ValueError):
        list(ring.fallbacks(-1))


# -- balance and movement (issue: default vnodes) -----------------------------------------


@PROPERTY
@given(five_ids)
@example([f"node-{i}" for i in range(5)])
def test_five_equal_nodes_each_own_a_fifth(ids: list[str]):
    ring = Ring.build(members_of(ids))
    replica_slots = ring.partitions * ring.replicas
    held = {n: len(ring.partitions_of(n)) / replica_slots for n in ids}
    for node, share in ring.primary_share().items():
        assert abs(share - 0.2) <= 0.04, (node, share)
    for node, share in held.items():
        assert abs(share - 0.2) <= 0.04, (node, share)


@PROPERTY
@given(five_ids, node_ids)
@example([f"node-{i}" for i in range(5)], "node-5")
def test_adding_a_sixth_node_moves_about_a_sixth(ids: list[str], new: str):
    if new in ids:
        return
    before = Ring.build(members_of(ids))
    after = Ring.build(members_of([*ids, new]))
    old = slots(before)
    moved = len(old - slots(after)) / len(old)
    assert moved <= 1 / 6 + 0.05
    for p in range(before.partitions):
        # Consistent hashing: a list only changes by letting the new node in, once.
        lost = set(before.preference_list(p)) - set(after.preference_list(p))
        assert len(lost) <= 1
        assert not lost or new in after.preference_list(p)


@PROPERTY
@given(st.lists(node_ids, min_size=2, max_size=7, unique=True), st.data())
def test_removing_a_node_moves_only_its_own_slots(ids: list[str], data: st.DataObject):
    gone = data.draw(st.sampled_from(ids))
    before = Ring.build(members_of(ids), partition_bits=8)
    after = Ring.build(members_of([i for i in ids if i != gone]), partition_bits=8)
    moved = slots(before) - slots(after)
    assert moved == {(p, gone) for p in before.partitions_of(gone)}


def test_weight_scales_share():
    """Weight multiplies tokens. With one replica the share is proportional to weight; with
    three, a node appears at most once per list, so only its primary share stays proportional."""
    members = [RingMember("heavy", weight=2), *members_of(["a", "b", "c", "d", "e"])]
    single = Ring.build(members, replicas=1)
    assert abs(len(single.partitions_of("heavy")) / single.partitions - 2 / 7) <= 0.05
    triple = Ring.build(members)
    assert abs(triple.primary_share()["heavy"] - 2 / 7) <= 0.04
    assert len(triple.partitions_of("heavy")) > max(len(triple.partitions_of(n)) for n in "abcde")


# -- structure ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(zoned_members(), st.integers(1, 5))
def test_lists_are_distinct_nodes_spanning_as_many_zones_as_possible(
    members: list[RingMember], replicas: int
):
    ring = Ring.build(members, replicas=replicas, partition_bits=7, vnodes=32)
    zone_of = {m.node_id: zone_key(m) for m in members}
    zone_count = len(set(zone_of.values()))
    for p in range(ring.partitions):
        plist = ring.preference_list(p)
        assert len(plist) == min(replicas, len(members))
        assert len(set(plist)) == len(plist)
        assert len({zone_of[n] for n in plist}) == min(zone_count, len(plist))


@pytest.mark.parametrize("sizes", [(1, 2, 4), (3, 3, 1), (5, 1, 1), (2, 2, 2, 1)])
def test_zones_with_uneven_node_counts(sizes: tuple[int, ...]):
    members = [
        RingMember(f"z{z}-n{i}", zone=f"zone-{z}")
        for z, size in enumerate(sizes)
        for i in range(size)
    ]
    ring = Ring.build(members)
    zone_of = {m.node_id: m.zone for m in members}
    for p in range(ring.partitions):
        plist = ring.preference_list(p)
        assert len({zone_of[n] for n in plist}) == 3, plist


def test_fewer_zones_than_replicas_still_fills_lists():
    members = [RingMember(f"n{i}", zone="east" if i < 2 else "west") for i in range(5)]
    ring = Ring.build(members)
    for p in range(ring.partitions):
        plist = ring.preference_list(p)
        assert len(set(plist)) == 3
        assert {m.zone for m in members if m.node_id in plist} == {"east", "west"}


@settings(max_examples=40, deadline=None)
@given(zoned_members(), st.integers(1, 4))
def test_fallbacks_are_every_other_member_once(members: list[RingMember], replicas: int):
    ring = Ring.build(members, replicas=replicas, partition_bits=5, vnodes=16)
    everyone = {m.node_id for m in members}
    for p in range(ring.partitions):
        plist = ring.preference_list(p)
        extra = list(ring.fallbacks(p))
        assert len(extra) == len(set(extra))
        assert not set(extra) & set(plist)
        assert set(extra) | set(plist) == everyone
        assert extra == list(ring.fallbacks(p))


def test_fallbacks_continue_the_walk():
    """Without zones the walk is the preference list then the fallbacks, so the first
    fallback of a one-replica ring is the second replica of a two-replica ring."""
    members = members_of([f"n{i}" for i in range(8)])
    one = Ring.build(members, replicas=1, partition_bits=6)
    two = Ring.build(members, replicas=2, partition_bits=6)
    for p in range(one.partitions):
        walk = [*one.preference_list(p), next(one.fallbacks(p))]
        assert set(walk) == set(two.preference_list(p))


@pytest.mark.parametrize("count", [0, 1, 2])
def test_rings_smaller_than_replicas(count: int):
    ids = ["a", "b"][:count]
    ring = Ring.build(members_of(ids), replicas=3)
    for p in range(ring.partitions):
        assert sorted(ring.preference_list(p)) == ids
        assert list(ring.fallbacks(p)) == []
    for node in ids:
        assert ring.partitions_of(node) == tuple(range(ring.partitions))
    assert sum(ring.primary_share().values()) == (1.0 if ids else 0)


@settings(max_examples=30, deadline=None)
@given(zoned_members(), st.randoms(use_true_random=False), st.integers(0, 5))
def test_build_is_deterministic_and_order_free(
    members: list[RingMember], rnd: random.Random, epoch: int
):
    shuffled = list(members)
    rnd.shuffle(shuffled)
    first = Ring.build(members, partition_bits=6, epoch=epoch)
    second = Ring.build(shuffled, partition_bits=6, epoch=epoch)
    assert first == second
    assert first.hash == second.hash
    assert first.to_json() == second.to_json()
    assert first.members == tuple(sorted(members, key=lambda m: m.node_id))


def test_hash_is_pinned_across_machines():
    """Golden values: any change here changes placement for every deployed cluster."""
    assert vnode_token("node-a", 0) == 0x816A8121675A8A86
    ring = Ring.build(members_of(["node-a", "node-b", "node-c", "node-d"]))
    assert ring.hash == "9eeea759231d77b9abaae87a08559695"
    assert ring.preference_list(0) == ("node-d", "node-c", "node-b")
    assert ring.preference_list(1023) == ("node-d", "node-a", "node-c")


def test_hash_covers_epoch_and_replicas():
    ids = members_of(["a", "b", "c", "d"])
    base = Ring.build(ids)
    assert base.hash != Ring.build(ids, epoch=1).hash
    assert base.hash != Ring.build(ids, replicas=2).hash
    assert base.hash != Ring.build(ids, partition_bits=9).hash


def test_partitions_of_and_primary_share_agree_with_lists():
    ring = Ring.build(members_of(["a", "b", "c", "d"]))
    for node in "abcd":
        expected = tuple(p for p in range(ring.partitions) if node in ring.preference_list(p))
        assert ring.partitions_of(node) == expected
    assert ring.partitions_of("stranger") == ()
    assert sum(ring.primary_share().values()) == pytest.approx(1.0)


def test_to_json_shape():
    ring = Ring.build([RingMember("b", zone="z2"), RingMember("a", zone="z1")], partition_bits=3)
    doc = json.loads(json.dumps(ring.to_json()))
    assert doc["epoch"] == 0
    assert doc["hash"] == ring.hash
    assert doc["partitions"] == 8
    assert doc["replicas"] == 3
    assert doc["members"] == [{"node_id": "a", "zone": "z1"}, {"node_id": "b", "zone": "z2"}]
    assert doc["owners"] == {str(p): list(ring.preference_list(p)) for p in range(8)}


def test_keys_map_onto_ring_partitions():
    ring = Ring.build(members_of(["a", "b", "c"]))
    partition = partition_of(b"photos", b"cat.jpg", ring.partition_bits)
    assert 0 <= partition < ring.partitions
    assert len(ring.preference_list(partition)) == 3
