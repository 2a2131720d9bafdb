"""ListObjects (V1), ListObjectsV2 and ListObjectVersions.

The paging logic is dfsring.s3.listing (pure, over a ``scan`` function); this module only
binds the scan to the object layer with the request's consistency level and renders the
page. The bucket is read first so that a listing of a missing bucket is NoSuchBucket, not
an empty page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Literal

from aiohttp import web

from dfsring.s3 import listing, xml
from dfsring.s3.context import Handler, S3Request, consistency
from dfsring.s3.handlers_buckets import xml_response
from dfsring.s3.model import ListEntry

Kind = Literal["v1", "v2", "versions"]


def _scan(ctx: S3Request, versions: bool) -> listing.Scan:
    level = consistency(ctx.headers)
    layer, bucket = ctx.layer, ctx.bucket

    def scan(prefix: str, after: str | None) -> AsyncIterator[ListEntry]:
        return layer.scan(bucket, prefix, after, versions=versions, consistency=level)

    return scan


async def _list(ctx: S3Request, kind: Kind) -> web.StreamResponse:
    query = listing.parse_list_query(ctx.query, kind)
    scan = _scan(ctx, kind == "versions")
    await ctx.layer.bucket(ctx.bucket)
    if kind == "versions":
        page = await listing.list_versions(scan, query)
    else:
        page = await listing.list_objects(scan, query)
    return xml_response(xml.render_list(ctx.bucket, query, page, kind))


async def list_v1(ctx: S3Request) -> web.StreamResponse:
    return await _list(ctx, "v1")


async def list_v2(ctx: S3Request) -> web.StreamResponse:
    return await _list(ctx, "v2")


async def list_versions(ctx: S3Request) -> web.StreamResponse:
    return await _list(ctx, "versions")


HANDLERS: Mapping[str, Handler] = {
    "ListObjects": list_v1, "ListObjectsV2": list_v2, "ListObjectVersions": list_versions,
}
