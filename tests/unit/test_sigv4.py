"""SigV4 verification and signing (dfsring.core.sigv4) against botocore's signer as the oracle.

Requests are drawn with hypothesis (methods, paths with unicode, spaces, "+", "%", "~",
repeated slashes and dot segments, queries with empty values, repeated names and unicode,
headers with extra spaces and duplicates), signed by botocore's S3SigV4Auth or
S3SigV4QueryAuth at a frozen time, and handed to `verify` as a server receives them: the raw
path and query as they go on the wire and the header list. `verify` must accept each, and
refuse it once any one signed thing is changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from dfsring.core import sigv4
from dfsring.core.authparse import SigV4Credential, parse_credentials
from dfsring.foundation.errors import Unauthenticated

ACCESS, SECRET, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1"
NOW = 1_790_000_000.0  # 2026-09-21T...: a fixed "now" for every signature
ENDPOINT = "http://node1.example:9000"
Wire = tuple[str, str, list[tuple[str, str]]]


@contextmanager
def frozen(now_s: float) -> Iterator[None]:
    moment = datetime.fromtimestamp(now_s, UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", lambda *a, **k: moment):
        yield


# --- drawing requests --------------------------------------------------------------------

SEGMENT_TEXT = st.one_of(
    st.sampled_from(["", ".", "..", "a b", "a+b", "100%", "~user", "x%2Fy", "é", "日本"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8))
# Clients escape paths differently; S3 signs whatever went on the wire, so both must verify.
PATH_SAFE = st.sampled_from(["~", "/~", "~!*'()@:$,;=+&"])
QUERY_SAFE = st.sampled_from(["-_.~", "-_.~!*'()@:$,;/?+"])  # AWS's, and a looser client's
QUERY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
HEADER_VALUE = st.text(st.sampled_from(list("abcXYZ019 \t-_.:;,/=\"'()")), max_size=12)
HEADER_NAME = st.sampled_from(["X-Amz-Meta-Color", "x-custom", "Content-Type", "X-Extra"])


@st.composite
def raw_paths(draw: st.DrawFn) -> str:
    safe = draw(PATH_SAFE)
    segments = draw(st.lists(SEGMENT_TEXT, min_size=1, max_size=5))
    return "/" + "/".join(quote(s, safe=safe) for s in segments)


@st.composite
def raw_queries(draw: st.DrawFn, aws_encoded: bool = False) -> str:
    safe = "-_.~" if aws_encoded else draw(QUERY_SAFE)
    names = st.sampled_from(["a", "prefix", "list-type", "ключ", "x y"]) | QUERY_TEXT
    pairs = draw(st.lists(st.tuples(names, st.none() | QUERY_TEXT), max_size=5))
    parts = [quote(n, safe=safe) + ("" if v is None else "=" + quote(v, safe=safe))
             for n, v in pairs if n and not n.startswith("X-Amz-")]
    return "&".join(parts)


HEADERS = st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=4)


def url_of(path: str, query: str) -> str:
    return f"{ENDPOINT}{path}" + (f"?{query}" if query else "")


def on_the_wire(request: AWSRequest) -> Wire:
    """The raw path, raw query and header list a server receives for `request`: the HTTP
    client adds Host, and the server's parser strips the whitespace around each value."""
    parts = urlsplit(request.url)
    headers = [("Host", urlsplit(ENDPOINT).netloc)]
    headers += [(k, v.strip(" \t")) for k, v in request.headers.items()]
    return parts.path, parts.query, headers


def sign_with_botocore(method: str, url: str, headers: list[tuple[str, str]], body: bytes,
                       presign_expires: int | None = None) -> AWSRequest:
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name] = value  # appends: duplicates are kept, as on the wire
    creds = Credentials(ACCESS, SECRET)
    with frozen(NOW):
        if presign_expires is None:
            S3SigV4Auth(creds, "s3", REGION).add_auth(request)
        else:
            S3SigV4QueryAuth(creds, "s3", REGION, expires=presign_expires).add_auth(request)
    return request


def credential_of(wire: Wire) -> SigV4Credential:
    _path, query, headers = wire
    cred = parse_credentials(CIMultiDict(headers), parse_qsl(query, keep_blank_values=True))
    assert isinstance(cred, SigV4Credential)
    return cred


def check(wire: Wire, method: str, *, secret: str = SECRET, region: str = REGION,
          now_s: float = NOW, cred: SigV4Credential | None = None) -> str:
    path, query, headers = wire
    return sigv4.verify(cred or credential_of(wire), method=method, raw_path=path,
                        raw_query=query, headers=headers, secret_key=secret, region=region,
                        now_s=now_s)


def refused(wire: Wire, method: str, **kwargs: object) -> str:
    with pytest.raises(Unauthenticated) as caught:
        check(wire, method, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


# --- botocore signs, verify accepts; one change and verify refuses ------------------------

METHODS = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"])


@settings(max_examples=150, deadline=None)
@given(METHODS, raw_paths(), raw_queries(), HEADERS, st.binary(max_size=64))
def test_botocore_header_signature_verifies(method: str, path: str, query: str,
                                            headers: list[tuple[str, str]], body: bytes) -> None:
    request = sign_with_botocore(method, url_of(path, query), headers, body)
    wire = on_the_wire(request)
    assert wire[0] == path and wire[1] == query  # what was signed is what is sent
    assert check(wire, method) == hashlib.sha256(body).hexdigest()


@settings(max_examples=100, deadline=None)
@given(METHODS, raw_paths(), raw_queries(), HEADERS, st.data())
def test_any_one_change_to_a_header_signed_request_is_refused(
        method: str, path: str, query: str, headers: list[tuple[str, str]],
        data: st.DataObject) -> None:
    wire = on_the_wire(sign_with_botocore(method, url_of(path, query), headers, b"body"))
    raw_path, raw_query, sent = wire
    cred = credential_of(wire)
    at = data.draw(st.integers(1, len(raw_path)))
    mutations: list[tuple[Wire, dict[str, object]]] = [
        ((raw_path[:at] + "x" + raw_path[at:], raw_query, sent), {}),
        ((raw_path, raw_query + ("&" if raw_query else "") + "extra=1", sent), {}),
        ((raw_path, raw_query, [("Host", "other.example:9000"), *sent[1:]]), {}),
        (wire, {"secret": SECRET + "x"}),
        (wire, {"region": "eu-west-1"}),
        (wire, {"now_s": NOW + 901}),
        (wire, {"now_s": NOW - 901}),
        (wire, {"cred": _flip_signature_digit(cred, data.draw(st.integers(0, 63)))}),
        (wire, {"cred": _shift_date(cred, 1)}),
    ]
    signed_extra = [i for i, (k, _) in enumerate(sent) if k.lower() in cred.signed_headers
                    and k.lower() not in ("host", "x-amz-date")]
    if signed_extra:
        i = data.draw(st.sampled_from(signed_extra))
        changed = list(sent)
        changed[i] = (sent[i][0], sent[i][1] + "z")
        mutations.append(((raw_path, raw_query, changed), {}))
    for mutated, kwargs in mutations:
        kwargs.setdefault("cred", cred)
        refused(mutated, method, **kwargs)


def _flip_signature_digit(cred: SigV4Credential, i: int) -> SigV4Credential:
    digit = "0" if cred.signature[i] != "0" else "1"
    return _replace(cred, signature=cred.signature[:i] + digit + cred.signature[i + 1:])


def _shift_date(cred: SigV4Credential, seconds: int) -> SigV4Credential:
    moment = datetime.strptime(cred.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    shifted = datetime.fromtimestamp(moment.timestamp() + seconds, UTC)
    amz = shifted.strftime("%Y%m%dT%H%M%SZ")
    return _replace(cred, amz_date=amz, date=amz[:8])


def _replace(cred: SigV4Credential, **changes: object) -> SigV4Credential:
    from dataclasses import replace
    return replace(cred, **changes)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["GET", "PUT", "HEAD"]), raw_paths(), raw_queries(),
       st.integers(1, 604_800), st.data())
def test_botocore_presigned_url_verifies_until_it_expires(method: str, path: str, query: str,
                                                          expires: int,
                                                          data: st.DataObject) -> None:
    wire = on_the_wire(sign_with_botocore(method, url_of(path, query), [], b"",
                                          presign_expires=expires))
    cred = credential_of(wire)
    assert cred.presigned and cred.expires_s == expires
    later = NOW + data.draw(st.integers(0, expires))
    assert check(wire, method, now_s=later) == sigv4.UNSIGNED_PAYLOAD
    assert refused(wire, method, now_s=NOW + expires + 1) == "presigned URL expired"
    raw_path, raw_query, sent = wire
    for mutated, kwargs in [
        ((raw_path + "x", raw_query, sent), {}),
        ((raw_path, raw_query + "&extra=1", sent), {}),
        ((raw_path, raw_query.replace("X-Amz-Expires=", "X-Amz-Expires=1"), sent), {}),
        ((raw_path, raw_query, [("Host", "evil.example")]), {}),
        (wire, {"secret": "not" + SECRET}),
        (wire, {"region": "eu-west-1"}),
        (wire, {"cred": _flip_signature_digit(cred, data.draw(st.integers(0, 63)))}),
    ]:
        refused(mutated, method, **kwargs)  # type: ignore[arg-type]


# --- our signer agrees with botocore's canonicalisation, and with verify ------------------

@settings(max_examples=100, deadline=None)
@given(METHODS, raw_paths(), raw_queries(aws_encoded=True),
       st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=3),
       st.sampled_from([sigv4.UNSIGNED_PAYLOAD, hashlib.sha256(b"x").hexdigest()]))
def test_sign_headers_matches_botocore_and_verifies(method: str, path: str, query: str,
                                                    headers: dict[str, str],
                                                    payload: str) -> None:
    url = url_of(path, query)
    added = sigv4.sign_headers(method, url, headers, access_key=ACCESS, secret_key=SECRET,
                               region=REGION, now_s=NOW, payload_sha256=payload)
    sent = [("Host", "node1.example:9000"), *headers.items(), *added.items()]
    wire = (path, query, sent)
    assert check(wire, method) == payload
    request = AWSRequest(method=method, url=url, headers={**headers, **added})
    del request.headers["Authorization"]
    assert added["Authorization"].endswith("Signature=" + _botocore_signature(
        S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", REGION), request, added["X-Amz-Date"]))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["GET", "PUT"]), raw_paths(), raw_queries(aws_encoded=True),
       st.integers(1, 604_800))
def test_presign_matches_botocore_and_verifies(method: str, path: str, query: str,
                                               expires: int) -> None:
    url = sigv4.presign(method, url_of(path, query), access_key=ACCESS, secret_key=SECRET,
                        region=REGION, now_s=NOW, expires_s=expires)
    parts = urlsplit(url)
    wire = (parts.path, parts.query, [("Host", "node1.example:9000")])
    assert check(wire, method) == sigv4.UNSIGNED_PAYLOAD
    pairs = parts.query.split("&")
    signature = pairs[-1].removeprefix("X-Amz-Signature=")
    unsigned = urlunsplit(parts._replace(query="&".join(pairs[:-1])))
    request = AWSRequest(method=method, url=unsigned)
    amz_date = credential_of(wire).amz_date
    auth = S3SigV4QueryAuth(Credentials(ACCESS, SECRET), "s3", REGION, expires=expires)
    assert signature == _botocore_signature(auth, request, amz_date)


def _botocore_signature(auth: S3SigV4Auth, request: AWSRequest, amz_date: str) -> str:
    request.context["timestamp"] = amz_date
    canonical = auth.canonical_request(request)
    return str(auth.signature(auth.string_to_sign(request, canonical), request))


# --- the rules around the signature ------------------------------------------------------

def signed_get(extra: list[tuple[str, str]] | None = None, now_s: float = NOW,
               payload: str = sigv4.UNSIGNED_PAYLOAD) -> Wire:
    url = url_of("/bucket/key", "")
    headers = dict(extra or [])
    added = sigv4.sign_headers("GET", url, headers, access_key=ACCESS, secret_key=SECRET,
                               region=REGION, now_s=now_s, payload_sha256=payload)
    return ("/bucket/key", "", [("Host", "node1.example:9000"), *headers.items(),
                                *added.items()])


def test_skew_is_allowed_up_to_the_bound_both_ways() -> None:
    check(signed_get(), "GET", now_s=NOW + 900)
    check(signed_get(), "GET", now_s=NOW - 900)
    assert refused(signed_get(), "GET", now_s=NOW + 901) == "request time too skewed"
    assert refused(signed_get(), "GET", now_s=NOW - 901) == "request time too skewed"


def test_presigned_url_dated_in_the_future_beyond_the_skew_is_refused() -> None:
    url = sigv4.presign("GET", url_of("/b/k", ""), access_key=ACCESS, secret_key=SECRET,
                        region=REGION, now_s=NOW + 3600, expires_s=604_800)
    parts = urlsplit(url)
    wire = (parts.path, parts.query, [("Host", "node1.example:9000")])
    assert refused(wire, "GET") == "request time too skewed"
    check(wire, "GET", now_s=NOW + 3600 - 900)


def test_wrong_secret_and_bad_signature_give_one_detail() -> None:
    wire = signed_get()
    cred = credential_of(wire)
    assert refused(wire, "GET", secret="dummy-secret-for-unknown-keys") == \
        sigv4.SIGNATURE_MISMATCH
    assert refused(wire, "GET", cred=_flip_signature_digit(cred, 5)) == sigv4.SIGNATURE_MISMATCH


def test_scope_must_name_this_region_service_s3_and_the_day_of_the_request() -> None:
    wire = signed_get()
    cred = credential_of(wire)
    assert "region" in refused(wire, "GET", region="eu-west-1")
    assert "service" in refused(wire, "GET", cred=_replace(cred, service="iam"))
    assert "date" in refused(wire, "GET", cred=_replace(cred, date="20200101"))


def test_host_must_be_signed() -> None:
    wire = signed_get()
    cred = credential_of(wire)
    others = tuple(h for h in cred.signed_headers if h != "host")
    assert refused(wire, "GET", cred=_replace(cred, signed_headers=others)) == \
        "the host header must be signed"


def test_a_signed_header_missing_from_the_request_is_named() -> None:
    path, query, sent = signed_get([("X-Custom", "1")])
    cred = credential_of((path, query, sent))
    stripped = [(k, v) for k, v in sent if k != "X-Custom"]
    assert refused((path, query, stripped), "GET", cred=cred) == \
        "signed header x-custom is not in the request"


@pytest.mark.parametrize("payload", [sigv4.UNSIGNED_PAYLOAD, sigv4.STREAMING_UNSIGNED_TRAILER,
                                     hashlib.sha256(b"").hexdigest()])
def test_accepted_payload_hashes_are_returned(payload: str) -> None:
    assert check(signed_get(payload=payload), "GET") == payload


def test_streaming_signed_payload_is_refused_as_not_supported_yet() -> None:
    detail = refused(signed_get(payload="STREAMING-AWS4-HMAC-SHA256-PAYLOAD"), "GET")
    assert "STREAMING-AWS4-HMAC-SHA256-PAYLOAD is not supported yet" in detail


@pytest.mark.parametrize("payload", ["", "abc", hashlib.sha256(b"").hexdigest().upper()])
def test_malformed_payload_hash_is_refused(payload: str) -> None:
    assert "x-amz-content-sha256" in refused(signed_get(payload=payload), "GET")


def test_missing_or_repeated_payload_hash_is_refused() -> None:
    path, query, sent = signed_get()
    cred = credential_of((path, query, sent))
    without = [(k, v) for k, v in sent if k != "X-Amz-Content-Sha256"]
    twice = [*sent, ("x-amz-content-sha256", sigv4.UNSIGNED_PAYLOAD)]
    for headers in (without, twice):
        assert "x-amz-content-sha256" in refused((path, query, headers), "GET", cred=cred)


def test_botocore_signing_with_a_date_header_verifies() -> None:
    request = sign_with_botocore("GET", url_of("/b/k", "a=1"),
                                 [("Date", "Mon, 01 Jan 2001 00:00:00 GMT")], b"")
    assert "X-Amz-Date" not in request.headers
    check(on_the_wire(request), "GET")


def test_raw_path_with_a_query_tail_is_cut_at_the_question_mark() -> None:
    path, query, sent = on_the_wire(sign_with_botocore("GET", url_of("/b/k", "a=1"), [], b""))
    check((f"{path}?{query}", query, sent), "GET")


def test_lone_surrogates_in_the_request_are_refused_not_crashed() -> None:
    path, query, sent = signed_get()
    cred = credential_of((path, query, sent))
    refused((path + "\ud800", "a=\udc80\ud800", sent), "GET", cred=cred)


def test_a_hand_made_credential_with_a_non_ascii_signature_is_refused_not_crashed() -> None:
    wire = signed_get()
    cred = _replace(credential_of(wire), signature="é" * 64)
    assert refused(wire, "GET", cred=cred) == sigv4.SIGNATURE_MISMATCH


FUZZ_TEXT = st.text(max_size=40) | st.sampled_from(["%", "%zz", "%C3", "&&", "==", "a=b=c",
                                                    "X-Amz-Signature=1", "\ud800", "?x"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=8), FUZZ_TEXT, FUZZ_TEXT,
       st.lists(st.tuples(st.sampled_from(["Host", "host", "X-Amz-Date", "x-amz-content-sha256",
                                           "X-Custom"]) | st.text(max_size=8), FUZZ_TEXT),
                max_size=6),
       st.booleans(), FUZZ_TEXT)
def test_fuzzed_requests_are_refused_with_unauthenticated_only(
        method: str, path: str, query: str, headers: list[tuple[str, str]], presigned: bool,
        secret: str) -> None:
    cred = _replace(credential_of(signed_get([("X-Custom", "1")])), presigned=presigned,
                    expires_s=3600 if presigned else None)
    try:
        sigv4.verify(cred, method=method, raw_path=path, raw_query=query, headers=headers,
                     secret_key=secret, region=REGION, now_s=NOW)
    except Unauthenticated:
        pass
