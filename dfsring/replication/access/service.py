"""Authentication against the key table, and the changes the admin API makes to it.

Freshness (issue 18: "a rotated key works at once on every node, a deleted key stops
working within a bounded time"). Every node keeps the records it used in a bounded cache
(dfsring.core.ttlcache):

* a record is served from the cache for at most ``ttl_s`` (5 s), then read again with a
  quorum read;
* a secret that does not match the cached record makes the node read the record again
  before refusing, at most once per key per ``min_reread_s`` (1 s): a key rotated on one
  node works on every other node at once, since with R + W > N that read sees the rotation;
* a change that takes access away (delete, disable, rotate, a grant removed, a bucket made
  private) is sent to every member as an ``access-changed`` peer message before the admin
  call answers, and each member drops the record from its cache. That is best effort (a
  member may be unreachable), so the bound that always holds is the TTL: **a deleted or
  disabled key is refused by every node at most ``ttl_s`` + one request timeout after the
  delete was acknowledged** (the TTL for the cached copy to expire, the timeout for a read
  of the table that started before the delete).

Refusals are one answer (errors.Unauthenticated, one detail) for an unknown key, a wrong
secret, a disabled, expired or deleted key; an unknown key costs the same work as a wrong
secret (a dummy sealed secret is opened and compared), and secrets are compared with
hmac.compare_digest.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from dfsring.core import accessrecords as ar
from dfsring.core.access import BucketSettings, Principal, Role
from dfsring.core.accessrecords import BucketRecord, KeyRecord
from dfsring.core.clusterview import ViewSource
from dfsring.core.cors import CorsRule
from dfsring.core.ttlcache import TtlCache
from dfsring.core.vclock import VersionVector
from dfsring.foundation import errors
from dfsring.replication.access.secretbox import SealError, SecretBox
from dfsring.replication.access.tables import AccessTables
from dfsring.replication.peers import wall_ms
from dfsring.transport import RpcError, Transport
from dfsring.transport.messages import AccessChanged, Ack

log = logging.getLogger("dfsring.access")
REFUSED = "credentials not accepted"
KEY_ID_PREFIX = "DK"
MAX_KEYS_LISTED = 10_000
LIST_READS = 32  # quorum reads in flight while listing keys


@dataclass(frozen=True)
class AccessSettings:
    ttl_s: float = 5.0
    min_reread_s: float = 1.0
    max_entries: int = 10_000
    broadcast_deadline_s: float = 1.0


@dataclass(frozen=True)
class NewSecret:
    """A key and its secret in clear: returned once, by create and rotate, never again."""

    record: KeyRecord
    secret: str


def _raw(text: str) -> bytes:
    """A credential's bytes, whatever a header held (never an encoding error)."""
    return text.encode("utf-8", "surrogateescape")


def new_access_key() -> str:
    """``DK`` and 18 characters of base32 (A-Z, 2-7): 90 random bits, S3's length."""
    return KEY_ID_PREFIX + base64.b32encode(secrets.token_bytes(15)).decode()[:18]


def new_secret() -> str:
    """40 characters of URL-safe base64 (240 random bits), never a ':'."""
    return secrets.token_urlsafe(30)


class AccessService:
    def __init__(self, *, tables: AccessTables, box: SecretBox, root: tuple[str, str] | None,
                 views: ViewSource, rpc: Transport, settings: AccessSettings = AccessSettings(),
                 clock: Callable[[], float] = time.monotonic,
                 now_ms: Callable[[], int] = wall_ms) -> None:
        self.tables = tables
        self.box = box
        self.root = root if root and root[0] and root[1] else None
        self.views = views
        self.rpc = rpc
        self.settings = settings
        self.clock = clock
        self.now_ms = now_ms
        self.keys: TtlCache[KeyRecord] = TtlCache(settings.max_entries, settings.ttl_s,
                                                  settings.min_reread_s)
        self.buckets: TtlCache[BucketRecord] = TtlCache(settings.max_entries, settings.ttl_s,
                                                        settings.min_reread_s)
        self._generation = 0  # bumped by every invalidation: a read racing one is not cached
        dummy_key = new_access_key()
        self._dummy = KeyRecord(dummy_key, box.seal(dummy_key, new_secret()), 0)

    # --- authentication --------------------------------------------------------------------

    async def authenticate(self, access_key: str, secret: str) -> Principal:
        """The principal these credentials stand for; Unauthenticated otherwise. A secret
        that does not open the cached record makes us read the record again first (at most
        once per key per ``min_reread_s``): the key may have been rotated on another node."""
        if self._is_root(access_key):
            if hmac.compare_digest(_raw(secret), _raw(self.root[1] if self.root else "")):
                return Principal(access_key, True, {})
            raise errors.Unauthenticated(REFUSED)
        record, cached = await self._lookup(access_key)
        accepted = self._check(record, access_key, secret)
        if not accepted and cached:
            record, cached = await self._lookup(access_key, reread=True)
            accepted = not cached and self._check(record, access_key, secret)
        if not accepted or record is None:
            raise errors.Unauthenticated(REFUSED)
        return record.principal()

    async def signing_key(self, access_key: str, *,
                          reread: bool = False) -> tuple[Principal, str] | None:
        """The principal and clear secret of a usable key, for a signature check (AWS SigV4
        needs the secret itself, dfsring.core.sigv4.verify); None if the key cannot
        authenticate. ``reread=True`` after a failed check reads the record again, with the
        same bound as ``authenticate`` (a rotated key)."""
        if self._is_root(access_key):
            assert self.root is not None
            return Principal(access_key, True, {}), self.root[1]
        record, _ = await self._lookup(access_key, reread=reread)
        if record is None or not record.usable(self.now_ms()):
            return None
        try:
            return record.principal(), self.box.open(access_key, record.sealed_secret)
        except SealError:
            return None

    def _is_root(self, access_key: str) -> bool:
        return self.root is not None and hmac.compare_digest(_raw(access_key),
                                                             _raw(self.root[0]))

    async def _lookup(self, access_key: str, *,
                      reread: bool = False) -> tuple[KeyRecord | None, bool]:
        """The key's record (None: no such key, or a name no key can have) and whether it
        came from the cache. ``reread``: read a cached record again if the once-per-second
        bound allows (the caller's check against the cached one failed)."""
        if not ar.ACCESS_KEY_RE.fullmatch(access_key):
            return None, False
        entry = self.keys.fresh(access_key, self.clock())
        if entry is not None and not (reread and self.keys.may_reread(access_key,
                                                                      self.clock())):
            return entry.value, True
        return await self._load_key(access_key), False

    def _check(self, record: KeyRecord | None, access_key: str, secret: str) -> bool:
        """Whether ``secret`` opens this record; the same work when there is no usable
        record (a dummy is opened and compared)."""
        now = self.now_ms()
        usable = record is not None and record.usable(now)
        target = record if usable and record is not None else self._dummy
        target.usable(now)  # the same steps whichever record it is
        try:
            expected = self.box.open(target.access_key, target.sealed_secret)
        except SealError:
            log.warning("a key's sealed secret does not open (cluster secret changed?)",
                        extra={"fields": {"access_key": access_key}})
            expected = ""
        same = hmac.compare_digest(_raw(secret), _raw(expected))
        return usable and same and bool(expected)

    async def _load_key(self, access_key: str) -> KeyRecord | None:
        generation = self._generation
        record, _ = await self.tables.read_key(access_key)
        if generation == self._generation:
            self.keys.put(access_key, record, self.clock())
        return record

    async def _cached_bucket(self, bucket: str) -> BucketRecord | None:
        entry = self.buckets.fresh(bucket, self.clock())
        if entry is not None:
            return entry.value
        generation = self._generation
        record, _ = await self.tables.read_bucket(bucket)
        if record is not None and record.deleted:
            record = None
        if generation == self._generation:
            self.buckets.put(bucket, record, self.clock())
        return record

    async def cached_bucket(self, bucket: str) -> BucketRecord | None:
        """The bucket's live record (None: none, or a grave) from the cache, read again
        after ``ttl_s`` or once a change was announced (the S3 layer's per-request view of
        a bucket: its existence and versioning state)."""
        return await self._cached_bucket(bucket)

    async def bucket_settings(self, bucket: str) -> BucketSettings:
        record = await self._cached_bucket(bucket)
        return BucketSettings(public_read=record is not None and record.public_read)

    async def bucket_cors(self, bucket: str) -> tuple[CorsRule, ...] | None:
        """The bucket's own CORS rules (None: the node's), from the cache like its settings:
        a change reaches every node within the cache's TTL."""
        record = await self._cached_bucket(bucket)
        return None if record is None else record.cors

    def invalidate(self, table: str, name: str) -> None:
        """Drop a record from the cache (a change made here or announced by a peer)."""
        self._generation += 1
        (self.keys if table == "keys" else self.buckets).invalidate(name)

    # --- key administration ----------------------------------------------------------------

    async def create_key(self, *, name: str, expires_in_s: int | None,
                         admin: bool) -> NewSecret:
        access_key, secret = new_access_key(), new_secret()
        now = self.now_ms()
        record = KeyRecord(access_key, self.box.seal(access_key, secret), now, name,
                           None if expires_in_s is None else now + expires_in_s * 1000,
                           admin=admin)
        await self.tables.write_key(record, VersionVector())
        self.invalidate("keys", access_key)  # a cached "absent" from a probe before
        return NewSecret(record, secret)

    async def get_key(self, access_key: str) -> KeyRecord:
        record, _ = await self._existing_key(access_key)
        return record

    async def list_keys(self) -> list[KeyRecord]:
        """Every key that is not deleted (at most MAX_KEYS_LISTED), each read with a quorum
        read, LIST_READS at a time."""
        ids = await self.tables.key_ids(MAX_KEYS_LISTED)
        found: list[KeyRecord] = []
        for start in range(0, len(ids), LIST_READS):
            batch = ids[start:start + LIST_READS]
            read = await asyncio.gather(*(self.tables.read_key(k) for k in batch))
            found += [rec for rec, _ in read if rec is not None and not rec.deleted]
        return found

    async def _existing_key(self, access_key: str) -> tuple[KeyRecord, VersionVector]:
        try:
            ar.validate_access_key(access_key)
        except ValueError as exc:
            raise errors.BadRequest(str(exc)) from exc
        record, clock = await self.tables.read_key(access_key)
        if record is None or record.deleted:
            raise errors.NotFound(f"no key {access_key}")
        return record, clock

    async def _change_key(self, access_key: str,
                          change: Callable[[KeyRecord], KeyRecord]) -> KeyRecord:
        record, clock = await self._existing_key(access_key)
        updated = change(record)
        await self.tables.write_key(updated, clock)
        await self.announce("keys", access_key)
        return updated

    async def set_disabled(self, access_key: str, disabled: bool) -> KeyRecord:
        return await self._change_key(access_key, lambda r: replace(r, disabled=disabled))

    async def delete_key(self, access_key: str) -> None:
        await self._change_key(access_key, lambda r: replace(r, deleted=True, grants={}))

    async def rotate(self, access_key: str) -> NewSecret:
        secret = new_secret()
        record = await self._change_key(access_key, lambda r: replace(
            r, sealed_secret=self.box.seal(access_key, secret), rotation=r.rotation + 1))
        return NewSecret(record, secret)

    async def set_limits(self, access_key: str, **limits: float | int | None) -> KeyRecord:
        """Set a key's own ``rate`` and/or ``bandwidth`` (None: the node's; 0: none)."""
        return await self._change_key(access_key, lambda r: replace(r, **limits))

    async def set_grant(self, bucket: str, access_key: str, role: Role | None) -> KeyRecord:
        return await self._change_key(access_key, lambda r: r.with_grant(bucket, role))

    # --- bucket administration -------------------------------------------------------------

    async def create_bucket(self, bucket: str, *, owner: str, public_read: bool) -> BucketRecord:
        """A new bucket record; its owner (a table key) gets the owner grant. 409 if the
        bucket was created before."""
        existing, clock = await self.tables.read_bucket(bucket)
        if existing is not None and not existing.deleted:
            raise errors.Conflict(f"bucket {bucket} exists")
        if ar.ACCESS_KEY_RE.fullmatch(owner) and (self.root is None or owner != self.root[0]):
            await self.set_grant(bucket, owner, Role.OWNER)
        now = self.now_ms()
        if existing is not None:  # over a grave: created after its deletion (merge rule)
            now = max(now, existing.deleted_ms + 1)
        record = BucketRecord(bucket, owner, now, public_read)
        await self.tables.write_bucket(record, clock)
        await self.announce("buckets", bucket)
        return record

    async def get_bucket(self, bucket: str) -> tuple[BucketRecord | None, dict[str, Role]]:
        """The bucket's record (None: never created, only written to) and who holds which
        role on it."""
        record, _ = await self.tables.read_bucket(bucket)
        if record is not None and record.deleted:
            record = None
        grants = {k.access_key: k.grants[bucket] for k in await self.list_keys()
                  if bucket in k.grants}
        return record, grants

    async def set_public(self, bucket: str, public_read: bool, owner: str) -> BucketRecord:
        record, clock = await self.tables.read_bucket(bucket)
        updated = (replace(record, public_read=public_read) if record is not None
                   else BucketRecord(bucket, owner, self.now_ms(), public_read))
        await self.tables.write_bucket(updated, clock)
        await self.announce("buckets", bucket)
        return updated

    async def set_cors(self, bucket: str, rules: tuple[CorsRule, ...] | None,
                       owner: str) -> BucketRecord:
        """Replace the bucket's CORS rules (None: back to the node's rules)."""
        record, clock = await self.tables.read_bucket(bucket)
        updated = (replace(record, cors=rules) if record is not None
                   else BucketRecord(bucket, owner, self.now_ms(), cors=rules))
        await self.tables.write_bucket(updated, clock)
        await self.announce("buckets", bucket)
        return updated

    async def live_bucket(self, bucket: str) -> tuple[BucketRecord, VersionVector]:
        """The bucket's record read with a quorum read (never the cache), and its causal
        context; NotFound for no record or a grave."""
        record, clock = await self.tables.read_bucket(bucket)
        if record is None or record.deleted:
            raise errors.NotFound(f"no bucket {bucket}")
        return record, clock

    async def delete_bucket(self, bucket: str) -> BucketRecord:
        """Leave a grave over the record (module docstring of dfsring.core.accessrecords: a
        concurrent re-create is either superseded or survives whole). Whether the bucket is
        empty is the caller's check. NotFound if there is no live record."""
        record, clock = await self.live_bucket(bucket)
        grave = replace(record, deleted_ms=max(self.now_ms(), record.created_ms + 1))
        await self.tables.write_bucket(grave, clock)
        await self.announce("buckets", bucket)
        return grave

    async def set_versioning(self, bucket: str, state: str) -> BucketRecord:
        """Enabled or Suspended (never back to ""); the change is stamped so that of two
        concurrent changes the later wins everywhere. NotFound without a live record."""
        if state not in ("Enabled", "Suspended"):
            raise errors.BadRequest("versioning is Enabled or Suspended")
        record, clock = await self.live_bucket(bucket)
        updated = replace(record, versioning=state,
                          versioning_ms=max(self.now_ms(), record.versioning_ms + 1))
        await self.tables.write_bucket(updated, clock)
        await self.announce("buckets", bucket)
        return updated

    async def list_buckets(self, limit: int = MAX_KEYS_LISTED) -> list[BucketRecord]:
        """Every live bucket record (at most ``limit``), in name order, each read with a
        quorum read, LIST_READS at a time."""
        names = await self.tables.bucket_names(limit)
        found: list[BucketRecord] = []
        for start in range(0, len(names), LIST_READS):
            batch = names[start:start + LIST_READS]
            read = await asyncio.gather(*(self.tables.read_bucket(b) for b in batch))
            found += [rec for rec, _ in read if rec is not None and not rec.deleted]
        return found

    # --- telling the members ---------------------------------------------------------------

    async def announce(self, table: str, name: str) -> None:
        """Drop the record here, and ask every other member to (best effort, one deadline)."""
        self.invalidate(table, name)
        view = self.views.cluster_view()
        others = [m.address for node_id, m in view.members.members.items()
                  if node_id != view.node_id]
        if not others:
            return
        msg = AccessChanged(table, name)
        results = await asyncio.gather(
            *(self.rpc.call(address, msg, Ack, self.settings.broadcast_deadline_s)
              for address in others), return_exceptions=True)
        missed = [a for a, r in zip(others, results, strict=True) if isinstance(r, RpcError)]
        other = [r for r in results if isinstance(r, BaseException)
                 and not isinstance(r, RpcError)]
        if other:
            raise other[0]
        if missed:
            log.info("access change not announced to every member; their caches expire it",
                     extra={"fields": {"table": table, "name": name, "missed": missed,
                                       "ttl_s": self.settings.ttl_s}})
