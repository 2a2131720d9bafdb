"""The manifest of one file version: what the version is and where its bytes are.

Pure: no I/O, no clocks (``now_ms`` is passed in).

Why manifests. A file is stored as an immutable manifest plus content-addressed chunks
(dfsring.core.chunker, dfsring.core.contenthash), both kept through the same replicated key/value
layer
as any key (Garage ``src/model/`` over ``src/table/`` and ``src/block/``). A manifest is never
changed after it is written: a new upload makes a new version with a new id, so readers
never see a half-replaced file and concurrent writers never interleave, they just make two
versions. The version id is an encoded hybrid-logical-clock timestamp (dfsring.core.hlc), so ids are
unique across nodes and sort newest-last as plain strings.

A manifest holds either the chunk list ``[(sha256 of the chunk, size), ...]`` or, for files of at
most ``INLINE_MAX`` bytes, the bytes themselves: small files then cost one key, not two round
trips (Garage's ``ObjectVersionData::Inline`` does the same below 3 KiB; here the threshold
is higher because each chunk is its own replicated key).

Invariants (checked by the constructor, so a decoded manifest satisfies them too): the size is
the sum of the chunk sizes, or the length of the inline bytes, whose sha256 is checked; a file
of 0 bytes is inline; names, version, content type and user metadata are within the bounds
below and header-safe (printable ASCII, no CR/LF), because the edge echoes them as headers.

Size bound. The manifest itself must fit in one value of the key/value layer (1 MiB by
default). A chunk costs 40 bytes of msgpack, so ``MAX_CHUNKS`` = 25 000 keeps a manifest under
1 MiB with every other field at its limit; with the default chunk sizes (~2.4 MiB on average)
that is ~58 GiB per file. Larger files would need a manifest of manifests (not built).
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, NamedTuple, Protocol, TypeVar

import msgpack

from dfsring.core import hlc
from dfsring.core.contenthash import CHUNK_ID_BYTES
from dfsring.core.keys import validate_bucket, validate_key
from dfsring.foundation.errors import InvalidKey

MANIFEST_FORMAT = 2  # 2 added the S3 fields (etag, parts, checksum, headers); 1 still decodes
_FORMATS = (1, 2)
MAX_PARTS = 10_000  # S3's part count limit
MAX_HEADERS = 8  # S3 system headers kept (dfsring.s3.model.SYSTEM_HEADERS)
INLINE_MAX = 64 * 1024  # files up to this size are stored in the manifest itself
MAX_CHUNK_SIZE = 16 << 20  # the largest chunk dfsring.core.chunker can make (a test checks)
MAX_CHUNKS = 25_000
MAX_FILE_SIZE = MAX_CHUNKS * MAX_CHUNK_SIZE
MAX_ENCODED_BYTES = 2 << 20  # decode refuses longer input without parsing it
MAX_CREATED_MS = hlc.MAX_WALL_MS
DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_CONTENT_TYPE = 255
META_HEADER_PREFIX = "dfs-meta-"
MAX_META_ENTRIES = 32
MAX_META_KEY = 128
MAX_META_VALUE = 1024
MAX_META_TOTAL = 8192  # sum of key and value lengths
MS_PER_DAY = 86_400_000

_SHA256_RE = re.compile(r"(?:[0-9a-f]{64})?", re.ASCII)  # "": unknown (a multipart object)
_ETAG_RE = re.compile(r"(?:[0-9a-f]{32}(?:-[1-9][0-9]{0,4})?)?", re.ASCII)
_HEADER_NAME_RE = re.compile(r"[a-z][a-z-]{0,63}", re.ASCII)
_CHECKSUM_ALG_RE = re.compile(r"CRC32|CRC32C|SHA1|SHA256|CRC64NVME", re.ASCII)
_CHECKSUM_RE = re.compile(r"[A-Za-z0-9+/=]{1,88}(?:-[1-9][0-9]{0,4})?", re.ASCII)
_META_KEY_RE = re.compile(r"[a-z0-9][a-z0-9._-]*", re.ASCII)
_HEADER_SAFE_RE = re.compile(r"[\x20-\x7e\t]*", re.ASCII)  # visible ASCII, space, tab

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk of a file: its content address (sha256 digest) and length."""

    digest: bytes
    size: int

    def __post_init__(self) -> None:
        if type(self.digest) is not bytes or len(self.digest) != CHUNK_ID_BYTES:
            raise ValueError(f"a chunk digest is {CHUNK_ID_BYTES} bytes")
        if type(self.size) is not int or not 1 <= self.size <= MAX_CHUNK_SIZE:
            raise ValueError(f"a chunk size is an integer in 1..{MAX_CHUNK_SIZE}")


class ChunkSlice(NamedTuple):
    """The part ``chunk[start:stop]`` of chunk number ``index`` that a byte range covers."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, which nothing here calls
    start: int
    stop: int


def _check_str(name: str, value: object, pattern: re.Pattern[str], max_len: int) -> None:
    if type(value) is not str:
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    if len(value) > max_len or not pattern.fullmatch(value):
        raise ValueError(f"{name} is not valid: {value!r:.80}")


def _check_metadata(metadata: object) -> None:
    if type(metadata) is not tuple or len(metadata) > MAX_META_ENTRIES:
        raise ValueError(f"metadata must be a tuple of at most {MAX_META_ENTRIES} pairs")
    total = 0
    previous = ""
    for pair in metadata:
        if type(pair) is not tuple or len(pair) != 2:
            raise ValueError("metadata entries must be (key, value) pairs")
        key, value = pair
        _check_str("metadata key", key, _META_KEY_RE, MAX_META_KEY)
        _check_str("metadata value", value, _HEADER_SAFE_RE, MAX_META_VALUE)
        if value != value.strip(" \t"):
            raise ValueError(f"metadata value of {key!r} has surrounding whitespace")
        if key <= previous:
            raise ValueError("metadata must be sorted by key, each key once")
        previous = key
        total += len(key) + len(value)
    if total > MAX_META_TOTAL:
        raise ValueError(f"metadata is {total} characters; the limit is {MAX_META_TOTAL}")


def _check_headers(headers: object) -> None:
    if type(headers) is not tuple or len(headers) > MAX_HEADERS:
        raise ValueError(f"headers must be a tuple of at most {MAX_HEADERS} pairs")
    previous = ""
    for pair in headers:
        if type(pair) is not tuple or len(pair) != 2:
            raise ValueError("headers must be (name, value) pairs")
        _check_str("header name", pair[0], _HEADER_NAME_RE, 64)
        _check_str("header value", pair[1], _HEADER_SAFE_RE, MAX_META_VALUE)
        if pair[0] <= previous:
            raise ValueError("headers must be sorted by name, each once")
        previous = pair[0]


def check_object_meta(content_type: str, metadata: Mapping[str, str],
                      headers: Mapping[str, str]) -> None:
    """ValueError unless a manifest can hold this content type, user metadata and system
    headers (the S3 layer checks before it stores any byte)."""
    _check_str("content_type", content_type, _HEADER_SAFE_RE, MAX_CONTENT_TYPE)
    if not content_type.strip():
        raise ValueError("content_type must not be blank")
    _check_metadata(tuple(sorted(metadata.items())))
    _check_headers(tuple(sorted(headers.items())))


def _check_name(bucket: object, path: object) -> None:
    if type(bucket) is not str or type(path) is not str:
        raise ValueError("bucket and path must be strings")
    try:
        validate_bucket(bucket)
        validate_key(path)
    except InvalidKey as exc:
        raise ValueError(str(exc)) from exc


def _check_int(name: str, value: object, high: int) -> None:
    if type(value) is not int or not 0 <= value <= high:
        raise ValueError(f"{name} must be an integer in 0..{high}, got {value!r:.40}")


@dataclass(frozen=True, slots=True)
class Manifest:
    """One immutable version of one file (invariants in the module docstring).

    Build it with ``Manifest.create``, which derives the size and normalises the metadata.
    """

    bucket: str
    path: str
    version: str  # an encoded hlc.Timestamp
    size: int
    sha256: str  # of the whole file, lowercase hex
    content_type: str
    metadata: Metadata  # sorted by key, keys lowercase (header names are case-insensitive)
    created_ms: int
    chunks: tuple[ChunkRef, ...]
    inline: bytes | None
    s3_etag: str = ""  # S3 ETag, no quotes: hex MD5, or of the parts' MD5s + "-N" ("": unknown)
    parts: int = 0  # parts of a multipart object (0: a single-part one)
    checksum: tuple[str, str] | None = None  # (algorithm, base64 value): x-amz-checksum-*
    headers: Metadata = ()  # S3 system headers (cache-control, ...), sorted, names lower-case

    def __post_init__(self) -> None:
        _check_name(self.bucket, self.path)
        hlc.Timestamp.decode(self.version)
        _check_int("size", self.size, MAX_FILE_SIZE)
        _check_str("sha256", self.sha256, _SHA256_RE, 64)
        if not self.sha256 and self.inline is not None:
            raise ValueError("an inline manifest needs its sha256")
        self._check_s3()
        _check_str("content_type", self.content_type, _HEADER_SAFE_RE, MAX_CONTENT_TYPE)
        if not self.content_type.strip():
            raise ValueError("content_type must not be blank")
        _check_metadata(self.metadata)
        _check_int("created_ms", self.created_ms, MAX_CREATED_MS)
        self._check_body()

    def _check_s3(self) -> None:
        _check_str("s3_etag", self.s3_etag, _ETAG_RE, 38)
        _check_int("parts", self.parts, MAX_PARTS)
        if self.checksum is not None:
            if type(self.checksum) is not tuple or len(self.checksum) != 2:
                raise ValueError("checksum must be an (algorithm, value) pair")
            _check_str("checksum algorithm", self.checksum[0], _CHECKSUM_ALG_RE, 16)
            _check_str("checksum value", self.checksum[1], _CHECKSUM_RE, 96)
        _check_headers(self.headers)

    def _check_body(self) -> None:
        if type(self.chunks) is not tuple or len(self.chunks) > MAX_CHUNKS:
            raise ValueError(f"chunks must be a tuple of at most {MAX_CHUNKS} ChunkRefs")
        if any(type(c) is not ChunkRef for c in self.chunks):
            raise ValueError("chunks must be ChunkRef instances")
        if self.inline is None:
            if not self.chunks:
                raise ValueError("a manifest needs chunks or inline bytes (0 bytes are inline)")
            if sum(c.size for c in self.chunks) != self.size:
                raise ValueError("size is not the sum of the chunk sizes")
            return
        if type(self.inline) is not bytes:
            raise ValueError("inline must be bytes or None")
        if self.chunks:
            raise ValueError("a manifest has either chunks or inline bytes, not both")
        if len(self.inline) > INLINE_MAX or len(self.inline) != self.size:
            raise ValueError(f"inline bytes must be the whole file, at most {INLINE_MAX} bytes")
        if hashlib.sha256(self.inline).hexdigest() != self.sha256:
            raise ValueError("inline bytes do not match the sha256")

    @classmethod
    def create(
        cls,
        bucket: str,
        path: str,
        version: str,
        *,
        sha256: str,
        created_ms: int,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        chunks: Sequence[tuple[bytes, int]] | None = None,
        inline: bytes | None = None,
        s3_etag: str = "",
        parts: int = 0,
        checksum: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Manifest:
        """A manifest for ``chunks`` [(digest, size), ...] or ``inline`` bytes (exactly one)."""
        if (chunks is None) == (inline is None):
            raise ValueError("give exactly one of chunks and inline")
        refs = tuple(ChunkRef(d, n) for d, n in chunks or ())
        size = len(inline) if inline is not None else sum(r.size for r in refs)
        meta = tuple(sorted((metadata or {}).items()))
        return cls(
            bucket, path, version, size, sha256, content_type, meta, created_ms, refs, inline,
            s3_etag, parts, checksum, tuple(sorted((headers or {}).items())),
        )

    @property
    def timestamp(self) -> hlc.Timestamp:
        return hlc.Timestamp.decode(self.version)

    @property
    def meta(self) -> dict[str, str]:
        return dict(self.metadata)

    @property
    def etag(self) -> str:
        """A strong ETag: the same bytes have the same tag, whatever the version (the
        sha256; a multipart object, whose sha256 is not computed, has its S3 ETag)."""
        return f'"{self.sha256 or self.s3_etag}"'

    def to_json(self) -> dict[str, Any]:
        """The body of the 201 answering an upload; ``chunks`` is how many (0: inline)."""
        return {
            "bucket": self.bucket,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "version": self.version,
            "chunks": len(self.chunks),
        }


# --- user metadata from and to Dfs-Meta-* headers ---------------------------------------------


def metadata_from_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The user metadata in request headers: ``Dfs-Meta-Key: value`` -> {"key": "value"}.

    Names are lowercased (HTTP header names are case-insensitive); other headers are skipped.
    A key given twice, or anything outside the bounds, raises ValueError (-> 400).
    """
    meta: dict[str, str] = {}
    for name, value in headers:
        if not name.lower().startswith(META_HEADER_PREFIX):
            continue
        key = name[len(META_HEADER_PREFIX) :].lower()
        if key in meta:
            raise ValueError(f"metadata header {name!r} given twice")
        meta[key] = value
    _check_metadata(tuple(sorted(meta.items())))
    return meta


def metadata_headers(manifest: Manifest) -> list[tuple[str, str]]:
    """The response headers for a manifest's user metadata."""
    return [(f"Dfs-Meta-{key}", value) for key, value in manifest.metadata]


# --- msgpack encoding ---------------------------------------------------------------------------


def encode(m: Manifest) -> bytes:
    """msgpack ``[format, bucket, path, version, size, sha256 (bin 32, or empty), content_type,
    [[key, value], ...], created_ms, body, s3]``; body is the inline bytes (bin) or
    ``[[digest, size], ...]``; s3 (format 2) is ``[etag, parts, [alg, value] or nil,
    [[name, value], ...]]``. Format 1 had no s3 field."""
    body: bytes | list[tuple[bytes, int]] = (
        m.inline if m.inline is not None else [(c.digest, c.size) for c in m.chunks]
    )
    doc = [
        MANIFEST_FORMAT,
        m.bucket,
        m.path,
        m.version,
        m.size,
        bytes.fromhex(m.sha256),
        m.content_type,
        m.metadata,
        m.created_ms,
        body,
        [m.s3_etag, m.parts, m.checksum, m.headers],
    ]
    raw: bytes = msgpack.packb(doc, use_bin_type=True)
    return raw


def decode(raw: bytes | bytearray | memoryview) -> Manifest:
    """Inverse of ``encode``. Peers and disks are not trusted: anything that is not a
    well-formed encoding of a valid Manifest raises ValueError (and nothing else)."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ValueError("an encoded manifest is bytes")
    if len(raw) > MAX_ENCODED_BYTES:
        raise ValueError(f"an encoded manifest is at most {MAX_ENCODED_BYTES} bytes")
    try:
        doc = msgpack.unpackb(bytes(raw), raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises ValueError, TypeError, StackError... on garbage
        raise ValueError(f"not valid msgpack: {exc}") from exc
    if type(doc) is not list or len(doc) not in (10, 11):
        raise ValueError("an encoded manifest is a list of 10 or 11 fields")
    fmt = doc[0]
    if type(fmt) is not int or fmt not in _FORMATS or len(doc) != 9 + fmt:
        raise ValueError("encoded manifest has an unknown format version")
    _, bucket, path, version, size, digest, ctype, meta, created_ms, body = doc[:10]
    etag, parts, checksum, headers = _s3_fields(doc[10] if fmt >= 2 else ["", 0, None, []])
    if type(digest) is not bytes or len(digest) not in (0, 32):
        raise ValueError("encoded manifest sha256 must be 32 bytes (or empty)")
    try:
        return Manifest(
            bucket,
            path,
            version,
            size,
            digest.hex(),
            ctype,
            _meta(meta),
            created_ms,
            _chunks(body),
            body if type(body) is bytes else None,
            etag,
            parts,
            checksum,
            headers,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid manifest: {exc}") from exc


def _s3_fields(doc: object) -> tuple[Any, Any, tuple[str, str] | None, Metadata]:
    """The S3 field of a format 2 manifest, shapes checked (values by the constructor)."""
    if type(doc) is not list or len(doc) != 4:
        raise ValueError("encoded s3 fields must be a list of 4")
    etag, parts, checksum, headers = doc
    if checksum is not None and (type(checksum) is not list or len(checksum) != 2):
        raise ValueError("encoded checksum must be [algorithm, value]")
    return etag, parts, None if checksum is None else (checksum[0], checksum[1]), \
        _meta(headers)


def _meta(meta: object) -> Metadata:
    if type(meta) is not list or len(meta) > MAX_META_ENTRIES:
        raise ValueError("encoded metadata must be a list of pairs")
    if any(type(pair) is not list or len(pair) != 2 for pair in meta):
        raise ValueError("encoded metadata entries must be [key, value] pairs")
    return tuple((pair[0], pair[1]) for pair in meta)


def _chunks(body: object) -> tuple[ChunkRef, ...]:
    if type(body) is bytes:
        return ()
    if type(body) is not list or len(body) > MAX_CHUNKS:
        raise ValueError(f"encoded body must be bytes or a list of at most {MAX_CHUNKS} chunks")
    if any(type(pair) is not list or len(pair) != 2 for pair in body):
        raise ValueError("encoded chunks must be [digest, size] pairs")
    return tuple(ChunkRef(pair[0], pair[1]) for pair in body)


# --- reading a range ------------------------------------------------------------------------


def chunk_span(m: Manifest, start: int, end_inclusive: int) -> list[ChunkSlice]:
    """The chunks (and the part of each) holding bytes ``start..end_inclusive`` of the file.

    Slices are in file order and concatenate to exactly the range. ValueError for an inline
    manifest (its bytes are at hand) or a range outside ``0 <= start <= end < size``.
    """
    if m.inline is not None:
        raise ValueError("an inline manifest has no chunks")
    if type(start) is not int or type(end_inclusive) is not int:
        raise ValueError("range bounds must be integers")
    if not 0 <= start <= end_inclusive < m.size:
        raise ValueError(f"range {start}-{end_inclusive} is not within 0..{m.size - 1}")
    offsets = list(accumulate((c.size for c in m.chunks), initial=0))
    first = bisect_right(offsets, start) - 1
    last = bisect_right(offsets, end_inclusive) - 1
    return [
        ChunkSlice(
            i,
            max(start, offsets[i]) - offsets[i],
            min(end_inclusive + 1, offsets[i + 1]) - offsets[i],
        )
        for i in range(first, last + 1)
    ]


# --- versions: order and retention ----------------------------------------------------------


def newest_first(versions: Iterable[Manifest]) -> list[Manifest]:
    """Versions ordered newest first: by version id, which sorts like its HLC timestamp."""
    return sorted(versions, key=lambda m: m.version, reverse=True)


def prune(
    versions: Iterable[Manifest],
    keep_n: int | None,
    keep_days: float | None,
    now_ms: int,
) -> tuple[list[Manifest], list[Manifest]]:
    """Split one file's versions into (kept, pruned), both newest first.

    A version is kept if any rule keeps it: it is the newest (always: pruning never deletes
    the current file), it is among the ``keep_n`` newest, or it was created less than
    ``keep_days`` before ``now_ms``. A rule that is None does not keep anything; with both None
    there is no retention policy and every version is kept. This is the union that S3
    lifecycle's NoncurrentDays + NewerNoncurrentVersions and restic's --keep-last +
    --keep-within use. Versions of different files, or a version listed twice, raise ValueError.
    """
    ordered = newest_first(versions)
    _check_same_file(ordered)
    if keep_n is not None and (type(keep_n) is not int or keep_n < 0):
        raise ValueError("keep_n must be a non-negative integer or None")
    if keep_days is not None and not (isinstance(keep_days, int | float) and keep_days >= 0):
        raise ValueError("keep_days must be a non-negative number or None")
    return split_retained(ordered, keep_n, keep_days, now_ms)


class _Dated(Protocol):
    @property
    def created_ms(self) -> int: ...


D = TypeVar("D", bound=_Dated)


def split_retained(ordered: Sequence[D], keep_n: int | None, keep_days: float | None,
                   now_ms: int) -> tuple[list[D], list[D]]:
    """(kept, pruned) of one file's versions ordered newest first, by the rule of `prune`:
    the newest ``max(1, keep_n)`` and any created less than ``keep_days`` before ``now_ms``;
    with both None, all. Shared by manifests and version refs (dfsring.files.versions)."""
    if keep_n is None and keep_days is None:
        return list(ordered), []
    count = max(1, keep_n or 0)
    horizon = None if keep_days is None else now_ms - keep_days * MS_PER_DAY
    kept: list[D] = []
    pruned: list[D] = []
    for rank, version in enumerate(ordered):
        recent = horizon is not None and version.created_ms > horizon
        (kept if rank < count or recent else pruned).append(version)
    return kept, pruned


def _check_same_file(ordered: list[Manifest]) -> None:
    names = {(m.bucket, m.path) for m in ordered}
    if len(names) > 1:
        raise ValueError("versions of more than one file")
    if len({m.version for m in ordered}) != len(ordered):
        raise ValueError("a version is listed twice")
