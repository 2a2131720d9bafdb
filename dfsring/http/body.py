"""Bounded request bodies: refused early when too large, and a client may not stall us."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dfsring.foundation import errors


async def read_body(request: web.Request, limit: int, wait_s: float) -> bytes:
    """Read at most `limit` bytes, refusing early; a client may not stall us forever."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise errors.PayloadTooLarge(declared, limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(wait_s):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise errors.PayloadTooLarge(size, limit)
                chunks.append(chunk)
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout(text="the request body did not arrive in time") from exc
    except (HttpProcessingError, ConnectionError) as exc:
        raise errors.BadRequest(f"request body is malformed or truncated: {exc}") from exc
    if declared is not None and size != declared:
        raise errors.BadRequest(f"request body truncated: got {size} of {declared} bytes")
    return b"".join(chunks)
