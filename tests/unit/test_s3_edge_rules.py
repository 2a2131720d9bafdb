"""The S3 edge's small pure rules: refusal codes, SigV2 detection, bucket visibility, error
translation, the consistency header, aws-chunked in Content-Encoding, copy ranges."""

from __future__ import annotations

import pytest

from dfsring.core import sigv4
from dfsring.core.access import Principal, Role
from dfsring.foundation import errors
from dfsring.s3.auth import is_sigv2, s3_refusal, visible
from dfsring.s3.context import consistency, has_digest, stored_meta
from dfsring.s3.errors import S3Error
from dfsring.s3.handlers_multipart import copy_range
from dfsring.s3.model import ObjectMeta
from dfsring.s3.translate import to_s3_error


@pytest.mark.parametrize(("detail", "presigned", "expected"), [
    (sigv4.SIGNATURE_MISMATCH, False, "SignatureDoesNotMatch"),
    ("request time too skewed", False, "RequestTimeTooSkewed"),
    ("presigned URL expired", True, "AccessDenied"),
    ("a signed request needs one x-amz-content-sha256 header", False, "InvalidRequest"),
    ("credential scope region must be us-east-1", False, "AuthorizationHeaderMalformed"),
    ("presigned URL lacks X-Amz-Date", True, "AuthorizationQueryParametersError"),
])
def test_sigv4_refusals_become_s3_codes(detail: str, presigned: bool, expected: str) -> None:
    assert s3_refusal(errors.Unauthenticated(detail), presigned).code == expected


def test_an_expired_url_says_request_has_expired() -> None:
    assert s3_refusal(errors.Unauthenticated("presigned URL expired"), True).message == \
        "Request has expired"


def test_signature_version_2_is_recognised_in_both_forms() -> None:
    assert is_sigv2({"Authorization": "AWS AK:c2ln"}, {})
    assert is_sigv2({}, {"AWSAccessKeyId": "AK", "Signature": "x", "Expires": "1"})
    assert not is_sigv2({"Authorization": "AWS4-HMAC-SHA256 Credential=..."}, {})
    assert not is_sigv2({}, {"Signature": "x"})


def test_list_buckets_shows_what_a_key_holds_and_everything_to_admins() -> None:
    names = ["a1a", "b2b", "c3c"]
    key = Principal("K", False, {"b2b": Role.READ})
    assert visible(key, names, True) == {"b2b"}
    assert visible(Principal("R", True, {}), names, True) == set(names)
    assert visible(None, names, True) == set()
    assert visible(None, names, False) == set(names)


@pytest.mark.parametrize(("exc", "expected"), [
    (errors.NotFound("x"), "NoSuchKey"),
    (errors.QuorumNotMet(2, 1), "ServiceUnavailable"),
    (errors.NotReady("x"), "ServiceUnavailable"),
    (errors.PayloadTooLarge(10, 5), "EntityTooLarge"),
    (errors.InvalidKey("bad"), "InvalidArgument"),
    (errors.TooManyRequests("slow", 2.0), "SlowDown"),
    (RuntimeError("boom"), "InternalError"),
    (ValueError("x"), "InternalError"),
])
def test_node_errors_translate_to_s3_codes(exc: Exception, expected: str) -> None:
    err = to_s3_error(exc, "rid")
    assert err.code == expected
    assert "boom" not in err.message


def test_slow_down_keeps_its_retry_after() -> None:
    assert to_s3_error(errors.TooManyRequests("x", 2.5), "r").headers["Retry-After"] == "3"


def test_an_internal_error_names_the_request_id_and_nothing_else() -> None:
    err = to_s3_error(KeyError("/secret/path"), "abc123")
    assert "abc123" in err.message and "secret" not in err.message


def test_the_consistency_header() -> None:
    assert consistency({}) == "quorum"
    assert consistency({"X-Consistency-Level": "Strong"}) == "strong"
    assert consistency({"X-Consistency-Level": "eventual"}) == "eventual"
    with pytest.raises(S3Error) as caught:
        consistency({"X-Consistency-Level": "all"})
    assert caught.value.code == "InvalidArgument"


def test_aws_chunked_is_dropped_from_content_encoding_only_for_streaming_uploads() -> None:
    meta = ObjectMeta(headers={"content-encoding": "aws-chunked,gzip"})
    assert stored_meta(meta, True).headers == {"content-encoding": "gzip"}
    assert stored_meta(ObjectMeta(headers={"content-encoding": "aws-chunked"}),
                       True).headers == {}
    assert stored_meta(meta, False) is meta


def test_delete_objects_accepts_content_md5_or_a_checksum() -> None:
    assert has_digest({"Content-MD5": "x"})
    assert has_digest({"x-amz-checksum-crc32": "x"})
    assert has_digest({"x-amz-sdk-checksum-algorithm": "CRC32"})
    assert not has_digest({"Content-Type": "application/xml"})


def test_copy_source_ranges() -> None:
    assert copy_range(None, 10) == (0, 9)
    assert copy_range("bytes=2-5", 10) == (2, 5)
    for bad, code in (("bytes=5-2", "InvalidRange"), ("bytes=0-10", "InvalidRange"),
                      ("bytes=-5", "InvalidArgument"), ("bytes=1-", "InvalidArgument"),
                      ("items=0-1", "InvalidArgument")):
        with pytest.raises(S3Error) as caught:
            copy_range(bad, 10)
        assert caught.value.code == code, bad


def test_canned_acls_we_can_honour_and_the_rest_refused() -> None:
    from dfsring.s3.acl import canned_acl
    assert canned_acl({}, bucket=True) is False
    for acl in ("private", "bucket-owner-full-control", "Bucket-Owner-Read"):
        assert canned_acl({"x-amz-acl": acl}, bucket=False) is False
        assert canned_acl({"x-amz-acl": acl}, bucket=True) is False
    assert canned_acl({"x-amz-acl": "public-read"}, bucket=True) is True
    refused = [({"x-amz-acl": "public-read"}, False), ({"x-amz-acl": "public-read-write"}, True),
               ({"x-amz-acl": "authenticated-read"}, False),
               ({"x-amz-grant-read": "id=x"}, True)]
    for headers, bucket in refused:
        with pytest.raises(S3Error) as caught:
            canned_acl(headers, bucket=bucket)
        assert caught.value.code == "NotImplemented", headers
