"""AWS Signature Version 4 as S3 checks it: verification for the node, signing for our client.

Sources: AWS "Create a canonical request for Signature Version 4", S3 "Authenticating
Requests: Using the Authorization Header" and "... Using Query Parameters", and botocore's
``S3SigV4Auth`` / ``S3SigV4QueryAuth`` (botocore/auth.py), which tests/unit/test_sigv4.py uses
as the oracle. The canonical request is, one per line::

    METHOD
    canonical URI     the raw path as sent: S3 neither normalises nor re-encodes it
    canonical query   pairs sorted by encoded name then value, AWS URI-encoded (RFC 3986
                      unreserved set kept, everything else %XX uppercase), X-Amz-Signature left
                      out; a name without "=" gets an empty value
    canonical headers "name:value" per signed header in SignedHeaders order, the values of a
                      repeated header joined with ",", each trimmed with inner whitespace runs
                      collapsed to one space
    (empty line)
    signed headers    the SignedHeaders list
    payload hash      x-amz-content-sha256 (UNSIGNED-PAYLOAD when presigned)

The query is checked in two forms: AWS's (each pair decoded, then re-encoded) and, when that
differs, the pairs exactly as on the wire and sorted, which is what botocore signs when the
query is already in the URL. Both are functions of the bytes the node acts on, so accepting
either lets no one change what a signed request means; it lets a client that escapes a
character AWS leaves alone (or the reverse) through, as S3 does.

Invariants:
- The signature is compared with `hmac.compare_digest`, and every refusal that depends on the
  secret has the one detail SIGNATURE_MISMATCH, so a caller that verifies an unknown key with a
  dummy secret answers exactly as for a wrong secret.
- Checks that do not depend on the secret (scope, region, service, clock, payload hash form,
  host signed) come first and may say what is wrong: the caller can see all of it already.
- Pure: the caller passes the time, the secret and the request as received; no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import quote, unquote_to_bytes, urlsplit, urlunsplit

from dfsring.core.authparse import ALGORITHM, AMZ_DATE_FORMAT, SigV4Credential
from dfsring.foundation.errors import Unauthenticated

SERVICE = "s3"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
SIGNATURE_MISMATCH = "signature does not match"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_QUERY_SAFE = "-_.~"
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
# Headers an HTTP client or proxy may add or rewrite after signing (botocore's list).
UNSIGNABLE_HEADERS = frozenset({
    "authorization", "baggage", "connection", "expect", "keep-alive", "proxy-authenticate",
    "proxy-authorization", "te", "traceparent", "tracestate", "trailer", "transfer-encoding",
    "upgrade", "user-agent", "x-amzn-trace-id"})


def verify(cred: SigV4Credential, *, method: str, raw_path: str, raw_query: str,
           headers: Sequence[tuple[str, str]], secret_key: str, region: str, now_s: float,
           max_skew_s: float = 900.0, streaming: bool = False) -> str:
    """Accept a SigV4 request or raise Unauthenticated; return its declared payload hash.

    `streaming`: also accept the signed aws-chunked payloads (STREAMING_SIGNED), whose
    chunk signatures the caller then checks (the S3 edge, dfsring.s3.chunked); the native
    API leaves it off.

    `raw_path` is the path as received (a "?query" tail, as aiohttp's raw_path carries, is
    ignored: the query comes from `raw_query`); `headers` is every header as received."""
    _check_scope(cred, region)
    _check_time(cred, now_s, max_skew_s)
    payload = UNSIGNED_PAYLOAD if cred.presigned else _declared_payload(headers, streaming)
    canonical_headers = _canonical_headers(cred.signed_headers, headers)
    path = raw_path.split("?", 1)[0] or "/"
    key = signing_key(secret_key, cred.date, cred.region, cred.service)
    claimed = _utf8(cred.signature)  # bytes: compare_digest refuses non-ASCII str
    for query in _query_forms(raw_query, cred.presigned):
        creq = "\n".join((method.upper(), path, query, canonical_headers,
                          ";".join(cred.signed_headers), payload))
        expected = _sign_hex(key, string_to_sign(cred.amz_date, _scope(cred), creq))
        if hmac.compare_digest(expected.encode(), claimed):
            return payload
    raise Unauthenticated(SIGNATURE_MISMATCH)


def _check_scope(cred: SigV4Credential, region: str) -> None:
    if cred.service != SERVICE:
        raise Unauthenticated(f"credential scope service must be {SERVICE}")
    if cred.region != region:
        raise Unauthenticated(f"credential scope region must be {region}")
    if cred.date != cred.amz_date[:8]:
        raise Unauthenticated("credential scope date is not the day of X-Amz-Date")
    if "host" not in cred.signed_headers:
        raise Unauthenticated("the host header must be signed")


def _check_time(cred: SigV4Credential, now_s: float, max_skew_s: float) -> None:
    signed_at = _epoch(cred.amz_date)
    if cred.presigned:
        if signed_at + (cred.expires_s or 0) < now_s:
            raise Unauthenticated("presigned URL expired")
        if signed_at - now_s > max_skew_s:
            raise Unauthenticated("request time too skewed")
    elif abs(signed_at - now_s) > max_skew_s:
        raise Unauthenticated("request time too skewed")


def _epoch(amz_date: str) -> float:
    """Seconds since the epoch of a YYYYMMDDTHHMMSSZ time (strptime costs more than all the
    hashing of a small request)."""
    d = amz_date
    try:
        digits = d[:8] + d[9:15]
        if len(d) != 16 or d[8:9] != "T" or d[15:] != "Z" or not digits.isascii() \
                or not digits.isdigit():
            raise ValueError(d)
        when = datetime(int(d[0:4]), int(d[4:6]), int(d[6:8]), int(d[9:11]), int(d[11:13]),
                        int(d[13:15]), tzinfo=UTC)
    except ValueError:
        raise Unauthenticated("X-Amz-Date must be YYYYMMDDTHHMMSSZ") from None
    return when.timestamp()


def _declared_payload(headers: Sequence[tuple[str, str]], streaming: bool = False) -> str:
    values = [v.strip() for k, v in headers if k.lower() == "x-amz-content-sha256"]
    if len(values) != 1:
        raise Unauthenticated("a signed request needs one x-amz-content-sha256 header")
    value = values[0]
    if value in (UNSIGNED_PAYLOAD, STREAMING_UNSIGNED_TRAILER) or _HEX64.fullmatch(value):
        return value
    if streaming and value in STREAMING_SIGNED:
        return value
    if value.startswith("STREAMING-"):
        raise Unauthenticated(f"x-amz-content-sha256 {value[:64]} is not supported yet: "
                              "sign with UNSIGNED-PAYLOAD or the body's SHA-256")
    raise Unauthenticated("x-amz-content-sha256 must be a lowercase hex SHA-256 or "
                          "UNSIGNED-PAYLOAD")


def _canonical_headers(signed: Sequence[str], headers: Sequence[tuple[str, str]]) -> str:
    values: dict[str, list[str]] = {name: [] for name in signed}
    for name, value in headers:
        bucket = values.get(name.lower())
        if bucket is not None:
            bucket.append(" ".join(value.split()))
    lines = []
    for name in signed:
        if not values[name]:
            raise Unauthenticated(f"signed header {name} is not in the request")
        lines.append(f"{name}:{','.join(values[name])}")
    return "\n".join(lines) + "\n"


def _query_forms(raw_query: str, presigned: bool) -> list[str]:
    """The canonical query in AWS's form and, if it differs, as on the wire (module doc)."""
    pairs = [p.partition("=")[::2] for p in raw_query.split("&")] if raw_query else []
    if presigned:
        pairs = [(k, v) for k, v in pairs
                 if k != "X-Amz-Signature" and ("%" not in k or _unquote(k) != b"X-Amz-Signature")]
    aws = _join(sorted((_canonical(k), _canonical(v)) for k, v in pairs if k or v))
    wire = _join(sorted(pairs))
    return [aws] if wire == aws else [aws, wire]


def _join(pairs: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in pairs)


def _canonical(text: str) -> str:
    """A query name or value in AWS's encoding: decoded, then re-encoded (most are made of
    unreserved characters only, which both steps leave alone)."""
    if _UNRESERVED.fullmatch(text):
        return text
    return _aws_encode(_unquote(text))


def _unquote(text: str) -> bytes:
    return unquote_to_bytes(_utf8(text))


def _utf8(text: str) -> bytes:
    """The bytes a received string came from (aiohttp decodes with surrogateescape); a string
    no byte sequence gives (a lone surrogate) still encodes, and can then only mismatch."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _aws_encode(raw: bytes | str) -> str:
    return quote(raw, safe=_QUERY_SAFE)


def _scope(cred: SigV4Credential) -> str:
    return f"{cred.date}/{cred.region}/{cred.service}/aws4_request"


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(_utf8(canonical_request)).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC chain over date, region, service and "aws4_request" (AWS SigV4)."""
    key = hmac.digest(_utf8(f"AWS4{secret_key}"), date.encode(), "sha256")
    for part in (region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def _sign_hex(key: bytes, text: str) -> str:
    return hmac.digest(key, _utf8(text), "sha256").hex()


def sign_headers(method: str, url: str, headers: Mapping[str, str], *, access_key: str,
                 secret_key: str, region: str, now_s: float,
                 payload_sha256: str = UNSIGNED_PAYLOAD) -> dict[str, str]:
    """The headers that sign a request to `url` (Authorization, X-Amz-Date,
    X-Amz-Content-Sha256), to be sent with `headers` exactly as given.

    Every header in `headers` is signed except UNSIGNABLE_HEADERS, and Host is signed as the
    URL names it unless `headers` has one. `url` must be sent as is (already percent-encoded:
    with aiohttp, ``yarl.URL(url, encoded=True)``), since its path is signed raw."""
    amz_date = _amz_date(now_s)
    parts = urlsplit(url)
    signing = {k.lower(): " ".join(v.split()) for k, v in headers.items()
               if k.lower() not in UNSIGNABLE_HEADERS}
    signing.setdefault("host", _host(url))
    signing["x-amz-date"] = amz_date
    signing["x-amz-content-sha256"] = payload_sha256
    names = sorted(signing)
    creq = "\n".join((method.upper(), parts.path or "/", _query_forms(parts.query, False)[0],
                      "".join(f"{n}:{signing[n]}\n" for n in names), ";".join(names),
                      payload_sha256))
    scope = f"{amz_date[:8]}/{region}/{SERVICE}/aws4_request"
    signature = _sign_hex(signing_key(secret_key, amz_date[:8], region, SERVICE),
                          string_to_sign(amz_date, scope, creq))
    return {"Authorization": f"{ALGORITHM} Credential={access_key}/{scope}, "
                             f"SignedHeaders={';'.join(names)}, Signature={signature}",
            "X-Amz-Date": amz_date, "X-Amz-Content-Sha256": payload_sha256}


def presign(method: str, url: str, *, access_key: str, secret_key: str, region: str,
            now_s: float, expires_s: int) -> str:
    """`url` with a presigned query that signs only Host, valid `expires_s` from `now_s`."""
    amz_date = _amz_date(now_s)
    parts = urlsplit(url)
    scope = f"{amz_date[:8]}/{region}/{SERVICE}/aws4_request"
    auth = "&".join(f"{k}={_aws_encode(v)}" for k, v in (
        ("X-Amz-Algorithm", ALGORITHM), ("X-Amz-Credential", f"{access_key}/{scope}"),
        ("X-Amz-Date", amz_date), ("X-Amz-Expires", str(expires_s)),
        ("X-Amz-SignedHeaders", "host")))
    query = f"{parts.query}&{auth}" if parts.query else auth
    creq = "\n".join((method.upper(), parts.path or "/", _query_forms(query, True)[0],
                      f"host:{_host(url)}\n", "host", UNSIGNED_PAYLOAD))
    signature = _sign_hex(signing_key(secret_key, amz_date[:8], region, SERVICE),
                          string_to_sign(amz_date, scope, creq))
    return urlunsplit(parts._replace(query=f"{query}&X-Amz-Signature={signature}"))


def _amz_date(now_s: float) -> str:
    return datetime.fromtimestamp(int(now_s), UTC).strftime(AMZ_DATE_FORMAT)


def _host(url: str) -> str:
    """Host as an HTTP client sends it: lowercase, the port only when not the scheme's default
    (botocore's _host_from_url)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host
