"""What an S3 handler is given: the node's edge (config, object layer, access service,
authenticator) and one request already routed and authenticated; plus the request-side
helpers every handler area shares (consistency level, the verified body, bounded XML).

A handler is ``async (S3Request) -> web.StreamResponse`` and raises S3Error for anything
the client got wrong; dfsring.s3.app renders it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dfsring.core.access import Need
from dfsring.foundation.config import NodeConfig
from dfsring.replication.access.service import AccessService
from dfsring.s3 import checksums, chunked
from dfsring.s3.auth import Authn, S3Auth
from dfsring.s3.errors import S3Error
from dfsring.s3.model import Consistency, ObjectLayer, ObjectMeta
from dfsring.s3.routing import Route

MAX_XML_BODY = 1 << 20  # XML request bodies (Delete, CompleteMultipartUpload, CORS...)
READ_CHUNK = 256 * 1024
CONSISTENCY_HEADER = "X-Consistency-Level"
REQUEST_ID_HEADERS = ("x-amz-request-id", "x-amz-id-2")  # both carry our request id
_CONSISTENCY: Mapping[str, Consistency] = {"strong": "strong", "eventual": "eventual",
                                           "quorum": "quorum"}
_HEX64 = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Edge:
    """One node's S3 edge: shared by every request."""

    cfg: NodeConfig
    layer: ObjectLayer
    access: AccessService
    auth: S3Auth


@dataclass
class S3Request:
    request: web.Request
    edge: Edge
    route: Route
    authn: Authn
    request_id: str

    @property
    def bucket(self) -> str:
        assert self.route.bucket is not None  # routing gives every bucket operation one
        return self.route.bucket

    @property
    def key(self) -> str:
        assert self.route.key is not None
        return self.route.key

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    @property
    def layer(self) -> ObjectLayer:
        return self.edge.layer

    async def authorize(self, need: Need, bucket: str) -> None:
        """A second check on another bucket (the source of a copy)."""
        await self.edge.auth.authorize(self.request, self.authn, need, bucket)


Handler = Callable[[S3Request], Awaitable[web.StreamResponse]]


def consistency(headers: Mapping[str, str]) -> Consistency:
    """X-Consistency-Level: strong | eventual | quorum (absent: quorum); else InvalidArgument."""
    value = headers.get(CONSISTENCY_HEADER)
    if value is None:
        return "quorum"
    level = _CONSISTENCY.get(value.strip().lower())
    if level is None:
        raise S3Error("InvalidArgument", f"{CONSISTENCY_HEADER} must be strong, eventual or "
                      "quorum")
    return level


def is_streaming(ctx: S3Request) -> bool:
    return chunked.is_streaming(ctx.headers.get("x-amz-content-sha256", ""))


class Body:
    """A request body as the object layer reads it: aws-chunked framing decoded (and its
    chunk signatures checked), then Content-MD5, x-amz-checksum-* and the signed SHA-256
    verified as it streams; every check fails from the iterator, before the last byte is
    accepted, so a bad body never becomes a version or a part."""

    def __init__(self, ctx: S3Request) -> None:
        headers = ctx.headers
        md5 = headers.get("Content-MD5")
        algorithm, expected = checksums.requested_checksum(headers)
        payload = ctx.authn.payload
        signed_hex = payload if payload and len(payload) == 64 and set(payload) <= _HEX64 \
            else None
        self.decoder: chunked.AwsChunked | None = None
        if is_streaming(ctx):
            self.decoder = chunked.AwsChunked(
                headers.get("x-amz-content-sha256", "").strip(),
                decoded_length=_decoded_length(headers), signing=ctx.authn.signing,
                trailer_names=_trailer_names(headers))
        self.check = checksums.BodyCheck(
            content_md5=checksums.parse_content_md5(md5) if md5 is not None else None,
            algorithm=algorithm, expected=expected, sha256_hex=signed_hex,
            trailers=self.decoder.trailers if self.decoder is not None else None)
        self._request = ctx.request

    def stream(self) -> AsyncIterator[bytes]:
        source = _raw(self._request)
        if self.decoder is not None:
            source = self.decoder.decode(source)
        return self.check.wrap(source)

    async def read_all(self, limit: int = MAX_XML_BODY) -> bytes:
        """The whole (small) body, refused past ``limit`` bytes."""
        declared = self._request.content_length
        if declared is not None and declared > limit and self.decoder is None:
            raise S3Error("MaxMessageLengthExceeded", f"request bodies of this operation are "
                          f"at most {limit} bytes")
        parts: list[bytes] = []
        size = 0
        async for piece in self.stream():
            size += len(piece)
            if size > limit:
                raise S3Error("MaxMessageLengthExceeded", f"request bodies of this "
                              f"operation are at most {limit} bytes")
            parts.append(piece)
        return b"".join(parts)


async def _raw(request: web.Request) -> AsyncIterator[bytes]:
    try:
        async for piece in request.content.iter_chunked(READ_CHUNK):
            yield piece
    except (HttpProcessingError, ConnectionError) as exc:
        raise S3Error("IncompleteBody", f"the request body is malformed or truncated: "
                      f"{str(exc)[:100]}") from None


def _decoded_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("x-amz-decoded-content-length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 15):
        raise S3Error("InvalidArgument", "x-amz-decoded-content-length must be a length")
    return int(value)


def _trailer_names(headers: Mapping[str, str]) -> list[str]:
    value = headers.get("x-amz-trailer", "")
    return [n.strip().lower() for n in value.split(",") if n.strip()][:8]


def require_length(ctx: S3Request) -> None:
    """An upload says how long it is (Content-Length, or HTTP chunked framing that ends
    it): S3 refuses one that does neither (MissingContentLength) rather than store an
    empty object."""
    request = ctx.request
    if request.content_length is None and "chunked" not in \
            request.headers.get("Transfer-Encoding", "").lower():
        raise S3Error("MissingContentLength", "You must provide the Content-Length HTTP "
                      "header.")


def stored_meta(meta: ObjectMeta, streaming: bool) -> ObjectMeta:
    """The metadata to store: ``aws-chunked`` is the upload's framing, not the object's
    encoding, so it is dropped from Content-Encoding, and only for streaming uploads
    (versitygw#2427: a client may really store an object encoded aws-chunked)."""
    encoding = meta.headers.get("content-encoding")
    if not streaming or encoding is None:
        return meta
    kept = [p.strip() for p in encoding.split(",")
            if p.strip() and p.strip().lower() != "aws-chunked"]
    headers = {k: v for k, v in meta.headers.items() if k != "content-encoding"}
    if kept:
        headers["content-encoding"] = ", ".join(kept)
    return replace(meta, headers=headers)


def has_digest(headers: Mapping[str, str]) -> bool:
    """Whether a body comes with an integrity header (DeleteObjects requires one)."""
    return any(k.lower() == "content-md5" or k.lower().startswith("x-amz-checksum-")
               or k.lower() in ("x-amz-sdk-checksum-algorithm", "x-amz-trailer")
               for k in headers)
