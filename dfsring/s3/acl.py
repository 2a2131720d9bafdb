"""Canned ACLs: the two dfsring can honour, and a clear refusal of the rest (pure).

Access in dfsring is per key and per bucket grant (dfsring.core.access), plus a bucket-wide
``public_read`` flag; there are no per-object ACLs. So:

- ``x-amz-acl: private`` is what every bucket and object already is: accepted anywhere.
  ``bucket-owner-full-control`` and ``bucket-owner-read`` (sent by cross-account tools) are
  true of every object here too: accepted.
- ``public-read`` on CreateBucket makes the bucket public-read (anonymous GET/HEAD and
  listing), as ``dfsring bucket create --public-read`` does; on an object it would have to
  make that one object public, which dfsring cannot: NotImplemented, never silently ignored
  (the client would believe the object is public, or the reverse).
- Every other canned ACL (``public-read-write``, ``authenticated-read``, ...) and the
  ``x-amz-grant-*`` headers: NotImplemented.
"""

from __future__ import annotations

from collections.abc import Mapping

from dfsring.s3.errors import S3Error

ALWAYS_TRUE = frozenset({"private", "bucket-owner-full-control", "bucket-owner-read"})


def canned_acl(headers: Mapping[str, str], *, bucket: bool) -> bool:
    """Whether the request asks for a public-read bucket (CreateBucket only); raises
    NotImplemented for what cannot be honoured (module docstring)."""
    grants = sorted({k.lower() for k in headers if k.lower().startswith("x-amz-grant-")})
    if grants:
        raise S3Error("NotImplemented", f"{grants[0]} is not supported: access is granted "
                      "per key and bucket (docs/S3.md)")
    value = headers.get("x-amz-acl")
    if value is None:
        return False
    acl = value.strip().lower()
    if acl in ALWAYS_TRUE:
        return False
    if acl == "public-read" and bucket:
        return True
    where = "bucket" if bucket else "object (make the bucket public-read instead)"
    raise S3Error("NotImplemented", f"the canned ACL {acl[:40]!r} is not supported on an "
                  f"{where}; see docs/S3.md")
