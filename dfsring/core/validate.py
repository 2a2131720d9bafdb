"""What may enter the store, checked the same way whichever door it came through.

Pure. A value reaches a node's store through the public API (dfsring.http.kv_api) or from a
peer: a forwarded ``coordinate-write``, a ``replica-write``, a ``hinted-write``, and the
stored records of handoff, partition transfer and anti-entropy repair. Every one of those
doors calls the checks below, so a peer cannot store what a client could not (issue 23 part 1):

- a value is at most ``max_value_size`` bytes (``--max-value-size``): read repair would
  otherwise spread an oversized value to every replica;
- a content type is at most ``MAX_CONTENT_TYPE`` printable characters, never a control
  character: it is sent back as a response header, and a CR or LF there breaks every read
  of the key (or splits the response);
- a bucket name is valid (dfsring.core.keys), and a reserved one (with ``..``) is refused
  from clients, and from peers unless it is one of ``SYSTEM_BUCKETS`` that the system
  itself writes through the coordinator;
- a key is 1..1024 bytes of UTF-8 without NUL (docs/API.md "Names"); in a system bucket it
  may hold NUL, which the files service uses as a separator.

A peer holding the cluster secret can still write into a system bucket: telling a peer's
files service from an impostor is peer authentication, the identity issue's part.
"""

from __future__ import annotations

from dfsring.core import keys
from dfsring.core.vclock import Versions
from dfsring.foundation.errors import BadRequest, InvalidKey, PayloadTooLarge

MAX_CONTENT_TYPE = 255
# dfsring.files.versions.SYSTEM_BUCKET, dfsring.core.accessrecords KEYS_/BUCKETS_BUCKET
SYSTEM_BUCKETS = frozenset({"dfs..files", "dfs..keys", "dfs..buckets", "dfs..uploads"})


def content_type(raw: str) -> str:
    """``raw`` if it is safe to send back as a header; BadRequest otherwise."""
    if len(raw) > MAX_CONTENT_TYPE or not raw.isprintable():
        raise BadRequest(f"Content-Type must be printable and at most {MAX_CONTENT_TYPE} "
                         "characters")
    return raw


def value(data: bytes | None, max_value_size: int) -> None:
    """A value (None: a tombstone) no larger than the node's limit."""
    if data is not None and len(data) > max_value_size:
        raise PayloadTooLarge(len(data), max_value_size)


def write(data: bytes | None, ctype: str, max_value_size: int) -> None:
    """One new value and its content type, as a client or a forwarding peer gives them."""
    value(data, max_value_size)
    content_type(ctype)


def versions(found: Versions, max_value_size: int) -> Versions:
    """Every sibling a peer sends checked as a client's write would be."""
    for sibling in found.siblings:
        write(sibling.value, sibling.content_type, max_value_size)
    return found


def key(text: str) -> bytes:
    """A key: UTF-8 of 1..1024 bytes, without NUL."""
    raw = keys.validate_key(text)
    if b"\x00" in raw:
        raise InvalidKey("key must not contain NUL")
    return raw


def user_name(bucket: str, text: str) -> keys.ObjectName:
    """A name given by a client: never a reserved bucket."""
    keys.validate_user_bucket(bucket)
    return keys.ObjectName(bucket, text, bucket.encode("ascii"), key(text))


def peer_name(bucket: bytes, raw_key: bytes) -> keys.ObjectName:
    """A name from a peer message: a reserved bucket only if the system writes it."""
    bucket_s = peer_bucket(bucket)
    try:
        key_s = raw_key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidKey("key is not valid UTF-8") from exc
    # the system's own keys may hold NUL (dfsring.files.service.system_name joins with it)
    raw = keys.validate_key(key_s) if bucket_s in SYSTEM_BUCKETS else key(key_s)
    return keys.ObjectName(bucket_s, key_s, bucket, raw)


def peer_bucket(bucket: bytes) -> str:
    """A bucket named by a peer (a message, or a stored record it hands over): valid, and
    reserved only if it is a system bucket."""
    try:
        bucket_s = bucket.decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidKey("bucket is not ASCII") from exc
    keys.validate_bucket(bucket_s)
    if keys.is_reserved(bucket_s) and bucket_s not in SYSTEM_BUCKETS:
        raise InvalidKey(f"bucket {bucket_s!r} is reserved and not a system bucket")
    return bucket_s
