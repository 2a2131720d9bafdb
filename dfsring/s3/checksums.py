"""Body integrity for S3 uploads: Content-MD5, ``x-amz-checksum-*`` and signed payload hashes.

Pure (no I/O): the edge hands in the request headers and an async iterator of body pieces;
``BodyCheck.wrap`` passes the pieces through unchanged and raises at the end of the stream if
anything the client claimed about the bytes does not hold. The object layer consumes that
iterator, so a body that fails a check raises inside ``put_object``/``upload_part`` before
any version is written (dfsring.s3.model.ObjectLayer's contract).

Sources: S3 "Checking object integrity" (checksum algorithms, ``x-amz-sdk-checksum-algorithm``,
trailing checksums, composite multipart checksums), PutObject (Content-MD5, BadDigest), the
SigV4 "single chunk" page (``x-amz-content-sha256``, XAmzContentSHA256Mismatch), and
botocore's httpchecksum.py (which headers and trailers SDKs send).

Decisions and invariants:

- A checksum value is the base64 of the big-endian digest: 4 bytes for CRC32/CRC32C, 20 for
  SHA1, 32 for SHA256. A header value that does not decode to that length is refused
  (InvalidRequest) before any byte is read.
- At most one algorithm per request. It may be named by the ``x-amz-checksum-<alg>`` header
  (with its value), ``x-amz-sdk-checksum-algorithm``, ``x-amz-checksum-algorithm``
  (CreateMultipartUpload) or ``x-amz-trailer`` (value arrives in an aws-chunked trailer);
  two that disagree are InvalidRequest, as S3 answers.
- CRC64NVME (S3's newest default) is refused with InvalidRequest: it is not in
  model.CHECKSUM_ALGORITHMS and a pure-Python CRC64 would cap uploads at a few MB/s. boto3
  sends CRC32 unless told otherwise.
- An algorithm named without a value (SDK asked S3 to compute it) is computed and returned by
  ``checksum()``; nothing to verify.
- Order of the end-of-body checks: the signed payload hash first (it is authentication), then
  Content-MD5, then the checksum.
- Hashing is inline, one ``update`` per piece (pieces are at most about 1 MiB). CRC32C is
  google-crc32c (Apache-2.0, C, hardware CRC where the CPU has it); it takes ``bytes`` only,
  so a memoryview piece is copied for CRC32C alone. The other hashers take memoryviews.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Protocol

import google_crc32c

from dfsring.s3.errors import S3Error
from dfsring.s3.model import CHECKSUM_ALGORITHMS, Checksum

DIGEST_SIZE: Mapping[str, int] = {"CRC32": 4, "CRC32C": 4, "SHA1": 20, "SHA256": 32, "MD5": 16}
UNSUPPORTED = frozenset({"CRC64NVME"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_HEADER = 256  # no valid checksum header value or algorithm name is longer


class Hasher(Protocol):
    """The part of hashlib's interface the checks use."""

    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc32:
    """zlib.crc32 as a hasher (CRC-32/ISO-HDLC, what S3 calls CRC32)."""

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(4, "big")


class _Crc32c:
    """CRC-32C (Castagnoli) through google-crc32c."""

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._crc = google_crc32c.extend(self._crc, data if isinstance(data, bytes)
                                         else bytes(data))

    def digest(self) -> bytes:
        return self._crc.to_bytes(4, "big")


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher for CRC32, CRC32C, SHA1, SHA256 or MD5 (any case); InvalidRequest
    for anything else."""
    name = algorithm.upper()
    if name == "CRC32":
        return _Crc32()
    if name == "CRC32C":
        return _Crc32c()
    if name in ("SHA1", "SHA256", "MD5"):
        return hashlib.new(name.lower())
    raise S3Error("InvalidRequest", f"Checksum algorithm {algorithm[:32]!r} is not supported.")


def encode(digest: bytes) -> str:
    """The wire form of a checksum: base64 of the big-endian digest."""
    return base64.b64encode(digest).decode("ascii")


def _decode(value: str, size: int) -> bytes | None:
    """The digest a base64 value carries, or None if it is not exactly ``size`` bytes."""
    if len(value) > _MAX_HEADER or not value.isascii():
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def parse_content_md5(value: str) -> bytes:
    """The 16-byte MD5 a Content-MD5 header carries; InvalidDigest if it is not one."""
    raw = _decode(value.strip(), 16)
    if raw is None:
        raise S3Error("InvalidDigest", "The Content-MD5 you specified was invalid.")
    return raw


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _algorithm_name(value: str, source: str) -> str:
    """An algorithm named in a header, upper-cased; InvalidRequest if unknown."""
    name = value.strip().upper()
    if name in CHECKSUM_ALGORITHMS:
        return name
    if name in UNSUPPORTED:
        raise S3Error("InvalidRequest", f"The {name} checksum algorithm is not supported.")
    raise S3Error("InvalidRequest", f"Value for {source} header is invalid.")


def _from_trailer(value: str) -> str | None:
    """The algorithm an ``x-amz-trailer`` declares (one ``x-amz-checksum-<alg>``)."""
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    checksums = [name for name in names if name.startswith("x-amz-checksum-")]
    if len(checksums) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- trailer.")
    if not checksums:
        return None
    return _algorithm_name(checksums[0].removeprefix("x-amz-checksum-"), "x-amz-trailer")


def requested_checksum(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(algorithm, base64 value) the request asks to be verified or computed.

    The value comes only from an ``x-amz-checksum-<alg>`` header (a trailer's value arrives
    later, through BodyCheck's ``trailers``). InvalidRequest for an unknown algorithm, a
    value of the wrong length or two sources that disagree."""
    low = _lower(headers)
    named: list[str] = []
    value: str | None = None
    for alg in (*CHECKSUM_ALGORITHMS, *sorted(UNSUPPORTED)):
        found = low.get(f"x-amz-checksum-{alg.lower()}")
        if found is not None:
            named.append(_algorithm_name(alg, f"x-amz-checksum-{alg.lower()}"))
            value = found.strip()
    if len(named) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. "
                      "Multiple checksum Types are not allowed.")
    for source in ("x-amz-sdk-checksum-algorithm", "x-amz-checksum-algorithm"):
        if source in low:
            named.append(_algorithm_name(low[source], source))
    if "x-amz-trailer" in low:
        trailer = _from_trailer(low["x-amz-trailer"])
        if trailer is not None and value is not None:
            raise S3Error("InvalidRequest", "A checksum cannot be sent both as a header "
                          "and as a trailer.")
        if trailer is not None:
            named.append(trailer)
    if len(set(named)) > 1:
        raise S3Error("InvalidRequest", "The checksum algorithms named in the request "
                      f"disagree: {', '.join(sorted(set(named)))}.")
    algorithm = named[0] if named else None
    if algorithm is not None and value is not None and _decode(
            value, DIGEST_SIZE[algorithm]) is None:
        raise S3Error("InvalidRequest",
                      f"Value for x-amz-checksum-{algorithm.lower()} header is invalid.")
    return algorithm, value


class BodyCheck:
    """Verifies one request body against everything its headers (and trailers) claim.

    ``expected`` is the ``x-amz-checksum-<algorithm>`` value from a header; when it is None
    and ``trailers`` is given, the value is read from the trailers once the body has ended
    (the aws-chunked decoder's ``trailers``). ``sha256_hex`` is the ``x-amz-content-sha256``
    of a non-streaming signed payload (None for UNSIGNED-PAYLOAD and streaming bodies)."""

    def __init__(self, *, content_md5: bytes | None, algorithm: str | None,
                 expected: str | None, sha256_hex: str | None,
                 trailers: Callable[[], Mapping[str, str]] | None = None) -> None:
        if expected is not None and algorithm is None:
            raise ValueError("a checksum value needs its algorithm (requested_checksum)")
        if sha256_hex is not None and not _HEX64.fullmatch(sha256_hex.lower()):
            raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                          "STREAMING-* or a SHA256 in hex.")
        self._algorithm = None if algorithm is None else _algorithm_name(algorithm,
                                                                         "checksum algorithm")
        self._md5_expected = content_md5
        self._expected = expected
        self._sha256_expected = None if sha256_hex is None else sha256_hex.lower()
        self._trailers = trailers
        self._md5 = hashlib.md5() if content_md5 is not None else None
        self._sha256 = hashlib.sha256() if sha256_hex is not None else None
        self._hasher = new_hasher(self._algorithm) if self._algorithm else None
        self._result: Checksum | None = None
        self._wrapped = False

    async def wrap(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``source`` unchanged; raises at its end if a check fails (see module docstring)."""
        if self._wrapped:
            raise RuntimeError("BodyCheck.wrap may be called once")
        self._wrapped = True
        hashers = [h for h in (self._md5, self._sha256, self._hasher) if h is not None]
        async for piece in source:
            for hasher in hashers:
                hasher.update(piece)
            yield piece
        self._finish()

    def checksum(self) -> Checksum | None:
        """The checksum of the body as verified (or computed), once the body has ended."""
        return self._result

    def _finish(self) -> None:
        if self._sha256 is not None and not hmac.compare_digest(
                self._sha256.hexdigest(), self._sha256_expected or ""):
            raise S3Error("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' "
                          "header does not match what was computed.")
        if self._md5 is not None and self._md5.digest() != self._md5_expected:
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what "
                          "we received.")
        if self._hasher is None or self._algorithm is None:
            return
        computed = encode(self._hasher.digest())
        claimed = self._claimed(self._algorithm)
        if claimed is not None and claimed != computed:
            raise S3Error("BadDigest", f"The x-amz-checksum-{self._algorithm.lower()} you "
                          "specified did not match the calculated checksum.")
        self._result = Checksum(self._algorithm, computed)

    def _claimed(self, algorithm: str) -> str | None:
        """The value the client sent: header first, else its trailer (which must be there)."""
        if self._expected is not None:
            return self._expected.strip()
        if self._trailers is None:
            return None
        name = f"x-amz-checksum-{algorithm.lower()}"
        value = _lower(self._trailers()).get(name)
        if value is None:
            raise S3Error("InvalidRequest", f"The {name} trailer was declared but not sent.")
        if _decode(value.strip(), DIGEST_SIZE[algorithm]) is None:
            raise S3Error("InvalidRequest", f"Value for {name} trailing header is invalid.")
        return value.strip()


def composite(part_checksums: Sequence[str], algorithm: str) -> Checksum:
    """S3's composite multipart checksum: the algorithm over the concatenated raw part
    checksums, base64, then ``-N`` (N parts). InvalidPart if a part's value is not one."""
    name = _algorithm_name(algorithm, "checksum algorithm")
    hasher = new_hasher(name)
    for value in part_checksums:
        raw = _decode(value, DIGEST_SIZE[name])
        if raw is None:
            raise S3Error("InvalidPart", f"A part's {name} checksum is not valid.")
        hasher.update(raw)
    return Checksum(name, f"{encode(hasher.digest())}-{len(part_checksums)}")
