"""Laws of dfsring.core.chunker: lossless, slicing-independent, bounded, equal to the reference.

The fast path (pyfastcdc) is checked against ``cut_reference``, the module's pure-Python
specification, on random inputs; small chunk sizes keep the slow reference quick.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core import chunker, manifest
from dfsring.core.chunker import (
    DEFAULT_AVG_SIZE,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    DEFAULT_PARAMS,
    GEAR,
    Chunker,
    ChunkParams,
    boundaries_reference,
    split,
)
from dfsring.core.contenthash import CHUNK_ID_BYTES, chunk_id, chunk_id_hex

pytestmark = pytest.mark.unit

SMALL = ChunkParams(64, 256, 1024)
MEDIUM = ChunkParams.for_average(4096)


def lengths(chunks: list[bytes]) -> list[int]:
    return [len(c) for c in chunks]


def feed_in_pieces(params: ChunkParams, data: bytes, cuts: list[int]) -> list[bytes]:
    """Feed ``data`` split at the offsets ``cuts``; every buffer bound is checked on the way."""
    c = Chunker.from_params(params)
    out: list[bytes] = []
    edges = [0, *sorted(set(cuts)), len(data)]
    for lo, hi in itertools.pairwise(edges):
        out += c.feed(memoryview(data)[lo:hi])
        assert c.buffered < params.max_size
    out += c.finish()
    assert c.buffered == 0
    return out


@st.composite
def data_and_cuts(draw: st.DrawFn, max_len: int = 12_000) -> tuple[bytes, list[int]]:
    seed = draw(st.integers(0, 2**32))
    n = draw(st.integers(0, max_len))
    data = random.Random(seed).randbytes(n)
    cuts = draw(st.lists(st.integers(0, n), max_size=20))
    return data, cuts


# --- parameters -------------------------------------------------------------------------------


def test_defaults() -> None:
    assert DEFAULT_AVG_SIZE == 2 * 1024 * 1024
    assert DEFAULT_MIN_SIZE == DEFAULT_AVG_SIZE // 4
    assert DEFAULT_MAX_SIZE == DEFAULT_AVG_SIZE * 4
    assert Chunker().params == DEFAULT_PARAMS == ChunkParams.for_average(DEFAULT_AVG_SIZE)


@pytest.mark.parametrize(
    ("min_size", "avg_size", "max_size", "message"),
    [
        (32, 256, 1024, "min_size"),
        (64, 128, 1024, "avg_size"),
        (64, 256, 512, "max_size"),
        (64, 8 << 20, 16 << 20, "avg_size"),
        (64, 256, 32 << 20, "max_size"),
        (1024, 512, 2048, "min_size <= avg_size"),
        (64, 4096, 2048, "avg_size <= max_size"),
        (64, 3000, 8192, "power of two"),
        (65, 256, 1024, "even"),
        (64.0, 256, 1024, "min_size"),
        (True, 256, 1024, "min_size"),
    ],
)
def test_bad_parameters_are_refused(
    min_size: object, avg_size: object, max_size: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Chunker(min_size, avg_size, max_size)  # type: ignore[arg-type]


def test_gear_table_is_the_published_one() -> None:
    # fastcdc-rs src/v2020/mod.rs GEAR[0..4], GEAR[255]: the derivation reproduces them
    assert GEAR[:4] == (
        0x3B5D3C7D207E37DC,
        0x784D68BA91123086,
        0xCD52880F882E7298,
        0xEACF8E4E19FDCCA7,
    )
    assert len(GEAR) == 256 and len(set(GEAR)) == 256


def test_the_fast_path_is_compiled() -> None:
    assert chunker.ACCELERATED


def test_manifests_accept_the_largest_chunk() -> None:
    assert chunker.MAX_SIZE_RANGE[1] == manifest.MAX_CHUNK_SIZE


# --- laws -------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(data_and_cuts())
def test_slicing_does_not_change_chunks(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    whole = split(data, SMALL)
    assert b"".join(whole) == data
    assert feed_in_pieces(SMALL, data, cuts) == whole


@settings(max_examples=150, deadline=None)
@given(data_and_cuts())
def test_chunk_sizes_are_bounded(case: tuple[bytes, list[int]]) -> None:
    data, _ = case
    sizes = lengths(split(data, SMALL))
    assert all(SMALL.min_size <= n <= SMALL.max_size for n in sizes[:-1])
    assert all(0 < n <= SMALL.max_size for n in sizes[-1:])


@settings(max_examples=100, deadline=None)
@given(data_and_cuts())
def test_fast_path_equals_reference_small(case: tuple[bytes, list[int]]) -> None:
    data, _ = case
    assert lengths(split(data, SMALL)) == boundaries_reference(data, SMALL)


@pytest.mark.parametrize("avg", [256, 512, 1024, 4096, 16384, 65536])
@pytest.mark.parametrize("seed", [1, 2])
def test_fast_path_equals_reference(avg: int, seed: int) -> None:
    params = ChunkParams.for_average(avg)
    data = random.Random(seed * avg).randbytes(avg * 24 + seed)  # an odd tail on seed 1
    assert lengths(split(data, params)) == boundaries_reference(data, params)


@pytest.mark.parametrize(
    "params", [ChunkParams(64, 256, 1025), ChunkParams(66, 256, 1024), ChunkParams(64, 1024, 1024)]
)
def test_fast_path_equals_reference_odd_bounds(params: ChunkParams) -> None:
    data = random.Random(5).randbytes(50_000)
    assert lengths(split(data, params)) == boundaries_reference(data, params)


def test_fast_path_equals_reference_default_sizes() -> None:
    data = random.Random(11).randbytes(8 << 20)
    sizes = lengths(split(data))
    assert sizes == boundaries_reference(data)
    assert len(sizes) >= 3


def test_low_entropy_input_is_cut_at_max_size() -> None:
    data = bytes(10 * MEDIUM.max_size + 5)
    sizes = lengths(split(data, MEDIUM))
    assert sizes == boundaries_reference(data, MEDIUM)
    assert sizes == [MEDIUM.max_size] * 10 + [5]


def test_empty_stream_has_no_chunks() -> None:
    c = Chunker()
    assert c.feed(b"") == [] and c.finish() == []


def test_feed_accepts_any_contiguous_buffer() -> None:
    words = array.array("I", range(5000))
    data = words.tobytes()
    c = Chunker.from_params(SMALL)
    assert c.feed(words) + c.finish() == split(data, SMALL)
    c2 = Chunker.from_params(SMALL)
    assert c2.feed(bytearray(data)) + c2.finish() == split(data, SMALL)


def test_finish_resets_for_another_stream() -> None:
    data = random.Random(3).randbytes(30_000)
    c = Chunker.from_params(SMALL)
    first = c.feed(data) + c.finish()
    assert c.feed(data) + c.finish() == first


def test_large_feed_keeps_the_buffer_bounded() -> None:
    data = random.Random(4).randbytes(100 * MEDIUM.max_size)
    c = Chunker.from_params(MEDIUM)
    out = c.feed(data)
    assert c.buffered < MEDIUM.max_size
    assert out + c.finish() == split(data, MEDIUM)


def test_an_edit_keeps_most_chunks() -> None:
    """1 MiB rewritten in the middle of 100 MiB: only the chunks around it change."""
    rng = random.Random(2024)
    original = rng.randbytes(100 << 20)
    middle = 50 << 20
    edited = original[:middle] + rng.randbytes(1 << 20) + original[middle + (1 << 20) :]
    before = {chunk_id(c) for c in split(original)}
    after = [chunk_id(c) for c in split(edited)]
    shared = sum(1 for h in after if h in before)
    assert shared / len(before) > 0.9
    assert len(after) - shared <= 4


def test_an_insertion_keeps_most_chunks() -> None:
    rng = random.Random(7)
    original = rng.randbytes(2 << 20)
    edited = original[:1_000_000] + b"inserted" + original[1_000_000:]
    before = {chunk_id(c) for c in split(original, MEDIUM)}
    after = [chunk_id(c) for c in split(edited, MEDIUM)]
    assert sum(1 for h in after if h not in before) <= 3


# --- chunk ids --------------------------------------------------------------------------------


@given(st.binary(max_size=5000))
def test_chunk_id_is_sha256(data: bytes) -> None:
    assert chunk_id(data) == hashlib.sha256(data).digest()
    assert len(chunk_id(memoryview(data))) == CHUNK_ID_BYTES
    assert chunk_id_hex(data) == chunk_id(data).hex()
