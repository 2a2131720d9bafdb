"""dfsring.s3.checksums: the algorithms against botocore's (the client's own), the header
rules, the end-of-body checks, composite multipart checksums, and hypothesis fuzzing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping

import pytest
from botocore import httpchecksum
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.s3.checksums import (
    BodyCheck,
    composite,
    encode,
    new_hasher,
    parse_content_md5,
    requested_checksum,
)
from dfsring.s3.errors import S3Error
from dfsring.s3.model import Checksum

pytestmark = pytest.mark.unit

BOTO = {"CRC32": httpchecksum.Crc32Checksum, "SHA1": httpchecksum.Sha1Checksum,
        "SHA256": httpchecksum.Sha256Checksum}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def ours(algorithm: str, data: bytes, split: int = 7) -> str:
    hasher = new_hasher(algorithm)
    for i in range(0, len(data), split):
        hasher.update(memoryview(data)[i:i + split])
    return encode(hasher.digest())


@settings(max_examples=50)
@given(st.binary(max_size=2000), st.sampled_from(sorted(BOTO)), st.integers(1, 300))
def test_algorithms_agree_with_botocore(data: bytes, algorithm: str, split: int) -> None:
    oracle = BOTO[algorithm]()
    oracle.update(data)
    assert ours(algorithm, data, split) == oracle.b64digest()


def test_crc32c_known_values() -> None:
    # RFC 3720 B.4 test vector (32 zero bytes) and the AWS trailer example (66 560 "a").
    assert ours("CRC32C", b"\0" * 32) == b64(bytes.fromhex("8a9136aa"))
    assert ours("CRC32C", b"a" * 66560, 4096) == "sOO8/Q=="
    assert ours("crc32c", b"123456789") == b64(bytes.fromhex("e3069283"))
    assert ours("MD5", b"") == b64(hashlib.md5(b"").digest())


def test_unknown_algorithm() -> None:
    for name in ("CRC64NVME", "xxhash", ""):
        with pytest.raises(S3Error) as err:
            new_hasher(name)
        assert err.value.code == "InvalidRequest"


def test_content_md5() -> None:
    digest = hashlib.md5(b"x").digest()
    assert parse_content_md5(b64(digest)) == digest
    for bad in ("", "abc", b64(b"short"), b64(digest) + "A", "é" * 24, "!" * 24):
        with pytest.raises(S3Error) as err:
            parse_content_md5(bad)
        assert err.value.code == "InvalidDigest"


# --- which checksum a request asks for ---------------------------------------------------------

CRC = b64(b"\0\0\0\1")


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, (None, None)),
    ({"x-amz-checksum-crc32": CRC}, ("CRC32", CRC)),
    ({"X-Amz-Checksum-CRC32C": CRC}, ("CRC32C", CRC)),
    ({"x-amz-sdk-checksum-algorithm": "crc32"}, ("CRC32", None)),
    ({"x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-checksum-crc32": CRC}, ("CRC32", CRC)),
    ({"x-amz-trailer": "x-amz-checksum-sha256"}, ("SHA256", None)),
    ({"x-amz-sdk-checksum-algorithm": "SHA256", "x-amz-trailer": "x-amz-checksum-sha256"},
     ("SHA256", None)),
    ({"x-amz-checksum-algorithm": "SHA1"}, ("SHA1", None)),
    ({"x-amz-checksum-mode": "ENABLED"}, (None, None)),
])
def test_requested_checksum(headers: dict[str, str],
                            expected: tuple[str | None, str | None]) -> None:
    assert requested_checksum(headers) == expected


@pytest.mark.parametrize("headers", [
    {"x-amz-checksum-crc32": CRC, "x-amz-checksum-crc32c": CRC},  # two values
    {"x-amz-sdk-checksum-algorithm": "SHA1", "x-amz-checksum-crc32": CRC},  # disagree
    {"x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-trailer": "x-amz-checksum-crc32c"},
    {"x-amz-checksum-crc32": CRC, "x-amz-trailer": "x-amz-checksum-crc32"},  # value twice
    {"x-amz-sdk-checksum-algorithm": "MD4"},
    {"x-amz-sdk-checksum-algorithm": "CRC64NVME"},
    {"x-amz-checksum-crc64nvme": b64(b"\0" * 8)},
    {"x-amz-checksum-crc32": "AAAAAAAA"},  # 6 bytes, not 4
    {"x-amz-checksum-sha256": "not base64!"},
    {"x-amz-trailer": "x-amz-checksum-crc32,x-amz-checksum-sha1"},
])
def test_requested_checksum_refusals(headers: dict[str, str]) -> None:
    with pytest.raises(S3Error) as err:
        requested_checksum(headers)
    assert err.value.code == "InvalidRequest"


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["x-amz-checksum-crc32", "x-amz-checksum-sha1",
                                        "x-amz-sdk-checksum-algorithm", "x-amz-trailer",
                                        "x-amz-checksum-algorithm", "x-amz-checksum-crc32c"]),
                       st.one_of(st.text(max_size=60), st.binary(max_size=60).map(
                           lambda raw: raw.decode("utf-8", "surrogateescape")))))
def test_fuzz_requested_checksum_only_raises_s3_errors(headers: dict[str, str]) -> None:
    try:
        requested_checksum(headers)
    except S3Error as err:
        assert err.status == 400


# --- BodyCheck -------------------------------------------------------------------------------

async def source(data: bytes, piece: int = 3) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i:i + piece]


def drain(check: BodyCheck, data: bytes) -> bytes:
    async def go() -> bytes:
        return b"".join([p async for p in check.wrap(source(data))])
    return asyncio.run(go())


def body_check(*, md5: bytes | None = None, algorithm: str | None = None,
               expected: str | None = None, sha256: str | None = None,
               trailers: Callable[[], Mapping[str, str]] | None = None) -> BodyCheck:
    return BodyCheck(content_md5=md5, algorithm=algorithm, expected=expected,
                     sha256_hex=sha256, trailers=trailers)


DATA = b"hello, dfsring" * 10


def test_all_checks_pass_and_the_checksum_is_the_verified_one() -> None:
    crc = ours("CRC32", DATA)
    check = body_check(md5=hashlib.md5(DATA).digest(), algorithm="CRC32", expected=crc,
                       sha256=hashlib.sha256(DATA).hexdigest())
    assert check.checksum() is None  # not before the end
    assert drain(check, DATA) == DATA
    assert check.checksum() == Checksum("CRC32", crc)


def test_algorithm_without_value_is_computed() -> None:
    check = body_check(algorithm="sha256")
    drain(check, DATA)
    assert check.checksum() == Checksum("SHA256", b64(hashlib.sha256(DATA).digest()))


def test_no_algorithm_no_checksum() -> None:
    check = body_check()
    assert drain(check, DATA) == DATA and check.checksum() is None


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"md5": hashlib.md5(b"other").digest()}, "BadDigest"),
    ({"algorithm": "CRC32", "expected": ours("CRC32", b"other")}, "BadDigest"),
    ({"algorithm": "SHA1", "expected": ours("SHA1", b"other")}, "BadDigest"),
    ({"sha256": hashlib.sha256(b"other").hexdigest()}, "XAmzContentSHA256Mismatch"),
    ({"sha256": hashlib.sha256(b"other").hexdigest().upper()}, "XAmzContentSHA256Mismatch"),
])
def test_mismatches(kwargs: dict[str, object], code: str) -> None:
    check = body_check(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(S3Error) as err:
        drain(check, DATA)
    assert err.value.code == code
    assert check.checksum() is None


def test_checksum_mismatch_message_is_awss() -> None:
    with pytest.raises(S3Error) as err:
        drain(body_check(algorithm="CRC32", expected=ours("CRC32", b"x")), DATA)
    assert err.value.message == ("The x-amz-checksum-crc32 you specified did not match the "
                                 "calculated checksum.")


def test_signed_payload_is_checked_first() -> None:
    with pytest.raises(S3Error) as err:
        drain(body_check(md5=hashlib.md5(b"x").digest(), sha256="0" * 64), DATA)
    assert err.value.code == "XAmzContentSHA256Mismatch"


def test_trailer_value_is_read_after_the_body() -> None:
    seen: list[str] = []

    def trailers() -> Mapping[str, str]:
        seen.append("asked")
        return {"x-amz-checksum-crc32": ours("CRC32", DATA)}

    check = body_check(algorithm="CRC32", trailers=trailers)
    drain(check, DATA)
    assert seen == ["asked"] and check.checksum() == Checksum("CRC32", ours("CRC32", DATA))
    with pytest.raises(S3Error) as err:
        drain(body_check(algorithm="CRC32", trailers=lambda: {"x-amz-checksum-crc32": CRC}),
              DATA)
    assert err.value.code == "BadDigest"
    for bad in ({}, {"x-amz-checksum-crc32": "garbage"}):
        with pytest.raises(S3Error) as err:
            drain(body_check(algorithm="CRC32", trailers=lambda b=bad: b), DATA)
        assert err.value.code == "InvalidRequest"


def test_bad_sha256_form_is_refused_up_front() -> None:
    with pytest.raises(S3Error):
        body_check(sha256="xyz")
    with pytest.raises(ValueError):
        body_check(expected=CRC)  # a value without its algorithm would go unchecked


# --- composite -------------------------------------------------------------------------------

def test_composite_is_the_checksum_of_the_raw_part_checksums() -> None:
    parts = [b"a" * 10, b"b" * 7, b""]
    values = [ours("SHA256", p) for p in parts]
    raw = b"".join(hashlib.sha256(p).digest() for p in parts)
    assert composite(values, "SHA256") == Checksum(
        "SHA256", f"{b64(hashlib.sha256(raw).digest())}-3")
    crc = composite([ours("CRC32", p) for p in parts], "crc32")
    assert crc.algorithm == "CRC32" and crc.value.endswith("-3")


def test_composite_refuses_a_bad_part_value() -> None:
    with pytest.raises(S3Error) as err:
        composite(["AAAA"], "SHA256")
    assert err.value.code == "InvalidPart"


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=40), st.binary(max_size=40).map(
    lambda raw: raw.decode("utf-8", "surrogateescape"))))
def test_fuzz_content_md5(value: str) -> None:
    try:
        assert len(parse_content_md5(value)) == 16
    except S3Error as err:
        assert err.code == "InvalidDigest"
