"""Laws of dfsring.core.manifest: strict round trips, hostile input, ranges over chunks,
retention."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core.hlc import Timestamp
from dfsring.core.manifest import (
    INLINE_MAX,
    MAX_CHUNK_SIZE,
    MAX_CHUNKS,
    MAX_META_ENTRIES,
    MAX_META_TOTAL,
    MS_PER_DAY,
    ChunkRef,
    ChunkSlice,
    Manifest,
    chunk_span,
    decode,
    encode,
    metadata_from_headers,
    metadata_headers,
    newest_first,
    prune,
)

pytestmark = pytest.mark.unit

V1 = Timestamp(1_000, 0, "n1").encode()
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
ANY_SHA = "ab" * 32
D = bytes(range(32))

buckets = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,62}", fullmatch=True)
paths = st.text(min_size=1, max_size=40)
versions = st.builds(
    lambda wall, counter, node: Timestamp(wall, counter, node).encode(),
    st.integers(0, 2**48 - 1),
    st.integers(0, 2**32 - 1),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True),
)
visible = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
content_types = st.text(visible, min_size=1, max_size=40)
metadata = st.dictionaries(
    st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
    st.text(visible, max_size=30),
    max_size=5,
)
chunk_lists = st.lists(
    st.tuples(st.binary(min_size=32, max_size=32), st.integers(1, MAX_CHUNK_SIZE)),
    min_size=1,
    max_size=8,
)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    common: dict[str, Any] = {
        "created_ms": draw(st.integers(0, 2**48 - 1)),
        "content_type": draw(content_types),
        "metadata": draw(metadata),
    }
    bucket, path, version = draw(buckets), draw(paths), draw(versions)
    if draw(st.booleans()):
        data = draw(st.binary(max_size=300))
        sha = hashlib.sha256(data).hexdigest()
        return Manifest.create(bucket, path, version, sha256=sha, inline=data, **common)
    sha = draw(st.binary(min_size=32, max_size=32)).hex()
    return Manifest.create(bucket, path, version, sha256=sha, chunks=draw(chunk_lists), **common)


def chunked(sizes: list[int], **kw: Any) -> Manifest:
    chunks = [(bytes([i % 256]) * 32, n) for i, n in enumerate(sizes)]
    args: dict[str, Any] = {"sha256": ANY_SHA, "created_ms": 0, "chunks": chunks}
    args.update(kw)
    return Manifest.create("b", "dir/file", args.pop("version", V1), **args)


# --- construction and invariants --------------------------------------------------------------


def test_create_derives_size_and_sorts_metadata() -> None:
    m = chunked([10, 20], metadata={"z": "1", "a": "2"}, created_ms=5)
    assert m.size == 30 and m.inline is None
    assert m.metadata == (("a", "2"), ("z", "1")) and m.meta == {"a": "2", "z": "1"}
    assert m.chunks == (ChunkRef(bytes(32), 10), ChunkRef(b"\x01" * 32, 20))
    assert m.timestamp == Timestamp(1_000, 0, "n1")
    assert m.etag == f'"{ANY_SHA}"'


def test_empty_file_is_inline() -> None:
    m = Manifest.create("b", "k", V1, sha256=EMPTY_SHA, created_ms=0, inline=b"")
    assert m.size == 0 and decode(encode(m)) == m
    with pytest.raises(ValueError, match="chunks or inline"):
        Manifest("b", "k", V1, 0, EMPTY_SHA, "text/plain", (), 0, (), None)


def test_to_json_is_the_upload_answer() -> None:
    m = chunked([5, 6, 7])
    assert m.to_json() == {
        "bucket": "b",
        "path": "dir/file",
        "size": 18,
        "sha256": ANY_SHA,
        "version": V1,
        "chunks": 3,
    }


def _replace(m: Manifest, **kw: Any) -> Manifest:
    fields = {name: getattr(m, name) for name in Manifest.__dataclass_fields__}
    fields.update(kw)
    return Manifest(**fields)


BASE = chunked([100])
INLINE = Manifest.create(
    "b", "k", V1, sha256=hashlib.sha256(b"hi").hexdigest(), created_ms=0, inline=b"hi"
)


@pytest.mark.parametrize(
    ("base", "change", "message"),
    [
        (BASE, {"bucket": "Bad"}, "bucket"),
        (BASE, {"bucket": 3}, "string"),
        (BASE, {"path": ""}, "key"),
        (BASE, {"path": "x" * 1025}, "limit"),
        (BASE, {"version": "v1"}, "timestamp"),
        (BASE, {"size": 99}, "sum"),
        (BASE, {"size": -1}, "size"),
        (BASE, {"sha256": ANY_SHA.upper()}, "sha256"),
        (BASE, {"sha256": "ab"}, "sha256"),
        (BASE, {"content_type": "text/plain\r\nX-Evil: 1"}, "content_type"),
        (BASE, {"content_type": " "}, "blank"),
        (BASE, {"content_type": "x" * 256}, "content_type"),
        (BASE, {"metadata": (("b", "1"), ("a", "2"))}, "sorted"),
        (BASE, {"metadata": (("a", "1"), ("a", "2"))}, "sorted"),
        (BASE, {"metadata": (("A", "1"),)}, "metadata key"),
        (BASE, {"metadata": (("a", "x\ny"),)}, "metadata value"),
        (BASE, {"metadata": (("a", " x"),)}, "whitespace"),
        (BASE, {"metadata": {"a": "1"}}, "tuple"),
        (BASE, {"metadata": (("a",),)}, "pairs"),
        (BASE, {"created_ms": -1}, "created_ms"),
        (BASE, {"created_ms": 1.0}, "created_ms"),
        (BASE, {"chunks": [ChunkRef(D, 100)]}, "tuple"),
        (BASE, {"chunks": ((D, 100),)}, "ChunkRef"),
        (BASE, {"chunks": (), "size": 0}, "chunks or inline"),
        (BASE, {"inline": b"x" * 100}, "not both"),
        (INLINE, {"inline": b"ho"}, "sha256"),
        (INLINE, {"size": 3}, "whole file"),
        (INLINE, {"inline": "hi"}, "must be bytes"),
    ],
)
def test_invalid_manifests_are_refused(
    base: Manifest, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _replace(base, **change)


def test_size_limits() -> None:
    big = b"x" * (INLINE_MAX + 1)
    with pytest.raises(ValueError, match="at most"):
        sha = hashlib.sha256(big).hexdigest()
        Manifest.create("b", "k", V1, sha256=sha, created_ms=0, inline=big)
    with pytest.raises(ValueError, match="chunk size"):
        ChunkRef(D, MAX_CHUNK_SIZE + 1)
    with pytest.raises(ValueError, match="chunk size"):
        ChunkRef(D, 0)
    with pytest.raises(ValueError, match="digest"):
        ChunkRef(D[:31], 1)
    with pytest.raises(ValueError, match="at most"):
        chunked([1] * (MAX_CHUNKS + 1))
    many = {f"k{i}": "v" for i in range(MAX_META_ENTRIES + 1)}
    with pytest.raises(ValueError, match="at most"):
        chunked([1], metadata=many)
    long = {f"k{i}": "v" * 1000 for i in range(9)}
    assert sum(len(k) + len(v) for k, v in long.items()) > MAX_META_TOTAL
    with pytest.raises(ValueError, match="limit"):
        chunked([1], metadata=long)
    with pytest.raises(ValueError, match="exactly one"):
        Manifest.create("b", "k", V1, sha256=ANY_SHA, created_ms=0)


def test_the_largest_manifest_fits_in_one_value() -> None:
    meta = {f"{i:02d}" + "k" * 100: "v" * 150 for i in range(MAX_META_ENTRIES)}
    m = chunked([MAX_CHUNK_SIZE] * MAX_CHUNKS, metadata=meta, content_type="t" * 255)
    m = _replace(m, bucket="b" * 63, path="p" * 1024)
    assert len(encode(m)) < 1 << 20


# --- encoding ---------------------------------------------------------------------------------


@settings(max_examples=200)
@given(manifests())
def test_encoding_round_trips(m: Manifest) -> None:
    raw = encode(m)
    assert decode(raw) == m
    assert decode(bytearray(raw)) == m
    assert encode(decode(raw)) == raw


def _decodes_or_value_error(raw: object) -> None:
    try:
        m = decode(raw)  # type: ignore[arg-type]
    except ValueError:
        return
    assert decode(encode(m)) == m


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_decode_of_random_bytes_raises_only_value_error(raw: bytes) -> None:
    _decodes_or_value_error(raw)


@settings(max_examples=300)
@given(manifests(), st.data())
def test_decode_of_damaged_encodings_raises_only_value_error(
    m: Manifest, data: st.DataObject
) -> None:
    raw = bytearray(encode(m))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _decodes_or_value_error(bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw))


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=40)
)
msgpack_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=11) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(msgpack_values)
def test_decode_of_hostile_structures_raises_only_value_error(doc: object) -> None:
    _decodes_or_value_error(msgpack.packb(doc, use_bin_type=True))


@settings(max_examples=200)
@given(manifests(), st.integers(0, 9), msgpack_values)
def test_decode_of_a_field_replaced_raises_only_value_error(
    m: Manifest, i: int, value: object
) -> None:
    doc = msgpack.unpackb(encode(m))
    doc[i] = value
    _decodes_or_value_error(msgpack.packb(doc, use_bin_type=True))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        msgpack.packb([2, "b", "k", V1, 0, bytes(32), "t", [], 0, b""]),
        msgpack.packb([1, "b", "k", V1, 0, bytes(32), "t", [], 0, b""]) + b"\x00",
        msgpack.packb([1, "b", "k", V1, 0, hashlib.sha256(b"").digest(), "t", [], 0, b"x"]),
        msgpack.packb([1, "b", "k", V1, 0, hashlib.sha256(b"").digest(), "t", [], 0, []]),
        msgpack.packb(msgpack.ExtType(1, b"x")),
        b"\x91" * 100_000,  # deep nesting
        b"\xdd\xff\xff\xff\xff",  # an array header claiming 4 billion items
        "text",
        None,
        b"\x00" * (3 << 20),
    ],
)
def test_decode_refuses_malformed_encodings(raw: Any) -> None:
    with pytest.raises(ValueError):
        decode(raw)


# --- metadata headers -------------------------------------------------------------------------


def test_metadata_from_headers() -> None:
    headers = [("Dfs-Meta-Owner", "ann"), ("Content-Type", "x/y"), ("dfs-meta-TAG", "a b")]
    meta = metadata_from_headers(headers)
    assert meta == {"owner": "ann", "tag": "a b"}
    m = chunked([1], metadata=meta)
    assert metadata_from_headers(metadata_headers(m)) == meta
    with pytest.raises(ValueError, match="twice"):
        metadata_from_headers([("Dfs-Meta-A", "1"), ("dfs-meta-a", "2")])
    with pytest.raises(ValueError):
        metadata_from_headers([("Dfs-Meta-", "1")])
    with pytest.raises(ValueError):
        metadata_from_headers([("Dfs-Meta-A", "caf\u00e9")])


# --- ranges -----------------------------------------------------------------------------------


@given(st.lists(st.integers(1, 50), min_size=1, max_size=12), st.data())
def test_chunk_span_covers_exactly_the_range(sizes: list[int], data: st.DataObject) -> None:
    m = chunked(sizes)
    content = b"".join(bytes([i]) * n for i, n in enumerate(sizes))
    start = data.draw(st.integers(0, m.size - 1))
    end = data.draw(st.integers(start, m.size - 1))
    spans = chunk_span(m, start, end)
    pieces = [bytes([s.index]) * sizes[s.index] for s in spans]
    assert (
        b"".join(p[s.start : s.stop] for p, s in zip(pieces, spans, strict=True))
        == (content[start : end + 1])
    )
    assert [s.index for s in spans] == list(range(spans[0].index, spans[-1].index + 1))
    assert all(0 <= s.start < s.stop <= sizes[s.index] for s in spans)


def test_chunk_span_example() -> None:
    m = chunked([10, 10, 10])
    assert chunk_span(m, 0, 29) == [
        ChunkSlice(0, 0, 10),
        ChunkSlice(1, 0, 10),
        ChunkSlice(2, 0, 10),
    ]
    assert chunk_span(m, 9, 10) == [(0, 9, 10), (1, 0, 1)]
    assert chunk_span(m, 15, 15) == [(1, 5, 6)]


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (5, 4), (0, 30), (30, 30), (1.0, 2)])
def test_chunk_span_refuses_ranges_outside_the_file(start: Any, end: Any) -> None:
    with pytest.raises(ValueError):
        chunk_span(chunked([10, 10, 10]), start, end)


def test_chunk_span_refuses_inline_manifests() -> None:
    with pytest.raises(ValueError, match="inline"):
        chunk_span(INLINE, 0, 1)


# --- versions ---------------------------------------------------------------------------------


def version_at(wall: int, node: str = "n1", created_ms: int | None = None) -> Manifest:
    v = Timestamp(wall, 0, node).encode()
    return chunked([1], version=v, created_ms=wall if created_ms is None else created_ms)


def test_newest_first_orders_by_timestamp() -> None:
    a, b, c = version_at(5), version_at(300), version_at(300, "n2")
    assert newest_first([a, c, b]) == [c, b, a]


def test_prune_examples() -> None:
    now = 100 * MS_PER_DAY
    vs = [version_at(now - d * MS_PER_DAY) for d in (0, 1, 2, 10, 40)]
    assert prune(vs, 2, None, now) == (vs[:2], vs[2:])
    assert prune(vs, None, 5, now) == (vs[:3], vs[3:])
    assert prune(vs, 4, 5, now) == (vs[:4], vs[4:])
    assert prune(vs, 1, 30, now) == (vs[:4], vs[4:])
    assert prune(vs, None, None, now) == (vs, [])
    assert prune(vs, 0, 0, now) == (vs[:1], vs[1:])
    old = [version_at(d) for d in (1, 2, 3)]
    assert prune(old, None, 1, now) == ([old[2]], [old[1], old[0]])  # the newest stays
    assert prune([], 3, 3, now) == ([], [])


@given(
    st.lists(st.integers(0, 10**6), unique=True, max_size=12),
    st.one_of(st.none(), st.integers(0, 15)),
    st.one_of(st.none(), st.integers(0, 10)),
    st.integers(0, 2 * 10**6),
)
def test_prune_laws(walls: list[int], keep_n: int | None, days: int | None, now: int) -> None:
    vs = [version_at(w, created_ms=w * 1000) for w in walls]
    kept, pruned = prune(vs, keep_n, days, now)
    assert sorted(kept + pruned, key=lambda m: m.version) == sorted(vs, key=lambda m: m.version)
    assert kept == newest_first(kept) and pruned == newest_first(pruned)
    if vs:
        assert kept[0] == newest_first(vs)[0]  # the current version is never pruned
    if keep_n is not None:
        assert len(kept) >= min(len(vs), max(1, keep_n))
    if days is not None:
        assert all(m.created_ms <= now - days * MS_PER_DAY for m in pruned)
    if keep_n is None and days is None:
        assert not pruned


def test_prune_refuses_bad_input() -> None:
    a = version_at(1)
    with pytest.raises(ValueError, match="more than one file"):
        prune([a, _replace(version_at(2), path="other")], 1, None, 0)
    with pytest.raises(ValueError, match="twice"):
        prune([a, a], 1, None, 0)
    with pytest.raises(ValueError):
        prune([a], -1, None, 0)
    with pytest.raises(ValueError):
        prune([a], None, -1, 0)
    with pytest.raises(ValueError):
        prune([a], None, float("nan"), 0)
