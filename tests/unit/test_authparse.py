"""Reading credentials from a request (dfsring.core.authparse): every accepted form parses,
and anything else (fuzzed headers and queries included) returns or raises Unauthenticated,
never another exception, and never shows a secret in its detail."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from dfsring.core.authparse import (
    MAX_EXPIRES_S,
    MAX_HEADER_CHARS,
    MAX_SIGNED_HEADERS,
    UNKNOWN_KEY_SECRET,
    KeyPair,
    SigV4Credential,
    parse_credentials,
    secret_matches,
)
from dfsring.foundation.errors import Unauthenticated

SIG = "a" * 64
CRED = "AKID/20260921/us-east-1/s3/aws4_request"
BOTOCORE_FORM = (f"AWS4-HMAC-SHA256 Credential={CRED}, "
                 f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={SIG}")
AMZ_DATE = ("X-Amz-Date", "20260921T141320Z")
PRESIGNED = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", CRED),
             ("X-Amz-Date", "20260921T141320Z"), ("X-Amz-Expires", "3600"),
             ("X-Amz-SignedHeaders", "host"), ("X-Amz-Signature", SIG)]


def parse(headers: list[tuple[str, str]], query: list[tuple[str, str]] | None = None
          ) -> KeyPair | SigV4Credential | None:
    return parse_credentials(CIMultiDict(headers), query or [])


def refusal(headers: list[tuple[str, str]], query: list[tuple[str, str]] | None = None) -> str:
    with pytest.raises(Unauthenticated) as caught:
        parse(headers, query)
    return str(caught.value)


def test_no_credentials_is_none() -> None:
    assert parse([("Host", "x"), ("Accept", "*/*")], [("a", "1")]) is None


@pytest.mark.parametrize("headers", [
    [("Authorization", "Bearer AK1:s3cr:et/+=")],
    [("authorization", "bearer   AK1:s3cr:et/+=  ")],
    [("X-Api-Key", "AK1:s3cr:et/+=")],
])
def test_key_pairs(headers: list[tuple[str, str]]) -> None:
    assert parse(headers) == KeyPair("AK1", "s3cr:et/+=")


def test_secret_matches() -> None:
    assert secret_matches("s3cr:et", "s3cr:et")
    assert not secret_matches("s3cr:et", "s3cr:eT")
    assert not secret_matches("é\ud800", UNKNOWN_KEY_SECRET)  # no TypeError on non-ASCII


def test_key_pair_repr_hides_the_secret() -> None:
    assert "hunter2" not in repr(KeyPair("AK", "hunter2"))


@pytest.mark.parametrize("value", [
    BOTOCORE_FORM,
    BOTOCORE_FORM.replace(", ", ","),
    BOTOCORE_FORM.replace(", ", " ,  "),
    BOTOCORE_FORM.replace("Credential=", "Credential = ").replace(", Signature", ",Signature"),
    "AWS4-HMAC-SHA256  " + BOTOCORE_FORM.split(" ", 1)[1] + "  ",
])
def test_sigv4_header_spacing_variants(value: str) -> None:
    cred = parse([("Authorization", value), AMZ_DATE])
    assert cred == SigV4Credential("AKID", "20260921", "us-east-1", "s3",
                                   ("host", "x-amz-content-sha256", "x-amz-date"), SIG,
                                   presigned=False, amz_date="20260921T141320Z", expires_s=None)


def test_sigv4_header_takes_the_date_header_when_there_is_no_x_amz_date() -> None:
    cred = parse([("Authorization", BOTOCORE_FORM), ("Date", "Mon, 21 Sep 2026 14:13:20 GMT")])
    assert isinstance(cred, SigV4Credential) and cred.amz_date == "20260921T141320Z"


def test_presigned_query() -> None:
    cred = parse([], [("list-type", "2"), *PRESIGNED])
    assert cred == SigV4Credential("AKID", "20260921", "us-east-1", "s3", ("host",), SIG,
                                   presigned=True, amz_date="20260921T141320Z", expires_s=3600)


def test_signature_in_upper_case_is_read_as_lower_case() -> None:
    cred = parse([("Authorization", BOTOCORE_FORM.replace(SIG, "A" * 64)), AMZ_DATE])
    assert isinstance(cred, SigV4Credential) and cred.signature == SIG


@pytest.mark.parametrize(("headers", "query", "detail"), [
    ([("Authorization", "Bearer A:S"), ("X-Api-Key", "A:S")], [], "more than one"),
    ([("Authorization", BOTOCORE_FORM), AMZ_DATE], PRESIGNED, "more than one"),
    ([("X-Api-Key", "A:S")], PRESIGNED, "more than one"),
    ([("Authorization", "Bearer A:S"), ("authorization", "Bearer A:S")], [], "repeated"),
    ([("X-Api-Key", "A:S"), ("X-API-KEY", "B:S")], [], "repeated"),
    ([], [*PRESIGNED, ("X-Amz-Signature", SIG)], "repeated X-Amz-Signature"),
    ([("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")], [], "unsupported"),
    ([("Authorization", "AWS AKID:c2lnbmF0dXJl")], [], "unsupported"),
    ([("Authorization", "Bearer justatoken")], [], "ACCESS_KEY:SECRET_KEY"),
    ([("Authorization", "Bearer :secret")], [], "access key"),
    ([("Authorization", "Bearer a/b:secret")], [], "access key"),
    ([("Authorization", "Bearer ak:")], [], "secret"),
    ([("Authorization", "Bearer ak:sec ret")], [], "secret"),
    ([("X-Api-Key", "ak:" + "s" * 257)], [], "secret"),
    ([("X-Api-Key", "a" * 129 + ":s")], [], "access key"),
    ([("X-Api-Key", "a:" + "s" * MAX_HEADER_CHARS)], [], "longer than"),
    ([("Authorization", BOTOCORE_FORM)], [], "X-Amz-Date"),
    ([("Authorization", BOTOCORE_FORM), ("X-Amz-Date", "2026-09-21T14:13:20Z")], [],
     "X-Amz-Date"),
    ([("Authorization", BOTOCORE_FORM), ("X-Amz-Date", "20261321T141320Z")], [], "X-Amz-Date"),
    ([("Authorization", BOTOCORE_FORM), ("Date", "yesterday")], [], "Date header"),
    ([("Authorization", BOTOCORE_FORM + ", Extra=1"), AMZ_DATE], [], "malformed"),
    ([("Authorization", BOTOCORE_FORM + ", Signature=" + SIG), AMZ_DATE], [], "repeated"),
    ([("Authorization", BOTOCORE_FORM.replace("Signature=", "Sig=")), AMZ_DATE], [],
     "malformed"),
    ([("Authorization", "AWS4-HMAC-SHA256 Credential=x"), AMZ_DATE], [], "lacks"),
    ([("Authorization", BOTOCORE_FORM.replace(SIG, "g" * 64)), AMZ_DATE], [], "hexadecimal"),
    ([("Authorization", BOTOCORE_FORM.replace("/aws4_request", "/aws5")), AMZ_DATE], [],
     "Credential"),
    ([("Authorization", BOTOCORE_FORM.replace("20260921", "20260931")), AMZ_DATE], [],
     "scope date"),
    ([("Authorization", BOTOCORE_FORM.replace("us-east-1", "US EAST")), AMZ_DATE], [],
     "region"),
    ([("Authorization", BOTOCORE_FORM.replace("host;", "Host;")), AMZ_DATE], [],
     "SignedHeaders"),
    ([("Authorization", BOTOCORE_FORM.replace("host;", "host;host;")), AMZ_DATE], [],
     "twice"),
    ([("Authorization", BOTOCORE_FORM.replace(
        "host;", ";".join(f"h{i}" for i in range(MAX_SIGNED_HEADERS)) + ";")), AMZ_DATE], [],
     f"more than {MAX_SIGNED_HEADERS}"),
    ([], PRESIGNED[:-1], "lacks X-Amz-Signature"),
    ([], [("X-Amz-Algorithm", "AWS4-HMAC-SHA1"), *PRESIGNED[1:]], "X-Amz-Algorithm"),
    ([], [*PRESIGNED[:3], ("X-Amz-Expires", "0"), *PRESIGNED[4:]], "X-Amz-Expires"),
    ([], [*PRESIGNED[:3], ("X-Amz-Expires", str(MAX_EXPIRES_S + 1)), *PRESIGNED[4:]],
     "X-Amz-Expires"),
    ([], [*PRESIGNED[:3], ("X-Amz-Expires", "-5"), *PRESIGNED[4:]], "X-Amz-Expires"),
    ([], [*PRESIGNED[:3], ("X-Amz-Expires", "\uff13\uff16\uff10\uff10"), *PRESIGNED[4:]],
     "X-Amz-Expires"),  # fullwidth digits: int() would read them
])
def test_refusals_say_what_is_wrong(headers: list[tuple[str, str]],
                                    query: list[tuple[str, str]], detail: str) -> None:
    assert detail in refusal(headers, query)


def test_the_maximum_expiry_and_signed_header_count_are_accepted() -> None:
    query = [*PRESIGNED[:3], ("X-Amz-Expires", str(MAX_EXPIRES_S)), *PRESIGNED[4:]]
    assert isinstance(parse([], query), SigV4Credential)
    names = ";".join(["host", *(f"h{i}" for i in range(MAX_SIGNED_HEADERS - 1))])
    value = BOTOCORE_FORM.replace("host;x-amz-content-sha256;x-amz-date", names)
    cred = parse([("Authorization", value), AMZ_DATE])
    assert isinstance(cred, SigV4Credential) and len(cred.signed_headers) == MAX_SIGNED_HEADERS


def test_plain_dict_headers_are_read_case_insensitively() -> None:
    assert parse_credentials({"X-API-KEY": "a:b"}, []) == KeyPair("a", "b")


# --- fuzz ---------------------------------------------------------------------------------

SECRET_MARK = "Zq9SeCrEt"  # a secret nobody else would write; it must never be echoed
PIECES = st.sampled_from([
    "Bearer ", "bearer", "AWS4-HMAC-SHA256 ", "Basic ", ":", "/", ",", ", ", "=", ";", " ",
    "Credential=", "SignedHeaders=", "Signature=", "aws4_request", "20260921", "us-east-1",
    "s3", "host", SIG, "AKID", SECRET_MARK, "\t", "\x00", "é", "\ud800", "%2F"])
FUZZ_VALUE = st.lists(PIECES | st.text(max_size=8), max_size=12).map("".join) | st.text()
NAMES = st.sampled_from(["Authorization", "authorization", "X-Api-Key", "X-Amz-Date", "Date",
                         "Host", "X-Amz-Content-Sha256"])
QUERY_NAMES = st.sampled_from(["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                               "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature",
                               "x-amz-date", "a"])


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(NAMES, FUZZ_VALUE), max_size=4),
       st.lists(st.tuples(QUERY_NAMES, FUZZ_VALUE), max_size=8))
def test_fuzzed_credentials_parse_or_raise_unauthenticated_only(
        headers: list[tuple[str, str]], query: list[tuple[str, str]]) -> None:
    try:
        found = parse(headers, query)
    except Unauthenticated as exc:
        detail = str(exc)
        assert SECRET_MARK not in detail
        assert len(detail) < 200
        return
    if isinstance(found, KeyPair):
        assert found.access_key and found.secret_key and SECRET_MARK not in repr(found)
    elif isinstance(found, SigV4Credential):
        assert len(found.signed_headers) <= MAX_SIGNED_HEADERS
        assert found.expires_s is None or 1 <= found.expires_s <= MAX_EXPIRES_S


NEAR_VALID = [("Authorization", BOTOCORE_FORM), AMZ_DATE, *PRESIGNED]


@settings(max_examples=600, deadline=None)
@given(st.integers(0, len(NEAR_VALID) - 1), st.integers(0, 200), st.integers(0, 40),
       FUZZ_VALUE, st.booleans())
def test_near_valid_credentials_with_one_part_fuzzed(which: int, at: int, cut: int,
                                                     piece: str, presigned: bool) -> None:
    """Reach the deep checks: a valid request with one value spliced."""
    parts = list(NEAR_VALID)
    name, value = parts[which]
    parts[which] = (name, value[:at] + piece + value[at + cut:])
    headers, query = (parts[:2], []) if not presigned else ([], parts[2:])
    try:
        found = parse(headers, query)
    except Unauthenticated as exc:
        assert SECRET_MARK not in str(exc)
        return
    assert found is None or isinstance(found, SigV4Credential)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=100), st.text(max_size=100))
def test_a_secret_never_appears_in_a_refusal(access: str, before: str, after: str) -> None:
    secret = before + SECRET_MARK + after
    for headers in ([("Authorization", f"Bearer {access}:{secret}")],
                    [("X-Api-Key", f"{access}:{secret}")],
                    [("Authorization", secret)], [("Authorization", f"Basic {secret}")]):
        try:
            parse(headers)
        except Unauthenticated as exc:
            assert SECRET_MARK not in str(exc)
