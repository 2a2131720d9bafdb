"""The files HTTP API (CONTRACT.md "Files"; docs/API.md "Files").

Bodies stream both ways: an upload is handed to the service as the request's byte stream
(Content-Length or chunked transfer encoding), a download is written out chunk by chunk as the
service yields it. Everything that can be refused is refused before the body is read or the
response started: names, knobs, headers, a declared length above the largest file. Once a
download's headers are out, a failure can no longer become a problem document: the connection
is cut short instead, so the client sees a body shorter than its Content-Length, never a
wrong byte.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dfsring.core import byterange, keys, manifest
from dfsring.core.manifest import Manifest
from dfsring.files import versions as fv
from dfsring.files.versions import VersionRef
from dfsring.files.wiring import FilesNode
from dfsring.foundation import errors
from dfsring.http import params
from dfsring.http.body import PayloadCheck
from dfsring.http.kv_api import (
    decode_cursor,
    encode_cursor,
    parse_limit,
    rfc3339,
)
from dfsring.http.problems import json_doc

log = logging.getLogger("dfsring.http")
FILES = web.AppKey("files", FilesNode)
VERSION_HEADER = "Dfs-Version"
_PUT = frozenset()
_GET = frozenset({"version", "versions"})
_DELETE = frozenset({"version"})
_LIST = frozenset({"prefix", "limit", "cursor"})
PREFIX = "/v1/files/"
PATH_ROUTE = r"{path:[\s\S]+}"  # newlines included, as in keys


def setup(app: web.Application, files: FilesNode) -> None:
    app[FILES] = files
    app.router.add_put(PREFIX + "{bucket}/" + PATH_ROUTE, put_file)
    app.router.add_get(PREFIX + "{bucket}/" + PATH_ROUTE, get_file)  # HEAD too (allow_head)
    app.router.add_delete(PREFIX + "{bucket}/" + PATH_ROUTE, delete_file)
    app.router.add_get("/v1/files/{bucket}", list_files)
    app.router.add_route("*", "/v1/files/{bucket}/", empty_path)
    app.router.add_post("/v1/node/gc", run_gc)
    app.router.add_get("/v1/node/chunks", chunk_stats)


async def empty_path(request: web.Request) -> web.StreamResponse:
    raise errors.InvalidKey("file path must not be empty")


def _name(request: web.Request) -> tuple[str, str]:
    bucket, path = params.path_tail(request, PREFIX)  # percent-decoded once, UTF-8
    keys.validate_user_bucket(bucket)
    fv.validate_path(path)
    return bucket, path


def _content_type(request: web.Request) -> str:
    raw = request.headers.get("Content-Type", manifest.DEFAULT_CONTENT_TYPE)
    if not raw.strip() or len(raw) > manifest.MAX_CONTENT_TYPE or not raw.isascii() \
            or not raw.isprintable():
        raise errors.BadRequest(f"Content-Type must be printable ASCII, at most "
                                f"{manifest.MAX_CONTENT_TYPE} characters")
    return raw


# --- upload --------------------------------------------------------------------------------


async def put_file(request: web.Request) -> web.StreamResponse:
    params.serving(request, _PUT)
    bucket, path = _name(request)
    content_type = _content_type(request)
    try:
        metadata = manifest.metadata_from_headers(request.headers.items())
    except ValueError as exc:
        raise errors.BadRequest(f"bad Dfs-Meta-* header: {exc}") from exc
    declared = request.content_length
    if declared is not None and declared > manifest.MAX_FILE_SIZE:
        raise errors.FileTooLarge(declared, manifest.MAX_FILE_SIZE)
    files = request.app[FILES].service
    result = await files.upload(bucket, path, _body(request), content_type=content_type,
                                metadata=metadata)
    built = result.manifest
    doc = {**built.to_json(), "new_chunks": result.new_chunks}
    resp = json_doc(doc, 201)
    resp.headers.update({"ETag": built.etag, VERSION_HEADER: built.version})
    return resp


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; a broken or cut-off body is a 400 (the client may be
    gone, but the upload must fail, not store a truncated file)."""
    check = PayloadCheck(request)
    try:
        async for piece in request.content.iter_any():
            check.update(piece)
            yield piece
    except (HttpProcessingError, ConnectionError) as exc:
        raise errors.BadRequest(f"request body is malformed or truncated: {exc}") from exc
    check.finish()  # before the upload commits: a changed body stores nothing


# --- download ------------------------------------------------------------------------------


async def get_file(request: web.Request) -> web.StreamResponse:
    params.serving(request, _GET)
    bucket, path = _name(request)
    files = request.app[FILES].service
    if "versions" in request.query:
        if "version" in request.query:
            raise errors.BadRequest("give either versions or version=V")
        return await _versions(bucket, path, await files.versions(bucket, path))
    found = await files.manifest(bucket, path, request.query.get("version"))
    headers = _headers(found)
    if _not_modified(request, found):
        return web.Response(status=304, headers=headers)
    span = byterange.parse_range(request.headers.get("Range"), found.size)  # or 416
    start, end = span if span is not None else (0, found.size - 1)
    resp = web.StreamResponse(status=200 if span is None else 206, headers=headers)
    if span is not None:
        resp.headers["Content-Range"] = byterange.content_range(start, end, found.size)
    resp.content_length = end - start + 1 if found.size else 0
    if request.method == "HEAD" or not found.size:
        await resp.prepare(request)
        await resp.write_eof()
        return resp
    async with contextlib.aclosing(files.read(found, start, end)) as pieces:
        first = await anext(pieces)  # no replica has it: still a 503, not a cut-off 200
        await resp.prepare(request)
        await _stream(request, resp, first, pieces)
    return resp


async def _stream(request: web.Request, resp: web.StreamResponse, first: bytes | memoryview,
                  pieces: AsyncIterator[bytes | memoryview]) -> None:
    """Write the pieces out; after the headers, a failure cuts the connection short."""
    try:
        await resp.write(first)
        async for piece in pieces:
            await resp.write(piece)
        await resp.write_eof()
    except (ConnectionError, RuntimeError) as exc:  # the client went away
        log.info("download ended by the client", extra={"fields": {
            "path": request.path[:200], "error": str(exc)[:200]}})
        _cut(request)
    except errors.DfsError as exc:
        log.error("download failed after its headers were sent", extra={"fields": {
            "path": request.path[:200], "error": str(exc)[:300]}})
        _cut(request)


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def _headers(found: Manifest) -> dict[str, str]:
    headers = {"ETag": found.etag, "Content-Type": found.content_type,
               "Last-Modified": _http_date(found.created_ms), "Accept-Ranges": "bytes",
               VERSION_HEADER: found.version}
    for name, value in manifest.metadata_headers(found):
        headers[name] = value
    return headers


def _not_modified(request: web.Request, found: Manifest) -> bool:
    wanted = request.headers.get("If-None-Match")
    if wanted is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
    return "*" in tags or found.etag in tags


def _http_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


async def _versions(bucket: str, path: str, refs: list[VersionRef]) -> web.Response:
    if not refs:
        raise errors.NotFound(f"no file {bucket}/{path}")
    current = fv.current(refs)
    return json_doc({"bucket": bucket, "path": path, "versions": [
        {"version": r.version, "size": r.size, "deleted": r.deleted,
         "modified": rfc3339(r.created_ms), "current": r is current} for r in refs]})


# --- delete and list -----------------------------------------------------------------------


async def delete_file(request: web.Request) -> web.StreamResponse:
    params.serving(request, _DELETE)
    bucket, path = _name(request)
    ref = await request.app[FILES].service.delete(bucket, path, request.query.get("version"))
    return web.Response(status=204, headers={VERSION_HEADER: ref.version})


async def list_files(request: web.Request) -> web.StreamResponse:
    params.serving(request, _LIST)
    bucket = request.match_info["bucket"]
    keys.validate_user_bucket(bucket)
    prefix = request.query.get("prefix", "")
    if "\x00" in prefix or len(prefix.encode("utf-8", "surrogatepass")) > fv.MAX_PATH_BYTES:
        raise errors.BadRequest("prefix longer than the longest path, or with NUL")
    limit = parse_limit(request.query.get("limit"))
    after = _decode_cursor(request.query.get("cursor"))
    found, more = await request.app[FILES].service.list_files(bucket, prefix, after, limit)
    cursor = encode_cursor(found[-1].path.encode()) if more and found else None
    return json_doc({"files": [_file_json(r) for r in found], "cursor": cursor})


def _decode_cursor(raw: str | None) -> str | None:
    key = decode_cursor(raw)
    if key is None:
        return None
    try:
        path = key.decode("utf-8")
        fv.validate_path(path)
    except (UnicodeDecodeError, errors.InvalidKey) as exc:
        raise errors.BadRequest("cursor is not one this API returned") from exc
    return path


def _file_json(ref: VersionRef) -> dict[str, Any]:
    return {"path": ref.path, "size": ref.size, "version": ref.version,
            "modified": rfc3339(ref.created_ms)}


# --- this node's chunks ----------------------------------------------------------------------


async def run_gc(request: web.Request) -> web.Response:
    """Run one garbage-collection round on this node now (tests, operators)."""
    if request.query:
        raise errors.BadRequest("no query parameters are allowed")
    report = await request.app[FILES].gc.run_once()
    return json_doc(report.to_json())


async def chunk_stats(request: web.Request) -> web.Response:
    node = request.app[FILES]
    stats = node.store.stats
    last = node.gc.last
    return json_doc({"chunks": stats.count, "bytes": stats.bytes,
                     "corrupt_found": node.store.corrupt_found,
                     "last_gc": last.to_json() if last is not None else None,
                     "sync": node.sync.stats_json()})
