"""The pure rules under the S3 object layer: grouped placement (dfsring.core.keys), the
manifest's S3 fields (dfsring.core.manifest format 2), bucket record merges with versioning
and graves (dfsring.core.accessrecords), multipart records and completion rules
(dfsring.s3.obj_uploads) and version selection (dfsring.s3.obj_versions)."""

from __future__ import annotations

import hashlib
import itertools

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core import accessrecords as ar
from dfsring.core import hlc, keys, manifest
from dfsring.core.accessrecords import BucketRecord
from dfsring.files import versions as fv
from dfsring.files.versions import Kind, VersionRef
from dfsring.s3 import obj_uploads as up
from dfsring.s3 import obj_versions as ov
from dfsring.s3.errors import S3Error
from dfsring.s3.model import NULL_VERSION, Checksum, ObjectMeta

SHA = hashlib.sha256(b"").hexdigest()
V = hlc.Timestamp(1_800_000_000_000, 0, "n1").encode()
buckets = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True)
tails = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                max_size=30)


@given(buckets, tails, tails, st.integers(1, 16))
def test_every_key_of_one_bucket_in_a_grouped_table_has_one_partition(
        bucket: str, a: str, b: str, bits: int) -> None:
    for table in keys.GROUPED_BUCKETS:
        one = keys.partition_of(table, f"{bucket}/{a}".encode(), bits)
        two = keys.partition_of(table, f"{bucket}/{b}".encode(), bits)
        assert one == two == keys.group_partition(table, bucket, bits)


def test_other_buckets_keep_the_whole_key_placement() -> None:
    spread = {keys.partition_of(b"photos", f"b/{i}".encode(), 10) for i in range(64)}
    assert len(spread) > 1
    with pytest.raises(ValueError):
        keys.group_partition(b"photos", "b")


def test_manifest_s3_fields_round_trip_and_format_1_still_decodes() -> None:
    m = manifest.Manifest.create("b", "k", V, sha256="", created_ms=1,
                                 chunks=[(b"\x01" * 32, 5)], s3_etag="a" * 32 + "-2",
                                 parts=2, checksum=("SHA256", "abc=-2"),
                                 headers={"cache-control": "no-cache"})
    assert manifest.decode(manifest.encode(m)) == m
    assert m.etag == '"' + "a" * 32 + '-2"'
    old = msgpack.packb([1, "b", "k", V, 0, bytes.fromhex(SHA), "text/plain", [], 1, b""],
                        use_bin_type=True)
    decoded = manifest.decode(old)
    assert (decoded.s3_etag, decoded.parts, decoded.checksum, decoded.headers) == \
        ("", 0, None, ())
    with pytest.raises(ValueError):
        manifest.decode(msgpack.packb([1, *manifest.decode(old).__slots__[:0], "x"]))
    with pytest.raises(ValueError):  # an inline manifest must name its sha256
        manifest.Manifest.create("b", "k", V, sha256="", created_ms=1, inline=b"")


def test_object_meta_a_manifest_cannot_hold_is_refused() -> None:
    manifest.check_object_meta("text/plain", {"a": "b"}, {"cache-control": "x"})
    for args in (("", {}, {}), ("text/plain", {"a": "é"}, {}),
                 ("text/plain", {}, {"Cache-Control": "x"})):
        with pytest.raises(ValueError):
            manifest.check_object_meta(*args)  # type: ignore[arg-type]


def rec(created: int, *, deleted: int = 0, state: str = "", state_ms: int = 0,
        owner: str = "o") -> BucketRecord:
    return BucketRecord("b", owner, created, versioning=state, versioning_ms=state_ms,
                        deleted_ms=deleted)


records = st.builds(rec, st.integers(1, 20), deleted=st.sampled_from([0, 0, 5, 15, 25]),
                    state=st.sampled_from(ar.VERSIONING_STATES),
                    state_ms=st.integers(0, 30), owner=st.sampled_from(["o", "p"]))


@given(st.lists(records, min_size=1, max_size=5))
def test_bucket_merge_is_order_free_and_idempotent(found: list[BucketRecord]) -> None:
    merged = ar.merge_buckets(found)
    for order in itertools.islice(itertools.permutations(found), 6):
        assert ar.merge_buckets(list(order)) == merged
    assert ar.merge_buckets([*found, *found]) == merged
    assert merged is not None
    assert ar.decode_bucket(ar.encode_bucket(merged)) == merged


def test_a_grave_wins_over_older_creations_and_loses_to_a_later_one() -> None:
    grave = rec(1, deleted=10)
    assert ar.merge_buckets([grave, rec(5)]) == grave
    assert ar.merge_buckets([grave, rec(11, owner="p")]).owner == "p"  # type: ignore[union-attr]


def test_the_later_versioning_change_wins() -> None:
    merged = ar.merge_buckets([rec(1, state="Enabled", state_ms=5),
                               rec(1, state="Suspended", state_ms=7)])
    assert merged is not None and merged.versioning == "Suspended"


def part(number: int, size: int, data: bytes = b"x") -> up.PartRecord:
    return up.PartRecord(number, size, hashlib.md5(data).hexdigest(),
                         ((b"\x02" * 32, size),) if size else (), 1)


def test_complete_rules() -> None:
    big = up.MIN_PART_SIZE
    found = {1: part(1, big, b"1"), 2: part(2, 10, b"2"), 3: part(3, 1, b"3")}
    chosen = up.check_complete([(1, found[1].md5), (3, found[3].md5)], found)
    assert [p.number for p in chosen] == [1, 3]
    cases = [([(2, found[2].md5), (1, found[1].md5)], "InvalidPartOrder"),
             ([(1, found[1].md5), (1, found[1].md5)], "InvalidPartOrder"),
             ([(1, found[1].md5), (4, "0" * 32)], "InvalidPart"),
             ([(1, "0" * 32)], "InvalidPart"),
             ([(2, found[2].md5), (3, found[3].md5)], "EntityTooSmall"),
             ([], "MalformedXML")]
    for asked, code in cases:
        with pytest.raises(S3Error) as caught:
            up.check_complete(asked, found)
        assert caught.value.code == code


def test_multipart_etag_is_md5_of_the_binary_md5s_and_the_count() -> None:
    md5s = [hashlib.md5(b"a").hexdigest(), hashlib.md5(b"b").hexdigest()]
    expected = hashlib.md5(bytes.fromhex(md5s[0]) + bytes.fromhex(md5s[1])).hexdigest()
    assert up.multipart_etag(md5s) == f"{expected}-2"
    got = up.composite_checksum([Checksum("SHA256", "AAAA"), Checksum("SHA256", "AAAA")],
                                "SHA256")
    assert got is not None and got.value.endswith("-2")
    assert up.composite_checksum([None], "SHA256") is None


@given(st.text(max_size=40).filter(lambda k: "\x00" not in k and k), st.integers(1, 10_000))
def test_upload_records_and_keys_round_trip(key: str, number: int) -> None:
    uid = up.new_upload_id()
    assert up.parse_upload_key("b", up.upload_key("b", key, uid)) == (key, uid)
    assert up.parse_part_key(up.part_key("b", uid, number)) == number
    assert up.part_key("b", uid, number).startswith(up.parts_prefix("b", uid))
    rec = up.UploadRecord(key, uid, 5, "o", ObjectMeta("t/x", {"expires": "x"}, {"a": "b"}),
                          "CRC32")
    assert up.decode_upload(up.encode_upload(rec)) == rec
    p = up.PartRecord(number, 3, "0" * 32, ((b"\x01" * 32, 3),), 9, Checksum("CRC32", "x"))
    assert up.decode_part(up.encode_part(p)) == p


@pytest.mark.parametrize("raw", [b"", b"\xc1", msgpack.packb([2]), msgpack.packb(
    [1, 1, 5, "0" * 32, [[b"\x01" * 32, 3]], 1, None])])
def test_a_damaged_part_record_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        up.decode_part(raw)


def test_version_selection_and_key_rules() -> None:
    null_old = VersionRef("b", "k", hlc.Timestamp(1, 0, "n1").encode(), Kind.INLINE, 1,
                          null=True)
    kept = VersionRef("b", "k", hlc.Timestamp(2, 0, "n1").encode(), Kind.INLINE, 1)
    null_new = VersionRef("b", "k", hlc.Timestamp(3, 0, "n1").encode(), Kind.INLINE, 2,
                          null=True)
    group = [null_old, kept, null_new]
    assert ov.current(group) == null_new
    assert ov.find(group, NULL_VERSION) == null_new
    assert ov.find(group, kept.version) == kept
    assert [e.version_id for e in ov.group_entries(group, versions=True)] == [
        kept.version, NULL_VERSION]
    assert ov.object_path("a" * fv.MAX_PATH_BYTES)
    for key, code in (("a" * (fv.MAX_PATH_BYTES + 1), "KeyTooLongError"),
                      ("", "InvalidArgument"), ("a\x00", "InvalidArgument")):
        with pytest.raises(S3Error) as caught:
            ov.object_path(key)
        assert caught.value.code == code
    for name in ("ab", "a..b", "-ab", "192.168.1.1", "a_b", "Abc"):
        with pytest.raises(S3Error):
            ov.check_new_bucket(name)
    assert ov.check_new_bucket("my.bucket-1") == "my.bucket-1"
