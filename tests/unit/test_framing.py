"""Checksum framing: every stored value round-trips, and every kind of damage is reported."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dfsring.foundation.errors import CorruptValue, StorageError
from dfsring.storage import FORMAT_V1, HEADER_SIZE, frame, unframe

pytestmark = pytest.mark.unit

payloads = st.binary(max_size=4096)
keys = st.binary(min_size=1, max_size=64)


def test_layout_is_format_byte_crc_big_endian_then_payload() -> None:
    payload = b"hello, ring"
    framed = frame(payload)
    assert framed[0] == FORMAT_V1 == 0x01
    assert framed[1:HEADER_SIZE] == zlib.crc32(payload).to_bytes(4, "big")
    assert framed[HEADER_SIZE:] == payload


def test_empty_payload_round_trips() -> None:
    assert unframe("t", b"k", frame(b"")) == b""
    assert len(frame(b"")) == HEADER_SIZE


@given(payload=payloads)
def test_round_trip(payload: bytes) -> None:
    assert unframe("t", b"k", frame(payload)) == payload


@given(payload=payloads, key=keys, data=st.data())
def test_any_single_bit_flip_is_detected(payload: bytes, key: bytes, data: st.DataObject) -> None:
    """CRC32 catches every single-bit error; flips in the header break the format or the CRC."""
    framed = bytearray(frame(payload))
    position = data.draw(st.integers(0, len(framed) - 1), label="position")
    framed[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    with pytest.raises(CorruptValue) as caught:
        unframe("objects", key, bytes(framed))
    assert caught.value.table == "objects"
    assert caught.value.key == key


@given(payload=payloads, byte=st.integers(0, 255).filter(lambda b: b != FORMAT_V1))
def test_unknown_format_byte_is_detected(payload: bytes, byte: int) -> None:
    framed = bytes([byte]) + frame(payload)[1:]
    with pytest.raises(CorruptValue):
        unframe("t", b"k", framed)


@given(payload=payloads, data=st.data())
def test_data_shorter_than_the_header_is_detected(payload: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, HEADER_SIZE - 1), label="cut")
    with pytest.raises(CorruptValue):
        unframe("t", b"k", frame(payload)[:cut])


@given(payload=payloads.filter(bool), data=st.data())
def test_truncated_payload_is_detected(payload: bytes, data: st.DataObject) -> None:
    keep = data.draw(st.integers(0, len(payload) - 1), label="keep")
    assume(zlib.crc32(payload[:keep]) != zlib.crc32(payload))  # a 2**-32 collision is no bug
    with pytest.raises(CorruptValue):
        unframe("t", b"k", frame(payload)[: HEADER_SIZE + keep])


@given(payload=payloads, extra=st.binary(min_size=1, max_size=64))
def test_appended_garbage_is_detected(payload: bytes, extra: bytes) -> None:
    assume(zlib.crc32(payload + extra) != zlib.crc32(payload))
    with pytest.raises(CorruptValue):
        unframe("t", b"k", frame(payload) + extra)


@given(payload=payloads, crc=st.integers(0, 2**32 - 1))
def test_wrong_crc_is_detected(payload: bytes, crc: int) -> None:
    assume(crc != zlib.crc32(payload))
    framed = bytes([FORMAT_V1]) + crc.to_bytes(4, "big") + payload
    with pytest.raises(CorruptValue):
        unframe("t", b"k", framed)


def test_corrupt_value_is_a_storage_error_naming_table_and_key() -> None:
    with pytest.raises(StorageError, match="failed its checksum") as caught:
        unframe("meta", b"\x00key", b"\x01\x00")
    assert isinstance(caught.value, CorruptValue)
    assert (caught.value.table, caught.value.key) == ("meta", b"\x00key")
