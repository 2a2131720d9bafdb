"""dfsring.s3.routing: which operation a request is, from method, raw path, Host and query."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core.access import Need
from dfsring.s3.errors import S3Error
from dfsring.s3.routing import NEEDS, UNSUPPORTED, Target, parse_target, resolve


def op(method: str, path: str, query: dict[str, str] | None = None,
       headers: dict[str, str] | None = None) -> str:
    return resolve(method, parse_target(path, "127.0.0.1:9000", ""), query or {},
                   headers or {}).op


def code(call: object) -> str:
    assert callable(call)
    with pytest.raises(S3Error) as caught:
        call()
    return caught.value.code


@pytest.mark.parametrize(("method", "path", "query", "headers", "expected"), [
    ("GET", "/", {}, {}, "ListBuckets"),
    ("PUT", "/b1b", {}, {}, "CreateBucket"),
    ("HEAD", "/b1b", {"versioning": ""}, {}, "HeadBucket"),
    ("DELETE", "/b1b/", {}, {}, "DeleteBucket"),
    ("GET", "/b1b", {"location": ""}, {}, "GetBucketLocation"),
    ("GET", "/b1b", {"versioning": ""}, {}, "GetBucketVersioning"),
    ("PUT", "/b1b", {"versioning": ""}, {}, "PutBucketVersioning"),
    ("GET", "/b1b", {"cors": ""}, {}, "GetBucketCors"),
    ("PUT", "/b1b", {"cors": ""}, {}, "PutBucketCors"),
    ("DELETE", "/b1b", {"cors": ""}, {}, "DeleteBucketCors"),
    ("GET", "/b1b", {}, {}, "ListObjects"),
    ("GET", "/b1b", {"list-type": "2", "x-id": "ListObjectsV2"}, {}, "ListObjectsV2"),
    ("GET", "/b1b", {"versions": ""}, {}, "ListObjectVersions"),
    ("GET", "/b1b", {"uploads": ""}, {}, "ListMultipartUploads"),
    ("POST", "/b1b", {"delete": ""}, {}, "DeleteObjects"),
    ("GET", "/b1b/k", {"versionId": "v", "response-content-type": "a/b"}, {}, "GetObject"),
    ("HEAD", "/b1b/k", {}, {}, "HeadObject"),
    ("PUT", "/b1b/k", {"x-id": "PutObject"}, {}, "PutObject"),
    ("PUT", "/b1b/k", {}, {"X-Amz-Copy-Source": "/a/b"}, "CopyObject"),
    ("DELETE", "/b1b/k", {}, {}, "DeleteObject"),
    ("POST", "/b1b/k", {"uploads": ""}, {}, "CreateMultipartUpload"),
    ("PUT", "/b1b/k", {"partNumber": "1", "uploadId": "u"}, {}, "UploadPart"),
    ("PUT", "/b1b/k", {"partNumber": "1", "uploadId": "u"}, {"x-amz-copy-source": "/a/b"},
     "UploadPartCopy"),
    ("POST", "/b1b/k", {"uploadId": "u"}, {}, "CompleteMultipartUpload"),
    ("DELETE", "/b1b/k", {"uploadId": "u"}, {}, "AbortMultipartUpload"),
    ("GET", "/b1b/k", {"uploadId": "u"}, {}, "ListParts"),
])
def test_every_operation_is_routed(method: str, path: str, query: dict[str, str],
                                   headers: dict[str, str], expected: str) -> None:
    assert op(method, path, query, headers) == expected
    assert expected in NEEDS


def test_bucket_settings_need_the_owner_and_listing_buckets_only_a_key() -> None:
    for name in ("PutBucketVersioning", "PutBucketCors", "DeleteBucketCors", "GetBucketCors",
                 "DeleteBucket"):
        assert NEEDS[name] is Need.OWNER
    assert NEEDS["ListBuckets"] is Need.AUTHENTICATED
    assert NEEDS["CreateBucket"] is Need.AUTHENTICATED
    assert NEEDS["GetObject"] is Need.READ and NEEDS["PutObject"] is Need.WRITE


@pytest.mark.parametrize("sub", sorted(UNSUPPORTED))
def test_unsupported_sub_resources_are_not_implemented_on_buckets_and_objects(sub: str) -> None:
    for path in ("/b1b", "/b1b/k"):
        for method in ("GET", "PUT", "DELETE"):
            assert code(lambda m=method, p=path: op(m, p, {sub: ""})) == "NotImplemented"


def test_a_part_needs_both_its_number_and_its_upload() -> None:
    assert code(lambda: op("PUT", "/b1b/k", {"partNumber": "1"})) == "InvalidRequest"
    assert code(lambda: op("GET", "/b1b", {"list-type": "3"})) == "InvalidArgument"
    assert code(lambda: op("PATCH", "/b1b/k")) == "MethodNotAllowed"
    assert code(lambda: op("PUT", "/")) == "MethodNotAllowed"


@pytest.mark.parametrize(("raw", "key"), [
    ("/b1b/a%2Fb", "a/b"), ("/b1b/100%25", "100%"), ("/b1b/a+b", "a+b"),
    ("/b1b/%C3%A9", "é"), ("/b1b/a//b/../c", "a//b/../c"), ("/b1b/%2525", "%25"),
    ("/b1b/k?versionId=x", "k"),
])
def test_the_key_is_the_raw_path_decoded_once(raw: str, key: str) -> None:
    assert parse_target(raw, None, "") == Target("b1b", key)


@given(st.text(min_size=1, max_size=200).filter(
    lambda k: len(k.encode("utf-8", "surrogatepass")) <= 1024 and not any(
        0xD800 <= ord(c) <= 0xDFFF for c in k)))
def test_any_key_encoded_once_comes_back_as_itself(key: str) -> None:
    assert parse_target("/b1b/" + quote(key, safe="/~"), None, "") == Target("b1b", key)


def test_bad_paths_are_s3_errors() -> None:
    assert code(lambda: parse_target("/b1b/%FF", None, "")) == "InvalidURI"
    assert code(lambda: parse_target("/b1b/" + "é" * 513, None, "")) == "KeyTooLongError"
    for bucket in ("dfs..files", "Up", "a_b", "-ab", "ab-", "1.2.3.4", "x" * 64, "a.-b"):
        assert code(lambda b=bucket: parse_target(f"/{b}/k", None, "")) == "InvalidBucketName"


def test_virtual_host_style_takes_the_bucket_from_the_host() -> None:
    assert parse_target("/a%2Fb", "pics.s3.example:9000", "s3.example") == Target("pics", "a/b")
    assert parse_target("/", "pics.s3.example", "s3.example") == Target("pics", None)
    # the domain itself, or another host: path style
    assert parse_target("/pics/k", "s3.example:9000", "s3.example") == Target("pics", "k")
    assert parse_target("/pics/k", "127.0.0.1:9000", "s3.example") == Target("pics", "k")
    assert parse_target("/pics/k", "pics.s3.example", "") == Target("pics", "k")


_METHODS = st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "X"])
_QUERY_NAMES = st.sampled_from(["versioning", "cors", "location", "uploads", "uploadId",
                                "partNumber", "versions", "list-type", "delete", "versionId",
                                "acl", "x-id", "prefix", "tagging", "select", "restore"])


@given(method=_METHODS,
       raw=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x10FFFF,
                                          exclude_categories=("Cs",)), max_size=300),
       host=st.one_of(st.none(), st.text(max_size=80)),
       domain=st.sampled_from(["", "s3.example"]),
       query=st.dictionaries(_QUERY_NAMES, st.text(max_size=8), max_size=4),
       copy=st.booleans())
def test_any_request_line_routes_or_is_an_s3_error(method: str, raw: str, host: str | None,
                                                    domain: str, query: dict[str, str],
                                                    copy: bool) -> None:
    """Fuzz: whatever the path, Host and query, routing answers an operation with a need,
    or a standard S3 error, never another exception (which would be a 500)."""
    headers = {"x-amz-copy-source": "/a/b"} if copy else {}
    try:
        route = resolve(method, parse_target("/" + raw, host, domain), query, headers)
    except S3Error as exc:
        assert exc.status in (400, 405, 416, 501)
        return
    assert route.op in NEEDS
    assert route.bucket is not None or route.op == "ListBuckets"
