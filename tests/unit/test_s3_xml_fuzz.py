"""Fuzz every S3 body and query parser: random bytes, random XML-ish text, and mutations of
valid bodies. Only S3Error may escape (the edge turns it into a 4xx/501 reply); anything else
would be a 500. A thousand examples or more each; each example parses at most a few KiB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfsring.s3 import listing
from dfsring.s3 import xml as s3xml
from dfsring.s3.errors import STATUS, S3Error

PARSERS: dict[str, Callable[[bytes], Any]] = {
    "CreateBucketConfiguration": s3xml.parse_create_bucket,
    "VersioningConfiguration": s3xml.parse_versioning,
    "CORSConfiguration": s3xml.parse_cors,
    "Delete": s3xml.parse_delete,
    "CompleteMultipartUpload": s3xml.parse_complete,
}
CHILDREN = ["LocationConstraint", "Status", "MfaDelete", "CORSRule", "AllowedOrigin",
            "AllowedMethod", "AllowedHeader", "ExposeHeader", "MaxAgeSeconds", "ID", "Quiet",
            "Object", "Key", "VersionId", "Part", "PartNumber", "ETag", "x:Key"]
VALUES = st.one_of(
    st.sampled_from(["", " ", "GET", "get", "*", "https://a.example", "https://*.a.example",
                     "Enabled", "Suspended", "Disabled", "true", "false", "1", "0", "10000",
                     "10001", "-1", "99999999999999999999", '"abc"', "&amp;", "&quot;",
                     "&#0;", "&#x10FFFF;", "&lol;", "\U0001f600", "²", "x-amz-*", "ETag"]),
    st.text(max_size=20).map(lambda t: t.replace("<", "&lt;").replace("&", "&amp;")))
NAMESPACES = st.sampled_from(["", f' xmlns="{s3xml.NS}"', ' xmlns="urn:other"',
                              ' xmlns:x="urn:other"'])
PROLOGUES = st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>',
                             '<?xml version="1.0" encoding="latin-1"?>',
                             '<?xml version="1.0" encoding="nope"?>',
                             '<!DOCTYPE a [<!ENTITY lol "x">]>', "<!-- c -->", "\ufeff"])


@st.composite
def elements(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(st.sampled_from(CHILDREN))
    if depth >= 2 or draw(st.booleans()):
        return f"<{name}>{draw(VALUES)}</{name}>"
    kids = draw(st.lists(elements(depth + 1), max_size=3))  # type: ignore[call-arg]
    return f"<{name}>{''.join(kids)}</{name}>"


@st.composite
def xmlish(draw: st.DrawFn) -> bytes:
    root = draw(st.sampled_from([*PARSERS, "Error", "x:Delete"]))
    kids = draw(st.lists(elements(), max_size=6))  # type: ignore[call-arg]
    text = f"{draw(PROLOGUES)}<{root}{draw(NAMESPACES)}>{''.join(kids)}</{root}>"
    if draw(st.booleans()):  # break it somewhere
        cut = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from(["", "<", "&", "]]>", "\x00", "</a>"]))
        text = text[:cut] + junk + text[cut + draw(st.integers(0, 3)):]
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, "replace")


def only_s3_errors(parser: Callable[[bytes], Any], body: bytes) -> None:
    try:
        parser(body)
    except S3Error as exc:
        assert exc.code in STATUS and 400 <= exc.status < 600


FUZZ = settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.sampled_from(list(PARSERS.values())), st.binary(max_size=300))
def test_random_bytes_give_only_s3_errors(parser: Callable[[bytes], Any], body: bytes) -> None:
    only_s3_errors(parser, body)


@FUZZ
@given(st.sampled_from(list(PARSERS.values())), xmlish())
def test_random_xmlish_bodies_give_only_s3_errors(parser: Callable[[bytes], Any],
                                                  body: bytes) -> None:
    only_s3_errors(parser, body)


QUERY_NAMES = ["prefix", "delimiter", "max-keys", "marker", "start-after",
               "continuation-token", "key-marker", "version-id-marker", "encoding-type"]


@FUZZ
@given(st.dictionaries(st.sampled_from(QUERY_NAMES),
                       st.one_of(st.text(max_size=30), VALUES, st.sampled_from(
                           [listing.encode_token("k"), "1" * 30, "url", "URL"])),
                       max_size=5),
       st.sampled_from(["v1", "v2", "versions"]))
def test_random_list_queries_give_only_invalid_argument(query: dict[str, str],
                                                        kind: str) -> None:
    try:
        q = listing.parse_list_query(query, kind)  # type: ignore[arg-type]
    except S3Error as exc:
        assert exc.code == "InvalidArgument"
    else:
        assert 0 <= q.max_keys <= listing.MAX_KEYS
