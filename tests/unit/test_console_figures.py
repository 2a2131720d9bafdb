"""dfsring.http.console.figures and .sessions: the dashboard's rates and quantiles, and the
session table's bounds, expiry and CSRF comparison (pure, no I/O)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.http.console.figures import Sample, Series, point, quantile, totals
from dfsring.http.console.sessions import SessionTable

pytestmark = pytest.mark.unit
BOUNDS = (0.005, 0.05, 0.5, 5.0, math.inf)


def buckets(counts: list[int]) -> tuple[tuple[float, float], ...]:
    out, seen = [], 0.0
    for bound, c in zip(BOUNDS, counts, strict=True):
        seen += c
        out.append((bound, seen))
    return tuple(out)


def test_p99_is_the_bound_of_the_bucket_holding_the_99th_percentile() -> None:
    before = buckets([0, 0, 0, 0, 0])
    assert quantile(before, buckets([98, 0, 1, 1, 0]), 0.99) == 0.5
    assert quantile(before, buckets([100, 0, 0, 0, 0]), 0.99) == 0.005
    assert quantile(before, buckets([0, 0, 0, 0, 0]), 0.99) is None
    assert quantile(before, buckets([0, 0, 0, 0, 7]), 0.99) == 5.0  # +inf: the last finite


@given(st.lists(st.integers(0, 1000), min_size=5, max_size=5),
       st.lists(st.integers(0, 1000), min_size=5, max_size=5))
def test_quantile_is_a_bound_and_monotonic_in_q(a: list[int], more: list[int]) -> None:
    before = buckets(a)
    after = buckets([x + y for x, y in zip(a, more, strict=True)])
    q50, q99 = quantile(before, after, 0.5), quantile(before, after, 0.99)
    if sum(more) == 0:
        assert q50 is None and q99 is None
    else:
        assert q50 in BOUNDS and q99 in BOUNDS and q50 is not None and q99 is not None
        assert q50 <= q99


def test_rates_count_a_counter_reset_from_zero() -> None:
    a = Sample(10.0, 100, 0, 1000, 2000, 5)
    b = Sample(12.0, 120, 2, 3000, 2000, 7)
    p = point(a, b)
    assert (p.requests_per_s, p.errors_per_s, p.bytes_in_per_s, p.bytes_out_per_s,
            p.repairs_per_s) == (10.0, 1.0, 1000.0, 0.0, 1.0)
    restarted = Sample(14.0, 6, 0, 0, 0, 0)
    assert point(b, restarted).requests_per_s == 3.0


def test_series_is_bounded_and_totals_sum_members() -> None:
    s = Series(3)
    for i in range(10):
        s.add(Sample(float(i), i * 10.0, 0, 0, 0, 0))
    assert len(s.points) == 3 and s.points[-1].requests_per_s == 10.0
    t = totals([s.points[-1], None, s.points[-1]])
    assert t["requests_per_s"] == 20.0 and t["p99_ms"] is None
    assert totals([])["requests_per_s"] == 0


def test_sessions_expire_are_bounded_and_check_csrf() -> None:
    table = SessionTable(max_sessions=2, ttl_s=10.0)
    a = table.create("A", "sa", 0.0)
    b = table.create("B", "sb", 1.0)
    assert table.get(a.token, 5.0) == a and table.get(b.token, 10.5) == b
    assert table.get(a.token, 10.0) is None  # expired and dropped
    c = table.create("C", "sc", 2.0)
    d = table.create("D", "sd", 3.0)  # the oldest (b) goes past the bound
    assert len(table) == 2 and table.get(b.token, 4.0) is None
    assert table.get(c.token, 4.0) == c and table.get(d.token, 4.0) == d
    assert c.csrf_ok(c.csrf) and not c.csrf_ok(None) and not c.csrf_ok(d.csrf)
    assert table.get("", 0.0) is None and table.get("x" * 500, 0.0) is None
    table.drop(c.token)
    assert table.get(c.token, 4.0) is None
