"""Keyed token buckets (dfsring.core.ratelimit): the key count stays bounded, no key gets more
than burst + rate x elapsed, and the wait a refusal names is exactly the wait needed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core.ratelimit import EVICTION_SCAN, OWN_LIMITS, KeyedBuckets, KeyLimits

CALLS = st.lists(st.tuples(st.sampled_from("abcdef"), st.floats(0, 3), st.floats(0, 2)),
                 max_size=200)


@given(CALLS, st.floats(0.1, 10), st.floats(0.5, 5), st.integers(1, 8))
def test_bounds_hold(calls: list[tuple[str, float, float]], rate: float, burst: float,
                     max_keys: int) -> None:
    """Per key, while it stays tracked, what was taken never exceeds burst + rate x elapsed
    (plus one oversized request's debt); a refusal's wait is positive and finite."""
    buckets = KeyedBuckets(rate, burst, max_keys)
    now = 0.0
    for key, amount, step in calls:
        now += step
        wait = buckets.take(key, amount, now)
        assert wait >= 0 and math.isfinite(wait)
        if wait > 0:
            assert buckets.take(key, amount, now + wait + 1e-9) == 0.0
            now += wait + 1e-9
        assert len(buckets) <= max_keys
        assert buckets.tokens(key, now) <= burst


@given(st.lists(st.floats(0, 1), max_size=100), st.floats(0.5, 5), st.floats(1, 5))
def test_one_key_never_takes_more_than_burst_plus_refill(gaps: list[float], rate: float,
                                                         burst: float) -> None:
    buckets = KeyedBuckets(rate, burst, 4)
    now = taken = 0.0
    for gap in gaps:
        now += gap
        if buckets.take("k", 0.5, now) == 0.0:
            taken += 0.5
        assert taken <= burst + rate * now + 1e-9


def test_refusal_names_the_wait_and_spends_nothing() -> None:
    buckets = KeyedBuckets(rate=2.0, burst=4.0, max_keys=10)
    assert buckets.take("ip", 4.0, 0.0) == 0.0
    assert buckets.take("ip", 1.0, 0.0) == pytest.approx(0.5)
    assert buckets.take("ip", 1.0, 0.25) == pytest.approx(0.25)
    assert buckets.take("ip", 1.0, 0.5) == 0.0
    assert buckets.tokens("ip", 0.5) == pytest.approx(0.0)
    assert buckets.tokens("ip", 100.0) == 4.0  # refills to burst, never beyond


def test_an_oversized_request_passes_on_a_full_bucket_and_leaves_debt() -> None:
    buckets = KeyedBuckets(rate=10.0, burst=100.0, max_keys=10)
    assert buckets.take("ak", 1000.0, 0.0) == 0.0
    assert buckets.take("ak", 1.0, 0.0) == pytest.approx(90.1)  # 900 debt + 1 at 10/s
    assert buckets.take("ak", 1000.0, 50.0) == pytest.approx(50.0)  # full again at t=100


def test_keys_are_independent() -> None:
    buckets = KeyedBuckets(rate=1.0, burst=1.0, max_keys=10)
    assert buckets.take("a", 1.0, 0.0) == 0.0
    assert buckets.take("b", 1.0, 0.0) == 0.0
    assert buckets.take("a", 1.0, 0.0) > 0


def test_eviction_prefers_a_full_bucket_to_the_least_recently_used() -> None:
    buckets = KeyedBuckets(rate=1.0, burst=10.0, max_keys=3)
    buckets.take("drained", 10.0, 0.0)  # least recently used, empty
    buckets.take("full", 0.0, 1.0)
    buckets.take("busy", 5.0, 2.0)
    buckets.take("new", 1.0, 2.0)
    assert buckets.tokens("drained", 2.0) == pytest.approx(2.0)  # kept: it holds state
    assert len(buckets) == 3


def test_without_a_full_bucket_the_least_recently_used_goes() -> None:
    buckets = KeyedBuckets(rate=1.0, burst=10.0, max_keys=EVICTION_SCAN + 2)
    for i in range(EVICTION_SCAN + 2):
        buckets.take(f"k{i}", 10.0, 0.0)
    buckets.take("new", 1.0, 0.0)
    assert buckets.tokens("k0", 0.0) == 10.0  # forgotten: a fresh bucket
    assert buckets.tokens("k1", 0.0) == 0.0


def test_a_clock_stepping_back_refills_nothing() -> None:
    buckets = KeyedBuckets(rate=1.0, burst=5.0, max_keys=2)
    buckets.take("k", 5.0, 100.0)
    assert buckets.take("k", 1.0, 50.0) == pytest.approx(1.0)
    assert buckets.take("k", 1.0, 101.0) == 0.0


@pytest.mark.parametrize(("rate", "burst", "keys"), [(0, 1, 1), (1, 0, 1), (1, 1, 0),
                                                     (float("nan"), 1, 1)])
def test_bad_parameters_are_refused(rate: float, burst: float, keys: int) -> None:
    with pytest.raises(ValueError):
        KeyedBuckets(rate, burst, keys)


def test_negative_amount_is_refused() -> None:
    with pytest.raises(ValueError):
        KeyedBuckets(1, 1, 1).take("k", -1, 0)


def test_charge_leaves_debt_that_the_next_take_waits_for() -> None:
    b = KeyedBuckets(rate=100.0, burst=100.0, max_keys=4)
    b.charge("k", 300.0, 0.0)  # an answer of 300 bytes already sent
    assert b.tokens("k", 0.0) == pytest.approx(-200.0)
    assert b.take("k", 0.0, 0.0) == pytest.approx(2.0)
    assert b.take("k", 0.0, 2.0) == 0.0
    with pytest.raises(ValueError):
        b.charge("k", -1.0, 2.0)


def test_key_limits_refuse_past_the_burst_and_recover_after_the_wait() -> None:
    limits = KeyLimits(rate=2.0, burst=3.0, bandwidth=1000)
    assert [limits.admit("k", 0, 0.0) for _ in range(3)] == [None] * 3
    refused = limits.admit("k", 0, 0.0)
    assert refused is not None and refused[0] == "requests"
    assert refused[1] == pytest.approx(0.5)
    assert limits.admit("k", 0, refused[1]) is None
    assert limits.admit("other", 0, 0.0) is None  # keys are independent
    limits.sent("k", 5000, 1.0)  # a read of 5000 bytes: 4 s of debt at 1000 B/s
    byte_refusal = limits.admit("k", 10, 2.0)
    assert byte_refusal is not None and byte_refusal[0] == "bandwidth"
    assert KeyLimits(0, 0, 0).admit("k", 10**12, 0.0) is None  # 0: unlimited


def test_a_key_s_own_limits_replace_the_node_s() -> None:
    limits = KeyLimits(rate=100.0, burst=100.0, bandwidth=0)
    assert [limits.admit("slow", 0, 0.0, rate=1.0) for _ in range(2)] == [None] * 2  # 2 x 1
    refused = limits.admit("slow", 0, 0.0, rate=1.0)
    assert refused is not None and refused[1] == pytest.approx(1.0)
    assert all(limits.admit("fast", 0, 0.0) is None for _ in range(100))
    assert all(limits.admit("free", 0, 0.0, rate=0.0) is None for _ in range(1000))
    assert limits.admit("capped", 10, 0.0, bandwidth=5) is None  # a full bucket lets it in
    limits.sent("capped", 10, 0.0, bandwidth=5)  # and its body is read
    refused = limits.admit("capped", 10, 0.0, bandwidth=5)
    assert refused is not None and refused[0] == "bandwidth"


@given(st.lists(st.floats(0.5, 50.0), min_size=1, max_size=80))
def test_own_limits_keep_a_bounded_number_of_buckets(rates: list[float]) -> None:
    limits = KeyLimits(rate=10.0, burst=10.0, bandwidth=100)
    for i, rate in enumerate(rates):
        limits.admit(f"k{i}", 1, float(i), rate=rate)
    assert len(limits._buckets) <= OWN_LIMITS + 2


def test_an_announced_body_is_checked_but_only_bytes_read_are_charged() -> None:
    """Regression: a huge Content-Length refused with 413 before anything was read left the
    key hours in debt."""
    limits = KeyLimits(rate=0, burst=0, bandwidth=1000)
    assert limits.admit("k", 10**13, 0.0) is None  # a full bucket: any announced size
    assert limits.admit("k", 10**13, 0.0) is None  # nothing read, nothing charged
    limits.sent("k", 600, 0.0)
    refused = limits.admit("k", 500, 0.0)
    assert refused is not None and refused == ("bandwidth", pytest.approx(0.1))
