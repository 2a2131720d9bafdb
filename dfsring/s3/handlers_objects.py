"""Object operations: Put/Get/Head/DeleteObject, DeleteObjects and CopyObject.

GET streams the object (web.StreamResponse) as the layer reads it, never buffering it; once
the head is sent an error can only cut the body short, so the connection is closed and the
client sees fewer bytes than Content-Length announced (as S3 does). Checksums are returned
only with ``x-amz-checksum-mode: ENABLED`` and never on a Range GET (the whole object's
checksum does not describe a range).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import NamedTuple

from aiohttp import web

from dfsring.core.access import Need
from dfsring.s3 import conditions, headers, xml
from dfsring.s3.acl import canned_acl
from dfsring.s3.context import (
    REQUEST_ID_HEADERS,
    Body,
    Handler,
    S3Request,
    consistency,
    has_digest,
    is_streaming,
    require_length,
    stored_meta,
)
from dfsring.s3.errors import S3Error
from dfsring.s3.handlers_buckets import xml_response
from dfsring.s3.model import NULL_VERSION, ObjectVersion
from dfsring.s3.translate import to_s3_error

log = logging.getLogger("dfsring.s3")
DELETE_CONCURRENCY = 16  # DeleteObjects: keys deleted at once


def version_headers(version_id: str | None) -> dict[str, str]:
    return {"x-amz-version-id": version_id} if version_id and version_id != NULL_VERSION \
        else {}


def checksum_headers(obj: ObjectVersion | None) -> dict[str, str]:
    if obj is None or obj.checksum is None:
        return {}
    return {f"x-amz-checksum-{obj.checksum.algorithm.lower()}": obj.checksum.value}


async def put_object(ctx: S3Request) -> web.StreamResponse:
    require_length(ctx)
    canned_acl(ctx.headers, bucket=False)
    meta = stored_meta(headers.object_meta(ctx.headers), is_streaming(ctx))
    wanted = conditions.write_conditions(ctx.headers)
    body = Body(ctx)
    obj = await ctx.layer.put_object(ctx.bucket, ctx.key, body.stream(), meta=meta,
                                     conditions=wanted, checksum=body.check.checksum)
    return web.Response(status=200, headers={
        "ETag": f'"{obj.etag}"', **version_headers(obj.version_id), **checksum_headers(obj)})


async def _head(ctx: S3Request) -> ObjectVersion:
    version = ctx.query.get("versionId")
    obj = await ctx.layer.head_object(ctx.bucket, ctx.key, version or None,
                                      consistency=consistency(ctx.headers))
    conditions.check_read(obj, ctx.headers)
    _check_part_number(ctx, obj)
    return obj


def _check_part_number(ctx: S3Request, obj: ObjectVersion) -> None:
    """GET/HEAD ``?partNumber=N``: part 1 of a single-part object is the whole object, as
    in S3; the parts of a multipart object are not served one by one (NotImplemented,
    rather than the whole object where a part was asked for)."""
    wanted = ctx.query.get("partNumber")
    if wanted is None:
        return
    number = headers.parse_int(wanted, "partNumber", 1, 10_000)
    if obj.parts > 0:
        raise S3Error("NotImplemented", "reading one part of a multipart object "
                      "(partNumber) is not implemented; use a Range")
    if number != 1:
        raise S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable",
                      resource=f"/{ctx.bucket}/{ctx.key}")


def _checksum_mode(ctx: S3Request) -> bool:
    return ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"


async def head_object(ctx: S3Request) -> web.StreamResponse:
    obj = await _head(ctx)
    out = headers.object_headers(obj, checksum_mode=_checksum_mode(ctx))
    out["Content-Length"] = str(obj.size)
    out["Accept-Ranges"] = "bytes"
    out.update(headers.response_overrides(ctx.query))
    return web.Response(status=200, headers=out)


async def get_object(ctx: S3Request) -> web.StreamResponse:
    obj = await _head(ctx)
    wanted = ctx.headers.get("Range")
    span = headers.parse_range(wanted, obj.size) if wanted else None
    out = headers.object_headers(obj, checksum_mode=_checksum_mode(ctx) and span is None)
    out.update(headers.response_overrides(ctx.query))
    out["Accept-Ranges"] = "bytes"
    start, end = span if span is not None else (0, obj.size - 1)
    resp = web.StreamResponse(status=206 if span is not None else 200, headers=out)
    if span is not None:
        resp.headers["Content-Range"] = f"bytes {start}-{end}/{obj.size}"
    resp.content_length = end - start + 1
    for name in REQUEST_ID_HEADERS:  # the head is sent here, before the middleware sees it
        resp.headers[name] = ctx.request_id
    await resp.prepare(ctx.request)
    if end >= start:
        await _send(ctx, resp, obj, start, end)
    await resp.write_eof()
    return resp


async def _send(ctx: S3Request, resp: web.StreamResponse, obj: ObjectVersion, start: int,
                end: int) -> None:
    """Write the bytes; past the head an error can only cut the body (module docstring)."""
    try:
        async for piece in ctx.layer.read_object(obj, start, end):
            await resp.write(piece)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as exc:
        log.error("object read failed after the reply started; connection closed",
                  extra={"fields": {"request_id": ctx.request_id, "bucket": obj.bucket,
                                    "key": obj.key[:200], "error": repr(exc)[:300]}})
        ctx.request.protocol.force_close()
        raise ConnectionResetError("object read failed mid-reply") from exc


async def delete_object(ctx: S3Request) -> web.StreamResponse:
    result = await ctx.layer.delete_object(ctx.bucket, ctx.key,
                                           ctx.query.get("versionId") or None)
    out = version_headers(result.version_id)
    if result.delete_marker:
        out["x-amz-delete-marker"] = "true"
    return web.Response(status=204, headers=out)


class DeleteOk(NamedTuple):
    """One <Deleted> entry (xml.render_delete_result's tuple)."""

    key: str
    version_id: str | None  # as asked
    delete_marker: bool
    marker_version_id: str | None


class DeleteFailed(NamedTuple):
    key: str
    version: str | None
    error: S3Error


async def delete_objects(ctx: S3Request) -> web.StreamResponse:
    if not has_digest(ctx.headers):
        raise S3Error("InvalidRequest", "Missing required header for this request: "
                      "Content-MD5 (or x-amz-checksum-*)")
    items, quiet = xml.parse_delete(await Body(ctx).read_all())
    gate = asyncio.Semaphore(DELETE_CONCURRENCY)
    results = await asyncio.gather(*(_delete_one(ctx, gate, key, version)
                                     for key, version in items))
    deleted = [r for r in results if isinstance(r, DeleteOk)]
    failed = [(r.key, r.version, r.error) for r in results if isinstance(r, DeleteFailed)]
    return xml_response(xml.render_delete_result([] if quiet else deleted, failed))


async def _delete_one(ctx: S3Request, gate: asyncio.Semaphore, key: str,
                      version: str | None) -> DeleteOk | DeleteFailed:
    async with gate:
        try:
            result = await ctx.layer.delete_object(ctx.bucket, key, version)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one key's failure is its <Error>, not the request's
            return DeleteFailed(key, version, to_s3_error(exc, ctx.request_id))
    marker = result.version_id if result.delete_marker else None
    return DeleteOk(key, version, result.delete_marker, marker)


async def copy_source(ctx: S3Request) -> tuple[ObjectVersion, bool]:
    """The object named by x-amz-copy-source (read-authorized, its x-amz-copy-source-if-*
    conditions met) and whether a version was named."""
    bucket, key, version = headers.parse_copy_source(ctx.headers["x-amz-copy-source"])
    await ctx.authorize(Need.READ, bucket)
    source = await ctx.layer.head_object(bucket, key, version)
    conditions.check_copy_source(source, ctx.headers)
    return source, version is not None


async def copy_object(ctx: S3Request) -> web.StreamResponse:
    canned_acl(ctx.headers, bucket=False)
    source, versioned = await copy_source(ctx)
    directive = headers.metadata_directive(ctx.headers)
    if (directive == "COPY" and source.bucket == ctx.bucket and source.key == ctx.key
            and not versioned):
        raise S3Error("InvalidRequest", "This copy request is illegal because it is trying "
                      "to copy an object to itself without changing the object's metadata, "
                      "storage class, website redirect location or encryption attributes.")
    meta = headers.object_meta(ctx.headers) if directive == "REPLACE" else None
    obj = await ctx.layer.copy_object(source, ctx.bucket, ctx.key, meta=meta)
    out = version_headers(obj.version_id)
    if source.version_id != NULL_VERSION:
        out["x-amz-copy-source-version-id"] = source.version_id
    return xml_response(xml.render_copy_result(obj.etag, obj.last_modified_ms), headers=out)


HANDLERS: Mapping[str, Handler] = {
    "PutObject": put_object, "GetObject": get_object, "HeadObject": head_object,
    "DeleteObject": delete_object, "DeleteObjects": delete_objects, "CopyObject": copy_object,
}
