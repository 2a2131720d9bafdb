"""dfsring.s3.chunked against AWS's published streaming uploads, botocore's unsigned-trailer
encoder, and hypothesis (any chunking, any split into pieces, any corruption)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import zlib
from collections.abc import AsyncIterator, Sequence

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfsring.core.authparse import SigV4Credential
from dfsring.core.sigv4 import signing_key
from dfsring.s3.checksums import BodyCheck
from dfsring.s3.chunked import (
    MAX_CHUNK,
    MAX_LINE,
    SIGNED,
    SIGNED_TRAILER,
    UNSIGNED_TRAILER,
    AwsChunked,
    ChunkParser,
    ChunkSigning,
    is_streaming,
    trailer_names,
)
from dfsring.s3.errors import S3Error

pytestmark = pytest.mark.unit

# AWS "Example: PUT Object" (sigv4-streaming) and its trailer variant (sigv4-streaming-trailers):
# 66 560 bytes of "a" in chunks of 65 536, 1 024 and 0, with AWS's own signatures.
KEY = signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3")
DATE = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"
DATA = b"a" * 66560
AWS_SIGNED = ("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
              ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
               "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
               "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"])
AWS_TRAILER = ("106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
               ["b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
                "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
                "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"])
AWS_TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


def aws_body(signatures: Sequence[str], trailer: bytes = b"\r\n") -> bytes:
    parts = []
    for size, signature in zip((65536, 1024, 0), signatures, strict=True):
        parts.append(f"{size:x};chunk-signature={signature}\r\n".encode())
        if size:
            parts.append(b"a" * size + b"\r\n")
    return b"".join(parts) + trailer


SIGNED_BODY = aws_body(AWS_SIGNED[1])
TRAILER_BLOCK = (b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
                 b"x-amz-trailer-signature:" + AWS_TRAILER_SIGNATURE.encode() + b"\r\n\r\n")
TRAILER_BODY = aws_body(AWS_TRAILER[1], TRAILER_BLOCK)


def signing(seed: str) -> ChunkSigning:
    return ChunkSigning(KEY, DATE, SCOPE, seed)


def split(body: bytes, size: int) -> list[bytes]:
    return [body[i:i + size] for i in range(0, len(body), size)] or [b""]


def run(parser: ChunkParser, pieces: Sequence[bytes]) -> bytes:
    out = bytearray()
    for piece in pieces:
        for data in parser.feed(piece):
            out += data
    parser.end()
    return bytes(out)


def signed_parser(decoded: int | None = 66560) -> ChunkParser:
    return ChunkParser(SIGNED, decoded_length=decoded, signing=signing(AWS_SIGNED[0]),
                       trailer_names=())


def trailer_parser() -> ChunkParser:
    return ChunkParser(SIGNED_TRAILER, decoded_length=66560, signing=signing(AWS_TRAILER[0]),
                       trailer_names=["x-amz-checksum-crc32c"])


# --- AWS's published vectors ------------------------------------------------------------------

@pytest.mark.parametrize("piece", [1, 7, 777, 4096, 65536, 10**6])
def test_aws_signed_example_decodes_in_any_split(piece: int) -> None:
    assert run(signed_parser(), split(SIGNED_BODY, piece)) == DATA


@pytest.mark.parametrize("piece", [1, 13, 4096, 10**6])
def test_aws_signed_trailer_example_decodes_and_gives_its_trailer(piece: int) -> None:
    parser = trailer_parser()
    assert run(parser, split(TRAILER_BODY, piece)) == DATA
    assert parser.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}


def test_aws_trailer_example_checksum_is_the_crc32c_of_the_data() -> None:
    async def go() -> None:
        chunked = AwsChunked(SIGNED_TRAILER, decoded_length=66560,
                             signing=signing(AWS_TRAILER[0]),
                             trailer_names=["x-amz-checksum-crc32c"])
        check = BodyCheck(content_md5=None, algorithm="CRC32C", expected=None,
                          sha256_hex=None, trailers=chunked.trailers)
        got = b"".join([d async for d in check.wrap(chunked.decode(pieces(TRAILER_BODY)))])
        assert got == DATA
        checksum = check.checksum()
        assert checksum is not None and checksum.value == "sOO8/Q=="
    asyncio.run(go())


async def pieces(body: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for piece in split(body, size):
        yield piece


def test_trailer_signature_over_a_changed_value_is_refused() -> None:
    body = TRAILER_BODY.replace(b"sOO8/Q==", b"sOO8/A==")
    with pytest.raises(S3Error) as err:
        run(trailer_parser(), [body])
    assert err.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("where", [100, 65600, 66600])
def test_a_changed_data_byte_breaks_the_chain(where: int) -> None:
    body = bytearray(SIGNED_BODY)
    assert body[where] == ord("a")
    body[where] = ord("b")
    with pytest.raises(S3Error) as err:
        run(signed_parser(), [bytes(body)])
    assert err.value.code == "SignatureDoesNotMatch"


def test_chunks_reordered_are_refused() -> None:
    """Regression: a chain checked per chunk but not linked would accept a reordering."""
    sigs = AWS_SIGNED[1]
    body = (f"400;chunk-signature={sigs[1]}\r\n".encode() + b"a" * 1024 + b"\r\n"
            + f"10000;chunk-signature={sigs[0]}\r\n".encode() + b"a" * 65536 + b"\r\n"
            + f"0;chunk-signature={sigs[2]}\r\n\r\n".encode())
    with pytest.raises(S3Error) as err:
        run(signed_parser(), [body])
    assert err.value.code == "SignatureDoesNotMatch"


def test_wrong_seed_is_refused() -> None:
    parser = ChunkParser(SIGNED, decoded_length=None, signing=signing("0" * 64),
                         trailer_names=())
    with pytest.raises(S3Error) as err:
        run(parser, [SIGNED_BODY])
    assert err.value.code == "SignatureDoesNotMatch"


def test_missing_chunk_signature_in_signed_mode_is_refused() -> None:
    with pytest.raises(S3Error) as err:
        run(signed_parser(None), [b"1\r\na\r\n0\r\n\r\n"])
    assert err.value.code == "SignatureDoesNotMatch"


def test_truncated_body_is_incomplete() -> None:
    for cut in (10, 65600, len(SIGNED_BODY) - 70):
        with pytest.raises(S3Error) as err:
            run(signed_parser(), [SIGNED_BODY[:cut]])
        assert err.value.code == "IncompleteBody"


def test_final_crlf_may_be_missing() -> None:
    assert run(signed_parser(), [SIGNED_BODY[:-2]]) == DATA
    assert run(trailer_parser(), [TRAILER_BODY[:-2]]) == DATA


def test_decoded_length_must_match() -> None:
    for claimed in (66559, 66561, 0):
        with pytest.raises(S3Error) as err:
            run(signed_parser(claimed), [SIGNED_BODY])
        assert err.value.code == "IncompleteBody"


def test_bytes_after_the_end_are_refused() -> None:
    with pytest.raises(S3Error) as err:
        run(signed_parser(), [SIGNED_BODY + b"x"])
    assert err.value.code == "InvalidRequest"


# --- the unsigned trailer mode, as boto3 >= 1.36 sends it over HTTPS ---------------------------

def boto_body(data: bytes, chunk: int) -> bytes:
    wrapper = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=Crc32Checksum,
                                checksum_name="x-amz-checksum-crc32", chunk_size=chunk)
    return bytes(wrapper.read())


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=5000), st.integers(1, 2000), st.integers(1, 3000))
def test_botocore_unsigned_trailer_roundtrip(data: bytes, chunk: int, piece: int) -> None:
    parser = ChunkParser(UNSIGNED_TRAILER, decoded_length=len(data), signing=None,
                         trailer_names=["x-amz-checksum-crc32"])
    assert run(parser, split(boto_body(data, chunk), piece)) == data
    assert parser.trailers == {"x-amz-checksum-crc32": crc32_b64(data)}


def test_undeclared_trailer_is_refused() -> None:
    parser = ChunkParser(UNSIGNED_TRAILER, decoded_length=3, signing=None,
                         trailer_names=["x-amz-checksum-crc32c"])
    with pytest.raises(S3Error) as err:
        run(parser, [boto_body(b"abc", 10)])
    assert err.value.code == "InvalidRequest"


def test_declared_trailer_missing_is_refused() -> None:
    parser = ChunkParser(UNSIGNED_TRAILER, decoded_length=3, signing=None,
                         trailer_names=["x-amz-checksum-crc32"])
    with pytest.raises(S3Error) as err:
        run(parser, [b"3\r\nabc\r\n0\r\n\r\n"])
    assert err.value.code == "InvalidRequest"


def test_unsigned_body_with_a_signature_is_refused() -> None:
    parser = ChunkParser(UNSIGNED_TRAILER, decoded_length=None, signing=None, trailer_names=())
    with pytest.raises(S3Error):
        run(parser, [b"3;chunk-signature=" + b"0" * 64 + b"\r\nabc\r\n0\r\n\r\n"])


def test_unsigned_trailer_with_lf_lines_is_accepted() -> None:
    parser = ChunkParser(UNSIGNED_TRAILER, decoded_length=3, signing=None,
                         trailer_names=["x-amz-checksum-crc32"])
    body = f"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:{crc32_b64(b'abc')}\n\n".encode()
    assert run(parser, [body]) == b"abc"


def test_async_decode_and_trailers() -> None:
    async def go() -> None:
        chunked = AwsChunked(UNSIGNED_TRAILER, decoded_length=4, signing=None,
                             trailer_names=trailer_names("x-amz-checksum-crc32"))
        with pytest.raises(RuntimeError):
            chunked.trailers()
        got = b"".join([d async for d in chunked.decode(pieces(boto_body(b"abcd", 3), 2))])
        assert got == b"abcd"
        assert chunked.trailers() == {"x-amz-checksum-crc32": crc32_b64(b"abcd")}
    asyncio.run(go())


# --- bounds and modes -------------------------------------------------------------------------

def test_overlong_size_line_is_refused_without_waiting_for_its_end() -> None:
    parser = ChunkParser(UNSIGNED_TRAILER, decoded_length=None, signing=None, trailer_names=())
    with pytest.raises(S3Error) as err:
        parser.feed(b"1" + b" " * MAX_LINE)
    assert err.value.code == "InvalidRequest"


def test_chunk_larger_than_the_bound_is_refused() -> None:
    parser = ChunkParser(UNSIGNED_TRAILER, decoded_length=None, signing=None, trailer_names=())
    with pytest.raises(S3Error):
        parser.feed(f"{MAX_CHUNK + 1:x}\r\n".encode())


def test_overlong_trailers_are_refused() -> None:
    parser = ChunkParser(UNSIGNED_TRAILER, decoded_length=None, signing=None,
                         trailer_names=["x-amz-checksum-crc32"])
    with pytest.raises(S3Error):
        parser.feed(b"0\r\n" + b"x-amz-checksum-crc32:" + b"A" * 20000)


def test_modes() -> None:
    assert is_streaming(SIGNED) and is_streaming(UNSIGNED_TRAILER)
    assert is_streaming("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD")
    assert not is_streaming("UNSIGNED-PAYLOAD") and not is_streaming("e3b0" * 16)
    with pytest.raises(S3Error) as err:
        ChunkParser("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", decoded_length=None,
                    signing=None, trailer_names=())
    assert err.value.code == "NotImplemented"
    with pytest.raises(S3Error):
        ChunkParser(SIGNED, decoded_length=None, signing=None, trailer_names=())
    with pytest.raises(S3Error):
        ChunkParser(SIGNED, decoded_length=None, signing=signing("0" * 64),
                    trailer_names=["x-amz-checksum-crc32"])


def test_trailer_names() -> None:
    assert trailer_names(None) == ()
    assert trailer_names(" X-Amz-Checksum-CRC32 ") == ("x-amz-checksum-crc32",)
    for bad in ("a b", "x" * 200, ",".join(["a"] * 20), "é"):
        with pytest.raises(S3Error):
            trailer_names(bad)


# --- hypothesis: our own signer (the AWS-checked string-to-sign), any chunking ----------------

def encode_signed(data: bytes, sizes: Sequence[int], seed: str,
                  trailers: Sequence[tuple[str, str]] | None) -> bytes:
    """A signed aws-chunked body, written independently of the parser (the chunk string to
    sign is the one the AWS vectors above pin)."""
    empty = hashlib.sha256(b"").hexdigest()
    previous, wire, at = seed, bytearray(), 0
    chunks = []
    for size in sizes:
        chunks.append(data[at:at + size])
        at += size
    chunks.append(data[at:])
    chunks = [c for c in chunks if c] + [b""]
    for chunk in chunks:
        text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", DATE, SCOPE, previous, empty,
                          hashlib.sha256(chunk).hexdigest()])
        previous = hmac.new(KEY, text.encode(), "sha256").hexdigest()
        wire += f"{len(chunk):x};chunk-signature={previous}\r\n".encode()
        if chunk:
            wire += chunk + b"\r\n"
    if trailers is None:
        return bytes(wire + b"\r\n")
    block = "".join(f"{n}:{v}\n" for n, v in trailers)
    text = "\n".join(["AWS4-HMAC-SHA256-TRAILER", DATE, SCOPE, previous,
                      hashlib.sha256(block.encode()).hexdigest()])
    signature = hmac.new(KEY, text.encode(), "sha256").hexdigest()
    wire += block.replace("\n", "\r\n").encode()
    wire += f"x-amz-trailer-signature:{signature}\r\n\r\n".encode()
    return bytes(wire)


@settings(max_examples=80)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), max_size=6),
       st.integers(1, 500), st.booleans())
def test_signed_roundtrip(data: bytes, sizes: list[int], piece: int, trailer: bool) -> None:
    seed = "ab" * 32
    trailers = [("x-amz-checksum-crc32", crc32_b64(data))] if trailer else None
    body = encode_signed(data, sizes, seed, trailers)
    parser = ChunkParser(SIGNED_TRAILER if trailer else SIGNED, decoded_length=len(data),
                         signing=signing(seed),
                         trailer_names=["x-amz-checksum-crc32"] if trailer else [])
    assert run(parser, split(body, piece)) == data
    assert parser.trailers == dict(trailers or [])


@settings(max_examples=150)
@given(st.binary(min_size=1, max_size=600), st.data())
def test_any_corruption_of_a_signed_body_is_refused_or_harmless(data: bytes,
                                                                draw: st.DataObject) -> None:
    """Flip one byte anywhere: the body is refused with an S3Error, or (a change of case in a
    trailer name, whitespace) decodes to exactly the same bytes and trailers."""
    trailers = [("x-amz-checksum-crc32", crc32_b64(data))]
    body = bytearray(encode_signed(data, [len(data) // 2 or 1], "cd" * 32, trailers))
    where = draw.draw(st.integers(0, len(body) - 1))
    body[where] ^= draw.draw(st.integers(1, 255))
    parser = ChunkParser(SIGNED_TRAILER, decoded_length=len(data), signing=signing("cd" * 32),
                         trailer_names=["x-amz-checksum-crc32"])
    try:
        got = run(parser, split(bytes(body), draw.draw(st.integers(1, 64))))
    except S3Error:
        return
    assert got == data and parser.trailers == dict(trailers)


@settings(max_examples=300)
@given(st.binary(max_size=300), st.sampled_from([SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER]),
       st.integers(1, 50), st.one_of(st.none(), st.integers(0, 400)))
def test_fuzz_random_bodies_only_raise_s3_errors(body: bytes, mode: str, piece: int,
                                                 decoded: int | None) -> None:
    parser = ChunkParser(mode, decoded_length=decoded,
                         signing=None if mode == UNSIGNED_TRAILER else signing("ef" * 32),
                         trailer_names=[] if mode == SIGNED else ["x-amz-checksum-crc32"])
    try:
        run(parser, split(body, piece))
    except S3Error:
        pass


@settings(max_examples=200)
@given(st.lists(st.sampled_from([b"0", b"1", b"f", b";", b"\r", b"\n", b"\r\n", b"a", b":",
                                 b"x-amz-checksum-crc32", b"chunk-signature=", b" "]),
                max_size=40))
def test_fuzz_framing_tokens_only_raise_s3_errors(tokens: list[bytes]) -> None:
    parser = ChunkParser(UNSIGNED_TRAILER, decoded_length=None, signing=None,
                         trailer_names=["x-amz-checksum-crc32"])
    try:
        run(parser, tokens)
    except S3Error:
        pass


def test_chunk_signing_for_a_verified_request() -> None:
    cred = SigV4Credential(access_key="AKIAIOSFODNN7EXAMPLE", date="20130524",
                           region="us-east-1", service="s3", signed_headers=("host",),
                           signature=AWS_SIGNED[0], presigned=False, amz_date=DATE,
                           expires_s=None)
    made = ChunkSigning.for_request(cred, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert made == signing(AWS_SIGNED[0])
    parser = ChunkParser(SIGNED, decoded_length=66560, signing=made, trailer_names=())
    assert run(parser, [SIGNED_BODY]) == DATA


def test_data_is_passed_on_as_it_arrives_not_per_chunk() -> None:
    """Memory stays bounded by the piece, not the chunk: every data byte of a piece comes
    out of the feed of that same piece."""
    parser = signed_parser()
    header = SIGNED_BODY.index(b"\r\n") + 2
    assert parser.feed(SIGNED_BODY[:header]) == []
    for at in range(header, header + 65536, 1024):
        assert parser.feed(SIGNED_BODY[at:at + 1024]) == [b"a" * 1024]
    assert run(parser, [SIGNED_BODY[header + 65536:]]) == b"a" * 1024
