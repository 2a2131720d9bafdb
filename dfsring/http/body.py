"""Bounded request bodies: refused early when too large, and a client may not stall us."""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dfsring.foundation import errors

# The SHA-256 (lowercase hex) a SigV4-signed request declared for its body
# (x-amz-content-sha256), set by dfsring.http.auth; whoever reads the body checks it.
SIGNED_PAYLOAD = web.RequestKey("signed_payload_sha256", str)


class PayloadCheck:
    """Hashes a body as it is read and compares it with the signed hash at its end, so a
    body changed on the way (the signature covers only its declared hash) is refused
    before anything is stored."""

    def __init__(self, request: web.Request) -> None:
        self.expected: str | None = request.get(SIGNED_PAYLOAD)
        self._hash = hashlib.sha256() if self.expected is not None else None

    def update(self, piece: bytes) -> None:
        if self._hash is not None:
            self._hash.update(piece)

    def finish(self) -> None:
        if self._hash is not None and self._hash.hexdigest() != self.expected:
            raise errors.BadRequest("x-amz-content-sha256 does not match the request body")


async def read_body(request: web.Request, limit: int, wait_s: float) -> bytes:
    """Read at most `limit` bytes, refusing early; a client may not stall us forever."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise errors.PayloadTooLarge(declared, limit)
    chunks: list[bytes] = []
    size = 0
    check = PayloadCheck(request)
    try:
        async with asyncio.timeout(wait_s):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise errors.PayloadTooLarge(size, limit)
                chunks.append(chunk)
                check.update(chunk)
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout(text="the request body did not arrive in time") from exc
    except (HttpProcessingError, ConnectionError) as exc:
        raise errors.BadRequest(f"request body is malformed or truncated: {exc}") from exc
    if declared is not None and size != declared:
        raise errors.BadRequest(f"request body truncated: got {size} of {declared} bytes")
    check.finish()
    return b"".join(chunks)
