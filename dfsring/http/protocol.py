"""HTTP oddities aiohttp's parser lets through, refused before any handler runs.

- HTTP/0.9 (a request line without a version): aiohttp answers it, with an "HTTP/0.9" status
  line and headers a 0.9 client cannot read. Refused with 505 on an HTTP/1.1 status line and
  the connection closed; so is a request line claiming HTTP/2 or later (aiohttp echoed
  "HTTP/2.0 200 OK" in HTTP/1.1 framing). Both are logged as rejections, not failures.
  HTTP/1.0 is served: without keep-alive unless the client asks for it, and with a
  Content-Length on request bodies (1.0 has no chunked coding).
- A request ``Transfer-Encoding`` other than ``chunked`` (``gzip, chunked``): aiohttp removes
  the chunking and hands over the gzip bytes as they are, which would be stored as the value.
  Refused with 501 (RFC 9112 §6.1), before the body is read. The ``TE`` header is about the
  response and is ignored: a node only ever sends ``chunked``, which every 1.1 client accepts.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http import HttpVersion11

from dfsring.foundation import errors
from dfsring.http.middleware import Handler


@web.middleware
async def protocol_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = request.version
    if version < (1, 0) or version >= (2, 0):
        # answer on a status line a proxy, a log or a person can read, never "HTTP/0.9":
        # aiohttp writes the request's version there (aiohttp pinned < 4, as in server.py)
        request._message = request._message._replace(version=HttpVersion11, should_close=True)
        request._version = HttpVersion11
        request._cache.pop("version", None)  # reified on first read, above
        raise errors.VersionNotSupported(
            f"HTTP/{version.major}.{version.minor} is not served on this "
            "port; use HTTP/1.1 or HTTP/1.0")
    check_transfer_coding(request.headers.get("Transfer-Encoding"))
    return await handler(request)


def check_transfer_coding(value: str | None) -> None:
    """Only ``chunked`` is a request transfer coding this node decodes."""
    if value is None:
        return
    codings = [c.strip().lower() for c in value.split(",")]
    if any(c != "chunked" for c in codings):
        raise errors.NotImplementedCoding(
            f"Transfer-Encoding {value[:64]!r} is not supported: send the body as is or "
            "chunked")
