"""aws-chunked request bodies: framing, the chain of chunk signatures, trailers.

Pure: ``ChunkParser`` is a sans-I/O state machine fed bytes (h11's shape); ``AwsChunked``
drives it from an async iterator of body pieces. Sources: S3 "Transferring Payload in
Multiple Chunks" (sigv4-streaming) and "Signature calculations for trailing headers"
(sigv4-streaming-trailers), botocore.httpchecksum.AwsChunkedWrapper (the unsigned form boto3
sends over HTTPS). The AWS example uploads are the test vectors in tests/unit.

Modes (the value of ``x-amz-content-sha256``)::

    STREAMING-AWS4-HMAC-SHA256-PAYLOAD          signed chunks, no trailer
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER  signed chunks, signed trailer
    STREAMING-UNSIGNED-PAYLOAD-TRAILER          plain chunks, unsigned trailer

Framing::

    hex-size[;chunk-signature=SIG] CRLF  data  CRLF   ... repeated
    0[;chunk-signature=SIG] CRLF
    [name:value CRLF ...  [x-amz-trailer-signature:SIG CRLF]]  CRLF

Chunk signature n = HMAC(signing key, "AWS4-HMAC-SHA256-PAYLOAD" LF amz-date LF scope LF
signature n-1 LF sha256("") LF sha256(chunk data)), signature 0 being the request's own
(the seed). Trailer signature = HMAC(key, "AWS4-HMAC-SHA256-TRAILER" LF amz-date LF scope LF
last chunk signature LF sha256("name:value" LF per trailer)).

Invariants and decisions:

- Memory is bounded whatever the sender does: a size line is at most ``MAX_LINE`` bytes, a
  chunk at most ``MAX_CHUNK`` bytes, the trailer block at most ``MAX_TRAILERS`` bytes; data is
  passed on as it arrives (a slice of the received piece), never gathered into a whole chunk.
- Data is yielded before its chunk's signature can be checked (the signature covers the whole
  chunk). A bad signature raises from the iterator, and the object layer never commits a body
  whose iterator raised (model.ObjectLayer), so unverified bytes are never stored.
- Every signature is compared with hmac.compare_digest. Any mismatch, a missing or
  malformed signature in a signed mode, is SignatureDoesNotMatch.
- A body that ends early, or whose decoded length differs from x-amz-decoded-content-length,
  is IncompleteBody. Anything else malformed (bad hex, missing CRLF, bytes after the end,
  a trailer not declared in x-amz-trailer, a declared one missing, a signature in the
  unsigned mode) is InvalidRequest.
- Leniency where real clients differ: trailer lines may end in LF or CRLF; in the signed
  trailer mode empty lines before the trailer signature are skipped (one client sends a
  CRLF between the checksum and its signature); the final empty line may be missing at the
  end of the body. Trailer signatures are accepted over the trailers in the order sent or
  sorted by name (SDKs differ; both are functions of the bytes received). Streaming modes
  other than the three above (ECDSA) are NotImplemented, never stored with their framing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from dfsring.core.authparse import SigV4Credential
from dfsring.core.sigv4 import signing_key
from dfsring.s3.errors import S3Error

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
MODES = (SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER)
MAX_LINE = 4096
MAX_CHUNK = 16 * 1024 * 1024
MAX_TRAILERS = 16 * 1024
MAX_TRAILER_NAMES = 16
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TRAILER_SIGNATURE = "x-amz-trailer-signature"
_SIZE_LINE = re.compile(rb"([0-9a-fA-F]{1,8})(?:;chunk-signature=([^;\s]*))?")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_TRAILER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


@dataclass(frozen=True)
class ChunkSigning:
    """What verifying a signed body's chain needs, from the request's own verified SigV4."""

    key: bytes  # sigv4.signing_key(secret, date, region, "s3")
    amz_date: str
    scope: str  # "YYYYMMDD/region/s3/aws4_request"
    seed_signature: str  # the request's own signature

    @classmethod
    def for_request(cls, cred: SigV4Credential, secret_key: str) -> ChunkSigning:
        """The chain's start for a request sigv4.verify has accepted with ``secret_key``."""
        scope = f"{cred.date}/{cred.region}/{cred.service}/aws4_request"
        return cls(signing_key(secret_key, cred.date, cred.region, cred.service),
                   cred.amz_date, scope, cred.signature)


def is_streaming(content_sha256: str) -> bool:
    """Whether ``x-amz-content-sha256`` announces an aws-chunked body (any STREAMING-* mode,
    so that an unsupported one is refused rather than stored with its framing)."""
    return content_sha256.startswith("STREAMING-")


def trailer_names(value: str | None) -> tuple[str, ...]:
    """The trailer names an ``x-amz-trailer`` header declares, lower-cased; InvalidRequest
    for a malformed or overlong list."""
    if not value:
        return ()
    names = tuple(name.strip().lower() for name in value.split(",") if name.strip())
    if len(names) > MAX_TRAILER_NAMES or not all(_TRAILER_NAME.fullmatch(n) for n in names):
        raise S3Error("InvalidRequest", "The x-amz-trailer header is not valid.")
    return names


def _bad(message: str) -> S3Error:
    return S3Error("InvalidRequest", f"Malformed aws-chunked body: {message}.")


def _mismatch() -> S3Error:
    return S3Error("SignatureDoesNotMatch", "The request signature we calculated does not "
                   "match the signature you provided. Check your key and signing method.")


class _State(Enum):
    SIZE = 1  # reading a chunk-size line
    DATA = 2  # inside a chunk's data
    DATA_END = 3  # expecting the CRLF after a chunk's data
    LAST_END = 4  # expecting the CRLF after the last (empty) chunk of a mode without trailers
    TRAILERS = 5  # reading trailer lines after the last chunk
    DONE = 6  # the body has ended; no byte may follow


class ChunkParser:
    """The aws-chunked state machine. ``feed`` returns the data bytes found in a piece;
    ``end`` is called when the body has no more bytes. Raises S3Error (module docstring)."""

    def __init__(self, mode: str, *, decoded_length: int | None,
                 signing: ChunkSigning | None, trailer_names: Sequence[str]) -> None:
        if mode not in MODES:
            raise S3Error("NotImplemented", f"x-amz-content-sha256 {mode[:64]!r} is not "
                          "supported.")
        self._signed = mode != UNSIGNED_TRAILER
        if self._signed and signing is None:
            raise S3Error("InvalidRequest", f"{mode} needs a request signed with SigV4.")
        self._trailer_mode = mode != SIGNED
        if trailer_names and not self._trailer_mode:
            raise S3Error("InvalidRequest", f"{mode} does not carry trailers.")
        self._signing = signing or ChunkSigning(b"", "", "", "")
        self._previous = self._signing.seed_signature
        self._declared = tuple(trailer_names)
        self._decoded_length = decoded_length
        self._state = _State.SIZE
        self._line = bytearray()
        self._remaining = 0  # data bytes left in the current chunk
        self._chunk_signature = ""
        self._chunk_hash = hashlib.sha256()
        self._decoded = 0
        self._trailer_bytes = 0
        self._trailers: dict[str, str] = {}
        self._trailer_order: list[str] = []
        self._trailer_signature: str | None = None

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def trailers(self) -> Mapping[str, str]:
        return dict(self._trailers)

    def feed(self, piece: bytes) -> list[bytes]:
        """The data bytes in ``piece`` (slices of it, in order)."""
        out: list[bytes] = []
        at = 0
        while at < len(piece):
            if self._state is _State.DATA:
                take = min(self._remaining, len(piece) - at)
                data = piece if take == len(piece) else piece[at:at + take]
                self._on_data(data)
                out.append(data)
                at += take
            elif self._state is _State.DONE:
                raise _bad("bytes after the end of the body")
            elif self._state in (_State.DATA_END, _State.LAST_END):
                at = self._feed_crlf(piece, at)
            else:
                at = self._feed_line(piece, at)
        return out

    def end(self) -> None:
        """The body has ended: accept it or raise."""
        if not self._line and self._state is _State.TRAILERS:
            self._finish_trailers()  # the final empty line may be missing
        elif not self._line and self._state is _State.LAST_END:
            self._finish()
        if self._state is not _State.DONE:
            raise S3Error("IncompleteBody", "The request body ended before the final chunk.")

    # --- chunks ---------------------------------------------------------------------------

    def _feed_crlf(self, piece: bytes, at: int) -> int:
        """Consume the CRLF that ends a chunk (it may be split across pieces)."""
        need = 2 - len(self._line)
        self._line += piece[at:at + need]
        if len(self._line) == 2:
            if self._line != b"\r\n":
                raise _bad("chunk data not followed by CRLF")
            self._line.clear()
            if self._state is _State.LAST_END:
                self._finish()
            else:
                self._verify_chunk()
                self._state = _State.SIZE
        return at + need

    def _feed_line(self, piece: bytes, at: int) -> int:
        """Consume bytes of a size or trailer line from ``piece[at:]``; the next position."""
        newline = piece.find(b"\n", at)
        stop = len(piece) if newline < 0 else newline
        limit = MAX_LINE if self._state is _State.SIZE else MAX_TRAILERS
        if len(self._line) + stop - at > limit:
            raise _bad("a line is too long")
        self._line += piece[at:stop]
        if newline < 0:
            return len(piece)
        line = bytes(self._line)
        self._line.clear()
        if self._state is _State.SIZE:
            self._on_size_line(line)
        else:
            self._on_trailer_line(line)
        return newline + 1

    def _on_size_line(self, line: bytes) -> None:
        if not line.endswith(b"\r"):
            raise _bad("a chunk-size line must end with CRLF")
        match = _SIZE_LINE.fullmatch(line[:-1])
        if match is None:
            raise _bad("bad chunk-size line")
        size = int(match[1], 16)
        if size > MAX_CHUNK:
            raise _bad(f"a chunk is larger than {MAX_CHUNK} bytes")
        signature = match[2]
        if self._signed:
            if signature is None or not _SIGNATURE.fullmatch(signature.decode("latin-1")):
                raise _mismatch()
            self._chunk_signature = signature.decode("ascii")
        elif signature is not None:
            raise _bad("a chunk signature in an unsigned body")
        if self._decoded_length is not None and self._decoded + size > self._decoded_length:
            raise S3Error("IncompleteBody", "The body holds more bytes than "
                          "x-amz-decoded-content-length says.")
        self._chunk_hash = hashlib.sha256()
        self._remaining = size
        if size:
            self._state = _State.DATA
            return
        self._verify_chunk()  # the last chunk: its (empty) data is complete already
        self._state = _State.TRAILERS if self._trailer_mode else _State.LAST_END

    def _on_data(self, data: bytes) -> None:
        self._remaining -= len(data)
        self._decoded += len(data)
        if self._signed:
            self._chunk_hash.update(data)
        if self._remaining == 0:
            self._state = _State.DATA_END

    def _verify_chunk(self) -> None:
        """Check the signature of the chunk whose data is complete; it becomes the previous."""
        if not self._signed:
            return
        text = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", self._signing.amz_date,
                          self._signing.scope, self._previous, EMPTY_SHA256,
                          self._chunk_hash.hexdigest()))
        expected = hmac.digest(self._signing.key, text.encode(), "sha256").hex()
        if not hmac.compare_digest(expected, self._chunk_signature):
            raise _mismatch()
        self._previous = self._chunk_signature

    def _finish(self) -> None:
        if self._decoded_length is not None and self._decoded != self._decoded_length:
            raise S3Error("IncompleteBody", f"The body holds {self._decoded} bytes, "
                          f"x-amz-decoded-content-length says {self._decoded_length}.")
        self._state = _State.DONE

    # --- trailers -------------------------------------------------------------------------

    def _on_trailer_line(self, line: bytes) -> None:
        self._trailer_bytes += len(line) + 1
        if self._trailer_bytes > MAX_TRAILERS:
            raise _bad("the trailers are too long")
        text = line.removesuffix(b"\r").decode("latin-1")
        if text == "":
            if self._signed and self._trailer_signature is None:
                return  # an empty line before the trailer signature (bounded: MAX_TRAILERS)
            self._finish_trailers()
            return
        name, sep, value = text.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not sep or not name:
            raise _bad("a trailer line must be name:value")
        if name == TRAILER_SIGNATURE:
            if not self._signed or self._trailer_signature is not None:
                raise _bad("unexpected trailer signature")
            self._trailer_signature = value
            return
        if self._trailer_signature is not None:
            raise _bad("a trailer after the trailer signature")
        if name not in self._declared:
            raise _bad(f"trailer {name[:64]!r} was not declared in x-amz-trailer")
        if name in self._trailers:
            raise _bad(f"trailer {name!r} sent twice")
        if not value.isascii() or not value.isprintable():
            raise _bad(f"trailer {name!r} has a value that is not printable ASCII")
        self._trailers[name] = value
        self._trailer_order.append(name)

    def _finish_trailers(self) -> None:
        missing = [name for name in self._declared if name not in self._trailers]
        if missing:
            raise _bad(f"declared trailer {missing[0]!r} was not sent")
        if self._signed:
            self._check_trailer_signature()
        self._finish()

    def _check_trailer_signature(self) -> None:
        claimed = self._trailer_signature
        if claimed is None or not _SIGNATURE.fullmatch(claimed):
            raise _mismatch()
        orders = [self._trailer_order, sorted(self._trailer_order)]
        for order in orders:
            block = "".join(f"{name}:{self._trailers[name]}\n" for name in order)
            text = "\n".join(("AWS4-HMAC-SHA256-TRAILER", self._signing.amz_date,
                              self._signing.scope, self._previous,
                              hashlib.sha256(block.encode()).hexdigest()))
            expected = hmac.digest(self._signing.key, text.encode(), "sha256").hex()
            if hmac.compare_digest(expected, claimed):
                return
        raise _mismatch()


class AwsChunked:
    """Decodes one aws-chunked body from an async iterator of received pieces."""

    def __init__(self, mode: str, *, decoded_length: int | None,
                 signing: ChunkSigning | None, trailer_names: Sequence[str]) -> None:
        self._parser = ChunkParser(mode, decoded_length=decoded_length, signing=signing,
                                   trailer_names=trailer_names)

    async def decode(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The object's bytes, as they arrive; raises S3Error on a bad body (at its end for
        what only the end can tell)."""
        async for piece in source:
            for data in self._parser.feed(bytes(piece)):
                yield data
        self._parser.end()

    def trailers(self) -> Mapping[str, str]:
        """The trailers received (lower-case names, signature excluded), once decode ended."""
        if not self._parser.done:
            raise RuntimeError("trailers are known only once the body has been decoded")
        return self._parser.trailers
