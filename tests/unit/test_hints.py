"""Hinted handoff's pure rules: key layout, counters, bounds, backoff, routing. (Stand-ins:
tests/unit/test_clusterview.py.)"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core import hints
from dfsring.core.hints import Hint, TargetStats
from dfsring.ring import Ring, RingMember

pytestmark = pytest.mark.unit

node_ids = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1,
                   max_size=40)


@given(node_ids, st.integers(0, 2**64 - 1))
def test_queue_key_round_trips(target: str, seq: int) -> None:
    assert hints.parse_queue_key(hints.queue_key(target, seq)) == (target, seq)


@given(node_ids, node_ids, st.integers(0, 2**64 - 1))
def test_no_target_queue_is_inside_another(a: str, b: str, seq: int) -> None:
    """Delivery scans a target's prefix; it must never see another target's hints."""
    if a != b:
        assert not hints.queue_key(b, seq).startswith(hints.target_prefix(a))
    assert not hints.stats_key(a).startswith(hints.target_prefix(b))


@given(node_ids, st.lists(st.integers(0, 2**64 - 1), min_size=2, unique=True))
def test_a_queue_scans_oldest_first(target: str, seqs: list[int]) -> None:
    ordered = sorted(hints.queue_key(target, s) for s in seqs)
    assert [hints.parse_queue_key(k)[1] for k in ordered] == sorted(seqs)


@pytest.mark.parametrize("bad", [b"", b"\x00abc", b"\x05ab", b"\x01a" + b"\x00" * 7])
def test_malformed_queue_keys_are_refused(bad: bytes) -> None:
    with pytest.raises(hints.HintFormatError):
        hints.parse_queue_key(bad)


def test_targets_are_bounded() -> None:
    with pytest.raises(ValueError):
        hints.queue_key("", 1)
    with pytest.raises(ValueError):
        hints.queue_key("x" * 256, 1)


def test_hint_values_round_trip_and_garbage_is_refused() -> None:
    hint = Hint("node2", 7, b"\x00\x01key", b"\x00record", 1234)
    key = hints.queue_key("node2", 7)
    assert hints.decode_hint(key, hint.encode_value()) == hint
    assert hint.size == len(b"\x00\x01key") + len(b"\x00record")
    for garbage in (b"", b"\xc1", b"\x93\x01\x02\x03", b"\x92\xc4\x00\xc4\x00"):
        with pytest.raises(hints.HintFormatError):
            hints.decode_hint(key, garbage)


@given(st.integers(0, 10**6), st.integers(0, 10**9))
def test_target_stats_round_trip(count: int, size: int) -> None:
    stats = TargetStats(count, size)
    assert TargetStats.decode(stats.encode()) == stats
    assert TargetStats.decode(None) == TargetStats()
    assert stats.plus(-count - 1, -size - 1) == TargetStats(0, 0)  # never negative


def test_admission_keeps_the_bound_but_always_takes_a_first_hint() -> None:
    assert hints.admit(TargetStats(), 10_000, 100)
    assert hints.admit(TargetStats(1, 60), 40, 100)
    assert not hints.admit(TargetStats(1, 60), 41, 100)


@given(st.lists(st.integers(1, 5_000), max_size=200), st.integers(1, 50_000))
def test_admitted_hints_never_exceed_the_bound_after_the_first(sizes: list[int],
                                                              bound: int) -> None:
    stats = TargetStats()
    for size in sizes:
        if hints.admit(stats, size, bound):
            stats = stats.plus(1, size)
    assert stats.count <= 1 or stats.bytes <= bound


def test_expiry() -> None:
    assert not hints.expired(1_000, 2_000, 1_000)
    assert hints.expired(1_000, 2_001, 1_000)


@given(st.integers(0, 200), st.floats(0, 0.999))
def test_backoff_grows_is_capped_and_starts_at_zero(failures: int, jitter: float) -> None:
    delay = hints.backoff_s(failures, base=0.5, cap=30.0, jitter=jitter)
    assert 0.0 <= delay <= 30.0
    if failures == 0:
        assert delay == 0.0
    elif failures < 6:
        assert delay <= hints.backoff_s(failures + 1, base=0.5, cap=30.0, jitter=jitter)


def _ring(n: int = 6) -> Ring:
    return Ring.build([RingMember(f"n{i}") for i in range(n)], replicas=3, partition_bits=6)


def test_destinations_are_the_target_or_the_current_owners() -> None:
    ring = _ring()
    for partition in range(ring.partitions):
        owners = ring.preference_list(partition)
        assert hints.destinations(owners[1], partition, ring) == (owners[1],)
        stranger = next(ring.fallbacks(partition))
        assert hints.destinations(stranger, partition, ring) == owners
        assert hints.destinations("gone", partition, ring) == owners


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=30), st.integers(1, 10**9))
def test_hint_for_a_key_rewritten_often_expires_counting_from_its_newest_write(
        times: list[int], max_age: int) -> None:
    """Issue 15 part 5: a hint folded with later writes ages from the newest of them, so a
    hint for a hot key never expires while it holds a recent write; it keeps its place."""
    hint = Hint("n2", 7, b"sk", b"r0", times[0])
    for i, at in enumerate(times[1:]):
        hint = hints.folded(hint, f"r{i + 1}".encode(), at)
    newest = max(times)
    assert (hint.target, hint.seq, hint.skey, hint.record) == (
        "n2", 7, b"sk", f"r{len(times) - 1}".encode())
    assert not hints.expired(hint.created_ms, newest + max_age, max_age)
    assert hints.expired(hint.created_ms, newest + max_age + 1, max_age)
