"""The replay cache (dfsring.core.replay): bounded under any sequence of calls, a signature
seen within the window is a replay, and one older than the window is forgotten."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core.replay import ReplayCache

CALLS = st.lists(st.tuples(st.sampled_from("abcdefgh"), st.floats(0, 5)), max_size=200)


@given(CALLS, st.integers(1, 6), st.floats(0.5, 20))
def test_bound_holds_and_replays_match_a_model(calls: list[tuple[str, float]], cap: int,
                                               window: float) -> None:
    """A model that remembers everything: the cache says "replay" only when the model does
    (never a false positive), and always does for the newest `cap` distinct signatures."""
    cache = ReplayCache(cap, window)
    first_seen: dict[str, float] = {}
    now = 0.0
    for signature, step in calls:
        now += step
        replay = cache.check_and_record(signature, now)
        seen = first_seen.get(signature)
        model = seen is not None and now - seen <= window
        assert not replay or model
        if not replay:
            first_seen[signature] = now
        assert len(cache) <= cap


def test_a_signature_seen_again_within_the_window_is_a_replay() -> None:
    cache = ReplayCache(10, 60)
    assert cache.check_and_record("sig", 100.0) is False
    assert cache.check_and_record("sig", 160.0) is True
    assert cache.check_and_record("sig", 160.5) is False  # forgotten once older than the window
    assert cache.check_and_record("sig", 200.0) is True


def test_when_full_the_oldest_is_evicted() -> None:
    cache = ReplayCache(3, 1000)
    for i, sig in enumerate("abcd"):
        cache.check_and_record(sig, float(i))
    assert len(cache) == 3
    assert cache.check_and_record("a", 5.0) is False  # evicted: the skew window bounds it
    assert cache.check_and_record("d", 5.0) is True


def test_expired_entries_leave_without_a_new_signature_being_needed() -> None:
    cache = ReplayCache(100, 10)
    for i in range(50):
        cache.check_and_record(f"s{i}", float(i) / 10)
    cache.check_and_record("late", 100.0)
    assert len(cache) == 1


def test_a_clock_stepping_back_does_not_break_the_bound() -> None:
    cache = ReplayCache(2, 10)
    for now, sig in [(100.0, "a"), (50.0, "b"), (200.0, "c"), (40.0, "d"), (41.0, "e")]:
        cache.check_and_record(sig, now)
        assert len(cache) <= 2


@pytest.mark.parametrize(("cap", "window"), [(0, 1.0), (1, 0.0), (1, float("nan"))])
def test_bad_parameters_are_refused(cap: int, window: float) -> None:
    with pytest.raises(ValueError):
        ReplayCache(cap, window)
