"""Multipart upload records: their keys, encoding, and the rules of completion. Pure (but
for ``new_upload_id``, which draws random bits).

Layout. The reserved bucket ``UPLOADS_BUCKET`` (``dfs..uploads``) is a grouped system table
(dfsring.core.keys): every record of one S3 bucket sits in the partition of that bucket, next
to its version keys' partition rule, so listing a bucket's uploads is one partition's range.

    {bucket}/u NUL {key} NUL {upload id}           -> UploadRecord (msgpack)
    {bucket}/p NUL {upload id} NUL {number:05d}    -> PartRecord (msgpack)

``u`` and ``p`` followed by NUL never collide with each other (keys hold no NUL), uploads
list in (key, upload id) order as S3 lists them, and one upload's parts in part order. The
upload id is 128 random bits, URL-safe base64: unguessable and unique without coordination.

Records are written with quorum writes and removed with tombstones over what was read. A part
re-uploaded under the same number replaces the record (the write carries the read's causal
context); concurrent re-uploads leave siblings, and the newest by ``last_modified_ms``
(then the greater MD5, so every node picks the same) is the part.

Completion (S3's rules, ``check_complete``): part numbers strictly ascending
(InvalidPartOrder), each one uploaded with the ETag given (InvalidPart), every part but the
last at least ``MIN_PART_SIZE`` (EntityTooSmall). The object's ETag is the MD5 of the
concatenated binary MD5s of the parts, then "-" and their count (``multipart_etag``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from dfsring.core.contenthash import CHUNK_ID_BYTES
from dfsring.core.keys import UPLOADS_BUCKET
from dfsring.s3.errors import S3Error
from dfsring.s3.model import Checksum, ObjectMeta, PartInfo

UPLOADS = UPLOADS_BUCKET.decode("ascii")
MIN_PART_SIZE = 5 << 20
MAX_PART_NUMBER = 10_000
MAX_PART_SIZE = 5 << 30
MAX_RECORD = 1 << 20
_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}", re.ASCII)
_MD5_RE = re.compile(r"[0-9a-f]{32}", re.ASCII)
_SEP = "\x00"


def new_upload_id() -> str:
    return secrets.token_urlsafe(16)


def check_upload_id(upload_id: str) -> str:
    """An upload id a client sent: NoSuchUpload for anything this store never issues."""
    if not _UPLOAD_ID_RE.fullmatch(upload_id):
        raise S3Error("NoSuchUpload", "The specified upload does not exist.")
    return upload_id


def check_part_number(number: int) -> int:
    if type(number) is not int or not 1 <= number <= MAX_PART_NUMBER:
        raise S3Error("InvalidArgument",
                      f"Part number must be an integer between 1 and {MAX_PART_NUMBER}")
    return number


def upload_key(bucket: str, key: str, upload_id: str) -> str:
    return f"{bucket}/u{_SEP}{key}{_SEP}{upload_id}"


def uploads_prefix(bucket: str, key_prefix: str = "") -> str:
    return f"{bucket}/u{_SEP}{key_prefix}"


def part_key(bucket: str, upload_id: str, number: int) -> str:
    return f"{bucket}/p{_SEP}{upload_id}{_SEP}{number:05d}"


def parts_prefix(bucket: str, upload_id: str) -> str:
    return f"{bucket}/p{_SEP}{upload_id}{_SEP}"


def parse_upload_key(bucket: str, full: str) -> tuple[str, str] | None:
    """(object key, upload id) of an upload record's key, None for anything else."""
    head = uploads_prefix(bucket)
    if not full.startswith(head):
        return None
    key, sep, upload_id = full[len(head):].rpartition(_SEP)
    if not sep or not key or not _UPLOAD_ID_RE.fullmatch(upload_id):
        return None
    return key, upload_id


def parse_part_key(full: str) -> int | None:
    """The part number of a part record's key."""
    number = full.rpartition(_SEP)[2]
    if len(number) != 5 or not number.isascii() or not number.isdigit():
        return None
    return int(number) if 1 <= int(number) <= MAX_PART_NUMBER else None


@dataclass(frozen=True)
class UploadRecord:
    key: str
    upload_id: str
    initiated_ms: int
    owner: str
    meta: ObjectMeta
    checksum_algorithm: str | None = None


@dataclass(frozen=True)
class PartRecord:
    number: int
    size: int
    md5: str  # hex
    chunks: tuple[tuple[bytes, int], ...]
    last_modified_ms: int
    checksum: Checksum | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def info(self) -> PartInfo:
        return PartInfo(self.number, self.size, self.md5, self.last_modified_ms, self.checksum)


def encode_upload(rec: UploadRecord) -> bytes:
    doc = [1, rec.key, rec.upload_id, rec.initiated_ms, rec.owner, rec.meta.content_type,
           sorted(rec.meta.headers.items()), sorted(rec.meta.user.items()),
           rec.checksum_algorithm]
    raw: bytes = msgpack.packb(doc, use_bin_type=True)
    return raw


def decode_upload(raw: bytes) -> UploadRecord:
    """Inverse of encode_upload; ValueError for anything else (records come from disks)."""
    doc = _unpack(raw, 9)
    _, key, upload_id, initiated, owner, ctype, headers, user, alg = doc
    _types((key, str), (upload_id, str), (initiated, int), (owner, str), (ctype, str))
    if alg is not None and type(alg) is not str:
        raise ValueError("checksum algorithm must be a string")
    return UploadRecord(key, upload_id, initiated, owner,
                        ObjectMeta(ctype, _pairs(headers), _pairs(user)), alg)


def encode_part(rec: PartRecord) -> bytes:
    doc = [1, rec.number, rec.size, rec.md5, [list(c) for c in rec.chunks],
           rec.last_modified_ms,
           None if rec.checksum is None else [rec.checksum.algorithm, rec.checksum.value]]
    raw: bytes = msgpack.packb(doc, use_bin_type=True)
    return raw


def decode_part(raw: bytes) -> PartRecord:
    doc = _unpack(raw, 7)
    _, number, size, md5, chunks, modified, checksum = doc
    _types((number, int), (size, int), (md5, str), (modified, int), (chunks, list))
    if not _MD5_RE.fullmatch(md5) or not 1 <= number <= MAX_PART_NUMBER or size < 0:
        raise ValueError("a part record is out of range")
    refs = []
    for pair in chunks:
        if (type(pair) is not list or len(pair) != 2 or type(pair[0]) is not bytes
                or len(pair[0]) != CHUNK_ID_BYTES or type(pair[1]) is not int or pair[1] < 1):
            raise ValueError("part chunks must be [id, size] pairs")
        refs.append((pair[0], pair[1]))
    if sum(n for _, n in refs) != size:
        raise ValueError("a part's size is not the sum of its chunks")
    found = None
    if checksum is not None:
        if (type(checksum) is not list or len(checksum) != 2
                or not all(type(x) is str for x in checksum)):
            raise ValueError("part checksum must be [algorithm, value]")
        found = Checksum(checksum[0], checksum[1])
    return PartRecord(number, size, md5, tuple(refs), modified, found)


def _unpack(raw: bytes, fields: int) -> list[Any]:
    if len(raw) > MAX_RECORD:
        raise ValueError("record too large")
    try:
        doc = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several types on garbage
        raise ValueError(f"not msgpack: {exc}") from exc
    if type(doc) is not list or len(doc) != fields or doc[0] != 1:
        raise ValueError("record of an unknown format")
    return doc


def _types(*pairs: tuple[object, type]) -> None:
    for value, kind in pairs:
        if type(value) is not kind:
            raise ValueError(f"expected {kind.__name__}")


def _pairs(doc: object) -> dict[str, str]:
    if type(doc) is not list or len(doc) > 64:
        raise ValueError("expected a list of pairs")
    out = {}
    for pair in doc:
        if type(pair) is not list or len(pair) != 2 or not all(type(x) is str for x in pair):
            raise ValueError("expected [name, value] pairs")
        out[pair[0]] = pair[1]
    return out


def newest_part(records: Sequence[PartRecord]) -> PartRecord | None:
    """Of concurrent uploads of one part number (siblings), the one every node picks."""
    return max(records, key=lambda r: (r.last_modified_ms, r.md5), default=None)


# --- completion ----------------------------------------------------------------------------


def check_complete(asked: Sequence[tuple[int, str]],
                   found: Mapping[int, PartRecord]) -> list[PartRecord]:
    """The parts a CompleteMultipartUpload names, in order, by S3's rules (module
    docstring). ``found``: the upload's part records by number."""
    if not asked:
        raise S3Error("MalformedXML", "You must specify at least one part")
    previous = 0
    chosen: list[PartRecord] = []
    for number, etag in asked:
        if number <= previous:
            raise S3Error("InvalidPartOrder",
                          "The list of parts was not in ascending order. Parts must be "
                          "ordered by part number.")
        previous = number
        part = found.get(number)
        if part is None or etag.strip('"').lower() != part.md5:
            raise S3Error("InvalidPart", f"One or more of the specified parts could not be "
                          f"found (part {number}).")
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < MIN_PART_SIZE:
            raise S3Error("EntityTooSmall", f"Your proposed upload is smaller than the minimum "
                          f"allowed object size (part {part.number} is {part.size} bytes).")
    return chosen


def multipart_etag(md5s: Sequence[str]) -> str:
    """MD5 of the concatenated binary MD5s of the parts, "-" and the part count."""
    digest = hashlib.md5(b"".join(bytes.fromhex(m) for m in md5s), usedforsecurity=False)
    return f"{digest.hexdigest()}-{len(md5s)}"


def composite_checksum(parts: Sequence[Checksum | None], algorithm: str) -> Checksum | None:
    """S3's composite checksum of a multipart object: the algorithm over the concatenated
    binary checksums of the parts, base64, then "-N". None if a part lacks one or the
    algorithm is not computed here (CRC32C, CRC64NVME: the object then has no checksum)."""
    raw = []
    for part in parts:
        if part is None or part.algorithm != algorithm:
            return None
        try:
            raw.append(base64.b64decode(part.value, validate=True))
        except ValueError:
            return None
    joined = b"".join(raw)
    if algorithm == "SHA256":
        digest = hashlib.sha256(joined).digest()
    elif algorithm == "SHA1":
        digest = hashlib.sha1(joined, usedforsecurity=False).digest()
    elif algorithm == "CRC32":
        digest = zlib.crc32(joined).to_bytes(4, "big")
    else:
        return None
    return Checksum(algorithm, f"{base64.b64encode(digest).decode()}-{len(parts)}")
