"""Laws of the identity records (dfsring.core.accessrecords): the sibling merge is a
semilattice join that never widens access, and decoding refuses anything malformed with a
ValueError, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core import accessrecords as ar
from dfsring.core import cors
from dfsring.core.access import Role
from dfsring.core.accessrecords import BucketRecord, KeyRecord

pytestmark = pytest.mark.unit

BUCKETS = st.sampled_from(["a", "b", "photos", "logs"])
ROLES = st.sampled_from(list(Role))


@st.composite
def key_records(draw: st.DrawFn) -> KeyRecord:
    return KeyRecord(
        access_key="DKAAAAAAAAAAAAAAAAAA",
        sealed_secret=draw(st.binary(min_size=1, max_size=40)),
        created_ms=draw(st.integers(0, 10**13)),
        name=draw(st.sampled_from(["", "ci", "backup"])),
        expires_ms=draw(st.none() | st.integers(0, 10**13)),
        disabled=draw(st.booleans()), deleted=draw(st.booleans()), admin=draw(st.booleans()),
        grants=draw(st.dictionaries(BUCKETS, ROLES, max_size=4)),
        rotation=draw(st.integers(0, 5)))


def merged(*records: KeyRecord) -> KeyRecord:
    found = ar.merge_keys(records)
    assert found is not None
    return found


@given(key_records(), key_records(), key_records())
def test_key_merge_is_commutative_associative_idempotent(
        a: KeyRecord, b: KeyRecord, c: KeyRecord) -> None:
    assert merged(a, b) == merged(b, a)
    assert merged(merged(a, b), c) == merged(a, merged(b, c)) == merged(a, b, c)
    assert merged(a, a) == merged(a)


@given(st.lists(key_records(), min_size=1, max_size=5), st.integers(0, 10**13))
def test_key_merge_never_widens_access(records: list[KeyRecord], now_ms: int) -> None:
    """The merged key can do no more than any sibling: a lost edit is a nuisance, a widened
    grant or a resurrected key a breach."""
    out = merged(*records)
    for rec in records:
        assert not (out.usable(now_ms) and not rec.usable(now_ms))
        assert not out.admin or rec.admin
        for bucket, role in out.grants.items():
            assert rec.grants.get(bucket, 0) >= role


@given(key_records(), key_records())
def test_the_newest_rotation_secret_wins(a: KeyRecord, b: KeyRecord) -> None:
    out = merged(a, b)
    assert out.rotation == max(a.rotation, b.rotation)
    assert out.sealed_secret in (a.sealed_secret, b.sealed_secret)


@given(key_records())
def test_key_record_round_trips(rec: KeyRecord) -> None:
    assert ar.decode_key(ar.encode_key(rec)) == rec


@given(st.binary(max_size=300))
def test_decoding_garbage_is_a_value_error(raw: bytes) -> None:
    for decode in (ar.decode_key, ar.decode_bucket):
        try:
            decode(raw)
        except ValueError:
            pass


def test_a_record_with_a_wrong_field_type_is_refused() -> None:
    good = ar.encode_key(KeyRecord("DKAAAAAAAAAAAAAAAAAA", b"s", 1))
    for bad in (good.replace(b'"admin":false', b'"admin":1'),
                good.replace(b'"grants":{}', b'"grants":{"Bad Name":"read"}'),
                good.replace(b'"rotation":0', b'"rotation":-1'),
                good.replace(b'"v":1', b'"v":2')):
        with pytest.raises(ValueError):
            ar.decode_key(bad)


@given(st.lists(st.builds(BucketRecord, st.just("a"), st.sampled_from(["k1", "k2", "root"]),
                          st.integers(0, 100), st.booleans()), min_size=1, max_size=4))
def test_bucket_merge_is_private_unless_all_say_public(records: list[BucketRecord]) -> None:
    out = ar.merge_buckets(records)
    assert out is not None
    assert out.public_read == all(r.public_read for r in records)
    assert out == ar.merge_buckets(list(reversed(records)))
    assert ar.decode_bucket(ar.encode_bucket(out)) == out


def test_decode_all_skips_a_damaged_sibling_and_counts_it() -> None:
    good = ar.encode_key(KeyRecord("DKAAAAAAAAAAAAAAAAAA", b"s", 1))
    found, bad = ar.decode_all([good, b"\x00garbage"], ar.decode_key)
    assert len(found) == 1 and bad == 1


def test_access_key_ids_are_checked() -> None:
    assert ar.validate_access_key("DK" + "A" * 18)
    for bad in ("", "dkaaaaaaaaaaaaaaaaaa", "DK/AAAAAAAAAAAAAAAA", "DK" + "A" * 70):
        with pytest.raises(ValueError):
            ar.validate_access_key(bad)


_RULES = st.sampled_from([
    None, (), (cors.make_rule(["https://app.example"], ["GET"]),),
    (cors.make_rule(["*"], ["GET", "PUT"], ["authorization"], 60),),
    cors.canonical([cors.make_rule(["https://app.example"], ["GET"]),
                    cors.make_rule(["https://*.cdn.example"], ["HEAD"])]),
    (cors.make_rule(["*"], ["GET"], expose=["x-amz-version-id", "ETag"]),)])


@given(st.lists(st.builds(BucketRecord, st.just("a"), st.sampled_from(["k1", "root"]),
                          st.integers(0, 3), st.booleans(), _RULES), min_size=1, max_size=4))
def test_bucket_cors_merge_is_deterministic_and_never_wider(records: list[BucketRecord]) -> None:
    out = ar.merge_buckets(records)
    assert out is not None
    assert out == ar.merge_buckets(list(reversed(records)))
    assert ar.decode_bucket(ar.encode_bucket(out)) == out
    if all(r.cors is None for r in records):
        assert out.cors is None
    else:
        assert out.cors is not None
        assert all(set(out.cors) <= set(r.cors or ()) for r in records)


def test_a_bucket_record_written_before_cors_decodes_without_rules() -> None:
    old = b'{"v":1,"bucket":"a","owner":"root","created_ms":1,"public_read":false}'
    assert ar.decode_bucket(old).cors is None
    assert b"cors" not in ar.encode_bucket(ar.decode_bucket(old))
    with pytest.raises(ValueError):
        ar.decode_bucket(old[:-1] + b',"cors":[{"origins":["*"],"methods":["TRACE"]}]}')


@given(st.lists(st.tuples(st.sampled_from([None, 0.0, 1.0, 5.0]),
                          st.sampled_from([None, 0, 100, 7])), min_size=1, max_size=4))
def test_key_limits_merge_to_the_lowest_and_never_to_unlimited_against_a_limit(
        limits: list[tuple[float | None, int | None]]) -> None:
    records = [KeyRecord("DKAAAAAAAAAAAAAAAAAA", b"s", 1, rate=r, bandwidth=b)
               for r, b in limits]
    out = ar.merge_keys(records)
    assert out is not None and out == ar.merge_keys(list(reversed(records)))
    assert ar.decode_key(ar.encode_key(out)) == out
    for got, values in ((out.rate, [r for r, _ in limits]), (out.bandwidth,
                                                             [b for _, b in limits])):
        real = [v for v in values if v]
        if real:
            assert got == min(real)
        elif None in values:
            assert got is None
        else:
            assert got == 0


def test_bucket_record_keeps_cors_expose_headers_and_old_records_read_as_none() -> None:
    rule = cors.make_rule(["*"], ["GET"], expose=["ETag", "x-amz-version-id"])
    rec = BucketRecord("a", "k1", 1, cors=(rule,))
    assert ar.decode_bucket(ar.encode_bucket(rec)).cors == (rule,)
    old = (b'{"v":1,"bucket":"a","owner":"k1","created_ms":1,"public_read":false,'
           b'"cors":[{"origins":["*"],"methods":["GET"],"headers":[],"max_age_s":0}]}')
    cors_rules = ar.decode_bucket(old).cors
    assert cors_rules is not None and cors_rules[0].expose == ()
