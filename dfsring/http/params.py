"""Typed parsers for what a request carries in its path, query and headers.

Every handler reads request data through these, so no input can reach ``int()``, ``.encode()``
or ``.decode()`` unchecked and end in a 500 (issue 23 part 4). The rules:

- numbers are ASCII digits only: ``str.isdigit`` accepts "²" and "①", which ``int`` refuses;
- a parameter given empty (``?r=``) is a mistake, refused like any bad value, never taken
  for "absent";
- a path is percent-decoded exactly once, here, from the raw request target, and must then
  be UTF-8: the router's own decoding leaves an invalid sequence such as ``%ff%fe`` as it is,
  which would make it the same key as ``%25ff%25fe``;
- a header is compared as bytes (aiohttp keeps a non-UTF-8 header as surrogate escapes,
  which a plain ``.encode()`` refuses with an exception).
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import parse_qsl, unquote_to_bytes

from aiohttp import web

from dfsring.foundation import errors
from dfsring.http.appkeys import MEMBERSHIP

_DIGITS = re.compile(r"[0-9]{1,9}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def ascii_int(raw: str, name: str, low: int, high: int) -> int:
    """``raw`` as an integer from ``low`` to ``high`` written in ASCII digits, or BadRequest."""
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise errors.BadRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)


def optional_int(request: web.Request, name: str, low: int, high: int,
                 default: int) -> int:
    """A numeric query parameter, ``default`` when it is absent (not when it is empty)."""
    raw = request.query.get(name)
    return default if raw is None else ascii_int(raw, name, low, high)


def level_text(request: web.Request, param: str, header: str) -> str | None:
    """The raw consistency level: the query parameter if given (even empty, so ``r=`` is
    refused by the level parser), else the header, else None for the default."""
    if param in request.query:
        return request.query[param]
    return request.headers.get(header)


def header_bytes(value: str) -> bytes:
    """A header's bytes as they came, whatever their encoding."""
    return value.encode("utf-8", "surrogateescape")


def path_tail(request: web.Request, prefix: str) -> tuple[str, str]:
    """(bucket, rest) of a path ``prefix + bucket + "/" + rest``, each percent-decoded once
    from the raw request target and required to be UTF-8 (InvalidKey otherwise)."""
    raw = request.raw_path.split("?", 1)[0].split("#", 1)[0]
    if not raw.startswith(prefix):
        raise errors.InvalidKey("the path does not name a bucket")
    bucket, _, rest = raw[len(prefix):].partition("/")
    return _decode_once(bucket, "bucket"), _decode_once(rest, "key")


def check_query_utf8(request: web.Request) -> None:
    """The query string's names and values must be UTF-8 once percent-decoded: the parsed
    query aiohttp offers keeps an invalid escape such as ``prefix=%ff`` as its literal text,
    the same prefix as ``%25ff``."""
    raw = request.raw_path.partition("?")[2].partition("#")[0]
    try:
        parse_qsl(raw, keep_blank_values=True, errors="strict", max_num_fields=64)
    except UnicodeDecodeError as exc:
        raise errors.BadRequest("the query is not UTF-8 after percent-decoding") from exc
    except ValueError as exc:
        raise errors.BadRequest(f"the query is malformed: {exc}") from exc


def _decode_once(text: str, what: str) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.InvalidKey(f"{what} is not UTF-8 after percent-decoding") from exc


def b64_cursor(raw: str | None, max_bytes: int) -> bytes | None:
    """A listing cursor: the canonical unpadded URL-safe base64 of a name, as the listing
    returned it. Anything else, "AAAA" (three NUL bytes) included, is 400."""
    if raw is None:
        return None
    bad = errors.BadRequest("cursor is not one this API returned")
    if not raw or len(raw) > 2 * max_bytes or not _B64URL.fullmatch(raw):
        raise bad
    try:
        name = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        text = name.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    canonical = base64.urlsafe_b64encode(name).decode().rstrip("=")
    if not name or len(name) > max_bytes or "\x00" in text or canonical != raw:
        raise bad
    return name


def serving(request: web.Request, allowed: frozenset[str]) -> None:
    """What every key/value and files request checks first: this node knows its cluster (else
    it would place data on a ring the others do not share), and the query holds only
    ``allowed`` parameters, each at most once, UTF-8 once percent-decoded."""
    membership = request.app[MEMBERSHIP]
    if not membership.complete:
        raise errors.NotReady("this node has not joined a cluster yet (no ring); seeds: "
                              + (", ".join(membership.seeds) or "none"))
    check_query(request, allowed)


# A presigned URL's authentication (AWS SigV4 query form), which dfsring.http.auth has
# already checked; never a parameter of the route itself.
PRESIGN_PARAMS = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                            "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature",
                            "X-Amz-Security-Token"})


def check_query(request: web.Request, allowed: frozenset[str]) -> None:
    """Each query parameter one of ``allowed`` and given once, or BadRequest saying which is
    not (the files API's rule too)."""
    check_query_utf8(request)
    unknown = sorted(set(request.query) - allowed - PRESIGN_PARAMS)
    if unknown:
        raise errors.BadRequest(f"unknown query parameter(s) {', '.join(unknown)}; "
                                f"allowed: {', '.join(sorted(allowed)) or 'none'}")
    for name in allowed:
        if len(request.query.getall(name, ())) > 1:
            raise errors.BadRequest(f"query parameter {name!r} given more than once")
