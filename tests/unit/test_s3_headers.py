"""dfsring.s3.headers: metadata rules, overrides, copy source, Range, dates, integers; every
parser fuzzed with hypothesis (only S3Error may escape)."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.s3.errors import S3Error
from dfsring.s3.headers import (
    DEFAULT_CONTENT_TYPE,
    http_date,
    metadata_directive,
    object_headers,
    object_meta,
    parse_copy_range,
    parse_copy_source,
    parse_http_date,
    parse_int,
    parse_range,
    response_overrides,
    version_header,
)
from dfsring.s3.model import NULL_VERSION, Checksum, ObjectMeta, ObjectVersion

pytestmark = pytest.mark.unit

# Header values as aiohttp hands them over: UTF-8 with surrogate escapes for other bytes.
header_text = st.one_of(st.text(max_size=80), st.binary(max_size=80).map(
    lambda raw: raw.decode("utf-8", "surrogateescape")))

STREAMING = {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}


# --- object_meta -----------------------------------------------------------------------------

def test_object_meta_defaults() -> None:
    assert object_meta({}) == ObjectMeta(DEFAULT_CONTENT_TYPE, {}, {})


def test_object_meta_keeps_system_and_user_headers() -> None:
    meta = object_meta({
        "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "max-age=60",
        "Content-Disposition": 'attachment; filename="a b.txt"', "Expires": "Thu, 01 Jan 2037",
        "Content-Language": "fr", "Content-Encoding": "gzip", "X-Amz-Meta-Color": " Blue ",
        "x-amz-meta-encoded": "=?UTF-8?B?w6k=?=", "Authorization": "x", "Content-Length": "3"})
    assert meta.content_type == "text/plain; charset=utf-8"
    assert meta.headers == {"cache-control": "max-age=60", "content-language": "fr",
                            "content-disposition": 'attachment; filename="a b.txt"',
                            "content-encoding": "gzip", "expires": "Thu, 01 Jan 2037"}
    assert meta.user == {"color": "Blue", "encoded": "=?UTF-8?B?w6k=?="}


def test_aws_chunked_is_dropped_from_content_encoding_of_streaming_uploads_only() -> None:
    """Regression (versitygw#2427): aws-chunked stored as the object's encoding."""
    assert object_meta({"Content-Encoding": "aws-chunked", **STREAMING}).headers == {}
    assert object_meta({"Content-Encoding": "aws-chunked,gzip", **STREAMING}).headers == {
        "content-encoding": "gzip"}
    assert object_meta({"Content-Encoding": "aws-chunked"}).headers == {
        "content-encoding": "aws-chunked"}


def test_user_metadata_limit_is_2_kib_of_names_and_values() -> None:
    value = "v" * (2048 - len("name"))
    assert object_meta({"x-amz-meta-name": value}).user == {"name": value}
    with pytest.raises(S3Error) as err:
        object_meta({"x-amz-meta-name": value + "v"})
    assert err.value.code == "MetadataTooLarge"
    with pytest.raises(S3Error) as err:
        object_meta({f"x-amz-meta-k{i}": "v" * 100 for i in range(30)})
    assert err.value.code == "MetadataTooLarge"


@pytest.mark.parametrize("headers", [
    {"x-amz-meta-a": "é"}, {"x-amz-meta-a": "a\r\nb"}, {"x-amz-meta-a": "\x00"},
    {"x-amz-meta-": "v"}, {"x-amz-meta-a b": "v"}, {"Content-Type": "a" * 256},
    {"Content-Type": "text/\x7f"}, {"Cache-Control": "é"},
])
def test_object_meta_refusals(headers: dict[str, str]) -> None:
    with pytest.raises(S3Error) as err:
        object_meta(headers)
    assert err.value.code == "InvalidArgument"


@settings(max_examples=300)
@given(st.dictionaries(st.one_of(st.sampled_from(["content-type", "x-amz-meta-a",
                                                  "content-encoding", "expires",
                                                  "x-amz-content-sha256"]),
                                 st.text(max_size=20).map(lambda s: "x-amz-meta-" + s)),
                       st.one_of(st.text(max_size=300), header_text)))
def test_fuzz_object_meta(headers: dict[str, str]) -> None:
    try:
        meta = object_meta(headers)
    except S3Error as err:
        assert err.code in ("InvalidArgument", "MetadataTooLarge")
        return
    for value in (meta.content_type, *meta.headers.values(), *meta.user.values()):
        assert value.isascii() and "\r" not in value and "\n" not in value


# --- overrides, directive ---------------------------------------------------------------------

def test_response_overrides() -> None:
    assert response_overrides({"response-content-type": "text/csv", "versionId": "x",
                               "response-cache-control": "no-cache"}) == {
        "Content-Type": "text/csv", "Cache-Control": "no-cache"}
    for query in ({"response-x": "1"}, {"response-content-type": "a\nb"},
                  {"response-expires": "é"}):
        with pytest.raises(S3Error) as err:
            response_overrides(query)
        assert err.value.code == "InvalidArgument"


def test_metadata_directive() -> None:
    assert metadata_directive({}) == "COPY"
    assert metadata_directive({"X-Amz-Metadata-Directive": "REPLACE"}) == "REPLACE"
    with pytest.raises(S3Error):
        metadata_directive({"x-amz-metadata-directive": "replace"})


# --- copy source ------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("bucket/key", ("bucket", "key", None)),
    ("/bucket/a/b/c", ("bucket", "a/b/c", None)),
    ("/bucket/key?versionId=3HL4kq", ("bucket", "key", "3HL4kq")),
    ("bucket/%26%2B-%C3%A9%22/%20a", ("bucket", '&+-é"/ a', None)),
    ("bucket/a+b", ("bucket", "a+b", None)),  # "+" is not a space in a path
    ("bucket/%253F?versionId=null", ("bucket", "%3F", "null")),  # decoded once only
    ("bucket/q%3Fx", ("bucket", "q?x", None)),
])
def test_parse_copy_source(value: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_copy_source(value) == expected


@pytest.mark.parametrize("value", [
    "", "/", "bucket", "bucket/", "/key-only", "bucket/%ff%fe", "bucket/k?other=1",
    "bucket/k?versionId=", "bucket/k?versionId", "b/" + "k" * 5000])
def test_parse_copy_source_refusals(value: str) -> None:
    with pytest.raises(S3Error) as err:
        parse_copy_source(value)
    assert err.value.code == "InvalidArgument"


def test_regression_copy_source_with_a_byte_that_is_not_utf8() -> None:
    """aiohttp turns such a byte into a surrogate; percent-decoding it raised
    UnicodeEncodeError (a 500) instead of InvalidArgument."""
    with pytest.raises(S3Error) as err:
        parse_copy_source("b/k\udcff")
    assert err.value.code == "InvalidArgument"
    with pytest.raises(S3Error):
        parse_copy_source("b/k?versionId=\udcff")


@settings(max_examples=300)
@given(header_text)
def test_fuzz_copy_source(value: str) -> None:
    try:
        bucket, key, _ = parse_copy_source(value)
    except S3Error as err:
        assert err.code == "InvalidArgument"
        return
    assert bucket and key


# --- object_headers ---------------------------------------------------------------------------

def version(**changes: object) -> ObjectVersion:
    base: dict[str, object] = dict(
        bucket="b", key="k", version_id="v1", size=3, etag="abc",
        last_modified_ms=1_700_000_000_999,
        meta=ObjectMeta("text/plain", {"cache-control": "no-cache"}, {"color": "blue"}))
    base.update(changes)
    return ObjectVersion(**base)  # type: ignore[arg-type]


def test_object_headers() -> None:
    headers = object_headers(version(parts=3, checksum=Checksum("CRC32", "AAAAAA==-3")),
                             checksum_mode=True)
    assert headers == {
        "ETag": '"abc"', "Last-Modified": "Tue, 14 Nov 2023 22:13:20 GMT",
        "Content-Type": "text/plain", "Accept-Ranges": "bytes", "Cache-Control": "no-cache",
        "x-amz-meta-color": "blue", "x-amz-version-id": "v1", "x-amz-mp-parts-count": "3",
        "x-amz-checksum-crc32": "AAAAAA==-3", "x-amz-checksum-type": "COMPOSITE"}


def test_object_headers_null_version_and_checksum_off() -> None:
    headers = object_headers(version(version_id=NULL_VERSION,
                                     checksum=Checksum("SHA1", "x")), checksum_mode=False)
    assert "x-amz-version-id" not in headers
    assert not any(name.startswith("x-amz-checksum") for name in headers)
    assert "x-amz-mp-parts-count" not in headers
    single = object_headers(version(checksum=Checksum("SHA1", "x")), checksum_mode=True)
    assert single["x-amz-checksum-type"] == "FULL_OBJECT"


def test_version_header() -> None:
    assert version_header("null", "") == {}
    assert version_header("null", "Suspended") == {"x-amz-version-id": "null"}
    assert version_header("v1", "Enabled") == {"x-amz-version-id": "v1"}
    assert version_header(None, "Enabled") == {}


# --- Range ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "size", "expected"), [
    ("bytes=0-9", 100, (0, 9)), ("bytes=90-", 100, (90, 99)), ("bytes=-10", 100, (90, 99)),
    ("bytes=0-1000", 100, (0, 99)),
    ("bytes=0-1,5-6", 100, None),  # several ranges: S3 sends the whole object
    ("bytes=abc", 100, None), ("items=0-1", 100, None), ("bytes=5-2", 100, None),
])
def test_parse_range(value: str, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(value, size) == expected


@pytest.mark.parametrize(("value", "size"), [("bytes=100-", 100), ("bytes=0-", 0),
                                             ("bytes=-0", 100)])
def test_unsatisfiable_range_is_invalid_range(value: str, size: int) -> None:
    with pytest.raises(S3Error) as err:
        parse_range(value, size)
    assert err.value.code == "InvalidRange" and err.value.status == 416
    assert err.value.headers == {"Content-Range": f"bytes */{size}"}


@settings(max_examples=300)
@given(header_text, st.integers(0, 10**12))
def test_fuzz_range(value: str, size: int) -> None:
    try:
        found = parse_range(value, size)
    except S3Error as err:
        assert err.code == "InvalidRange"
        return
    if found is not None:
        assert 0 <= found[0] <= found[1] < size


# --- dates and integers -----------------------------------------------------------------------

def test_http_dates() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(1999) == "Thu, 01 Jan 1970 00:00:01 GMT"
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777.0  # RFC 9110 §5.6.7
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777.0
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777.0
    for bad in ("", "yesterday", "Sun, 99 Nov 1994 08:49:37 GMT", "x" * 100):
        assert parse_http_date(bad) is None


@settings(max_examples=300)
@given(st.one_of(header_text, st.integers(-10**12, 10**14).map(
    lambda s: formatdate(s, usegmt=True) if 0 <= s < 253402300800 else str(s))))
def test_fuzz_parse_http_date(value: str) -> None:
    found = parse_http_date(value)
    assert found is None or isinstance(found, float)


def test_parse_int() -> None:
    assert parse_int("0", "max-keys", 0, 1000) == 0
    assert parse_int("1000", "max-keys", 0, 1000) == 1000
    for bad in ("", "-1", "1001", " 7", "1_0", "٣", "+1", "1e3", "9" * 30):
        with pytest.raises(S3Error) as err:
            parse_int(bad, "max-keys", 0, 1000)
        assert err.value.code == "InvalidArgument"


@settings(max_examples=300)
@given(header_text)
def test_fuzz_parse_int(value: str) -> None:
    try:
        assert 1 <= parse_int(value, "partNumber", 1, 10000) <= 10000
    except S3Error as err:
        assert err.code == "InvalidArgument"


@settings(max_examples=300)
@given(st.dictionaries(st.one_of(st.sampled_from(sorted(
    ["response-content-type", "response-expires", "response-x", "versionId"])), header_text),
    header_text, max_size=4))
def test_fuzz_response_overrides(query: dict[str, str]) -> None:
    try:
        found = response_overrides(query)
    except S3Error as err:
        assert err.code == "InvalidArgument"
        return
    assert all(value.isascii() for value in found.values())


@settings(max_examples=200)
@given(header_text)
def test_fuzz_metadata_directive(value: str) -> None:
    try:
        assert metadata_directive({"x-amz-metadata-directive": value}) in ("COPY", "REPLACE")
    except S3Error as err:
        assert err.code == "InvalidArgument"


def test_parse_copy_range() -> None:
    assert parse_copy_range("bytes=0-9", 10) == (0, 9)
    assert parse_copy_range("bytes=5-5", 10) == (5, 5)
    for bad in ("bytes=0-10", "bytes=5-4", "bytes=-5", "bytes=5-", "bytes=0-1,2-3", "0-1",
                "bytes=٣-٤", ""):
        with pytest.raises(S3Error) as err:
            parse_copy_range(bad, 10)
        assert err.value.code == "InvalidArgument"


@settings(max_examples=300)
@given(header_text, st.integers(0, 10**12))
def test_fuzz_copy_range(value: str, size: int) -> None:
    try:
        first, last = parse_copy_range(value, size)
    except S3Error as err:
        assert err.code == "InvalidArgument"
        return
    assert 0 <= first <= last < size
