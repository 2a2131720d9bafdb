"""benchmarks.hdr, the load generator's log-bucketed histogram: percentiles never below the
true value and within its stated relative error (under the 1 % the benchmark report promises)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.hdr import Histogram

pytestmark = pytest.mark.unit


def exact_percentile(values: list[int], q: float) -> int:
    """The nearest-rank percentile: the smallest value with at least q % at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * q / 100))
    return ordered[rank - 1]


def filled(values: list[int], sub_bits: int = 8) -> Histogram:
    hist = Histogram(sub_bits)
    for value in values:
        hist.record(value)
    return hist


def test_small_values_are_exact() -> None:
    hist = filled(list(range(1, 101)))
    assert hist.percentile(50) == 50
    assert hist.percentile(99) == 99
    assert hist.percentile(100) == 100
    assert hist.percentile(0) == 1
    assert (hist.count, hist.min, hist.max, hist.mean) == (100, 1, 100, 50.5)


def test_uniform_million_range_percentiles() -> None:
    values = list(range(1, 1_000_001, 7))
    hist = filled(values)
    for q in (50, 90, 99, 99.9):
        exact = exact_percentile(values, q)
        assert exact <= hist.percentile(q) <= exact * (1 + 2**-7)


def test_a_tail_of_slow_requests_shows_in_p99_9_not_p50() -> None:
    latencies = [1_000_000] * 9_985 + [250_000_000] * 15  # 1 ms, and 0.15 % at 250 ms
    hist = filled(latencies)
    assert hist.percentile(50) == pytest.approx(1_000_000, rel=2**-7)
    assert hist.percentile(99) == pytest.approx(1_000_000, rel=2**-7)
    assert hist.percentile(99.9) == pytest.approx(250_000_000, rel=2**-7)
    assert hist.max == 250_000_000


def test_buckets_tile_the_number_line() -> None:
    hist = Histogram(4)
    previous_high = -1
    for index in range(200):
        low, high = hist.bucket_range(index)
        assert low == previous_high + 1
        assert hist.index(low) == index == hist.index(high)
        previous_high = high


def test_merge_equals_recording_everything_in_one() -> None:
    a, b = filled([5, 500, 50_000]), filled([7, 7_000_000])
    a.merge(b)
    both = filled([5, 500, 50_000, 7, 7_000_000])
    assert (a.counts, a.count, a.total, a.min, a.max) == (
        both.counts,
        both.count,
        both.total,
        both.min,
        both.max,
    )


def test_refuses_what_it_cannot_answer() -> None:
    with pytest.raises(ValueError):
        Histogram().percentile(50)
    with pytest.raises(ValueError):
        filled([1]).percentile(101)
    with pytest.raises(ValueError):
        Histogram().record(-1)


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=300), st.floats(0, 100))
def test_percentile_is_never_below_and_within_the_relative_error(
    values: list[int], q: float
) -> None:
    hist = filled(values)
    exact = exact_percentile(values, q)
    reported = hist.percentile(q)
    assert exact <= reported <= max(values)
    assert reported <= exact + exact * 2**-7


def test_default_precision_is_within_one_percent() -> None:
    assert Histogram().relative_error < 0.01


@given(st.lists(st.integers(1_000, 10**10), min_size=1, max_size=2_000),
       st.sampled_from([50.0, 90.0, 99.0, 99.9, 100.0]))
def test_latency_percentiles_are_within_one_percent(values: list[int], q: float) -> None:
    """Nanosecond latencies from 1 us to 10 s: every reported percentile within 1 % of the
    exact nearest-rank one."""
    exact = exact_percentile(values, q)
    assert abs(filled(values).percentile(q) - exact) <= 0.01 * exact


def test_lognormal_latencies_percentiles_within_one_percent() -> None:
    """A realistic shape (log-normal around 2 ms, a long tail) over 100 000 values."""
    import random

    rng = random.Random(7)
    values = [int(rng.lognormvariate(14.5, 0.8)) for _ in range(100_000)]
    hist = filled(values)
    for q in (1, 50, 90, 99, 99.9, 99.99):
        exact = exact_percentile(values, q)
        assert exact <= hist.percentile(q) <= exact * 1.01


def test_summary_is_in_milliseconds_and_empty_when_nothing_was_recorded() -> None:
    assert Histogram().summary() == {}
    summary = filled([2_000_000] * 10).summary()
    assert summary["p50"] == summary["p99.9"] == summary["max"] == 2.0
    assert summary["mean"] == 2.0
