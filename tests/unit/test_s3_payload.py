"""dfsring.s3.payload on the exact requests botocore sends (captured before they leave the
client): aws-chunked with an unsigned CRC32 trailer over HTTPS, a signed hex payload with an
x-amz-checksum-crc32 header over HTTP, Content-MD5; and on the ways such bodies go wrong."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import zlib
from collections.abc import AsyncIterator
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from dfsring.s3.errors import S3Error
from dfsring.s3.model import Checksum
from dfsring.s3.payload import Body, request_body

pytestmark = pytest.mark.unit

MAX = 64 * 1024 * 1024


class _Raw:
    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return iter([b""])


def botocore_request(url: str, operation: str, **params: Any) -> tuple[dict[str, str], bytes]:
    """The headers and body botocore sends for ``operation``, captured at before-send."""
    captured: list[Any] = []

    def before_send(request: Any, **kwargs: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {"ETag": '"x"'}, _Raw())

    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="AK",
        aws_secret_access_key="SK", config=Config(s3={"addressing_style": "path"}))
    client.meta.events.register("before-send", before_send)
    getattr(client, operation)(**params)
    request = captured[-1]
    body = request.body.read() if hasattr(request.body, "read") else request.body
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    return headers, bytes(body or b"")


async def pieces(body: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i:i + size]


def consume(body: Body) -> bytes:
    async def go() -> bytes:
        return b"".join([piece async for piece in body.data])
    return asyncio.run(go())


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


DATA = bytes(range(256)) * 12289  # 3 MiB + 256 bytes: several of botocore's 1 MiB chunks


@pytest.mark.parametrize("url", ["https://s3.example:9000", "http://s3.example:9000"])
def test_botocore_put_object_decodes_and_verifies(url: str) -> None:
    headers, wire = botocore_request(url, "put_object", Bucket="b", Key="k", Body=DATA)
    if url.startswith("https"):
        assert headers["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    body = request_body(headers, pieces(wire), signing=None, max_size=MAX)
    assert consume(body) == DATA
    assert body.check.checksum() == Checksum("CRC32", crc32(DATA))


@pytest.mark.parametrize("url", ["https://s3.example:9000", "http://s3.example:9000"])
def test_botocore_body_changed_in_transit_is_refused(url: str) -> None:
    headers, wire = botocore_request(url, "put_object", Bucket="b", Key="k", Body=DATA)
    at = wire.index(bytes(range(256))) + 1000
    tampered = wire[:at] + bytes([wire[at] ^ 1]) + wire[at + 1:]
    body = request_body(headers, pieces(tampered), signing=None, max_size=MAX)
    with pytest.raises(S3Error) as err:
        consume(body)
    assert err.value.code == ("BadDigest" if url.startswith("https")
                              else "XAmzContentSHA256Mismatch")


def test_botocore_upload_part_with_content_md5() -> None:
    md5 = base64.b64encode(hashlib.md5(DATA).digest()).decode()
    headers, wire = botocore_request("https://s3.example:9000", "upload_part", Bucket="b",
                                     Key="k", UploadId="u", PartNumber=1, Body=DATA,
                                     ContentMD5=md5)
    body = request_body(headers, pieces(wire, 1000), signing=None, max_size=MAX)
    assert consume(body) == DATA
    wrong = {**headers, "Content-MD5": base64.b64encode(hashlib.md5(b"").digest()).decode()}
    with pytest.raises(S3Error) as err:
        consume(request_body(wrong, pieces(wire), signing=None, max_size=MAX))
    assert err.value.code == "BadDigest"


def test_regression_chunk_framing_never_reaches_the_object() -> None:
    """boto3#4392: a server ignoring STREAMING-UNSIGNED-PAYLOAD-TRAILER stored the framing.
    Detection is by x-amz-content-sha256 alone, even without Content-Encoding."""
    headers, wire = botocore_request("https://s3.example:9000", "put_object", Bucket="b",
                                     Key="k", Body=b"abc")
    headers.pop("Content-Encoding")
    assert consume(request_body(headers, pieces(wire), signing=None, max_size=MAX)) == b"abc"


def test_streaming_needs_the_decoded_length() -> None:
    headers, _ = botocore_request("https://s3.example:9000", "put_object", Bucket="b",
                                  Key="k", Body=b"abc")
    headers.pop("X-Amz-Decoded-Content-Length")
    with pytest.raises(S3Error) as err:
        request_body(headers, pieces(b""), signing=None, max_size=MAX)
    assert err.value.code == "MissingContentLength"


def test_size_bounds() -> None:
    headers, wire = botocore_request("https://s3.example:9000", "put_object", Bucket="b",
                                     Key="k", Body=b"abcd")
    with pytest.raises(S3Error) as err:
        request_body(headers, pieces(wire), signing=None, max_size=3)
    assert err.value.code == "InvalidArgument"
    with pytest.raises(S3Error) as err:
        consume(request_body({}, pieces(b"abcd"), signing=None, max_size=3))
    assert err.value.code == "EntityTooLarge"


@pytest.mark.parametrize(("headers", "code"), [
    ({"x-amz-content-sha256": "nonsense"}, "InvalidArgument"),
    ({"x-amz-trailer": "x-amz-checksum-crc32"}, "InvalidRequest"),
    ({"Content-MD5": "xx"}, "InvalidDigest"),
    ({"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
      "x-amz-decoded-content-length": "3"}, "InvalidRequest"),  # signed, but no signing
    ({"x-amz-content-sha256": "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
      "x-amz-decoded-content-length": "3"}, "NotImplemented"),
])
def test_refusals_before_the_body(headers: dict[str, str], code: str) -> None:
    with pytest.raises(S3Error) as err:
        request_body(headers, pieces(b""), signing=None, max_size=MAX)
    assert err.value.code == code


def test_unsigned_payload_and_no_header_are_not_hashed() -> None:
    for headers in ({}, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}):
        body = request_body(headers, pieces(b"xyz"), signing=None, max_size=MAX)
        assert consume(body) == b"xyz" and body.check.checksum() is None
