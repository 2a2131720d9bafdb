"""dfsring.s3.listing against a brute-force model of S3's listings (hypothesis), and the
corner cases other S3 servers got wrong, each pinned by name.

The model lists a whole bucket as *items* (keys and CommonPrefixes) sorted as strings: a
CommonPrefix P sorts before every key under it and after every key before it, so sorting
the items by their text is S3's order. Resuming at a mark lists the items strictly greater
than the mark, which is also why a mark inside a CommonPrefix resumes after all of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.s3 import listing
from dfsring.s3.errors import S3Error
from dfsring.s3.listing import ListPage, ListQuery
from dfsring.s3.model import ListEntry

ALPHABET = ["a", "b", "/", "é", "\U0001f600", listing.LAST_CHAR]
KEY = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=5).map("".join)
PREFIX = st.lists(st.sampled_from(ALPHABET), max_size=2).map("".join)
DELIMITER = st.sampled_from(["", "/", "a", "/a", "é"])
MAX_KEYS = st.one_of(st.integers(0, 4), st.just(1000))
MAX_PAGES = 500  # the largest test needs under 100


@dataclass
class Bucket:
    """An in-memory object layer's scan: keys to versions, oldest first."""

    versions: dict[str, list[ListEntry]] = field(default_factory=dict)
    scans: int = 0
    read: int = 0

    def put(self, key: str, *, marker: bool = False) -> ListEntry:
        n = sum(len(v) for v in self.versions.values())
        entry = ListEntry(key=key, version_id=f"v{n}", order=f"{n:08d}", delete_marker=marker,
                          size=0 if marker else n, etag="" if marker else f"e{n}",
                          last_modified_ms=n)
        self.versions.setdefault(key, []).append(entry)
        return entry

    def scan(self, versions: bool) -> listing.Scan:
        async def run(prefix: str, after: str | None) -> AsyncIterator[ListEntry]:
            self.scans += 1
            for key in sorted(self.versions):
                if key.startswith(prefix) and (after is None or key > after):
                    for entry in self.versions[key] if versions else self.versions[key][-1:]:
                        self.read += 1
                        yield entry
        return run


BUCKETS = st.lists(st.tuples(KEY, st.lists(st.booleans(), min_size=1, max_size=3)),
                   max_size=25)


def make_bucket(spec: list[tuple[str, list[bool]]]) -> Bucket:
    bucket = Bucket()
    for key, markers in spec:
        for marker in markers:
            bucket.put(key, marker=marker)
    return bucket


def run(coro: object) -> ListPage:
    return asyncio.run(coro)  # type: ignore[arg-type]


# --- the model ------------------------------------------------------------------------------


def model_objects(bucket: Bucket, q: ListQuery, mark: str = "") -> list[str]:
    """Every item of a full ListObjects after ``mark``: keys as themselves, prefixes as
    'P:' + text (so the two kinds compare apart)."""
    items: set[tuple[str, bool]] = set()
    for key, versions in bucket.versions.items():
        if key.startswith(q.prefix) and not versions[-1].delete_marker:
            cp = listing.common_prefix(key, q.prefix, q.delimiter)
            items.add((key, False) if cp is None else (cp, True))
    return [("P:" if is_cp else "K:") + text for text, is_cp in sorted(items) if text > mark]


def model_versions(bucket: Bucket, q: ListQuery, mark: str = "") -> list[str]:
    items: list[tuple[str, str]] = []
    for key in sorted(bucket.versions):
        if not key.startswith(q.prefix):
            continue
        cp = listing.common_prefix(key, q.prefix, q.delimiter)
        if cp is not None:
            if (cp, "") not in items:
                items.append((cp, ""))
            continue
        for i, entry in enumerate(reversed(bucket.versions[key])):
            items.append((key, f"{entry.version_id}{'*' if i == 0 else ''}"))
    return [f"{text}|{v}" if v else f"P:{text}" for text, v in items if text > mark]


def page_items(page: ListPage) -> list[str]:
    keys = [(e.key, False) for e in page.entries]
    return [("P:" if is_cp else "K:") + text
            for text, is_cp in sorted(keys + [(p, True) for p in page.common_prefixes])]


def page_versions(page: ListPage) -> list[str]:
    """Versions in page order and the prefixes merged in by text (they sort apart)."""
    out = [(e.key, f"{e.version_id}{'*' if latest else ''}")
           for e, latest in zip(page.entries, page.latest, strict=True)]
    merged = sorted([(text, 0, i, v) for i, (text, v) in enumerate(out)]
                    + [(p, 0, -1, "") for p in page.common_prefixes])
    return [f"{text}|{v}" if v else f"P:{text}" for text, _, _, v in merged]


def paginate(bucket: Bucket, q: ListQuery, kind: str) -> list[ListPage]:
    pages: list[ListPage] = []
    for _ in range(MAX_PAGES):
        if kind == "versions":
            page = run(listing.list_versions(bucket.scan(True), q))
        else:
            page = run(listing.list_objects(bucket.scan(False), q))
        pages.append(page)
        if not page.truncated:
            return pages
        if kind == "v2":
            q = replace(q, token=page.next_token)
        elif kind == "v1":
            assert page.next_marker is not None
            q = replace(q, start_after=page.next_marker)
        else:
            assert page.next_marker is not None
            q = replace(q, start_after=page.next_marker,
                        version_marker=page.next_version_marker or "")
    raise AssertionError("pagination did not end")


def check_pages(pages: list[ListPage], q: ListQuery) -> None:
    for page in pages[:-1]:
        assert page.truncated and len(page.entries) + len(page.common_prefixes) == q.max_keys
    assert not pages[-1].truncated
    assert len(pages[-1].entries) + len(pages[-1].common_prefixes) <= q.max_keys
    assert pages[-1].next_token is None and pages[-1].next_marker is None


# --- ListObjects ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(BUCKETS, PREFIX, DELIMITER, MAX_KEYS, st.sampled_from(["v1", "v2"]))
def test_paging_to_the_end_lists_exactly_the_model(spec: list[tuple[str, list[bool]]],
                                                   prefix: str, delimiter: str, max_keys: int,
                                                   kind: str) -> None:
    bucket = make_bucket(spec)
    q = ListQuery(prefix=prefix, delimiter=delimiter, max_keys=max_keys)
    pages = paginate(bucket, q, kind)
    if max_keys == 0:
        assert pages == [ListPage([], [], [], False, None, None, None)]
        return
    check_pages(pages, q)
    assert [i for p in pages for i in page_items(p)] == model_objects(bucket, q)
    for page in pages:
        assert page.latest == []
        assert all(not e.delete_marker for e in page.entries)


@settings(max_examples=300)
@given(BUCKETS, PREFIX, DELIMITER, st.integers(1, 4), KEY)
def test_a_marker_anywhere_resumes_strictly_after_it_and_never_inside_a_prefix(
        spec: list[tuple[str, list[bool]]], prefix: str, delimiter: str, max_keys: int,
        mark: str) -> None:
    bucket = make_bucket(spec)
    q = ListQuery(prefix=prefix, delimiter=delimiter, max_keys=max_keys, start_after=mark)
    pages = paginate(bucket, q, "v1")
    check_pages(pages, q)
    assert [i for p in pages for i in page_items(p)] == model_objects(bucket, q, mark)


def test_continuation_in_the_middle_of_a_common_prefix_resumes_after_it() -> None:
    """localstack#9605, versitygw#816, noobaa#7281: a page that ends on a CommonPrefix must
    not list it (or keys under it) again on the next page."""
    bucket = Bucket()
    for key in ["a", "b/1", "b/2", "b/3", "c"]:
        bucket.put(key)
    q = ListQuery(delimiter="/", max_keys=2)
    first = run(listing.list_objects(bucket.scan(False), q))
    assert [e.key for e in first.entries] == ["a"] and first.common_prefixes == ["b/"]
    assert first.truncated and first.next_marker == "b/"
    second = run(listing.list_objects(bucket.scan(False), replace(q, token=first.next_token)))
    assert [e.key for e in second.entries] == ["c"] and second.common_prefixes == []
    assert not second.truncated
    inside = run(listing.list_objects(bucket.scan(False), replace(q, start_after="b/2")))
    assert [e.key for e in inside.entries] == ["c"] and inside.common_prefixes == []


def test_a_prefix_holding_only_delete_markers_is_not_listed() -> None:
    """seaweedfs#10416/#10681: a CommonPrefix needs a current version that is not a delete
    marker; so does a key."""
    bucket = Bucket()
    bucket.put("gone/x")
    bucket.put("gone/x", marker=True)
    bucket.put("dead", marker=True)
    bucket.put("live/y")
    page = run(listing.list_objects(bucket.scan(False), ListQuery(delimiter="/")))
    assert page.common_prefixes == ["live/"] and page.entries == []


def test_max_keys_zero_is_an_empty_page_that_is_not_truncated() -> None:
    """AWS answers max-keys=0 with no items and IsTruncated false (versitygw#248)."""
    bucket = Bucket()
    bucket.put("a")
    page = run(listing.list_objects(bucket.scan(False), ListQuery(max_keys=0)))
    assert page == ListPage([], [], [], False, None, None, None)
    assert bucket.scans == 0
    page = run(listing.list_versions(bucket.scan(True), ListQuery(max_keys=0)))
    assert not page.truncated and page.entries == []


def test_is_truncated_is_exact_when_the_last_page_is_full() -> None:
    bucket = Bucket()
    for key in ["a", "b"]:
        bucket.put(key)
    page = run(listing.list_objects(bucket.scan(False), ListQuery(max_keys=2)))
    assert len(page.entries) == 2 and not page.truncated and page.next_token is None


def test_is_truncated_looks_past_trailing_delete_markers() -> None:
    bucket = Bucket()
    bucket.put("a")
    bucket.put("b", marker=True)
    bucket.put("c/d", marker=True)
    page = run(listing.list_objects(bucket.scan(False), ListQuery(max_keys=1, delimiter="/")))
    assert [e.key for e in page.entries] == ["a"] and not page.truncated


def test_a_large_common_prefix_is_skipped_by_a_new_scan_not_read_through() -> None:
    bucket = Bucket()
    bucket.put("a")
    for i in range(5000):
        bucket.put(f"big/{i:05d}")
    bucket.put("z")
    page = run(listing.list_objects(bucket.scan(False), ListQuery(delimiter="/")))
    assert [e.key for e in page.entries] == ["a", "z"] and page.common_prefixes == ["big/"]
    assert bucket.read <= listing.SKIP_INLINE + 4
    assert bucket.scans == 2


def test_keys_holding_the_last_code_point_after_the_delimiter_stay_in_their_prefix() -> None:
    """The skip scans again from P + U+10FFFF: keys under P beyond that point are dropped."""
    bucket = Bucket()
    for i in range(listing.SKIP_INLINE + 3):
        bucket.put(f"p/{i:03d}")
    bucket.put("p/" + listing.LAST_CHAR)
    bucket.put("p/" + listing.LAST_CHAR * 2 + "x")
    bucket.put("q")
    page = run(listing.list_objects(bucket.scan(False), ListQuery(delimiter="/")))
    assert page.common_prefixes == ["p/"] and [e.key for e in page.entries] == ["q"]


def test_a_continuation_token_wins_over_start_after() -> None:
    bucket = Bucket()
    for key in ["a", "b", "c"]:
        bucket.put(key)
    q = ListQuery(start_after="a", token=listing.encode_token("b"))
    page = run(listing.list_objects(bucket.scan(False), q))
    assert [e.key for e in page.entries] == ["c"]


def test_a_layer_repeating_keys_cannot_make_the_page_repeat_them() -> None:
    async def sloppy(prefix: str, after: str | None) -> AsyncIterator[ListEntry]:
        for key in ["a", "b", "c"]:  # ignores ``after``
            yield ListEntry(key, "null", "0", False, 1, "e", 0)
    page = run(listing.list_objects(sloppy, ListQuery(start_after="a")))
    assert [e.key for e in page.entries] == ["b", "c"]


def test_scans_are_closed_when_the_page_is_done() -> None:
    closed: list[str] = []

    async def scan(prefix: str, after: str | None) -> AsyncIterator[ListEntry]:
        try:
            for key in ["a", "b", "c"]:
                yield ListEntry(key, "null", "0", False, 1, "e", 0)
        finally:
            closed.append(prefix)
    run(listing.list_objects(scan, ListQuery(max_keys=1)))
    assert closed == [""]


# --- ListObjectVersions ---------------------------------------------------------------------


@settings(max_examples=300)
@given(BUCKETS, PREFIX, DELIMITER, MAX_KEYS)
def test_version_paging_to_the_end_lists_exactly_the_model(spec: list[tuple[str, list[bool]]],
                                                           prefix: str, delimiter: str,
                                                           max_keys: int) -> None:
    bucket = make_bucket(spec)
    q = ListQuery(prefix=prefix, delimiter=delimiter, max_keys=max_keys)
    pages = paginate(bucket, q, "versions")
    if max_keys == 0:
        assert len(pages) == 1 and pages[0].entries == [] and not pages[0].truncated
        return
    check_pages(pages, q)
    assert [i for p in pages for i in page_versions(p)] == model_versions(bucket, q)


@settings(max_examples=200)
@given(BUCKETS, PREFIX, DELIMITER, st.integers(1, 4), KEY)
def test_a_key_marker_anywhere_resumes_after_that_key_s_versions(
        spec: list[tuple[str, list[bool]]], prefix: str, delimiter: str, max_keys: int,
        mark: str) -> None:
    bucket = make_bucket(spec)
    q = ListQuery(prefix=prefix, delimiter=delimiter, max_keys=max_keys, start_after=mark)
    pages = paginate(bucket, q, "versions")
    check_pages(pages, q)
    assert [i for p in pages for i in page_versions(p)] == model_versions(bucket, q, mark)


def test_versions_with_delete_markers_newest_first_and_is_latest_on_the_newest() -> None:
    bucket = Bucket()
    v0 = bucket.put("k")
    m1 = bucket.put("k", marker=True)
    v2 = bucket.put("k")
    only = bucket.put("only-marker", marker=True)
    page = run(listing.list_versions(bucket.scan(True), ListQuery()))
    assert page.entries == [v2, m1, v0, only]
    assert page.latest == [True, False, False, True]


def test_paging_inside_one_key_s_many_versions_buffers_at_most_a_page() -> None:
    bucket = Bucket()
    made = [bucket.put("hot", marker=i % 7 == 3) for i in range(300)]
    bucket.put("later")
    q = ListQuery(max_keys=7)
    pages = paginate(bucket, q, "versions")
    check_pages(pages, q)
    listed = [e for p in pages for e in p.entries]
    assert listed[:300] == list(reversed(made)) and listed[300].key == "later"
    assert [latest for p in pages for latest in p.latest].count(True) == 2
    assert pages[0].next_marker == "hot" and pages[0].next_version_marker == made[-7].version_id


def test_a_version_marker_that_vanished_lists_the_key_again_from_its_newest() -> None:
    bucket = Bucket()
    made = [bucket.put("k") for _ in range(3)]
    q = ListQuery(start_after="k", version_marker="gone")
    page = run(listing.list_versions(bucket.scan(True), q))
    assert page.entries == list(reversed(made)) and page.latest == [True, False, False]


def test_a_version_marker_continues_with_the_older_versions_then_later_keys() -> None:
    bucket = Bucket()
    made = [bucket.put("k") for _ in range(4)]
    after = bucket.put("l")
    q = ListQuery(start_after="k", version_marker=made[2].version_id)
    page = run(listing.list_versions(bucket.scan(True), q))
    assert page.entries == [made[1], made[0], after]
    assert page.latest == [False, False, True]


# --- the query and the token ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "-1", "²", "1 ", " 1", "", "+5", "1.0", "٣"])
def test_max_keys_must_be_ascii_digits(value: str) -> None:
    with pytest.raises(S3Error) as info:
        listing.parse_list_query({"max-keys": value}, "v2")
    assert info.value.code == "InvalidArgument"


@pytest.mark.parametrize(("value", "expected"), [
    ("0", 0), ("7", 7), ("1000", 1000), ("1001", 1000), ("99999999999999999999", 1000),
    ("0000000000000000000005", 5)])
def test_max_keys_above_a_thousand_is_clamped(value: str, expected: int) -> None:
    assert listing.parse_list_query({"max-keys": value}, "v1").max_keys == expected


def test_query_parameters_by_kind() -> None:
    q = listing.parse_list_query({"prefix": "p/", "delimiter": "/", "marker": "p/a",
                                  "encoding-type": "url"}, "v1")
    assert q == ListQuery(prefix="p/", delimiter="/", start_after="p/a", encode_url=True)
    token = listing.encode_token("x")
    q = listing.parse_list_query({"start-after": "s", "continuation-token": token}, "v2")
    assert (q.start_after, q.token) == ("s", token)
    q = listing.parse_list_query({"key-marker": "k", "version-id-marker": "v1"}, "versions")
    assert (q.start_after, q.version_marker) == ("k", "v1")


@pytest.mark.parametrize(("query", "kind"), [
    ({"encoding-type": "base64"}, "v2"),
    ({"continuation-token": ""}, "v2"),
    ({"continuation-token": "not a token"}, "v2"),
    ({"version-id-marker": "v1"}, "versions"),
    ({"prefix": "p" * 1025}, "v2"),
    ({"prefix": "\ud800"}, "v1"),
])
def test_bad_query_parameters_are_invalid_argument(query: dict[str, str], kind: str) -> None:
    with pytest.raises(S3Error) as info:
        listing.parse_list_query(query, kind)  # type: ignore[arg-type]
    assert info.value.code == "InvalidArgument" and info.value.status == 400


@given(st.text(min_size=1, max_size=50))
def test_tokens_round_trip(mark: str) -> None:
    token = listing.encode_token(mark)
    assert token.isascii() and "=" not in token
    assert listing.decode_token(token) == mark


@settings(max_examples=1000)
@given(st.one_of(st.text(max_size=80), st.text(alphabet="ABCabc019_-=+/", max_size=40)))
def test_a_token_decodes_only_if_this_module_could_have_made_it(token: str) -> None:
    try:
        mark = listing.decode_token(token)
    except S3Error as exc:
        assert exc.code == "InvalidArgument"
    else:
        assert listing.encode_token(mark) == token


@pytest.mark.parametrize("token", [
    listing.encode_token("x") + "=",  # padded
    "AXh",  # non-canonical trailing bits of "AXg" ("x")
    "Ang",  # format 2
    "AQ",  # empty mark
    "Af8",  # not UTF-8
    "A" * (listing.MAX_TOKEN_CHARS + 1),
])
def test_tampered_tokens_are_refused(token: str) -> None:
    with pytest.raises(S3Error) as info:
        listing.decode_token(token)
    assert info.value.message == listing.BAD_TOKEN
