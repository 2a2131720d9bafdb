"""dfsring.s3.xml: every reply read back by botocore's own S3 response parser (what boto3
and awscli run), and the request bodies S3 clients send parsed into their values."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import botocore.handlers
import botocore.loaders
import pytest
from botocore.model import ServiceModel
from botocore.parsers import RestXMLParser
from defusedxml.ElementTree import fromstring
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core import cors
from dfsring.s3 import listing
from dfsring.s3 import xml as s3xml
from dfsring.s3.errors import S3Error
from dfsring.s3.listing import ListPage, ListQuery
from dfsring.s3.model import (
    BucketInfo,
    Checksum,
    ListEntry,
    ObjectMeta,
    PartInfo,
    UploadInfo,
)

_MODEL = ServiceModel(botocore.loaders.Loader().load_service_model("s3", "service-2"))
NASTY = ["&+-é\"/ a", "%", "a/b/c/d/e", "k" * 1024, "tab\tnew\nline", "<x>&amp;", "+ +"]


def parse(op: str, body: bytes, status: int = 200) -> dict[str, Any]:
    """What botocore hands a boto3 caller for this reply body."""
    shape = _MODEL.operation_model(op).output_shape
    parsed: dict[str, Any] = RestXMLParser().parse(
        {"body": body, "headers": {}, "status_code": status}, shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def entry(key: str, n: int = 1, *, marker: bool = False) -> ListEntry:
    return ListEntry(key=key, version_id=f"v{n}", order=str(n), delete_marker=marker,
                     size=0 if marker else n, etag="" if marker else "d41d8cd98f00b204",
                     last_modified_ms=1_700_000_000_123 + n)


def test_dates_are_iso_with_milliseconds_and_z() -> None:
    assert s3xml.iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert s3xml.iso_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert s3xml.iso_ms(-5) == "1970-01-01T00:00:00.000Z"
    assert s3xml.iso_ms(10**18).startswith("9999-12-31T23:59:59.999Z")


def test_an_error_is_s3_s_error_document() -> None:
    err = S3Error("NoSuchKey", "The specified key does not exist.", resource="/b/k&<")
    body = s3xml.render_error(err, "req-1")
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>')
    shape = _MODEL.operation_model("GetObject").output_shape
    parsed = RestXMLParser().parse({"body": body, "headers": {}, "status_code": 404}, shape)
    assert parsed["Error"] == {"Code": "NoSuchKey",
                               "Message": "The specified key does not exist.",
                               "Resource": "/b/k&<"}
    assert fromstring(body).findtext("RequestId") == "req-1"


def test_list_buckets_owner_and_dates() -> None:
    body = s3xml.render_list_buckets(
        [BucketInfo("a", 1_000, "DKOWNER"), BucketInfo("b-2", 2_500, "DKOWNER")], "DKOWNER")
    parsed = parse("ListBuckets", body)
    assert [b["Name"] for b in parsed["Buckets"]] == ["a", "b-2"]
    assert parsed["Buckets"][1]["CreationDate"].timestamp() == 2.5
    assert parsed["Owner"] == {"ID": "DKOWNER", "DisplayName": "DKOWNER"}


class _Http:
    def __init__(self, body: bytes) -> None:
        self.raw = object()
        self.content = body


def test_location_us_east_1_is_empty_as_s3_answers_it() -> None:
    for region, expected in (("eu-west-3", "eu-west-3"), ("us-east-1", None)):
        parsed: dict[str, Any] = {}
        botocore.handlers.parse_get_bucket_location(
            parsed, _Http(s3xml.render_location(region)))
        assert parsed == {"LocationConstraint": expected}


@pytest.mark.parametrize("state", ["", "Enabled", "Suspended"])
def test_versioning_round_trips(state: str) -> None:
    body = s3xml.render_versioning(state)  # type: ignore[arg-type]
    assert parse("GetBucketVersioning", body).get("Status", "") == state
    if state:
        assert s3xml.parse_versioning(body) == state


def test_cors_round_trips_through_botocore_and_our_parser() -> None:
    rules = (cors.make_rule(["https://app.example", "*"], ["GET", "PUT"], ["*"], 300,
                            ["ETag", "x-amz-version-id"]),
             cors.make_rule(["https://*.cdn.example"], ["HEAD"]))
    body = s3xml.render_cors(cors.canonical(rules))
    parsed = parse("GetBucketCors", body)["CORSRules"]
    assert {"AllowedOrigins": ["*", "https://app.example"], "AllowedMethods": ["GET", "PUT"],
            "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag", "x-amz-version-id"],
            "MaxAgeSeconds": 300} in parsed
    assert s3xml.parse_cors(body) == cors.canonical(rules)


def test_initiate_complete_copy() -> None:
    assert parse("CreateMultipartUpload", s3xml.render_initiate("b", "k &", "u1")) == {
        "Bucket": "b", "Key": "k &", "UploadId": "u1"}
    assert parse("CompleteMultipartUpload",
                 s3xml.render_complete("http://h/b/k", "b", "k", "abc-2")) == {
        "Location": "http://h/b/k", "Bucket": "b", "Key": "k", "ETag": '"abc-2"'}
    copy = parse("CopyObject", s3xml.render_copy_result("abc", 1_500))["CopyObjectResult"]
    assert copy["ETag"] == '"abc"' and copy["LastModified"].timestamp() == 1.5
    part = parse("UploadPartCopy", s3xml.render_copy_result("def", 0, part=True))
    assert part["CopyPartResult"]["ETag"] == '"def"'


def test_delete_result_deleted_markers_and_errors() -> None:
    body = s3xml.render_delete_result(
        [("a", None, False, None), ("b", None, True, "m1"), ("c", "v2", False, None)],
        [("d", "v9", S3Error("AccessDenied", "Access Denied"))])
    parsed = parse("DeleteObjects", body)
    assert parsed["Deleted"] == [
        {"Key": "a"}, {"Key": "b", "DeleteMarker": True, "DeleteMarkerVersionId": "m1"},
        {"Key": "c", "VersionId": "v2"}]
    assert parsed["Errors"] == [{"Key": "d", "VersionId": "v9", "Code": "AccessDenied",
                                 "Message": "Access Denied"}]


def test_list_uploads_and_parts() -> None:
    up = UploadInfo("b", "k/1", "u1", 3_000, ObjectMeta(), "DKOWNER")
    parsed = parse("ListMultipartUploads",
                   s3xml.render_list_uploads("b", "k/", "", "", [up], True, 1))
    assert parsed["IsTruncated"] and parsed["NextKeyMarker"] == "k/1"
    assert parsed["NextUploadIdMarker"] == "u1" and parsed["MaxUploads"] == 1
    assert parsed["Uploads"][0]["Initiator"] == {"ID": "DKOWNER", "DisplayName": "DKOWNER"}
    assert parsed["Uploads"][0]["StorageClass"] == "STANDARD"
    parts = [PartInfo(1, 5, "e1", 10), PartInfo(2, 6, "e2", 20, Checksum("CRC32", "AAAAAA=="))]
    parsed = parse("ListParts", s3xml.render_list_parts(up, parts, 0, False, 1000))
    assert [p["PartNumber"] for p in parsed["Parts"]] == [1, 2]
    assert parsed["Parts"][1]["ChecksumCRC32"] == "AAAAAA=="
    assert parsed["Parts"][0]["ETag"] == '"e1"'
    assert parsed["NextPartNumberMarker"] == 2 and not parsed["IsTruncated"]


# --- listings, through botocore including its encoding-type=url decoding --------------------


def parse_list(op: str, body: bytes, auto_url: bool) -> dict[str, Any]:
    parsed = parse(op, body)
    decode = {"ListObjects": botocore.handlers.decode_list_object,
              "ListObjectsV2": botocore.handlers.decode_list_object_v2,
              "ListObjectVersions": botocore.handlers.decode_list_object_versions}[op]
    decode(parsed, {"encoding_type_auto_set": auto_url})
    return parsed


async def _scan_of(entries: list[ListEntry]) -> listing.Scan:
    async def scan(prefix: str, after: str | None) -> AsyncIterator[ListEntry]:
        for e in sorted(entries, key=lambda e: (e.key, int(e.order))):
            if e.key.startswith(prefix) and (after is None or e.key > after):
                yield e
    return scan


def page_of(entries: list[ListEntry], q: ListQuery, versions: bool) -> ListPage:
    async def go() -> ListPage:
        scan = await _scan_of(entries)
        return await (listing.list_versions(scan, q) if versions
                      else listing.list_objects(scan, q))
    return asyncio.run(go())


@pytest.mark.parametrize("encode_url", [True, False])
def test_v2_with_nasty_keys_reads_back_exactly(encode_url: bool) -> None:
    keys = [k for k in NASTY if encode_url or "\n" not in k] + ["dir/" + k for k in NASTY]
    q = ListQuery(delimiter="/", max_keys=4, start_after="", encode_url=encode_url)
    page = page_of([entry(k) for k in keys], q, versions=False)
    parsed = parse_list("ListObjectsV2", s3xml.render_list("b", q, page, "v2"), encode_url)
    assert [c["Key"] for c in parsed.get("Contents", [])] == [e.key for e in page.entries]
    assert [p["Prefix"] for p in parsed.get("CommonPrefixes", [])] == page.common_prefixes
    assert parsed["KeyCount"] == 4 and parsed["IsTruncated"]
    assert parsed["NextContinuationToken"] == page.next_token
    assert parsed["Delimiter"] == "/" and parsed["MaxKeys"] == 4
    assert parsed.get("EncodingType") == ("url" if encode_url else None)
    assert parsed["Contents"][0]["ETag"] == '"d41d8cd98f00b204"'
    assert parsed["Contents"][0]["StorageClass"] == "STANDARD"


def test_url_encoding_encodes_every_key_field_and_keeps_the_slash() -> None:
    q = ListQuery(prefix="a b/", delimiter="/", start_after="a b/+", token=listing.encode_token(
        "a b/+"), encode_url=True)
    page = ListPage([entry("a b/é&")], [], ["a b/c%/"], True, "a b/c%/", None,
                    listing.encode_token("a b/c%/"))
    body = s3xml.render_list("b", q, page, "v2").decode()
    assert "<Prefix>a%20b/</Prefix>" in body and "<Key>a%20b/%C3%A9%26</Key>" in body
    assert "<StartAfter>a%20b/%2B</StartAfter>" in body and "<Prefix>a%20b/c%25/</Prefix>" in body
    assert "<EncodingType>url</EncodingType>" in body
    v1 = s3xml.render_list("b", q, page, "v1").decode()
    assert "<Marker>a%20b/%2B</Marker>" in v1 and "<NextMarker>a%20b/c%25/</NextMarker>" in v1


def test_v1_next_marker_only_with_a_delimiter_and_a_truncated_page() -> None:
    keys = [entry(k) for k in ["a", "b", "c"]]
    q = ListQuery(max_keys=1)
    page = page_of(keys, q, versions=False)
    parsed = parse_list("ListObjects", s3xml.render_list("b", q, page, "v1"), False)
    assert parsed["IsTruncated"] and "NextMarker" not in parsed and parsed["Marker"] == ""
    q = ListQuery(max_keys=1, delimiter="/", start_after="a")
    page = page_of(keys, q, versions=False)
    parsed = parse_list("ListObjects", s3xml.render_list("b", q, page, "v1"), False)
    assert parsed["NextMarker"] == "b" and parsed["Marker"] == "a"
    q = ListQuery(delimiter="/")
    page = page_of(keys, q, versions=False)
    parsed = parse_list("ListObjects", s3xml.render_list("b", q, page, "v1"), False)
    assert not parsed["IsTruncated"] and "NextMarker" not in parsed


def test_versions_interleave_versions_and_delete_markers_in_order() -> None:
    entries = [entry("k", 1), entry("k", 2, marker=True), entry("k", 3), entry("z é", 4,
                                                                              marker=True)]
    q = ListQuery(max_keys=3, encode_url=True)
    page = page_of(entries, q, versions=True)
    body = s3xml.render_list("b", q, page, "versions")
    root = fromstring(body)
    tags = [child.tag.rpartition("}")[2] for child in root]
    assert tags[-3:] == ["Version", "DeleteMarker", "Version"]
    parsed = parse_list("ListObjectVersions", body, True)
    assert [(v["VersionId"], v["IsLatest"]) for v in parsed["Versions"]] == [
        ("v3", True), ("v1", False)]
    assert parsed["DeleteMarkers"] == [{"Key": "k", "VersionId": "v2", "IsLatest": False,
                                        "LastModified": parsed["DeleteMarkers"][0][
                                            "LastModified"]}]
    assert parsed["IsTruncated"] and parsed["NextKeyMarker"] == "k"
    assert parsed["NextVersionIdMarker"] == "v1" and parsed["KeyMarker"] == ""
    q2 = ListQuery(start_after="k", version_marker="v1", encode_url=True)
    page2 = page_of(entries, q2, versions=True)
    parsed2 = parse_list("ListObjectVersions", s3xml.render_list("b", q2, page2, "versions"),
                         True)
    assert parsed2["KeyMarker"] == "k" and parsed2["VersionIdMarker"] == "v1"
    assert parsed2["DeleteMarkers"][0]["Key"] == "z é" and parsed2["DeleteMarkers"][0][
        "IsLatest"]


def test_text_xml_cannot_carry_is_a_character_reference_not_a_crash() -> None:
    body = s3xml.render_error(S3Error("InvalidArgument", "bad \r\x01\ud800 \ufffe"), "r")
    assert b"&#xD;" in body and b"&#x1;" in body and b"&#xD800;" in body and b"&#xFFFE;" in body
    fine = s3xml.render_error(S3Error("InvalidArgument", "cr \r here"), "r")
    assert fromstring(fine).find("Message").text == "cr \r here"  # type: ignore[union-attr]


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_any_key_survives_url_encoding_through_botocore(key: str) -> None:
    if not key or any("\ud800" <= c <= "\udfff" for c in key):
        return
    q = ListQuery(encode_url=True)
    page = ListPage([entry(key)], [], [], False, None, None, None)
    parsed = parse_list("ListObjectsV2", s3xml.render_list("b", q, page, "v2"), True)
    assert parsed["Contents"][0]["Key"] == key


# --- request bodies --------------------------------------------------------------------------

NSA = f'xmlns="{s3xml.NS}"'


def test_create_bucket_location_constraint() -> None:
    assert s3xml.parse_create_bucket(b"") is None
    assert s3xml.parse_create_bucket(b"  \n") is None
    body = f"<CreateBucketConfiguration {NSA}><LocationConstraint> eu-west-3 "
    assert s3xml.parse_create_bucket((body + "</LocationConstraint>"
                                      "</CreateBucketConfiguration>").encode()) == "eu-west-3"
    assert s3xml.parse_create_bucket(
        b"<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>") is None
    with pytest.raises(S3Error) as info:
        s3xml.parse_create_bucket(b"<CreateBucketConfiguration><LocationConstraint>a b"
                                  b"</LocationConstraint></CreateBucketConfiguration>")
    assert info.value.code == "InvalidLocationConstraint"


def test_delete_keeps_keys_as_written_and_quiet() -> None:
    body = (f"<Delete {NSA}><Quiet>true</Quiet><Object><Key> a&amp;b </Key></Object>"
            "<Object><Key>c</Key><VersionId>v1</VersionId></Object></Delete>").encode()
    assert s3xml.parse_delete(body) == ([(" a&b ", None), ("c", "v1")], True)
    many = "".join(f"<Object><Key>k{i}</Key></Object>" for i in range(1000))
    assert len(s3xml.parse_delete(f"<Delete>{many}</Delete>".encode())[0]) == 1000
    assert s3xml.parse_delete(f"<Delete>{many}</Delete>".encode())[1] is False


def test_complete_strips_quotes_from_etags() -> None:
    body = (b'<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"abc"</ETag>'
            b"</Part><Part><ETag>&quot;def&quot;</ETag><PartNumber> 2 </PartNumber>"
            b"<ChecksumCRC32>x</ChecksumCRC32></Part></CompleteMultipartUpload>")
    assert s3xml.parse_complete(body) == [(1, "abc"), (2, "def")]


def test_cors_from_an_s3_client() -> None:
    body = (f"<CORSConfiguration {NSA}><CORSRule><ID>r1</ID>"
            "<AllowedOrigin>https://App.Example</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
            "<AllowedMethod>PUT</AllowedMethod><AllowedHeader>Content-Type</AllowedHeader>"
            "<ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>999999</MaxAgeSeconds>"
            "</CORSRule></CORSConfiguration>").encode()
    assert s3xml.parse_cors(body) == (cors.make_rule(
        ["https://app.example"], ["GET", "PUT"], ["content-type"], cors.MAX_AGE_S, ["ETag"]),)


def _refused(fn: Any, body: bytes) -> S3Error:
    with pytest.raises(S3Error) as info:
        fn(body)
    return info.value


@pytest.mark.parametrize(("fn", "body", "code"), [
    (s3xml.parse_versioning, b"", "MalformedXML"),
    (s3xml.parse_versioning, b"<VersioningConfiguration/>", "MalformedXML"),
    (s3xml.parse_versioning, b"<VersioningConfiguration><Status>On</Status>"
                             b"</VersioningConfiguration>", "MalformedXML"),
    (s3xml.parse_versioning, b"<VersioningConfiguration><Status>Enabled</Status><MfaDelete>"
                             b"Enabled</MfaDelete></VersioningConfiguration>", "NotImplemented"),
    (s3xml.parse_versioning, b"<Other><Status>Enabled</Status></Other>", "MalformedXML"),
    (s3xml.parse_versioning, b'<VersioningConfiguration xmlns="urn:x"><Status>Enabled</Status>'
                             b"</VersioningConfiguration>", "MalformedXML"),
    (s3xml.parse_versioning, b"<VersioningConfiguration><Status>Enabled</Status><Status>"
                             b"Enabled</Status></VersioningConfiguration>", "MalformedXML"),
    (s3xml.parse_delete, b"<Delete></Delete>", "MalformedXML"),
    (s3xml.parse_delete, b"<Delete><Object><VersionId>v</VersionId></Object></Delete>",
     "MalformedXML"),
    (s3xml.parse_delete, b"<Delete><Object><Key>a<b/></Key></Object></Delete>", "MalformedXML"),
    (s3xml.parse_delete, b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>",
     "MalformedXML"),
    (s3xml.parse_delete, b"<Delete><Quiet>yes</Quiet><Object><Key>k</Key></Object></Delete>",
     "MalformedXML"),
    (s3xml.parse_complete, b"<CompleteMultipartUpload/>", "MalformedXML"),
    (s3xml.parse_complete, b"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>e"
                           b"</ETag></Part></CompleteMultipartUpload>", "InvalidArgument"),
    (s3xml.parse_complete, b"<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber>"
                           b"<ETag>e</ETag></Part></CompleteMultipartUpload>", "InvalidArgument"),
    (s3xml.parse_complete, b"<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber>"
                           b"<ETag>e</ETag></Part></CompleteMultipartUpload>", "InvalidArgument"),
    (s3xml.parse_complete, b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
                           b"<ETag>\"\"</ETag></Part></CompleteMultipartUpload>", "InvalidPart"),
    (s3xml.parse_cors, b"<CORSConfiguration/>", "MalformedXML"),
    (s3xml.parse_cors, b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
                       b"</CORSRule></CORSConfiguration>", "MalformedXML"),
    (s3xml.parse_cors, b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
                       b"<AllowedMethod>TRACE</AllowedMethod></CORSRule></CORSConfiguration>",
     "InvalidRequest"),
    (s3xml.parse_cors, b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
                       b"<AllowedMethod>get</AllowedMethod></CORSRule></CORSConfiguration>",
     "InvalidRequest"),
    (s3xml.parse_cors, b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
                       b"<AllowedMethod>GET</AllowedMethod><AllowedHeader>x-amz-*"
                       b"</AllowedHeader></CORSRule></CORSConfiguration>", "InvalidRequest"),
    (s3xml.parse_cors, b"<CORSConfiguration><CORSRule><AllowedOrigin>ftp:/x</AllowedOrigin>"
                       b"<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
     "InvalidRequest"),
    (s3xml.parse_cors, b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
                       b"<AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>-1</MaxAgeSeconds>"
                       b"</CORSRule></CORSConfiguration>", "MalformedXML"),
    (s3xml.parse_cors, b"<CORSConfiguration>" + b"<CORSRule><AllowedOrigin>*</AllowedOrigin>"
                       b"<AllowedMethod>GET</AllowedMethod></CORSRule>" * 101
                       + b"</CORSConfiguration>", "MalformedXML"),
])
def test_bad_bodies_get_s3_s_code(fn: Any, body: bytes, code: str) -> None:
    assert _refused(fn, body).code == code


BOMB = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
        b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><Delete><Object><Key>'
        b"&lol2;</Key></Object></Delete>")
XXE = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b"<Delete><Object><Key>&x;</Key></Object></Delete>")


@pytest.mark.parametrize("body", [BOMB, XXE, b"<!DOCTYPE Delete><Delete/>",
                                  b"<Delete><Object><Key>k</Key></Object>", b"\xff\xfe<",
                                  b'<?xml version="1.0" encoding="klingon"?><Delete/>'])
def test_dtds_entities_and_broken_xml_are_malformed(body: bytes) -> None:
    assert _refused(s3xml.parse_delete, body).code == "MalformedXML"


def test_a_body_over_one_mebibyte_is_refused_before_parsing() -> None:
    body = b"<Delete>" + b" " * (1 << 20) + b"</Delete>"
    assert _refused(s3xml.parse_delete, body).code == "MaxMessageLengthExceeded"
