"""Conditional requests: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since.

Pure (no I/O). Sources: RFC 9110 §13.1 (the four conditions) and §13.2.2 (the order they are
evaluated in); S3 GetObject, HeadObject, CopyObject and PutObject (conditional writes).

Reads (GET/HEAD), RFC 9110 §13.2.2::

    1. If-Match present:            no match                -> 412 PreconditionFailed
       else If-Unmodified-Since:    modified after the date -> 412
    2. If-None-Match present:       a match                 -> 304 NotModified
       else If-Modified-Since:      not modified since      -> 304

S3 documents two combinations, and they are exactly this order: If-Match true with
If-Unmodified-Since false -> 200 (If-Unmodified-Since is not evaluated when If-Match is
present); If-None-Match false with If-Modified-Since true -> 304 (If-Modified-Since is not
evaluated when If-None-Match is present).

Copy source (x-amz-copy-source-if-*): the same order, and every failure is 412, as
CopyObject documents (its none-match false + modified-since true -> 412).

Details:

- An entity tag matches after removing a ``W/`` prefix and the quotes, on either side
  (S3 compares its strong ETags that way); a header may list tags separated by commas;
  ``*`` matches any existing object.
- A date that does not parse is ignored (RFC 9110 §13.1.3, §13.1.4). Last-Modified has
  one-second resolution on the wire, so the object's time is compared in whole seconds.
- A 304 carries the ETag and Last-Modified (RFC 9110 §15.4.5), as S3's does.
- Writes: ``If-None-Match: *`` and ``If-Match: <etag>`` (or ``*``) become model.Conditions
  for the object layer, which guarantees them or refuses with NotImplemented. Any other
  If-None-Match value, or a list in If-Match, is NotImplemented (S3 answers 501 too).
"""

from __future__ import annotations

from collections.abc import Mapping

from dfsring.s3.errors import S3Error
from dfsring.s3.headers import http_date, parse_http_date
from dfsring.s3.model import Conditions, ObjectVersion

MAX_TAGS = 100  # entity tags in one header; more are refused (a list that long is abuse)
MAX_CONDITION = 8192


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _tag(raw: str) -> str:
    """An entity tag without its W/ prefix and quotes."""
    tag = raw.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag.startswith('"') and tag.endswith('"'):
        tag = tag[1:-1]
    return tag


def _tags(value: str) -> list[str]:
    if len(value) > MAX_CONDITION:
        raise S3Error("InvalidArgument", "A conditional header is too long.")
    tags = [_tag(part) for part in value.split(",") if part.strip()]
    if len(tags) > MAX_TAGS:
        raise S3Error("InvalidArgument", "A conditional header lists too many entity tags.")
    return tags


def etag_matches(value: str, etag: str) -> bool:
    """Whether an If-Match/If-None-Match value matches ``etag`` (no quotes)."""
    return any(tag == "*" or tag == etag for tag in _tags(value))


def _seconds(obj: ObjectVersion) -> int:
    return obj.last_modified_ms // 1000


def _modified_since(obj: ObjectVersion, value: str) -> bool | None:
    """Whether ``obj`` changed after the date (None: the date does not parse)."""
    when = parse_http_date(value)
    return None if when is None else _seconds(obj) > when


def _evaluate(obj: ObjectVersion, low: Mapping[str, str], prefix: str) -> str | None:
    """Which condition fails: "412", "304" or None, in RFC 9110 §13.2.2 order."""
    if_match = low.get(f"{prefix}if-match")
    if if_match is not None:
        if not etag_matches(if_match, obj.etag):
            return "412"
    elif (since := low.get(f"{prefix}if-unmodified-since")) is not None:
        if _modified_since(obj, since) is True:
            return "412"
    if_none_match = low.get(f"{prefix}if-none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, obj.etag):
            return "304"
    elif (since := low.get(f"{prefix}if-modified-since")) is not None:
        if _modified_since(obj, since) is False:
            return "304"
    return None


def check_read(obj: ObjectVersion, headers: Mapping[str, str]) -> None:
    """Raise PreconditionFailed (412) or NotModified (304) if a GET/HEAD's conditions say so."""
    failed = _evaluate(obj, _lower(headers), "")
    if failed == "412":
        raise S3Error("PreconditionFailed", "At least one of the pre-conditions you "
                      "specified did not hold")
    if failed == "304":
        raise S3Error("NotModified", "Not Modified", headers={
            "ETag": f'"{obj.etag}"', "Last-Modified": http_date(obj.last_modified_ms)})


def check_copy_source(obj: ObjectVersion, headers: Mapping[str, str]) -> None:
    """Raise PreconditionFailed if an x-amz-copy-source-if-* condition fails."""
    if _evaluate(obj, _lower(headers), "x-amz-copy-source-") is not None:
        raise S3Error("PreconditionFailed", "At least one of the pre-conditions you "
                      "specified did not hold")


def write_conditions(headers: Mapping[str, str]) -> Conditions:
    """If-Match / If-None-Match of a PutObject or CompleteMultipartUpload."""
    low = _lower(headers)
    if_match = low.get("if-match")
    if_none_match = low.get("if-none-match")
    match_tag: str | None = None
    if if_match is not None:
        tags = _tags(if_match)
        if len(tags) != 1 or not tags[0]:
            raise S3Error("NotImplemented", "If-Match on a write takes exactly one entity "
                          "tag or *.")
        match_tag = tags[0]
    if if_none_match is not None and _tags(if_none_match) != ["*"]:
        raise S3Error("NotImplemented", "If-None-Match on a write supports only *.")
    return Conditions(if_match=match_tag,
                      if_none_match="*" if if_none_match is not None else None)
