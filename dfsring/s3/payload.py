"""One request body, decoded and verified: the wire pieces put together the one right way.

Pure (no I/O). The edge calls ``request_body`` for PutObject and UploadPart with the request
headers, the received pieces (aiohttp's ``request.content.iter_any()``) and, for a SigV4
request, ``ChunkSigning.for_request``; it hands ``Body.data`` to the object layer and
``Body.check.checksum`` as the ChecksumSource. Doing this in one place keeps the rules from
S3-PITFALLS.md in one place:

- a streaming body is recognised by ``x-amz-content-sha256: STREAMING-*`` (not only by
  Content-Encoding), decoded (dfsring.s3.chunked), and its size is
  ``x-amz-decoded-content-length``, which is required (MissingContentLength otherwise, as S3);
- a trailer is read only from a streaming body that declared it in ``x-amz-trailer``;
- a non-streaming signed payload is checked against its ``x-amz-content-sha256``;
  ``UNSIGNED-PAYLOAD`` (and no header, for anonymous or presigned requests) skips that;
- Content-MD5 and ``x-amz-checksum-*`` are checked over the decoded bytes;
- no body grows past ``max_size`` bytes (EntityTooLarge), whatever its headers said.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from dfsring.s3.checksums import BodyCheck, parse_content_md5, requested_checksum
from dfsring.s3.chunked import AwsChunked, ChunkSigning, is_streaming, trailer_names
from dfsring.s3.errors import S3Error
from dfsring.s3.headers import parse_int

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Body:
    """A body ready for the object layer: ``data`` raises S3Error at its end if any check
    fails; ``check.checksum()`` is the verified checksum once ``data`` is exhausted."""

    data: AsyncIterator[bytes]
    check: BodyCheck
    decoded_length: int | None  # the object's size when the headers say it up front


def request_body(headers: Mapping[str, str], source: AsyncIterator[bytes], *,
                 signing: ChunkSigning | None, max_size: int) -> Body:
    """The decoded, verified body of a PutObject/UploadPart (module docstring)."""
    low = {name.lower(): value for name, value in headers.items()}
    content_sha256 = low.get("x-amz-content-sha256", UNSIGNED_PAYLOAD).strip()
    algorithm, expected = requested_checksum(low)
    md5 = parse_content_md5(low["content-md5"]) if "content-md5" in low else None
    if is_streaming(content_sha256):
        if "x-amz-decoded-content-length" not in low:
            raise S3Error("MissingContentLength", "A streaming upload needs "
                          "x-amz-decoded-content-length.")
        length = parse_int(low["x-amz-decoded-content-length"].strip(),
                           "x-amz-decoded-content-length", 0, max_size)
        names = trailer_names(low.get("x-amz-trailer"))
        chunked = AwsChunked(content_sha256, decoded_length=length, signing=signing,
                             trailer_names=names)
        from_trailer = algorithm is not None and f"x-amz-checksum-{algorithm.lower()}" in names
        check = BodyCheck(content_md5=md5, algorithm=algorithm, expected=expected,
                          sha256_hex=None, trailers=chunked.trailers if from_trailer else None)
        return Body(check.wrap(_bounded(chunked.decode(source), max_size)), check, length)
    if "x-amz-trailer" in low:
        raise S3Error("InvalidRequest", "x-amz-trailer needs a STREAMING-* "
                      "x-amz-content-sha256.")
    if content_sha256 != UNSIGNED_PAYLOAD and not _HEX64.fullmatch(content_sha256):
        raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                      "STREAMING-* or a SHA256 in hex.")
    sha256_hex = None if content_sha256 == UNSIGNED_PAYLOAD else content_sha256
    check = BodyCheck(content_md5=md5, algorithm=algorithm, expected=expected,
                      sha256_hex=sha256_hex)
    return Body(check.wrap(_bounded(source, max_size)), check, None)


async def _bounded(source: AsyncIterator[bytes], max_size: int) -> AsyncIterator[bytes]:
    """``source`` as long as it stays within ``max_size`` bytes; EntityTooLarge past that."""
    seen = 0
    async for piece in source:
        seen += len(piece)
        if seen > max_size:
            raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum "
                          "allowed object size.")
        yield piece
