"""S3 request and response headers: object metadata, overrides, copy source, Range, dates.

Pure (no I/O): every function takes header or query values as received and either returns
the parsed value or raises dfsring.s3.errors.S3Error with the standard code, never another
exception, whatever the input (tests/unit/test_s3_headers.py fuzzes each with hypothesis).

Sources: S3 PutObject, GetObject, HeadObject and CopyObject references; "Working with object
metadata" (the 2 KB user-metadata limit); RFC 9110 (HTTP dates, Range), RFC 2047.

Decisions:

- Header values we store and send back must be header-safe: printable ASCII (space to "~")
  and tab, nothing else. A non-ASCII user-metadata value is refused with InvalidArgument
  rather than stored: an HTTP/1.1 header carries bytes, clients disagree on their charset,
  and a value we could not send back byte for byte would break sync tools comparing
  metadata. RFC 2047 encoded words (``=?UTF-8?B?...?=``, what the AWS SDKs send for
  non-ASCII metadata) are ASCII and kept verbatim, so such clients round-trip.
- User metadata size is S3's: the UTF-8 bytes of every name (without ``x-amz-meta-``) and
  value together at most 2 KiB (MetadataTooLarge). Names are lower-cased.
- ``Content-Encoding: aws-chunked`` describes the transfer, not the object: it is removed
  from the stored Content-Encoding of a streaming upload (``x-amz-content-sha256:
  STREAMING-*``), and only there (versitygw#2427).
- ``x-amz-version-id`` is sent only for a real version id, never for ``null``: an object in
  a never-versioned bucket (whose versions the object layer names NULL_VERSION) gets no
  header, as on S3. For a suspended or enabled bucket, S3 also sends ``null``; the edge,
  which knows the bucket's state, adds that (``version_header``).
- A Range S3 cannot serve as one range (several ranges, bad syntax) is ignored and the whole
  object sent, as S3 does; one that selects no byte is InvalidRange (416) with
  ``Content-Range: bytes */size`` (dfsring.core.byterange holds the RFC rules).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime
from typing import Literal
from urllib.parse import unquote_to_bytes

from dfsring.core import byterange
from dfsring.foundation.errors import RangeNotSatisfiable
from dfsring.s3.errors import S3Error
from dfsring.s3.model import NULL_VERSION, SYSTEM_HEADERS, ObjectMeta, ObjectVersion

DEFAULT_CONTENT_TYPE = "binary/octet-stream"
MAX_CONTENT_TYPE = 255
MAX_USER_METADATA = 2048  # bytes of names and values together (S3)
MAX_HEADER_VALUE = 8192
MAX_COPY_SOURCE = 4096
META_PREFIX = "x-amz-meta-"
OVERRIDES: Mapping[str, str] = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
_SAFE = re.compile(r"[\t\x20-\x7e]*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)
_COPY_RANGE = re.compile(r"bytes=([0-9]{1,19})-([0-9]{1,19})", re.ASCII)


def _safe(value: str, what: str, limit: int = MAX_HEADER_VALUE) -> str:
    """``value`` if it can be sent back as a header as it is; InvalidArgument otherwise."""
    if len(value) > limit or not _SAFE.fullmatch(value):
        raise S3Error("InvalidArgument", f"{what} must be at most {limit} printable ASCII "
                      "characters.")
    return value


def _items(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """(lower-case name, value) pairs; a name given twice has its values joined by ","
    (RFC 9110 §5.3), which is what a multi-dict's items() yields one by one."""
    joined: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        joined[low] = f"{joined[low]},{value}" if low in joined else value
    return list(joined.items())


def _streaming(headers: dict[str, str]) -> bool:
    return headers.get("x-amz-content-sha256", "").startswith("STREAMING-")


def _content_encoding(value: str, streaming: bool) -> str:
    """The stored Content-Encoding: without ``aws-chunked`` for a streaming upload."""
    if not streaming:
        return value
    codings = [c.strip() for c in value.split(",")]
    return ",".join(c for c in codings if c and c.lower() != "aws-chunked")


def object_meta(headers: Mapping[str, str]) -> ObjectMeta:
    """What a PutObject/CreateMultipartUpload/CopyObject(REPLACE) request says about the
    object: Content-Type, SYSTEM_HEADERS, x-amz-meta-*. MetadataTooLarge, InvalidArgument."""
    pairs = _items(headers)
    low = dict(pairs)
    ctype = low.get("content-type", "").strip() or DEFAULT_CONTENT_TYPE
    _safe(ctype, "Content-Type", MAX_CONTENT_TYPE)
    system: dict[str, str] = {}
    for name in SYSTEM_HEADERS:
        if name in low:
            value = low[name].strip()
            if name == "content-encoding":
                value = _content_encoding(value, _streaming(low))
            if value:
                system[name] = _safe(value, name)
    user: dict[str, str] = {}
    size = 0
    for name, value in pairs:
        if not name.startswith(META_PREFIX):
            continue
        short = name[len(META_PREFIX):]
        if not _TOKEN.fullmatch(short):
            raise S3Error("InvalidArgument", "A user metadata name must be a non-empty "
                          "HTTP token.")
        user[short] = _safe(value.strip(), f"x-amz-meta-{short[:64]}")
        size += len(short) + len(user[short])
        if size > MAX_USER_METADATA:
            raise S3Error("MetadataTooLarge", "Your metadata headers exceed the maximum "
                          f"allowed metadata size of {MAX_USER_METADATA} bytes.")
    return ObjectMeta(content_type=ctype, headers=system, user=user)


def response_overrides(query: Mapping[str, str]) -> dict[str, str]:
    """Response headers a GET asks for with ``response-*`` query parameters (header name ->
    value). An unknown ``response-*`` parameter or an unsafe value: InvalidArgument."""
    out: dict[str, str] = {}
    for name, value in query.items():
        if not name.lower().startswith("response-"):
            continue
        header = OVERRIDES.get(name)
        if header is None:
            raise S3Error("InvalidArgument", f"{name[:64]!r} is not a supported response "
                          "header override.")
        out[header] = _safe(value, name)
    return out


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """(bucket, key, version id or None) of ``x-amz-copy-source``: ``[/]bucket/key`` with an
    optional ``?versionId=``; percent-decoded once, UTF-8. InvalidArgument otherwise."""
    if len(value) > MAX_COPY_SOURCE:
        raise S3Error("InvalidArgument", "x-amz-copy-source is too long.")
    path, sep, query = value.partition("?")
    version: str | None = None
    if sep:
        name, eq, version = query.partition("=")
        if name != "versionId" or not eq or not version:
            raise S3Error("InvalidArgument", "x-amz-copy-source may only carry versionId.")
        version = _percent_decoded(version, "x-amz-copy-source versionId")
    decoded = _percent_decoded(path.removeprefix("/"), "x-amz-copy-source")
    bucket, slash, key = decoded.partition("/")
    if not bucket or not slash or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and "
                      "key: sourcebucket/sourcekey.")
    return bucket, key, version


def _percent_decoded(text: str, what: str) -> str:
    """``text`` percent-decoded once, as UTF-8. The header arrives as aiohttp decoded it
    (UTF-8 with surrogate escapes), so an undecodable byte is a surrogate here: encoding it
    back fails, and that is refused like a %XX sequence that is not UTF-8."""
    try:
        return unquote_to_bytes(text.encode("utf-8")).decode("utf-8")
    except UnicodeError:
        raise S3Error("InvalidArgument", f"{what} is not valid UTF-8 once decoded.") from None


def metadata_directive(headers: Mapping[str, str]) -> Literal["COPY", "REPLACE"]:
    """``x-amz-metadata-directive`` (COPY when absent); InvalidArgument for another value."""
    value = dict(_items(headers)).get("x-amz-metadata-directive", "COPY").strip()
    if value == "COPY":
        return "COPY"
    if value == "REPLACE":
        return "REPLACE"
    raise S3Error("InvalidArgument", "Unknown metadata directive.")


def object_headers(obj: ObjectVersion, *, checksum_mode: bool) -> dict[str, str]:
    """The headers a GET/HEAD of ``obj`` answers with (no Content-Length/Range: the edge's).

    ``checksum_mode``: the request had ``x-amz-checksum-mode: ENABLED`` and is not a Range
    GET (S3 never sends a whole-object checksum with a part of it)."""
    out = {
        "ETag": f'"{obj.etag}"',
        "Last-Modified": http_date(obj.last_modified_ms),
        "Content-Type": obj.meta.content_type,
        "Accept-Ranges": "bytes",
    }
    for name, value in obj.meta.headers.items():
        out[name.title()] = value
    for name, value in obj.meta.user.items():
        out[META_PREFIX + name] = value
    if obj.version_id != NULL_VERSION:
        out["x-amz-version-id"] = obj.version_id
    if obj.delete_marker:
        out["x-amz-delete-marker"] = "true"
    if obj.parts:
        out["x-amz-mp-parts-count"] = str(obj.parts)
    if checksum_mode and obj.checksum is not None:
        out[f"x-amz-checksum-{obj.checksum.algorithm.lower()}"] = obj.checksum.value
        out["x-amz-checksum-type"] = "COMPOSITE" if "-" in obj.checksum.value else "FULL_OBJECT"
    return out


def version_header(version_id: str | None, versioning: str) -> dict[str, str]:
    """``x-amz-version-id`` for a write or delete reply, as S3 sends it: the id in a bucket
    that is or was versioned (``null`` included), nothing in a never-versioned one."""
    if version_id is None or versioning == "":
        return {}
    return {"x-amz-version-id": version_id}


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a Range header asks of ``size`` bytes, or None for "send
    it all"; InvalidRange when it selects no byte (module docstring)."""
    try:
        return byterange.parse_range(value, size)
    except RangeNotSatisfiable:
        raise S3Error("InvalidRange", "The requested range is not satisfiable",
                      headers={"Content-Range": f"bytes */{size}"}) from None


def parse_copy_range(value: str, size: int) -> tuple[int, int]:
    """The inclusive range of ``x-amz-copy-source-range`` (UploadPartCopy): exactly
    ``bytes=first-last`` inside the source. Unlike a GET's Range, S3 refuses anything else
    with InvalidArgument instead of ignoring it (the whole source is copied only when the
    header is absent)."""
    match = _COPY_RANGE.fullmatch(value.strip())
    if match is None or not int(match[1]) <= int(match[2]) < size:
        raise S3Error("InvalidArgument", "Range specified is not valid for source object "
                      f"of size: {size}")
    return int(match[1]), int(match[2])


def http_date(ms: int) -> str:
    """RFC 9110 IMF-fixdate of a time in epoch milliseconds (whole seconds, floor)."""
    return formatdate(ms // 1000, usegmt=True)


def parse_http_date(value: str) -> float | None:
    """Epoch seconds of an HTTP date (IMF-fixdate, RFC 850 or asctime form); None if it is
    none of them (a conditional header with such a date is ignored, RFC 9110 §13.1.3)."""
    if len(value) > 64:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def parse_int(value: str, what: str, low: int, high: int) -> int:
    """An integer header or query value in [low, high], ASCII digits only (Python's int()
    would take "٣", "1_0" and " 7"); InvalidArgument otherwise."""
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        raise S3Error("InvalidArgument", f"{what} must be an integer from {low} to {high}.")
    return int(value)

