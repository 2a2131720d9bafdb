"""S3's XML: the replies the S3 edge renders, and (re-exported from dfsring.s3.xmlparse) the
request bodies it parses. Pure.

Replies are written by a small escaping writer rather than ElementTree: the documents are
flat, their element order is S3's (the API reference's, which is also Garage's and MinIO's),
and text needs one rule ElementTree does not apply. Conventions, as S3:

- ``<?xml version="1.0" encoding="UTF-8"?>`` and the namespace NS on the root (not on
  ``<Error>``, which S3 sends without one);
- dates ISO 8601 in UTC with milliseconds and ``Z`` (``2026-12-03T12:00:00.000Z``);
- ETags in double quotes (``&quot;`` in the text);
- booleans ``true``/``false``; StorageClass ``STANDARD``; Owner/Initiator ``ID`` and
  ``DisplayName`` both the owner's access key id.

Text that XML 1.0 cannot carry as is (``\\r``, other control characters, lone surrogates)
is written as a character reference, as S3 does. A parser refuses the references to
characters XML 1.0 forbids, which is why listings have ``encoding-type=url`` (botocore asks
for it by default): then Key, Prefix, Delimiter, Marker, NextMarker, StartAfter, KeyMarker,
NextKeyMarker and CommonPrefixes are percent-encoded (UTF-8, ``/`` kept, space as ``%20``,
which every client's decoder reads, ``+`` as ``%2B``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Literal
from urllib.parse import quote

from dfsring.core.cors import CorsRule
from dfsring.s3.errors import S3Error
from dfsring.s3.listing import ListPage, ListQuery
from dfsring.s3.model import NULL_VERSION, BucketInfo, PartInfo, UploadInfo, Versioning
from dfsring.s3.xmlparse import (
    NS,
    parse_complete,
    parse_cors,
    parse_create_bucket,
    parse_delete,
    parse_versioning,
)

__all__ = ["NS", "iso_ms", "parse_complete", "parse_cors", "parse_create_bucket",
           "parse_delete", "parse_versioning", "render_complete", "render_copy_result",
           "render_cors", "render_delete_result", "render_error", "render_initiate",
           "render_list", "render_list_buckets", "render_list_parts", "render_list_uploads",
           "render_location", "render_versioning", "url_encode"]

HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'
STORAGE_CLASS = "STANDARD"
DEFAULT_REGION = "us-east-1"  # S3 answers its location as an empty LocationConstraint
_NOT_XML = re.compile("[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
_ESCAPE_RE = re.compile('[&<>"]')
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

Value = str | int | bool


# --- the writer ----------------------------------------------------------------------------


def escape(text: str) -> str:
    out = _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], text)
    return _NOT_XML.sub(lambda m: f"&#x{ord(m.group()):X};", out)


def _t(name: str, value: Value) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = escape(str(value))
    return f"<{name}>{text}</{name}>"


def _e(name: str, *children: str) -> str:
    return f"<{name}>{''.join(children)}</{name}>"


def _doc(root: str, *children: str, ns: bool = True) -> bytes:
    attr = f' xmlns="{NS}"' if ns else ""
    return f"{HEADER}<{root}{attr}>{''.join(children)}</{root}>".encode()


def iso_ms(ms: int) -> str:
    """``2026-12-03T12:00:00.000Z``: S3's timestamp form, exact to the millisecond."""
    ms = min(max(ms, 0), _MAX_MS)
    when = _EPOCH + dt.timedelta(milliseconds=ms)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _etag(etag: str) -> str:
    return '"' + etag.strip('"') + '"'


def url_encode(text: str) -> str:
    return quote(text, safe="/", encoding="utf-8", errors="surrogatepass")


def _owner(tag: str, owner: str) -> str:
    return _e(tag, _t("ID", owner), _t("DisplayName", owner))


# --- errors and buckets --------------------------------------------------------------------


def render_error(err: S3Error, request_id: str) -> bytes:
    return _doc("Error", _t("Code", err.code), _t("Message", err.message),
                _t("Resource", err.resource), _t("RequestId", request_id), ns=False)


def render_list_buckets(buckets: Sequence[BucketInfo], owner_id: str) -> bytes:
    return _doc("ListAllMyBucketsResult", _owner("Owner", owner_id), _e("Buckets", *(
        _e("Bucket", _t("Name", b.name), _t("CreationDate", iso_ms(b.created_ms)))
        for b in buckets)))


def render_location(region: str) -> bytes:
    return _doc("LocationConstraint", "" if region == DEFAULT_REGION else escape(region))


def render_versioning(state: Versioning) -> bytes:
    return _doc("VersioningConfiguration", *([_t("Status", state)] if state else []))


def render_cors(rules: Sequence[CorsRule]) -> bytes:
    return _doc("CORSConfiguration", *(_e(
        "CORSRule",
        *(_t("AllowedHeader", h) for h in rule.headers),
        *(_t("AllowedMethod", m) for m in rule.methods),
        *(_t("AllowedOrigin", o) for o in rule.origins),
        *(_t("ExposeHeader", h) for h in rule.expose),
        *([_t("MaxAgeSeconds", rule.max_age_s)] if rule.max_age_s else []))
        for rule in rules))


# --- listings ------------------------------------------------------------------------------


def render_list(bucket: str, q: ListQuery, page: ListPage,
                kind: Literal["v1", "v2", "versions"]) -> bytes:
    """ListBucketResult (V1, V2) or ListVersionsResult for one page of dfsring.s3.listing."""
    enc: Callable[[str], str] = url_encode if q.encode_url else str
    head = [_t("Name", bucket), _t("Prefix", enc(q.prefix))]
    if kind == "v1":
        head.append(_t("Marker", enc(q.start_after)))
        if page.truncated and q.delimiter and page.next_marker is not None:
            head.append(_t("NextMarker", enc(page.next_marker)))
    elif kind == "v2":
        if q.token is not None:
            head.append(_t("ContinuationToken", q.token))
        if page.next_token is not None:
            head.append(_t("NextContinuationToken", page.next_token))
        head.append(_t("KeyCount", len(page.entries) + len(page.common_prefixes)))
        if q.start_after:
            head.append(_t("StartAfter", enc(q.start_after)))
    else:
        head += [_t("KeyMarker", enc(q.start_after)), _t("VersionIdMarker", q.version_marker)]
        if page.truncated and page.next_marker is not None:
            head.append(_t("NextKeyMarker", enc(page.next_marker)))
        if page.truncated and page.next_version_marker is not None:
            head.append(_t("NextVersionIdMarker", page.next_version_marker))
    head.append(_t("MaxKeys", q.max_keys))
    if q.delimiter:
        head.append(_t("Delimiter", enc(q.delimiter)))
    if q.encode_url:
        head.append(_t("EncodingType", "url"))
    head.append(_t("IsTruncated", page.truncated))
    items = _versions(page, enc) if kind == "versions" else _contents(page, enc)
    prefixes = [_e("CommonPrefixes", _t("Prefix", enc(p))) for p in page.common_prefixes]
    root = "ListVersionsResult" if kind == "versions" else "ListBucketResult"
    return _doc(root, *head, *items, *prefixes)


def _contents(page: ListPage, enc: Callable[[str], str]) -> list[str]:
    return [_e("Contents", _t("Key", enc(e.key)), _t("LastModified", iso_ms(e.last_modified_ms)),
               _t("ETag", _etag(e.etag)), _t("Size", e.size), _t("StorageClass", STORAGE_CLASS))
            for e in page.entries]


def _versions(page: ListPage, enc: Callable[[str], str]) -> list[str]:
    out = []
    for entry, latest in zip(page.entries, page.latest, strict=True):
        common = [_t("Key", enc(entry.key)), _t("VersionId", entry.version_id or NULL_VERSION),
                  _t("IsLatest", latest), _t("LastModified", iso_ms(entry.last_modified_ms))]
        if entry.delete_marker:
            out.append(_e("DeleteMarker", *common))
        else:
            out.append(_e("Version", *common, _t("ETag", _etag(entry.etag)),
                          _t("Size", entry.size), _t("StorageClass", STORAGE_CLASS)))
    return out


# --- objects and multipart -----------------------------------------------------------------


def render_initiate(bucket: str, key: str, upload_id: str) -> bytes:
    return _doc("InitiateMultipartUploadResult", _t("Bucket", bucket), _t("Key", key),
                _t("UploadId", upload_id))


def render_complete(location: str, bucket: str, key: str, etag: str) -> bytes:
    return _doc("CompleteMultipartUploadResult", _t("Location", location),
                _t("Bucket", bucket), _t("Key", key), _t("ETag", _etag(etag)))


def render_copy_result(etag: str, last_modified_ms: int, *, part: bool = False) -> bytes:
    return _doc("CopyPartResult" if part else "CopyObjectResult",
                _t("LastModified", iso_ms(last_modified_ms)), _t("ETag", _etag(etag)))


def render_delete_result(deleted: Sequence[tuple[str, str | None, bool, str | None]],
                         failed: Sequence[tuple[str, str | None, S3Error]]) -> bytes:
    """DeleteResult. ``deleted``: (key, version id, delete marker, delete marker version
    id); the edge leaves it empty in quiet mode. ``failed``: (key, version id, error)."""
    done = [_e("Deleted", _t("Key", key),
               *([_t("VersionId", version)] if version is not None else []),
               *([_t("DeleteMarker", True)] if marker else []),
               *([_t("DeleteMarkerVersionId", marker_version)]
                 if marker_version is not None else []))
            for key, version, marker, marker_version in deleted]
    errors = [_e("Error", _t("Key", key),
                 *([_t("VersionId", version)] if version is not None else []),
                 _t("Code", err.code), _t("Message", err.message))
              for key, version, err in failed]
    return _doc("DeleteResult", *done, *errors)


def render_list_uploads(bucket: str, prefix: str, key_marker: str, upload_id_marker: str,
                        uploads: Sequence[UploadInfo], truncated: bool,
                        max_uploads: int) -> bytes:
    nexts = ([_t("NextKeyMarker", uploads[-1].key),
              _t("NextUploadIdMarker", uploads[-1].upload_id)] if uploads else [])
    return _doc("ListMultipartUploadsResult", _t("Bucket", bucket),
                _t("KeyMarker", key_marker), _t("UploadIdMarker", upload_id_marker), *nexts,
                _t("Prefix", prefix), _t("MaxUploads", max_uploads),
                _t("IsTruncated", truncated), *(_e(
                    "Upload", _t("Key", u.key), _t("UploadId", u.upload_id),
                    _owner("Initiator", u.owner), _owner("Owner", u.owner),
                    _t("StorageClass", STORAGE_CLASS), _t("Initiated", iso_ms(u.initiated_ms)))
                    for u in uploads))


def render_list_parts(upload: UploadInfo, parts: Sequence[PartInfo], marker: int,
                      truncated: bool, max_parts: int) -> bytes:
    return _doc("ListPartsResult", _t("Bucket", upload.bucket), _t("Key", upload.key),
                _t("UploadId", upload.upload_id), _owner("Initiator", upload.owner),
                _owner("Owner", upload.owner), _t("StorageClass", STORAGE_CLASS),
                _t("PartNumberMarker", marker),
                _t("NextPartNumberMarker", parts[-1].number if parts else marker),
                _t("MaxParts", max_parts), _t("IsTruncated", truncated),
                *(_part(p) for p in parts))


def _part(part: PartInfo) -> str:
    checksum = ([_t(f"Checksum{part.checksum.algorithm}", part.checksum.value)]
                if part.checksum is not None else [])
    return _e("Part", _t("PartNumber", part.number),
              _t("LastModified", iso_ms(part.last_modified_ms)), _t("ETag", _etag(part.etag)),
              _t("Size", part.size), *checksum)
