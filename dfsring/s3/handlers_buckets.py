"""Bucket operations: ListBuckets, Create/Head/DeleteBucket, GetBucketLocation,
Get/PutBucketVersioning and Get/Put/DeleteBucketCors.

A bucket's CORS rules live in its access record (dfsring.replication.access, the same
record the native API's CORS routes change), so a rule set through either API holds on
both ports; everything else about a bucket is the object layer's.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from dfsring.s3 import xml
from dfsring.s3.acl import canned_acl
from dfsring.s3.auth import owner_of, visible
from dfsring.s3.context import Body, Handler, S3Request
from dfsring.s3.errors import S3Error

XML_TYPE = "application/xml"


def xml_response(body: bytes, status: int = 200,
                 headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=XML_TYPE,
                        headers=dict(headers or {}))


async def list_buckets(ctx: S3Request) -> web.StreamResponse:
    buckets = await ctx.layer.list_buckets()
    principal = ctx.authn.principal
    shown = visible(principal, [b.name for b in buckets], ctx.edge.auth.enforced)
    owner = principal.access_key if principal is not None else "anonymous"
    return xml_response(xml.render_list_buckets([b for b in buckets if b.name in shown], owner))


async def create_bucket(ctx: S3Request) -> web.StreamResponse:
    public = canned_acl(ctx.headers, bucket=True)
    body = await Body(ctx).read_all()
    location = xml.parse_create_bucket(body) if body.strip() else None
    region = ctx.edge.cfg.s3_region
    if location and location != region:
        raise S3Error("InvalidLocationConstraint", f"this endpoint's region is {region}; "
                      f"the LocationConstraint {location[:64]!r} is not it",
                      resource=f"/{ctx.bucket}")
    info = await ctx.layer.create_bucket(ctx.bucket, owner_of(ctx.authn))
    if public:
        await ctx.edge.access.set_public(ctx.bucket, True, info.owner)
    return web.Response(status=200, headers={"Location": f"/{ctx.bucket}"})


async def head_bucket(ctx: S3Request) -> web.StreamResponse:
    await ctx.layer.bucket(ctx.bucket)
    return web.Response(status=200, headers={"x-amz-bucket-region": ctx.edge.cfg.s3_region})


async def delete_bucket(ctx: S3Request) -> web.StreamResponse:
    await ctx.layer.delete_bucket(ctx.bucket)
    return web.Response(status=204)


async def get_location(ctx: S3Request) -> web.StreamResponse:
    await ctx.layer.bucket(ctx.bucket)
    return xml_response(xml.render_location(ctx.edge.cfg.s3_region))


async def get_versioning(ctx: S3Request) -> web.StreamResponse:
    info = await ctx.layer.bucket(ctx.bucket)
    return xml_response(xml.render_versioning(info.versioning))


async def put_versioning(ctx: S3Request) -> web.StreamResponse:
    state = xml.parse_versioning(await Body(ctx).read_all())
    await ctx.layer.set_versioning(ctx.bucket, state)
    return web.Response(status=200)


async def get_cors(ctx: S3Request) -> web.StreamResponse:
    await ctx.layer.bucket(ctx.bucket)
    rules = await ctx.edge.access.bucket_cors(ctx.bucket)
    if not rules:
        raise S3Error("NoSuchCORSConfiguration", "The CORS configuration does not exist",
                      resource=f"/{ctx.bucket}")
    return xml_response(xml.render_cors(rules))


async def put_cors(ctx: S3Request) -> web.StreamResponse:
    rules = xml.parse_cors(await Body(ctx).read_all())
    info = await ctx.layer.bucket(ctx.bucket)
    await ctx.edge.access.set_cors(ctx.bucket, tuple(rules), info.owner)
    return web.Response(status=200)


async def delete_cors(ctx: S3Request) -> web.StreamResponse:
    info = await ctx.layer.bucket(ctx.bucket)
    await ctx.edge.access.set_cors(ctx.bucket, None, info.owner)
    return web.Response(status=204)


HANDLERS: Mapping[str, Handler] = {
    "ListBuckets": list_buckets, "CreateBucket": create_bucket, "HeadBucket": head_bucket,
    "DeleteBucket": delete_bucket, "GetBucketLocation": get_location,
    "GetBucketVersioning": get_versioning, "PutBucketVersioning": put_versioning,
    "GetBucketCors": get_cors, "PutBucketCors": put_cors, "DeleteBucketCors": delete_cors,
}
