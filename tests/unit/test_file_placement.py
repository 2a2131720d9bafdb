"""Where chunks live and the order reads try (dfsring.files.placement), the version clock,
and the CLI's transfer progress (pure parts of dfsring.files and dfsring.cli.files)."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.cli.files import Progress, UsageError, parse_meta, ranges
from dfsring.core import hlc
from dfsring.files import placement
from dfsring.files.clock import VersionClock
from dfsring.ring import Ring, RingMember

RING5 = Ring.build([RingMember(f"n{i}") for i in range(1, 6)], replicas=3, partition_bits=8)
RING3 = Ring.build([RingMember(f"n{i}") for i in range(1, 4)], replicas=3, partition_bits=8,
                   epoch=1)
ids = st.binary(min_size=32, max_size=32)


@given(ids)
def test_the_partition_is_the_digests_top_bits(cid: bytes) -> None:
    assert placement.chunk_partition(cid, 8) == cid[0]
    assert placement.chunk_partition(cid, 16) == int.from_bytes(cid[:2], "big")
    assert placement.chunk_partition(cid, 1) == cid[0] >> 7


def test_bad_ids() -> None:
    with pytest.raises(ValueError):
        placement.chunk_partition(b"short", 8)


@given(ids, st.sets(st.sampled_from(RING5.node_ids())), st.booleans(),
       st.sampled_from(RING5.node_ids()))
def test_read_order_covers_every_member_once_live_first(cid: bytes, down: set[str],
                                                        local: bool, me: str) -> None:
    order = placement.read_order(cid, (RING5,), me, local, lambda n: n not in down)
    expected = set(RING5.node_ids()) - ({me} if not local else set())
    assert sorted(order) == sorted(expected)
    assert len(order) == len(set(order))
    if local:
        assert order[0] == me
    alive = [n for n in order if n == me or n not in down]
    assert order[:len(alive)] == alive  # the down ones last
    owners = [n for n in placement.owners(RING5, cid) if n not in down and n != me]
    rest = [n for n in alive if n != me]
    assert rest[:len(owners)] == owners  # live owners first, in preference order


@given(ids)
def test_read_order_asks_old_owners_during_a_transition(cid: bytes) -> None:
    grown = Ring.build([RingMember(f"n{i}") for i in range(1, 6)], replicas=3,
                       partition_bits=8, epoch=2)
    order = placement.read_order(cid, (grown, RING3), "n9", False, lambda n: True)
    new, old = placement.owners(grown, cid), placement.owners(RING3, cid)
    assert order[:3] == list(new)
    assert set(old) <= set(order[:6])


def test_spread_groups_ids_by_owner() -> None:
    chunks = [hashlib.sha256(bytes([i])).digest() for i in range(50)]
    by_node = placement.spread(chunks, RING5)
    for node, mine in by_node.items():
        assert all(node in placement.owners(RING5, c) for c in mine)
    assert sum(len(v) for v in by_node.values()) == 50 * 3


# --- the version clock ---------------------------------------------------------------------


def test_versions_follow_what_was_seen_even_from_a_clock_behind() -> None:
    clock = VersionClock("a", now_ms=lambda: 1_000)
    first = clock.next()
    seen = hlc.Timestamp(5_000, 7, "b")  # another node, ahead
    second = clock.next(after=seen)
    assert first < seen < second
    assert clock.next() > second


def test_a_version_far_in_the_future_is_passed_but_not_adopted() -> None:
    clock = VersionClock("a", now_ms=lambda: 1_000)
    future = hlc.Timestamp(10**9, 0, "b")
    after = clock.next(after=future)
    assert after > future
    assert clock.next().wall_ms == 1_000  # the bad clock did not drag this one along


# --- CLI progress --------------------------------------------------------------------------


def test_progress_line() -> None:
    p = Progress(total=200_000_000, started=0.0, done=50_000_000)
    line = p.line(now=2.0)
    assert line.startswith("[#####...............]  25%")
    assert "50.0 MB/200.0 MB" in line and "25.0 MB/s" in line and "ETA 6 s" in line
    assert "ETA" not in Progress(total=10, started=0.0).line(now=0.0)
    assert "100%" in Progress(total=0, started=0.0).line(now=1.0)


@given(st.integers(0, 10**9), st.integers(1 << 16, 10**8))
def test_ranges_tile_the_file(size: int, part: int) -> None:
    spans = ranges(size, part)
    assert sum(e - s + 1 for s, e in spans) == size
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(spans))


def test_meta_options() -> None:
    assert parse_meta(["a=b", "c=d=e"]) == {"Dfs-Meta-a": "b", "Dfs-Meta-c": "d=e"}
    with pytest.raises(UsageError):
        parse_meta(["novalue"])
