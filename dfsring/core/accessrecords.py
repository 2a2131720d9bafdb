"""The records of the identity system tables: API keys and buckets. Pure.

Layout. Two reserved buckets (names with "..", dfsring.core.keys.is_reserved), written through
the ordinary coordinator with quorum writes and reads like the files service's versions:

    dfs..keys     access key id -> KeyRecord   (its secret encrypted, never in clear)
    dfs..buckets  bucket name   -> BucketRecord

Each record is a small JSON document with a format version ("v"). Records are changed by
read-modify-write with the causal context of the read, so a change supersedes exactly what
its writer saw. Two admins editing the same record at once leave siblings, which every
reader merges with the rules below, the same on every node (they only depend on the
siblings' contents, and every rule is commutative, associative and idempotent):

* KeyRecord, the most restrictive wins: deleted if any sibling is deleted, disabled if any
  is disabled, admin only if every sibling says admin, the earliest expiry, the grants
  every sibling holds (bucket by bucket the lowest role), the lowest rate and bandwidth of
  its own any sibling names (else the node's if a sibling uses it; 0, "unlimited", only if
  every sibling says so). The secret is the one of the
  sibling with the highest rotation counter (ties: the greater sealed bytes, then name), so of two
  concurrent rotations exactly one secret works; the other caller sees a refusal and
  rotates again. A lost "allow" is an inconvenience, a resurrected key a breach: that is
  why the merge never widens access.
* A key is deleted by writing a record marked deleted (a grave), not a tombstone: a
  tombstone loses to a concurrent write (dfsring.core.vclock), a grave never does.
* BucketRecord: public only if every sibling says public, the earliest creation, and the
  owner of the sibling created first (ties: the smaller owner id). CORS rules: the node's
  if no sibling has rules of its own, else the rules every sibling holds
  (dfsring.core.cors.merge_rules), so a conflict never lets in an origin one side left out.
  Versioning (S3: "" never enabled, Enabled, Suspended): the sibling whose state changed
  last wins (greatest ``versioning_ms``; ties: the greater state name, "Suspended" over
  "Enabled" over "", so every node picks the same).
* A bucket is deleted by writing a grave (``deleted_ms`` > 0), not a tombstone, like keys. A
  re-create reads the grave and writes a live record with its causal context, superseding
  it. Should a delete and a create be concurrent (siblings), a live sibling survives only
  if it was created after every grave's deletion (the later event wins); with none left,
  the grave with the latest deletion is the record. So a bucket deleted while being
  re-created elsewhere is either gone or the new one, never a mix.

The sealing of the secret (AES-256-GCM under a key derived from the cluster secret) is the
caller's: this module only carries the sealed bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import orjson

from dfsring.core import cors as corsrules
from dfsring.core.access import Principal, Role
from dfsring.core.keys import validate_bucket
from dfsring.foundation.errors import InvalidKey

KEYS_BUCKET = "dfs..keys"
BUCKETS_BUCKET = "dfs..buckets"
CONTENT_TYPE = "application/x-dfsring-access"
FORMAT = 1
MAX_NAME = 128
MAX_GRANTS = 1_000
MAX_SEALED = 512
MAX_RECORD_BYTES = 64 * 1024
MAX_RATE = 1e9  # requests/s a key's own limit may name
MAX_BANDWIDTH = 1 << 50  # bytes/s a key's own limit may name
ACCESS_KEY_RE = re.compile(r"[A-Z0-9]{16,64}")
VERSIONING_STATES = ("", "Enabled", "Suspended")
ROLE_NAMES = {"read": Role.READ, "write": Role.WRITE, "owner": Role.OWNER}
_MAX_INT = 2**63 - 1
T = TypeVar("T")
L = TypeVar("L", float | None, int | None)


def role_name(role: Role) -> str:
    return role.name.lower()


def parse_role(text: object) -> Role:
    if not isinstance(text, str) or text not in ROLE_NAMES:
        raise ValueError("role must be one of read, write, owner")
    return ROLE_NAMES[text]


def validate_access_key(text: str) -> str:
    """An access key id of the table: 16..64 of A-Z and 0-9 (ValueError otherwise)."""
    if not ACCESS_KEY_RE.fullmatch(text):
        raise ValueError("an access key id is 16 to 64 characters of A-Z and 0-9")
    return text


def validate_name(text: object) -> str:
    if not isinstance(text, str) or len(text) > MAX_NAME or not text.isprintable():
        raise ValueError(f"a key name is at most {MAX_NAME} printable characters")
    return text


@dataclass(frozen=True)
class KeyRecord:
    access_key: str
    sealed_secret: bytes
    created_ms: int
    name: str = ""
    expires_ms: int | None = None
    disabled: bool = False
    deleted: bool = False
    admin: bool = False
    grants: Mapping[str, Role] = field(default_factory=dict)
    rotation: int = 0
    rate: float | None = None  # requests/s of its own (None: the node's --key-rate; 0: none)
    bandwidth: int | None = None  # bytes/s of its own (None: --key-bandwidth; 0: none)

    def usable(self, now_ms: int) -> bool:
        """May this key authenticate now: not deleted, not disabled, not expired."""
        return not (self.deleted or self.disabled
                    or (self.expires_ms is not None and self.expires_ms <= now_ms))

    def principal(self) -> Principal:
        return Principal(self.access_key, self.admin, dict(self.grants), self.rate,
                         self.bandwidth)

    def with_grant(self, bucket: str, role: Role | None) -> KeyRecord:
        grants = dict(self.grants)
        if role is None:
            grants.pop(bucket, None)
        else:
            grants[bucket] = role
        if len(grants) > MAX_GRANTS:
            raise ValueError(f"a key holds at most {MAX_GRANTS} grants")
        return replace(self, grants=grants)


@dataclass(frozen=True)
class BucketRecord:
    bucket: str
    owner: str
    created_ms: int
    public_read: bool = False
    cors: tuple[corsrules.CorsRule, ...] | None = None  # None: the node's rules (--cors-*)
    versioning: str = ""  # VERSIONING_STATES: "" never enabled, "Enabled", "Suspended"
    versioning_ms: int = 0  # when the versioning state last changed
    deleted_ms: int = 0  # > 0: a grave (module docstring)

    @property
    def deleted(self) -> bool:
        return self.deleted_ms > 0


# --- encoding ------------------------------------------------------------------------------


def encode_key(rec: KeyRecord) -> bytes:
    return orjson.dumps({
        "v": FORMAT, "access_key": rec.access_key, "name": rec.name,
        "secret": base64.b64encode(rec.sealed_secret).decode(), "created_ms": rec.created_ms,
        "expires_ms": rec.expires_ms, "disabled": rec.disabled, "deleted": rec.deleted,
        "admin": rec.admin, "rotation": rec.rotation,
        "grants": {b: role_name(r) for b, r in sorted(rec.grants.items())},
        **({} if rec.rate is None else {"rate": rec.rate}),
        **({} if rec.bandwidth is None else {"bandwidth": rec.bandwidth})})


def encode_bucket(rec: BucketRecord) -> bytes:
    doc: dict[str, Any] = {"v": FORMAT, "bucket": rec.bucket, "owner": rec.owner,
                           "created_ms": rec.created_ms, "public_read": rec.public_read}
    if rec.cors is not None:  # absent, not null: records written before CORS read the same
        doc["cors"] = corsrules.rules_doc(rec.cors)
    if rec.versioning or rec.versioning_ms:  # absent when never set, as in older records
        doc["versioning"] = rec.versioning
        doc["versioning_ms"] = rec.versioning_ms
    if rec.deleted_ms:
        doc["deleted_ms"] = rec.deleted_ms
    return orjson.dumps(doc)


def _doc(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_RECORD_BYTES:
        raise ValueError("access record too large")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"access record is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != FORMAT:
        raise ValueError("access record of an unknown format")
    return doc


def _bucket_name(text: str) -> None:
    try:
        validate_bucket(text)
    except InvalidKey as exc:
        raise ValueError(str(exc)) from exc


def _int(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise ValueError(f"{what} must be a non-negative integer")
    return value


def _bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise ValueError(f"{what} must be a boolean")
    return value


def decode_key(raw: bytes) -> KeyRecord:
    """A stored key record, every field checked (records come from peers' disks)."""
    doc = _doc(raw)
    try:
        sealed = base64.b64decode(doc.get("secret", ""), validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ValueError("sealed secret is not base64") from exc
    if not 0 < len(sealed) <= MAX_SEALED:
        raise ValueError("sealed secret of a wrong size")
    grants = doc.get("grants")
    if not isinstance(grants, dict) or len(grants) > MAX_GRANTS:
        raise ValueError(f"grants must be an object of at most {MAX_GRANTS} entries")
    for bucket in grants:
        _bucket_name(bucket)
    expires = doc.get("expires_ms")
    return KeyRecord(
        access_key=validate_access_key(str(doc.get("access_key"))),
        sealed_secret=sealed, created_ms=_int(doc.get("created_ms"), "created_ms"),
        name=validate_name(doc.get("name")),
        expires_ms=None if expires is None else _int(expires, "expires_ms"),
        disabled=_bool(doc.get("disabled"), "disabled"),
        deleted=_bool(doc.get("deleted"), "deleted"), admin=_bool(doc.get("admin"), "admin"),
        grants={b: parse_role(r) for b, r in grants.items()},
        rotation=_int(doc.get("rotation"), "rotation"),
        rate=_optional_rate(doc.get("rate")),
        bandwidth=None if doc.get("bandwidth") is None else min(
            _int(doc["bandwidth"], "bandwidth"), MAX_BANDWIDTH))


def _optional_rate(value: object) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 <= value <= MAX_RATE:  # type: ignore[operator]
        raise ValueError(f"rate must be a number from 0 to {MAX_RATE}")
    return float(value)  # type: ignore[arg-type]


def decode_bucket(raw: bytes) -> BucketRecord:
    doc = _doc(raw)
    bucket = doc.get("bucket")
    owner = doc.get("owner")
    if not isinstance(bucket, str) or not isinstance(owner, str) or len(owner) > MAX_NAME:
        raise ValueError("bucket and owner must be strings")
    _bucket_name(bucket)
    rules = doc.get("cors")
    versioning = doc.get("versioning", "")
    if versioning not in VERSIONING_STATES:
        raise ValueError("versioning must be Enabled or Suspended")
    return BucketRecord(bucket, owner, _int(doc.get("created_ms"), "created_ms"),
                        _bool(doc.get("public_read"), "public_read"),
                        None if rules is None else corsrules.parse_rules(rules),
                        versioning, _int(doc.get("versioning_ms", 0), "versioning_ms"),
                        _int(doc.get("deleted_ms", 0), "deleted_ms"))


# --- merging siblings (module docstring) ---------------------------------------------------


def merge_keys(records: Iterable[KeyRecord]) -> KeyRecord | None:
    found = list(records)
    if not found:
        return None
    winner = max(found, key=lambda r: (r.rotation, r.sealed_secret, r.name))
    expiries = [r.expires_ms for r in found if r.expires_ms is not None]
    common = set.intersection(*(set(r.grants) for r in found))
    grants = {b: min(r.grants[b] for r in found) for b in sorted(common)}
    return replace(winner, created_ms=min(r.created_ms for r in found),
                   expires_ms=min(expiries) if expiries else None,
                   disabled=any(r.disabled for r in found),
                   deleted=any(r.deleted for r in found),
                   admin=all(r.admin for r in found), grants=grants,
                   rate=_lowest(r.rate for r in found),
                   bandwidth=_lowest(r.bandwidth for r in found))


def _lowest(values: Iterable[L]) -> L:
    """The lowest limit any sibling names; else the node's (None) if any sibling uses it;
    else 0 (no limit, which every sibling says)."""
    found = list(values)
    limited = [v for v in found if v]
    if limited:
        return min(limited)
    return None if None in found else found[0]


def merge_buckets(records: Iterable[BucketRecord]) -> BucketRecord | None:
    found = list(records)
    if not found:
        return None
    graves = [r for r in found if r.deleted]
    last_delete = max((r.deleted_ms for r in graves), default=0)
    live = [r for r in found if not r.deleted and (not graves or r.created_ms > last_delete)]
    pool = live or [r for r in graves if r.deleted_ms == last_delete]
    first = min(pool, key=lambda r: (r.created_ms, r.owner))
    state = max(pool, key=lambda r: (r.versioning_ms, r.versioning))
    return replace(first, public_read=all(r.public_read for r in pool),
                   cors=corsrules.merge_rules([r.cors for r in pool]),
                   versioning=state.versioning, versioning_ms=state.versioning_ms,
                   deleted_ms=0 if live else last_delete)


def decode_all(values: Iterable[bytes],
               decode: Callable[[bytes], T]) -> tuple[list[T], int]:
    """The records among sibling values, and how many did not decode (skipped: a damaged
    sibling must not hide the others, and is counted so the caller can log it)."""
    out: list[T] = []
    bad = 0
    for raw in values:
        try:
            out.append(decode(raw))
        except ValueError:
            bad += 1
    return out, bad
