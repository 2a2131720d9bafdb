"""The small pure pieces of access control: the decision, the TTL cache's freshness rules
and its bound, and the keyed token buckets' bound (issue 18)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core.access import BucketSettings, Need, Principal, Role, decide
from dfsring.core.ratelimit import KeyedBuckets
from dfsring.core.ttlcache import TtlCache
from dfsring.foundation import errors

pytestmark = pytest.mark.unit
READER = Principal("DKREADER", False, {"a": Role.READ})


def test_no_principal_is_refused_unless_public() -> None:
    decide(None, Need.PUBLIC, None, None)
    for need in (Need.AUTHENTICATED, Need.READ, Need.WRITE, Need.OWNER, Need.ADMIN):
        with pytest.raises(errors.Unauthenticated):
            decide(None, need, "a", BucketSettings())


def test_a_public_bucket_is_readable_by_anyone_and_writable_by_no_stranger() -> None:
    public = BucketSettings(public_read=True)
    decide(None, Need.READ, "a", public)
    decide(Principal("DKOTHER", False, {}), Need.READ, "a", public)
    with pytest.raises(errors.Unauthenticated):
        decide(None, Need.WRITE, "a", public)
    with pytest.raises(errors.Forbidden):
        decide(Principal("DKOTHER", False, {}), Need.WRITE, "a", public)


@pytest.mark.parametrize(("need", "bucket", "missing"), [
    (Need.WRITE, "a", "write on bucket a"),
    (Need.READ, "b", "read on bucket b"),
    (Need.OWNER, "a", "owner of bucket a"),
    (Need.ADMIN, None, "admin"),
])
def test_a_read_key_gets_forbidden_naming_the_missing_grant(
        need: Need, bucket: str | None, missing: str) -> None:
    with pytest.raises(errors.Forbidden) as caught:
        decide(READER, need, bucket, BucketSettings())
    assert caught.value.missing == missing


@given(st.sampled_from(list(Role)), st.sampled_from([Need.READ, Need.WRITE, Need.OWNER]))
def test_each_role_includes_the_ones_below(role: Role, need: Need) -> None:
    principal = Principal("DK", False, {"a": role})
    allowed = {Need.READ: Role.READ, Need.WRITE: Role.WRITE, Need.OWNER: Role.OWNER}[need]
    if role >= allowed:
        decide(principal, need, "a", None)
    else:
        with pytest.raises(errors.Forbidden):
            decide(principal, need, "a", None)


def test_admin_may_do_everything() -> None:
    admin = Principal("ROOT", True, {})
    for need in Need:
        decide(admin, need, "any", None)


def test_cache_serves_within_ttl_and_rereads_at_most_once_per_interval() -> None:
    cache: TtlCache[str] = TtlCache(10, ttl_s=5.0, min_reread_s=1.0)
    assert cache.fresh("k", 0.0) is None and cache.may_reread("k", 0.0)
    cache.put("k", "v", 0.0)
    entry = cache.fresh("k", 4.9)
    assert entry is not None and entry.value == "v"
    assert cache.fresh("k", 5.0) is None
    assert not cache.may_reread("k", 0.5)
    assert cache.may_reread("k", 1.0)
    cache.put("gone", None, 0.0)  # absence is cached too
    found = cache.fresh("gone", 1.0)
    assert found is not None and found.value is None
    cache.invalidate("k")
    assert cache.fresh("k", 0.1) is None


@given(st.lists(st.text(max_size=3), max_size=200))
def test_cache_never_holds_more_than_its_bound(keys: list[str]) -> None:
    cache: TtlCache[int] = TtlCache(8, 5.0, 1.0)
    for i, key in enumerate(keys):
        cache.put(key, i, float(i))
        assert len(cache) <= 8


def test_buckets_refuse_past_the_burst_and_refill_at_the_rate() -> None:
    buckets = KeyedBuckets(rate=2.0, burst=3.0, max_keys=100)
    assert [buckets.take("ip", 1, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("ip", 1, 0.0) == pytest.approx(0.5)
    assert buckets.take("other", 1, 0.0) == 0.0
    assert buckets.take("ip", 1, 0.5) == 0.0


@given(st.lists(st.integers(0, 1000), max_size=300))
def test_buckets_never_track_more_keys_than_their_bound(keys: list[int]) -> None:
    buckets = KeyedBuckets(1.0, 1.0, 16)
    for i, key in enumerate(keys):
        buckets.take(str(key), 1.0, float(i))
        assert len(buckets) <= 16
