"""Who may do what: roles, what a route needs, and the one access decision. Pure.

A minimal copy of authcore's module (same names and signatures as the fixed interface), in
this branch only so the enforcement can run; at merge authcore's version replaces it.

Rules (issue 18 part 2): per bucket a key holds ``read``, ``write`` or ``owner``, each
including the ones below it; ``admin`` is cluster-wide and may do everything. A request with
no principal is refused (Unauthenticated) unless its route is public, or it reads a bucket
made publicly readable on purpose. An accepted key lacking the grant is refused with
Forbidden naming the grant, worded the same whether or not the bucket exists.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from dfsring.foundation import errors


class Role(enum.IntEnum):
    READ = 1
    WRITE = 2
    OWNER = 3


class Need(enum.Enum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    READ = "read"
    WRITE = "write"
    OWNER = "owner"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    access_key: str
    admin: bool
    grants: Mapping[str, Role] = field(default_factory=dict)


@dataclass(frozen=True)
class BucketSettings:
    public_read: bool = False


_ROLE_OF = {Need.READ: Role.READ, Need.WRITE: Role.WRITE, Need.OWNER: Role.OWNER}
_WORDING = {Role.READ: "read on bucket {}", Role.WRITE: "write on bucket {}",
            Role.OWNER: "owner of bucket {}"}


def decide(principal: Principal | None, need: Need, bucket: str | None,
           settings: BucketSettings | None) -> None:
    """Return if the request may go on; raise Unauthenticated or Forbidden otherwise."""
    if need is Need.PUBLIC:
        return
    if (need is Need.READ and principal is None and settings is not None
            and settings.public_read):
        return
    if principal is None:
        raise errors.Unauthenticated("credentials required")
    if principal.admin or need is Need.AUTHENTICATED:
        return
    if need is Need.ADMIN:
        raise errors.Forbidden("admin")
    if bucket is None:  # a bucket grant needs a bucket: a route table mistake, fail closed
        raise errors.Forbidden("admin")
    role = _ROLE_OF[need]
    if principal.grants.get(bucket, 0) >= role:
        return
    if need is Need.READ and settings is not None and settings.public_read:
        return
    raise errors.Forbidden(_WORDING[role].format(bucket))
