"""Who may do what: roles on buckets, the cluster-wide admin, and the one access decision.

The model is Garage's (per-bucket read/write/owner grants on a key, plus admin tokens) with
MinIO's root user as the admin (issue 18 "Roles"):

- A bucket role includes the ones below it: OWNER > WRITE > READ. An owner manages the
  bucket's grants and settings; write implies read, since a writer that cannot read back what
  it wrote only gets in the way of clients that verify their writes.
- ``admin`` is cluster-wide (membership, keys, garbage collection, repair) and may do
  everything, including everything on every bucket.
- Without a principal only PUBLIC routes are allowed, and READ on a bucket whose settings
  say public_read; anything else is Unauthenticated (401), never Forbidden, so that an
  anonymous caller learns nothing about which buckets exist or what they hold.
- With a principal, a refusal is Forbidden naming the missing grant ("read on bucket B",
  "write on bucket B", "owner of bucket B", "admin"). The caller has been authenticated, and
  the text is the same whether or not the bucket exists.

Pure: the caller resolves the principal (dfsring.core.authparse + sigv4 + the key table) and
the bucket's settings, then calls `decide` once per request.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from dfsring.foundation.errors import Forbidden, Unauthenticated


class Role(enum.IntEnum):
    """A grant on one bucket; each includes the ones below it."""

    READ = 1
    WRITE = 2
    OWNER = 3


class Need(enum.Enum):
    """What a route needs of its caller."""

    PUBLIC = "public"  # anyone, with or without credentials (/health)
    AUTHENTICATED = "authenticated"  # any accepted key (who am I, list my buckets)
    READ = "read"  # on the request's bucket
    WRITE = "write"
    OWNER = "owner"
    ADMIN = "admin"  # cluster-wide


_BUCKET_NEEDS: dict[Need, Role] = {Need.READ: Role.READ, Need.WRITE: Role.WRITE,
                                   Need.OWNER: Role.OWNER}


@dataclass(frozen=True)
class Principal:
    """An authenticated key and what it was granted."""

    access_key: str
    admin: bool
    grants: Mapping[str, Role] = field(default_factory=dict)  # bucket -> role
    rate: float | None = None  # this key's own request rate (None: the node's; 0: none)
    bandwidth: int | None = None  # this key's own bytes/s (None: the node's; 0: none)


@dataclass(frozen=True)
class BucketSettings:
    """The settings of a bucket that bear on access."""

    public_read: bool = False


def decide(principal: Principal | None, need: Need, bucket: str | None,
           settings: BucketSettings | None) -> None:
    """Return if the request may go on; raise Unauthenticated or Forbidden (module doc).

    A bucket need without a bucket is the caller's bug (a route declared wrongly), not the
    client's, so it is a ValueError rather than a refusal."""
    role = _BUCKET_NEEDS.get(need)
    if role is not None and bucket is None:
        raise ValueError(f"{need.value} needs a bucket")
    if need is Need.PUBLIC:
        return
    if need is Need.READ and settings is not None and settings.public_read:
        return
    if principal is None:
        raise Unauthenticated("this request needs credentials")
    if principal.admin or need is Need.AUTHENTICATED:
        return
    if role is None:  # Need.ADMIN
        raise Forbidden("admin")
    assert bucket is not None
    held = principal.grants.get(bucket)
    if held is None or held < role:
        raise Forbidden(missing_grant(role, bucket))


def missing_grant(role: Role, bucket: str) -> str:
    """The `missing_grant` text of a refusal for `role` on `bucket` (CONTRACT v2, docs/API.md)."""
    if role is Role.OWNER:
        return f"owner of bucket {bucket}"
    return f"{role.name.lower()} on bucket {bucket}"


def role_from_name(name: str) -> Role:
    """The role a CLI or API caller names: "read", "write" or "owner" (any case)."""
    try:
        return Role[name.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown role {name[:32]!r}: use read, write or owner") from None


def role_name(role: Role) -> str:
    return role.name.lower()


def describe_grants(principal: Principal | None) -> str:
    """A short, stable description of what a caller holds, for audit lines:
    "anonymous", "admin", "none" or "bucket:role,..." sorted by bucket."""
    if principal is None:
        return "anonymous"
    if principal.admin:
        return "admin"
    if not principal.grants:
        return "none"
    return ",".join(f"{b}:{role_name(r)}" for b, r in sorted(principal.grants.items()))
