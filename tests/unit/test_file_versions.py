"""File version keys, selection, retention and the collector's rule (dfsring.files.versions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core import hlc, keys
from dfsring.core.manifest import MAX_FILE_SIZE, MS_PER_DAY
from dfsring.files import versions as fv
from dfsring.files.versions import Kind, Retention, VersionRef
from dfsring.foundation.errors import InvalidKey

NOW = 1_800_000_000_000
paths = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                min_size=1, max_size=40)
node_ids = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
stamps = st.builds(hlc.Timestamp, st.integers(0, hlc.MAX_WALL_MS),
                   st.integers(0, hlc.MAX_COUNTER), node_ids)
kinds = st.sampled_from(Kind)


def ref(path: str = "p", wall: int = NOW, counter: int = 0, node: str = "n1",
        kind: Kind = Kind.CHUNKED, size: int = 10, bucket: str = "b") -> VersionRef:
    return VersionRef(bucket, path, hlc.Timestamp(wall, counter, node).encode(), kind,
                      0 if kind is Kind.DELETED else size)


etags = st.one_of(st.just(""), st.from_regex(r"[0-9a-f]{32}(-[1-9][0-9]{0,4})?", fullmatch=True))


@st.composite
def refs(draw: st.DrawFn, path: st.SearchStrategy[str] = paths) -> VersionRef:
    """Any version key: every kind, with or without an S3 ETag, null or not."""
    kind = draw(kinds)
    size = 0 if kind is Kind.DELETED else draw(st.integers(0, MAX_FILE_SIZE))
    etag = "" if kind is Kind.DELETED else draw(etags)
    return VersionRef(draw(st.sampled_from(["b", "b.x", "zz"])), draw(path),
                      draw(stamps).encode(), kind, size, etag, draw(st.booleans()))


@given(refs())
def test_a_key_parses_back_to_its_version(r: VersionRef) -> None:
    assert VersionRef.parse(r.key) == r


@given(refs(), refs())
def test_key_order_is_bucket_then_path_then_version(a: VersionRef, b: VersionRef) -> None:
    if (a.bucket, a.path) == (b.bucket, b.path):
        expected = (a.timestamp < b.timestamp, a.timestamp == b.timestamp)
    else:
        # keys of one bucket are bucket + "/" + path: byte order of the paths
        ka, kb = f"{a.bucket}/{a.path}".encode(), f"{b.bucket}/{b.path}".encode()
        expected = (ka < kb, False)
    got = (a.key.encode() < b.key.encode(), a.key == b.key)
    if (a.bucket, a.path) == (b.bucket, b.path) and a.timestamp == b.timestamp:
        return  # the same version id: kinds/sizes may differ in a generated pair
    assert got == expected


@given(refs())
def test_every_key_fits_the_storage_layout_unabbreviated(r: VersionRef) -> None:
    long = VersionRef("b" * 63, "é" * (fv.MAX_PATH_BYTES // 2), hlc.Timestamp(
        hlc.MAX_WALL_MS, hlc.MAX_COUNTER, "n" * 64).encode(), Kind.CHUNKED, 10**11,
        "f" * 32 + "-10000", True)
    for one in (r, long):
        suffix = keys.key_suffix(fv.SYSTEM_BUCKET.encode(), one.key.encode())
        assert suffix == one.key.encode()


@given(refs())
def test_version_keys_start_with_their_path_prefix(r: VersionRef) -> None:
    assert r.key.startswith(fv.path_prefix(r.bucket, r.path))
    assert r.key.startswith(fv.listing_prefix(r.bucket, r.path[:1]))
    assert fv.after_path(r.bucket, r.path) > r.key


def test_after_path_is_below_the_next_paths_keys() -> None:
    assert fv.after_path("b", "a") < ref("a/b").key
    assert fv.after_path("b", "a") < ref("a\x01").key
    assert fv.after_path("b", "a") > ref("a", wall=hlc.MAX_WALL_MS, node="z" * 64).key


@pytest.mark.parametrize("key", [
    "", "b/p", "b/p\x00v\x00c1", "B/p\x00" + "0" * 20 + "n\x00c1",
    "b/p\x00" + "0" * 20 + "n\x00x1", "b/p\x00" + "0" * 20 + "n\x00c01",
    "b/p\x00" + "0" * 20 + "n\x00d5", "b/\x00" + "0" * 20 + "n\x00c1",
])
def test_malformed_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        VersionRef.parse(key)
    assert fv.parse_keys([key]) == []


@pytest.mark.parametrize("path", ["", "a\x00b", "x" * (fv.MAX_PATH_BYTES + 1), "\ud800"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(InvalidKey):
        fv.validate_path(path)


def test_reserved_buckets_are_not_user_buckets() -> None:
    assert keys.is_reserved(fv.SYSTEM_BUCKET)
    keys.validate_bucket(fv.SYSTEM_BUCKET)  # valid to the storage layer
    with pytest.raises(InvalidKey):
        keys.validate_user_bucket(fv.SYSTEM_BUCKET)
    assert keys.validate_user_bucket("photos") == b"photos"


# --- selection -----------------------------------------------------------------------------


def test_current_is_the_newest_unless_deleted() -> None:
    old, new = ref(wall=NOW), ref(wall=NOW + 1)
    assert fv.current([new, old]) == new
    marker = ref(wall=NOW + 2, kind=Kind.DELETED)
    assert fv.current([old, marker, new]) is None
    assert fv.current([]) is None
    again = ref(wall=NOW + 3)
    assert fv.current([old, marker, new, again]) == again


def test_node_id_breaks_ties() -> None:
    a, b = ref(node="a"), ref(node="b")
    assert fv.newest([a, b]) == b and fv.newest([b, a]) == b


@given(st.lists(refs(st.sampled_from(["x", "x/y", "y"])), max_size=30))
def test_live_files_lists_each_undeleted_file_once_in_path_order(group: list[VersionRef]) -> None:
    listed = fv.live_files(group)
    names = [(r.bucket, r.path) for r in listed]
    assert len(names) == len(set(names))
    for r in listed:
        same = [x for x in group if (x.bucket, x.path) == (r.bucket, r.path)]
        assert r == fv.newest(same) and not r.deleted
    assert [r.path.encode() for r in listed] == sorted(r.path.encode() for r in listed)


# --- retention -----------------------------------------------------------------------------


one_file = st.lists(st.builds(lambda w, c, k: ref(wall=w, counter=c, kind=k),
                              st.integers(NOW - 40 * MS_PER_DAY, NOW), st.integers(0, 3),
                              kinds), min_size=1, max_size=25,
                    unique_by=lambda r: r.version)
rules = st.builds(Retention, st.none() | st.integers(1, 10), st.none() | st.floats(0.5, 30))


@given(one_file, rules)
def test_retention_partitions_and_keeps_the_newest(group: list[VersionRef],
                                                   rule: Retention) -> None:
    kept, pruned = fv.retention(group, rule, NOW)
    assert sorted(kept + pruned, key=lambda r: r.version) == sorted(group,
                                                                     key=lambda r: r.version)
    assert fv.newest(group) in kept
    if rule.keeps_all:
        assert not pruned
    if rule.keep_versions is not None and rule.keep_days is None:
        assert len(kept) == min(len(group), rule.keep_versions)
    for r in pruned:
        assert rule.keep_days is None or r.created_ms <= NOW - rule.keep_days * MS_PER_DAY
    if kept and pruned:
        assert min(r.timestamp for r in kept) > max(r.timestamp for r in pruned) or \
            rule.keep_days is not None


@given(one_file, rules, st.integers(0, 10))
def test_retention_on_a_partial_listing_never_prunes_what_the_full_one_keeps(
        group: list[VersionRef], rule: Retention, drop: int) -> None:
    """After an upload the service prunes from an ordinary (quorum) listing, which may miss
    versions: that must only ever prune less."""
    partial = fv.newest_first(group)[drop:] or group
    _, pruned_partial = fv.retention(partial, rule, NOW)
    kept_full, _ = fv.retention(group, rule, NOW)
    assert not set(pruned_partial) & set(kept_full)


def test_retention_examples() -> None:
    day = MS_PER_DAY
    group = [ref(wall=NOW - i * day) for i in range(6)]  # 0..5 days old
    kept, pruned = fv.retention(group, Retention(keep_versions=2), NOW)
    assert kept == group[:2] and pruned == group[2:]
    kept, _ = fv.retention(group, Retention(keep_days=3.5), NOW)
    assert kept == group[:4]
    kept, _ = fv.retention(group, Retention(keep_versions=5, keep_days=1.5), NOW)
    assert kept == group[:5]  # the union of the two rules
    with pytest.raises(ValueError):
        fv.retention([ref("a"), ref("b")], Retention(1), NOW)
    with pytest.raises(ValueError):
        Retention(keep_versions=0)


def test_lone_delete_markers_go() -> None:
    markers = [ref(wall=NOW - i, kind=Kind.DELETED) for i in range(3)]
    assert fv.lone_markers(markers) == markers
    assert fv.lone_markers([*markers, ref(wall=NOW - 10)]) == []
    assert fv.lone_markers([]) == []


# --- the collector's rule ------------------------------------------------------------------


@given(st.dictionaries(st.binary(min_size=32, max_size=32), st.floats(0, 100), max_size=30),
       st.data())
def test_collectable_spares_referenced_and_recent_chunks(candidates: dict[bytes, float],
                                                         data: st.DataObject) -> None:
    referenced = data.draw(st.sets(st.sampled_from(sorted(candidates)) if candidates
                                   else st.nothing()))
    cutoff = data.draw(st.floats(0, 100))
    doomed = fv.collectable(candidates, referenced, cutoff)
    assert set(doomed) == {c for c, t in candidates.items()
                           if c not in referenced and t < cutoff}


def test_a_key_written_before_etags_parses_with_no_etag() -> None:
    old = ref().key
    assert old.count("\x00") == 2
    parsed = VersionRef.parse(old)
    assert (parsed.etag, parsed.null) == ("", False)


@given(st.lists(refs(st.just("p")), min_size=1, max_size=8))
def test_visible_keeps_only_the_newest_null_version(group: list[VersionRef]) -> None:
    by_version = {r.version: r for r in group if r.bucket == group[0].bucket}
    group = list(by_version.values())  # a path's version ids are unique
    shown = fv.visible(group)
    nulls = [r for r in group if r.null]
    assert sum(r.null for r in shown) == min(1, len(nulls))
    if nulls:
        newest_null = max(nulls, key=lambda r: r.timestamp)
        assert newest_null in shown
        assert set(fv.superseded_nulls(group)) == set(nulls) - {newest_null}
    assert shown == fv.newest_first(shown)
    assert {r for r in group if not r.null} <= set(shown)


def test_a_null_version_uses_an_upper_case_kind_and_keeps_its_etag() -> None:
    r = VersionRef("b", "k", hlc.Timestamp(NOW, 0, "n1").encode(), Kind.INLINE, 3,
                   "0" * 32, True)
    assert "\x00I3\x00" + "0" * 32 in r.key
    assert VersionRef.parse(r.key) == r
    with pytest.raises(ValueError):
        VersionRef("b", "k", r.version, Kind.DELETED, 0, "0" * 32)
