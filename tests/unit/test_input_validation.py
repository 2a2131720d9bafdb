"""The pure checks behind issue 23 parts 1, 4 and 6: dfsring.core.validate, the typed
parsers of dfsring.http.params, and the wire version of a peer message."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core import validate
from dfsring.core.vclock import DEFAULT_CONTENT_TYPE, Sibling, Versions, VersionVector
from dfsring.files.service import system_name
from dfsring.files.versions import SYSTEM_BUCKET
from dfsring.foundation import errors
from dfsring.http import params
from dfsring.http.kv_api import encode_cursor, served_type
from dfsring.http.protocol import check_transfer_coding
from dfsring.transport.messages import WIRE_VERSION, Ack, MessageError, decode

# --- the wire version ------------------------------------------------------------------------


@pytest.mark.parametrize("version", [float(WIRE_VERSION), True, str(WIRE_VERSION),
                                     WIRE_VERSION + 1])
def test_float_wire_version_is_refused(version: object) -> None:
    raw = msgpack.packb([version, Ack.KIND, True], use_bin_type=True)
    with pytest.raises(MessageError):
        decode(raw, Ack)


def test_the_int_wire_version_is_accepted() -> None:
    assert decode(Ack(True).encode(), Ack) == Ack(True)


# --- dfsring.core.validate -------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["text/plain\r\nX: 1", "a\nb", "a\x00b", "x" * 256, "\x7f"])
def test_content_type_with_control_characters_or_too_long_is_refused(ctype: str) -> None:
    with pytest.raises(errors.BadRequest):
        validate.content_type(ctype)


def test_value_past_the_limit_is_refused_and_a_tombstone_is_not() -> None:
    validate.value(None, 0)
    validate.value(b"x" * 10, 10)
    with pytest.raises(errors.PayloadTooLarge):
        validate.value(b"x" * 11, 10)


def test_versions_with_one_bad_sibling_are_refused() -> None:
    good = Sibling(("a.1", 1), b"v", "text/plain", 1)
    bad = Sibling(("a.1", 2), b"v", "text/plain\r\n", 1)
    clock = VersionVector((("a.1", 2),))
    validate.versions(Versions(clock, (good,)), 10)
    with pytest.raises(errors.BadRequest):
        validate.versions(Versions(clock, (good, bad)), 10)


def test_reserved_buckets_are_refused_from_clients_and_from_peers_unless_system() -> None:
    assert SYSTEM_BUCKET in validate.SYSTEM_BUCKETS  # the files service's writes pass
    with pytest.raises(errors.InvalidKey):
        validate.user_name(SYSTEM_BUCKET, "k")
    assert validate.peer_name(SYSTEM_BUCKET.encode(), b"k").bucket == SYSTEM_BUCKET
    for bucket in (b"x..y", b"\xff", b"UPPER"):
        with pytest.raises(errors.InvalidKey):
            validate.peer_name(bucket, b"k")


def test_keys_are_any_utf8_without_nul() -> None:
    assert validate.key("a\nb\r\tc") == b"a\nb\r\tc"
    for bad in ("", "a\x00b", "\udcff", "k" * 1025):
        with pytest.raises(errors.InvalidKey):
            validate.key(bad)
    with pytest.raises(errors.InvalidKey):
        validate.peer_name(b"b", b"\xff\xfe")


# --- dfsring.http.params ---------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["\u00b2", "\u2460", "\u0661", "\uff11", "", " 1", "+1", "1.0",
                                 "0", "101", "1" * 40])
def test_non_ascii_digits_are_refused_by_ascii_int(raw: str) -> None:
    with pytest.raises(errors.BadRequest):
        params.ascii_int(raw, "limit", 1, 100)


@given(st.text(max_size=12))
def test_ascii_int_raises_only_bad_request(raw: str) -> None:
    try:
        value = params.ascii_int(raw, "n", 0, 10**6)
    except errors.BadRequest:
        return
    assert raw.isascii() and str(value) == raw.lstrip("0").rjust(1, "0")


@pytest.mark.parametrize("raw", ["AAAA", "", "YQ==", "YR", "a b", "*", "A" * 2000, "_w"])
def test_cursor_aaaa_and_other_non_canonical_cursors_are_refused(raw: str) -> None:
    with pytest.raises(errors.BadRequest):
        params.b64_cursor(raw, 1024)


@given(st.text(min_size=1, max_size=50).filter(lambda t: "\x00" not in t
                                                and all(not 0xD800 <= ord(c) <= 0xDFFF
                                                        for c in t)))
def test_a_cursor_the_listing_returned_decodes_to_its_key(key: str) -> None:
    raw = key.encode()
    assert params.b64_cursor(encode_cursor(raw), 1024) == raw


@given(st.binary(max_size=40))
def test_any_cursor_bytes_give_a_key_or_bad_request(junk: bytes) -> None:
    try:
        params.b64_cursor(junk.decode("latin-1"), 1024)
    except errors.BadRequest:
        pass


def test_header_bytes_never_raise_on_surrogate_escapes() -> None:
    assert params.header_bytes("s\udcff") == b"s\xff"


@pytest.mark.parametrize("value", ["gzip, chunked", "gzip", "chunked, gzip", "identity",
                                   "deflate,chunked"])
def test_transfer_codings_other_than_chunked_are_refused(value: str) -> None:
    with pytest.raises(errors.NotImplementedCoding):
        check_transfer_coding(value)


def test_chunked_alone_is_accepted() -> None:
    check_transfer_coding(None)
    check_transfer_coding("chunked")
    check_transfer_coding(" Chunked ")


@pytest.mark.parametrize("stored", ["text/plain\r\nX-Evil: 1", "a\nb", "", "x" * 300])
def test_a_stored_crlf_content_type_is_not_served_as_a_header(stored: str) -> None:
    assert served_type(stored) == DEFAULT_CONTENT_TYPE
    assert served_type("text/plain; charset=utf-8") == "text/plain; charset=utf-8"


def test_a_system_bucket_key_may_hold_nul_as_the_files_service_writes_it() -> None:
    name = system_name("b\x00path")
    assert validate.peer_name(name.bucket_bytes, name.key_bytes) == name
