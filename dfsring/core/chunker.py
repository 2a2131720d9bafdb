"""Content-defined chunking of a byte stream: FastCDC 2020 with a bounded streaming buffer.

Pure: no I/O, no clocks.

Why content-defined. Files are stored as chunks named by their hash (dfsring.core.contenthash), so
two versions of a file share the chunks they have in common. Fixed-size chunks lose that after
the first inserted or deleted byte, because every later boundary shifts; content-defined
boundaries are chosen by the bytes around them, so an edit moves only the boundaries near it
and the chunks further away are found again (LBFS, Muthitacharoen et al., SOSP 2001).

Why FastCDC. It finds boundaries with the gear rolling hash, one shift and one add per byte, and
adds cut-point skipping (no boundary in the first ``min_size`` bytes of a chunk, which are not
even hashed) and normalized chunking: a boundary needs more zero bits (``mask_s``) before the
average size and fewer (``mask_l``) after it, so chunk sizes bunch around the average (Xia et
al., "FastCDC", USENIX ATC 2016, §3; "The Design of Fast Content-Defined Chunking for
Data Deduplication Based Storage Systems", IEEE TPDS 2020). This is exactly the "v2020"
variant of nlfiedler/fastcdc-rs at normalization level 1, without a seed:

    h = 0 at offset min_size of the chunk; for each byte j after that:
        h = (h << 1) + GEAR[byte j]  (mod 2**64)
        cut before byte j if h & (mask_s if j < avg_size else mask_l) == 0
    with no cut by max_size, cut at max_size. (j runs over even ends: see ``cut_reference``.)

``GEAR`` is derived, not transcribed: entry i is the first 8 bytes (big endian) of MD5 of 64
bytes equal to i, the derivation fastcdc-rs publishes (``examples/table64.rs``); the masks
are the paper's, spread over bits 12-47 so a boundary depends on the last 48 bytes.

Speed. A byte loop in Python does ~5 MB/s; numpy can vectorise the hash (h_j is the sum of
GEAR[b_{j-k}] << k over the last 64 bytes, 6 doubling steps) but measured 88 MB/s; the
``pyfastcdc`` wheel (Cython, same algorithm and table, GIL released while it scans) did
3 600-4 000 MB/s on 256 MiB of random bytes. So the fast path is pyfastcdc, and
``cut_reference`` is the specification it is tested against: the boundaries are a storage
format (dedup across versions depends on them), so a dependency upgrade that changed them
must fail the tests rather than quietly stop deduplicating.

Streaming. A boundary depends only on the ``max_size`` bytes from the chunk's start, so the
chunker cuts a chunk only once ``max_size`` bytes from its start are buffered (or the stream has
ended). Boundaries are therefore the same however the stream is sliced into ``feed`` calls, and
the buffer never holds more than ``max_size`` bytes between calls (``2 * max_size`` during one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pyfastcdc

MIB = 1 << 20
DEFAULT_AVG_SIZE = 2 * MIB
DEFAULT_MIN_SIZE = DEFAULT_AVG_SIZE // 4
DEFAULT_MAX_SIZE = DEFAULT_AVG_SIZE * 4
# The ranges pyfastcdc accepts (its masks cover averages 256 B..4 MiB at normalization 1).
MIN_SIZE_RANGE = (64, 1 * MIB)
AVG_SIZE_RANGE = (256, 4 * MIB)
MAX_SIZE_RANGE = (1024, 16 * MIB)
# levels of normalized chunking (FastCDC 2020 §3.5); fastcdc-rs's default
NORMALIZATION: Literal[0, 1, 2, 3] = 1

ACCELERATED = pyfastcdc.FastCDC.__module__.startswith("pyfastcdc.cy")
"""False if pyfastcdc fell back to its pure-Python code (orders of magnitude slower)."""

_M64 = (1 << 64) - 1
GEAR: tuple[int, ...] = tuple(
    int.from_bytes(hashlib.md5(bytes([i]) * 64, usedforsecurity=False).digest()[:8], "big")
    for i in range(256)
)
# MASKS[bits]: the boundary mask with `bits` one-bits (FastCDC 2020 / fastcdc-rs MASKS).
_MASKS: dict[int, int] = {
    7: 0x0000_0000_1803_5100,
    8: 0x0000_0018_0003_5300,
    9: 0x0000_0190_0035_3000,
    10: 0x0000_5900_0353_0000,
    11: 0x0000_D900_0353_0000,
    12: 0x0000_D901_0353_0000,
    13: 0x0000_D903_0353_0000,
    14: 0x0000_D903_1353_0000,
    15: 0x0000_D90F_0353_0000,
    16: 0x0000_D903_0353_7000,
    17: 0x0000_D907_0353_7000,
    18: 0x0000_D907_0753_7000,
    19: 0x0000_D917_0753_7000,
    20: 0x0000_D917_4753_7000,
    21: 0x0000_D917_6753_7000,
    22: 0x0000_D937_6753_7000,
    23: 0x0000_D937_7753_7000,
}


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """Validated chunk size bounds. Every chunk but a stream's last is min_size..max_size.

    ``avg_size`` must be a power of two (it picks the masks; FastCDC rounds other values to
    one, so the name would lie) and ``min_size`` even (the scan steps two bytes at a time and
    would otherwise allow a chunk of min_size - 1). The mean chunk is about avg_size + min_size
    (cut-point skipping, FastCDC 2020 §3.4): ~2.4 MiB with the defaults.
    """

    min_size: int = DEFAULT_MIN_SIZE
    avg_size: int = DEFAULT_AVG_SIZE
    max_size: int = DEFAULT_MAX_SIZE

    def __post_init__(self) -> None:
        for name, (low, high) in (
            ("min_size", MIN_SIZE_RANGE),
            ("avg_size", AVG_SIZE_RANGE),
            ("max_size", MAX_SIZE_RANGE),
        ):
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        if not self.min_size <= self.avg_size <= self.max_size:
            raise ValueError(
                f"need min_size <= avg_size <= max_size, got {self.min_size}, "
                f"{self.avg_size}, {self.max_size}"
            )
        if self.avg_size & (self.avg_size - 1):
            raise ValueError(f"avg_size must be a power of two, got {self.avg_size}")
        if self.min_size % 2:
            raise ValueError(f"min_size must be even, got {self.min_size}")

    @classmethod
    def for_average(cls, avg_size: int) -> ChunkParams:
        """The usual bounds around an average: min avg/4, max avg*4 (FastCDC's defaults)."""
        return cls(avg_size // 4, avg_size, avg_size * 4)

    @property
    def masks(self) -> tuple[int, int]:
        """(mask_s, mask_l): harder before avg_size, easier after it."""
        bits = self.avg_size.bit_length() - 1
        return _MASKS[bits + NORMALIZATION], _MASKS[bits - NORMALIZATION]


DEFAULT_PARAMS = ChunkParams()


def cut_reference(window: bytes | bytearray | memoryview, params: ChunkParams) -> int:
    """Length of the chunk that starts ``window`` (the specification of the fast path).

    ``window`` is the stream from the chunk's start: at least ``max_size`` bytes, or all that
    is left of the stream. Mirrors fastcdc-rs ``v2020::cut_gear``, which hashes two bytes per
    step and so ends its scan at an even offset: a window of odd length without a boundary
    is cut at its full length without testing its last byte.
    """
    remaining = len(window)
    if remaining <= params.min_size:
        return remaining
    center = params.avg_size
    if remaining > params.max_size:
        remaining = params.max_size
    elif remaining < center:
        center = remaining
    mid, end = center // 2 * 2, remaining // 2 * 2
    mask_s, mask_l = params.masks
    h = 0
    for j in range(params.min_size, end):
        h = ((h << 1) + GEAR[window[j]]) & _M64
        if not h & (mask_s if j < mid else mask_l):
            return j
    return remaining


def boundaries_reference(data: bytes, params: ChunkParams = DEFAULT_PARAMS) -> list[int]:
    """Chunk lengths of a whole input by ``cut_reference`` (slow: ~5 MB/s; for tests)."""
    lengths: list[int] = []
    start = 0
    while start < len(data):
        n = cut_reference(memoryview(data)[start : start + params.max_size], params)
        lengths.append(n)
        start += n
    return lengths


class Chunker:
    """Cuts a stream pushed in with ``feed`` into content-defined chunks.

    Not thread-safe. The scan itself runs without the GIL, so a caller can run ``feed`` in a
    worker thread (e.g. ``asyncio.to_thread``) to keep an event loop responsive.
    """

    __slots__ = ("_buf", "_cdc", "_params", "_room")

    def __init__(
        self,
        min_size: int = DEFAULT_MIN_SIZE,
        avg_size: int = DEFAULT_AVG_SIZE,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        """Raises ValueError for bounds ChunkParams refuses."""
        self._params = ChunkParams(min_size, avg_size, max_size)
        self._cdc = pyfastcdc.FastCDC(
            avg_size,
            min_size=min_size,
            max_size=max_size,
            normalized_chunking=NORMALIZATION,
            seed=0,
        )
        self._room = 2 * max_size  # the buffer is topped up to this, then cut below max_size
        self._buf = bytearray()

    @classmethod
    def from_params(cls, params: ChunkParams) -> Chunker:
        return cls(params.min_size, params.avg_size, params.max_size)

    @property
    def params(self) -> ChunkParams:
        return self._params

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet returned in a chunk (always < max_size between calls)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add the next bytes of the stream; returns the chunks they completed, in order."""
        view = memoryview(data).cast("B")
        out: list[bytes] = []
        pos = 0
        while pos < len(view):
            take = self._room - len(self._buf)
            self._buf += view[pos : pos + take]
            pos += take
            out += self._cut(final=False)
        return out

    def finish(self) -> list[bytes]:
        """End the stream: the remaining chunks (the last may be shorter than min_size).

        The chunker is then empty and can cut another stream.
        """
        return self._cut(final=True)

    def _cut(self, final: bool) -> list[bytes]:
        chunks, consumed = _cut_buffer(self._cdc, self._buf, self._params.max_size, final)
        del self._buf[:consumed]  # O(1): bytearray drops a prefix by moving its start
        return chunks


def _cut_buffer(
    cdc: pyfastcdc.FastCDC, buf: bytearray, max_size: int, final: bool
) -> tuple[list[bytes], int]:
    """Cut the chunks of ``buf`` whose boundary is already decided; (chunks, bytes used).

    A chunk starting at ``start`` is decided once ``buf[start:start + max_size]`` is complete,
    or at the end of the stream. Kept in its own function so that every view of ``buf`` is
    released on return, before the caller resizes it.
    """
    chunks: list[bytes] = []
    start = 0
    if len(buf) < max_size and not final:
        return chunks, start
    cuts: Iterator[pyfastcdc.Chunk] = cdc.cut_buf(memoryview(buf))
    while start < len(buf) and (final or len(buf) - start >= max_size):
        chunk = next(cuts)
        chunks.append(bytes(chunk.data))
        start += chunk.length
    return chunks, start


def split(
    data: bytes | bytearray | memoryview, params: ChunkParams = DEFAULT_PARAMS
) -> list[bytes]:
    """All chunks of a whole in-memory input (the same as feeding it and finishing)."""
    chunker = Chunker.from_params(params)
    return chunker.feed(data) + chunker.finish()
