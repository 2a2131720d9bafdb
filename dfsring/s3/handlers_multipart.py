"""Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListMultipartUploads
and ListParts.

Parts are streamed to the object layer as they arrive, verified like a PutObject body;
completion is the layer's (one manifest over the parts' chunks, no data copied).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

from aiohttp import web

from dfsring.s3 import conditions, headers, xml
from dfsring.s3.acl import canned_acl
from dfsring.s3.auth import owner_of
from dfsring.s3.context import Body, Handler, S3Request, require_length
from dfsring.s3.errors import S3Error
from dfsring.s3.handlers_buckets import xml_response
from dfsring.s3.handlers_objects import copy_source, version_headers
from dfsring.s3.model import CHECKSUM_ALGORITHMS, NULL_VERSION, PartInfo

MAX_PARTS = 10_000
MAX_LIST = 1000
_COPY_RANGE_RE = re.compile(r"bytes=([0-9]{1,15})-([0-9]{1,15})")


def _upload_id(ctx: S3Request) -> str:
    upload_id = ctx.query.get("uploadId", "")
    if not upload_id or len(upload_id) > 256:
        raise S3Error("NoSuchUpload", "The specified upload does not exist.",
                      resource=f"/{ctx.bucket}/{ctx.key}")
    return upload_id


def _part_number(ctx: S3Request) -> int:
    return headers.parse_int(ctx.query.get("partNumber", ""), "partNumber", 1, MAX_PARTS)


def _limit(query: Mapping[str, str], name: str) -> int:
    """max-uploads / max-parts: 0..2^31, larger than MAX_LIST served as MAX_LIST."""
    value = query.get(name)
    if value is None:
        return MAX_LIST
    return min(headers.parse_int(value, name, 0, 2**31 - 1), MAX_LIST)


def _part_headers(part: PartInfo) -> dict[str, str]:
    out = {"ETag": f'"{part.etag}"'}
    if part.checksum is not None:
        out[f"x-amz-checksum-{part.checksum.algorithm.lower()}"] = part.checksum.value
    return out


async def create_upload(ctx: S3Request) -> web.StreamResponse:
    canned_acl(ctx.headers, bucket=False)
    meta = headers.object_meta(ctx.headers)
    algorithm = ctx.headers.get("x-amz-checksum-algorithm")
    if algorithm is not None and algorithm.upper() not in CHECKSUM_ALGORITHMS:
        raise S3Error("InvalidArgument", "x-amz-checksum-algorithm must be one of "
                      + ", ".join(CHECKSUM_ALGORITHMS))
    upload = await ctx.layer.create_upload(
        ctx.bucket, ctx.key, meta=meta, owner=owner_of(ctx.authn),
        checksum_algorithm=algorithm.upper() if algorithm else None)
    out = {"x-amz-checksum-algorithm": algorithm.upper()} if algorithm else {}
    return xml_response(xml.render_initiate(ctx.bucket, ctx.key, upload.upload_id),
                        headers=out)


async def upload_part(ctx: S3Request) -> web.StreamResponse:
    number, upload_id = _part_number(ctx), _upload_id(ctx)
    require_length(ctx)
    body = Body(ctx)
    part = await ctx.layer.upload_part(ctx.bucket, ctx.key, upload_id, number, body.stream(),
                                       checksum=body.check.checksum)
    return web.Response(status=200, headers=_part_headers(part))


def copy_range(value: str | None, size: int) -> tuple[int, int]:
    """x-amz-copy-source-range ``bytes=first-last`` (both given, inclusive, inside the
    source); the whole source when absent. An empty source has no range to copy."""
    if value is None:
        if size == 0:
            raise S3Error("InvalidRequest", "the copy source is empty: an empty part cannot "
                          "be copied")
        return 0, size - 1
    match = _COPY_RANGE_RE.fullmatch(value.strip())
    if match is None:
        raise S3Error("InvalidArgument", "x-amz-copy-source-range must be bytes=first-last")
    start, end = int(match.group(1)), int(match.group(2))
    if start > end or end >= size:
        raise S3Error("InvalidRange", f"Range specified is not valid for source object of "
                      f"size: {size}")
    return start, end


async def upload_part_copy(ctx: S3Request) -> web.StreamResponse:
    number, upload_id = _part_number(ctx), _upload_id(ctx)
    source, _ = await copy_source(ctx)
    start, end = copy_range(ctx.headers.get("x-amz-copy-source-range"), source.size)
    part = await ctx.layer.upload_part_copy(ctx.bucket, ctx.key, upload_id, number, source,
                                            start, end)
    out = {"x-amz-copy-source-version-id": source.version_id} \
        if source.version_id != NULL_VERSION else {}
    return xml_response(xml.render_copy_result(part.etag, part.last_modified_ms, part=True),
                        headers=out)


async def complete_upload(ctx: S3Request) -> web.StreamResponse:
    upload_id = _upload_id(ctx)
    parts = xml.parse_complete(await Body(ctx).read_all())
    obj = await ctx.layer.complete_upload(ctx.bucket, ctx.key, upload_id, parts,
                                          conditions=conditions.write_conditions(ctx.headers))
    request = ctx.request
    location = f"{request.scheme}://{request.host}/{ctx.bucket}/{quote(ctx.key, safe='/')}"
    return xml_response(xml.render_complete(location, ctx.bucket, ctx.key, obj.etag),
                        headers=version_headers(obj.version_id))


async def abort_upload(ctx: S3Request) -> web.StreamResponse:
    await ctx.layer.abort_upload(ctx.bucket, ctx.key, _upload_id(ctx))
    return web.Response(status=204)


async def list_uploads(ctx: S3Request) -> web.StreamResponse:
    query = ctx.query
    prefix = query.get("prefix", "")
    key_marker = query.get("key-marker", "")
    id_marker = query.get("upload-id-marker", "")
    limit = _limit(query, "max-uploads")
    await ctx.layer.bucket(ctx.bucket)
    uploads, truncated = await ctx.layer.list_uploads(
        ctx.bucket, prefix, key_marker or None, id_marker or None, limit)
    return xml_response(xml.render_list_uploads(ctx.bucket, prefix, key_marker, id_marker,
                                                uploads, truncated, limit))


async def list_parts(ctx: S3Request) -> web.StreamResponse:
    upload_id = _upload_id(ctx)
    marker_text = ctx.query.get("part-number-marker")
    marker = headers.parse_int(marker_text, "part-number-marker", 0, MAX_PARTS) \
        if marker_text else 0
    limit = _limit(ctx.query, "max-parts")
    upload, parts, truncated = await ctx.layer.list_parts(ctx.bucket, ctx.key, upload_id,
                                                          marker, limit)
    return xml_response(xml.render_list_parts(upload, parts, marker, truncated, limit))


HANDLERS: Mapping[str, Handler] = {
    "CreateMultipartUpload": create_upload, "UploadPart": upload_part,
    "UploadPartCopy": upload_part_copy, "CompleteMultipartUpload": complete_upload,
    "AbortMultipartUpload": abort_upload, "ListMultipartUploads": list_uploads,
    "ListParts": list_parts,
}
