"""Which credentials a request carries, read from its headers and query without trusting them.

Three ways to authenticate on the native API (CONTRACT v2 "Authentication on the native API"):

- ``Authorization: Bearer ACCESS:SECRET`` or ``X-Api-Key: ACCESS:SECRET`` for simple clients
  (the secret travels, so only over TLS or loopback);
- ``Authorization: AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request,
  SignedHeaders=a;b, Signature=hex`` (AWS Signature V4, header form);
- the presigned query (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
  ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``; S3 "Authenticating
  Requests: Using Query Parameters").

This module only reads and bounds them; dfsring.core.sigv4 checks a signature. Rules:

- No credentials at all gives None: the caller decides whether the route is public.
- Anything malformed, oversized or ambiguous raises `errors.Unauthenticated` with a detail
  that is safe to show: it never repeats a header value, so a secret pasted in the wrong
  place is never echoed back (or logged by whoever logs the detail).
- Ambiguous means two methods at once (an Authorization header and an X-Api-Key, or a header
  and a presigned query), a repeated Authorization or X-Api-Key header, or a repeated
  presigned parameter: which one would win is exactly what an attacker probes for.
- Bounds: header values up to MAX_HEADER_CHARS, at most MAX_SIGNED_HEADERS signed headers,
  presigned expiry 1..MAX_EXPIRES_S (S3's seven days), access keys and secrets of printable
  ASCII and bounded length (ACCESS_KEY_RE, SECRET_KEY_RE, also for whoever creates keys).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from dfsring.foundation.errors import Unauthenticated

MAX_HEADER_CHARS = 4096
MAX_SIGNED_HEADERS = 64
MAX_EXPIRES_S = 604_800
ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

# Access key ids: no whitespace and none of the separators the three forms use (":" in
# Bearer, "/" in Credential=, "," "=" ";" in the SigV4 header), so every form parses one way.
ACCESS_KEY_RE = re.compile(r"[A-Za-z0-9._~+@-]{1,128}")
SECRET_KEY_RE = re.compile(r"[!-~]{1,256}")  # printable ASCII, no space
_TOKEN_RE = re.compile(r"[a-z0-9-]{1,64}")  # region and service names
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,128}")  # RFC 9110 token, lowercase
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
_DATE_RE = re.compile(r"[0-9]{8}")
_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_EXPIRES_RE = re.compile(r"[0-9]{1,7}")

# The secret a caller checks an unknown access key against (with `secret_matches` or
# sigv4.verify), so that an unknown key and a wrong secret take the same path and time.
UNKNOWN_KEY_SECRET = "dfsring-no-such-key-0000000000000000000000"

_PRESIGN_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                   "X-Amz-SignedHeaders", "X-Amz-Signature")
_HEADER_FIELDS = ("Credential", "SignedHeaders", "Signature")
_WANTED_HEADERS = ("authorization", "x-api-key", "x-amz-date", "date")


@dataclass(frozen=True)
class KeyPair:
    """A key id and its secret sent as such (Bearer or X-Api-Key)."""

    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never print a secret, even in a traceback or a log line
        return f"KeyPair(access_key={self.access_key!r}, secret_key='***')"


@dataclass(frozen=True)
class SigV4Credential:
    """What a SigV4 request claims; nothing here is trusted until sigv4.verify accepts it."""

    access_key: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str  # lowercase hex
    presigned: bool
    amz_date: str  # YYYYMMDDTHHMMSSZ
    expires_s: int | None  # presigned only


def parse_credentials(headers: Mapping[str, str],
                      query: Sequence[tuple[str, str]]) -> KeyPair | SigV4Credential | None:
    """The credentials of a request, None when it carries none (see the module docstring).

    `headers` may be any mapping; a multi-mapping (aiohttp's CIMultiDictProxy) has its repeated
    headers seen through `items()`, which is how a duplicated Authorization is caught."""
    found = _wanted_headers(headers)
    auth = _single(found, "authorization")
    api_key = _single(found, "x-api-key")
    presigned = _presign_params(query)
    methods = sum(x is not None for x in (auth, api_key, presigned))
    if methods > 1:
        raise Unauthenticated("more than one authentication method in one request")
    if auth is not None:
        return _parse_authorization(auth, found)
    if api_key is not None:
        return _parse_key_pair(api_key, "X-Api-Key")
    if presigned is not None:
        return _parse_presigned(presigned)
    return None


def secret_matches(sent: str, stored: str) -> bool:
    """Whether a Bearer or X-Api-Key secret is the stored one, in constant time (as bytes:
    `hmac.compare_digest` refuses str with non-ASCII characters rather than comparing)."""
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"),
                               stored.encode("utf-8", "surrogatepass"))


def _wanted_headers(headers: Mapping[str, str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname in _WANTED_HEADERS:
            if len(value) > MAX_HEADER_CHARS:
                raise Unauthenticated(f"{lname} header longer than {MAX_HEADER_CHARS} characters")
            found.setdefault(lname, []).append(value)
    return found


def _single(found: Mapping[str, list[str]], name: str) -> str | None:
    values = found.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise Unauthenticated(f"repeated {name} header")
    return values[0]


def _presign_params(query: Sequence[tuple[str, str]]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for name, value in query:
        if name in _PRESIGN_PARAMS:
            if name in params:
                raise Unauthenticated(f"repeated {name} query parameter")
            if len(value) > MAX_HEADER_CHARS:
                raise Unauthenticated(f"{name} longer than {MAX_HEADER_CHARS} characters")
            params[name] = value
    return params or None


def _parse_authorization(value: str, found: Mapping[str, list[str]]) -> KeyPair | SigV4Credential:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer":
        return _parse_key_pair(rest.strip(), "Bearer token")
    if scheme == ALGORITHM:
        return _parse_sigv4_header(rest, found)
    raise Unauthenticated("unsupported Authorization scheme (use Bearer or AWS4-HMAC-SHA256)")


def _parse_key_pair(value: str, where: str) -> KeyPair:
    access, sep, secret = value.strip().partition(":")
    if not sep:
        raise Unauthenticated(f"{where} must be ACCESS_KEY:SECRET_KEY")
    _check_access_key(access, where)
    if SECRET_KEY_RE.fullmatch(secret) is None:
        raise Unauthenticated(f"{where}: the secret must be 1 to 256 printable ASCII characters")
    return KeyPair(access, secret)


def _check_access_key(access: str, where: str) -> None:
    if ACCESS_KEY_RE.fullmatch(access) is None:
        raise Unauthenticated(f"{where}: malformed access key id "
                              "(1 to 128 of A-Z a-z 0-9 . _ ~ + @ -)")


def _parse_sigv4_header(rest: str, found: Mapping[str, list[str]]) -> SigV4Credential:
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, val = part.strip().partition("=")
        name = name.strip()
        if not sep or name not in _HEADER_FIELDS:
            raise Unauthenticated("malformed AWS4-HMAC-SHA256 Authorization header "
                                  "(expected Credential, SignedHeaders and Signature)")
        if name in fields:
            raise Unauthenticated(f"repeated {name} in the Authorization header")
        fields[name] = val.strip()
    missing = [n for n in _HEADER_FIELDS if n not in fields]
    if missing:
        raise Unauthenticated(f"Authorization header lacks {', '.join(missing)}")
    amz_date = _header_amz_date(found)
    return _credential(fields["Credential"], fields["SignedHeaders"], fields["Signature"],
                       amz_date, presigned=False, expires_s=None)


def _header_amz_date(found: Mapping[str, list[str]]) -> str:
    """X-Amz-Date, or the Date header when it is absent (botocore signs with Date when the
    request already has one, and the string to sign then holds its time in ISO basic form)."""
    amz = _single(found, "x-amz-date")
    if amz is not None:
        return _check_amz_date(amz.strip(), "X-Amz-Date")
    date = _single(found, "date")
    if date is None:
        raise Unauthenticated("a signed request needs an X-Amz-Date header")
    try:
        when = parsedate_to_datetime(date.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        raise Unauthenticated("Date header is not an HTTP date") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if not 1 <= when.year <= 9999:
        raise Unauthenticated("Date header is not an HTTP date")
    return when.astimezone(UTC).strftime(AMZ_DATE_FORMAT)


def _parse_presigned(params: Mapping[str, str]) -> SigV4Credential:
    missing = [n for n in _PRESIGN_PARAMS if n not in params]
    if missing:
        raise Unauthenticated(f"presigned URL lacks {', '.join(missing)}")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise Unauthenticated(f"presigned URL: X-Amz-Algorithm must be {ALGORITHM}")
    expires = params["X-Amz-Expires"]
    if _EXPIRES_RE.fullmatch(expires) is None or not 1 <= int(expires) <= MAX_EXPIRES_S:
        raise Unauthenticated(f"presigned URL: X-Amz-Expires must be 1 to {MAX_EXPIRES_S}")
    amz_date = _check_amz_date(params["X-Amz-Date"], "X-Amz-Date")
    return _credential(params["X-Amz-Credential"], params["X-Amz-SignedHeaders"],
                       params["X-Amz-Signature"], amz_date, presigned=True,
                       expires_s=int(expires))


def _credential(credential: str, signed: str, signature: str, amz_date: str, *,
                presigned: bool, expires_s: int | None) -> SigV4Credential:
    access, date, region, service = _parse_scope(credential)
    if _SIGNATURE_RE.fullmatch(signature) is None:
        raise Unauthenticated("Signature must be 64 hexadecimal digits")
    return SigV4Credential(access_key=access, date=date, region=region, service=service,
                           signed_headers=_parse_signed_headers(signed),
                           signature=signature.lower(), presigned=presigned,
                           amz_date=amz_date, expires_s=expires_s)


def _parse_scope(credential: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise Unauthenticated("Credential must be ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request")
    access, date, region, service, _ = parts
    _check_access_key(access, "Credential")
    if _DATE_RE.fullmatch(date) is None or not _is_day(date):
        raise Unauthenticated("Credential: the scope date must be YYYYMMDD")
    if _TOKEN_RE.fullmatch(region) is None or _TOKEN_RE.fullmatch(service) is None:
        raise Unauthenticated("Credential: malformed region or service")
    return access, date, region, service


def _parse_signed_headers(signed: str) -> tuple[str, ...]:
    names = signed.split(";")
    if len(names) > MAX_SIGNED_HEADERS:
        raise Unauthenticated(f"more than {MAX_SIGNED_HEADERS} signed headers")
    if any(_HEADER_NAME_RE.fullmatch(n) is None for n in names):
        raise Unauthenticated("SignedHeaders must be lowercase header names separated by ';'")
    if len(set(names)) != len(names):
        raise Unauthenticated("SignedHeaders names a header twice")
    return tuple(names)


def _check_amz_date(value: str, where: str) -> str:
    if _AMZ_DATE_RE.fullmatch(value) is None or not _is_day(value[:8]) \
            or int(value[9:11]) > 23 or int(value[11:13]) > 59 or int(value[13:15]) > 59:
        raise Unauthenticated(f"{where} must be YYYYMMDDTHHMMSSZ")
    return value


def _is_day(yyyymmdd: str) -> bool:
    """A real calendar day (the caller matched 8 ASCII digits); datetime's constructor, since
    strptime alone would cost more than the whole signature check."""
    try:
        datetime(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return True
