"""This node's replica of the key/value data, over the storage engine.

Every change to a key is one engine mutation: read the stored versions, combine them with the
new ones by a pure function from dfsring.core.vclock, write the result and the node's key/byte
counters, all in one transaction on the engine's writer thread. That makes read-merge-write
atomic without locks, and group commit lets concurrent writes share one fsync.

The actor ids used for the dots this node issues derive from a base created with the
database, not with the node: a node whose disk is wiped comes back with a new base. Within one
database, each key is minted under a per-key actor epoch (dfsring.core.actors, Riak KV679): the
claim naming it is kept in META beside the record, set in the mint's transaction and deleted
in the transaction of every event that makes this node forget the record (quarantine, a
partition drop, a tombstone purge, a corrupt record overwritten by a repair), so the node
never mints a dot another replica's clock already covers.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

import msgpack

from dfsring.core import actors, keys, validate, vclock
from dfsring.core import merkle as antientropy
from dfsring.core.keys import ObjectName
from dfsring.core.vclock import Versions, VersionVector
from dfsring.foundation import batching, errors
from dfsring.storage import Engine, Txn

KV = "kv"
META = "meta"
TREE = "tree"  # Merkle leaves: partition (2 bytes) + leaf (2 bytes) -> 16-byte hash
TABLES = (KV, META, TREE)
_DIRTY = b"tree-dirty:"  # META: partitions whose leaves may have drifted from the data
_QUARANTINE = b"quarantine:"  # META: storage keys whose record failed its checksum
_STATS = b"stats"
_ACTOR = b"actor"
_CLAIM = b"claim:"  # META: storage key -> the actor epoch this node mints that key with
_EPOCH = b"actor-epoch"  # META: the last actor epoch issued
_FLOOR = b"actor-floor"  # META: claims below it are void (set when a restore may have happened)
_IDENTITY = b"db-identity"  # META: the database file this store last opened
PageVisitor = Callable[[list[tuple[bytes, bytes]], list[bytes]], Awaitable[None]]
_PLAIN, _WITH_KEY = 0, 1  # record tags: versions only, or full key + versions (long keys)
_SEP = b"\x00"  # between bucket and key in a storage key (dfsring.core.keys)
DEFAULT_MAX_VALUE_SIZE = 1 << 20  # --max-value-size's default
DECODE_ON_LOOP = 32  # records a merge decodes on the loop; a bigger batch, in a worker thread


def encode_record(name: ObjectName, versions: Versions) -> bytes:
    """A stored record; keys abbreviated in the storage key carry their full name along."""
    abbreviated = keys.is_abbreviated(name.bucket_bytes,
                                      keys.key_suffix(name.bucket_bytes, name.key_bytes))
    return _record(name.key_bytes if abbreviated else None, versions)


def _record(full_key: bytes | None, versions: Versions) -> bytes:
    body = vclock.encode_versions(versions)
    if full_key is None:
        return bytes([_PLAIN]) + body
    return bytes([_WITH_KEY]) + len(full_key).to_bytes(2, "big") + full_key + body


def decode_record(raw: bytes) -> tuple[bytes | None, Versions]:
    """(full key if the record carries one, versions); ValueError on a malformed record."""
    if not raw:
        raise ValueError("empty record")
    if raw[0] == _PLAIN:
        return None, vclock.decode_versions(raw[1:])
    if raw[0] == _WITH_KEY and len(raw) >= 3:
        end = 3 + int.from_bytes(raw[1:3], "big")
        return raw[3:end], vclock.decode_versions(raw[end:])
    raise ValueError(f"unknown record tag {raw[0]}")


@dataclass(frozen=True, slots=True)
class StoreStats:
    keys: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Stored:
    """A key's versions as held here; `changed` says whether the write altered local state."""

    versions: Versions
    changed: bool


class LocalStore:
    def __init__(self, engine: Engine, node_id: str, partition_bits: int,
                 max_siblings: int | None = None,
                 max_value_size: int = DEFAULT_MAX_VALUE_SIZE) -> None:
        self.engine = engine
        self.max_value_size = max_value_size  # what a peer's record may carry (merge_raw)
        self.node_id = node_id
        self.partition_bits = partition_bits
        self.max_siblings = max_siblings
        self.actor = ""  # the base actor: every epoch actor of this store is "<actor>.<hex>"
        self.floor = 0
        self.stats = StoreStats()
        self.corrupt_skipped = 0
        # per partition: the tree's inner nodes, and the bottom nodes whose leaves changed
        # since (marked after every commit, see _bump; rehashed on the next tree_root)
        self._inner: dict[int, antientropy.InnerNodes] = {}
        self._stale: dict[int, set[int]] = {}

    async def open(self, now_ms: int | None = None) -> None:
        """Load (or create, durably) the actor id, the epoch floor and the counters."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        identity = self.engine.identity()

        def mutation(txn: Txn) -> tuple[str, int]:
            return self._ensure_actor(txn), self._ensure_floor(txn, identity, now)

        self.actor, self.floor = await self.engine.apply(mutation)
        raw = self.engine.get(META, _STATS)
        if raw is not None:
            self.stats = StoreStats(*msgpack.unpackb(raw))

    @staticmethod
    def _ensure_floor(txn: Txn, identity: str | None, now_ms: int) -> int:
        """Void every claim (raise the floor above all epochs issued) unless this is the
        database file the store last ran on and its writes are durable: a copy put back
        from a backup may have forgotten dots its claims vouch for (dfsring.core.actors)."""
        floor = actors.decode_epoch(txn.get(META, _FLOOR)) or 0
        if identity is not None and txn.get(META, _IDENTITY) == identity.encode():
            return floor
        floor = actors.next_epoch(actors.decode_epoch(txn.get(META, _EPOCH)) or 0, now_ms)
        txn.put(META, _FLOOR, actors.encode_epoch(floor))
        txn.put(META, _EPOCH, actors.encode_epoch(floor))
        if identity is not None:
            txn.put(META, _IDENTITY, identity.encode())
        return floor

    def _ensure_actor(self, txn: Txn) -> str:
        raw = txn.get(META, _ACTOR)
        if raw is not None:
            return raw.decode()
        actor = f"{self.node_id}.{secrets.token_hex(3)}"
        txn.put(META, _ACTOR, actor.encode())
        return actor

    def storage_key(self, name: ObjectName) -> bytes:
        return keys.storage_key(self.partition(name), name.bucket_bytes, name.key_bytes)

    def partition(self, name: ObjectName) -> int:
        """The partition this store files the key under (dfsring.core.keys.name_partition)."""
        return keys.name_partition(name, self.partition_bits)

    def get(self, name: ObjectName) -> Versions:
        """The versions stored here (empty when none); raises CorruptValue, never bad data."""
        raw = self.engine.get(KV, self.storage_key(name))
        return Versions() if raw is None else decode_record(raw)[1]

    async def coordinate(self, name: ObjectName, context: VersionVector, value: bytes | None,
                         content_type: str, modified_ms: int) -> Versions:
        """Make a new version (a value, or a tombstone when value is None) as coordinator.

        The dot is minted under the key's claimed actor epoch, or a fresh one when the claim
        is gone or void (dfsring.core.actors). A local record that fails its checksum does not
        block the write: it is quarantined in the same transaction (it is unreadable, so
        this node forgot it) and the write proceeds under a fresh epoch; the other replicas
        and anti-entropy still hold what it had. Raises TooManySiblings past max_siblings.
        """
        skey = self.storage_key(name)

        def mutation(txn: Txn) -> tuple[Versions, StoreStats]:
            try:
                old_raw = txn.get(KV, skey)
            except errors.CorruptValue:
                self._forget(txn, skey, b"", modified_ms)
                old_raw = None
            old = Versions() if old_raw is None else decode_record(old_raw)[1]
            actor = self._minting_actor(txn, skey, old, context, modified_ms)
            new = vclock.update(old, context, actor, value, content_type, modified_ms,
                                max_siblings=self.max_siblings)
            return new, self._write(txn, name, skey, old_raw, new)

        new, self.stats = await self.engine.apply(mutation)
        self._bump(skey)
        return new

    def _minting_actor(self, txn: Txn, skey: bytes, local: Versions, context: VersionVector,
                       now_ms: int) -> str:
        """The key's claimed actor, or a fresh epoch claimed in this transaction."""
        claim = actors.decode_epoch(txn.get(META, _CLAIM + skey))
        if actors.keeps_claim(claim, self.floor, self.actor, local, context):
            assert claim is not None
            return actors.epoch_actor(self.actor, claim)
        epoch = actors.next_epoch(actors.decode_epoch(txn.get(META, _EPOCH)) or 0, now_ms)
        txn.put(META, _EPOCH, actors.encode_epoch(epoch))
        txn.put(META, _CLAIM + skey, actors.encode_epoch(epoch))
        return actors.epoch_actor(self.actor, epoch)

    def _forget(self, txn: Txn, skey: bytes, old_raw: bytes, now_ms: int) -> StoreStats:
        """Take an unreadable record out of service inside a write's transaction, as the
        scrubber's quarantine does (deleted, noted, its partition's leaves rebuilt)."""
        txn.delete(KV, skey)
        txn.delete(META, _CLAIM + skey)
        _fold_tree(txn, skey, old_raw, None)
        txn.put(META, _QUARANTINE + skey, str(now_ms).encode())
        return self._account(txn, -1, 0)

    async def merge(self, name: ObjectName, incoming: Versions, *,
                    overwrite_corrupt: bool = False) -> Stored:
        """Fold a replica's or a repair's versions into ours (causal join, idempotent).

        With overwrite_corrupt, a local record that fails its checksum is replaced by the
        incoming versions: it cannot be read anyway, and the incoming join is the repair.
        """
        skey = self.storage_key(name)

        def mutation(txn: Txn) -> tuple[Stored, StoreStats | None]:
            try:
                old_raw = txn.get(KV, skey)
            except errors.CorruptValue:
                if not overwrite_corrupt:
                    raise
                txn.delete(META, _CLAIM + skey)  # what this node minted there is forgotten
                return Stored(incoming, True), self._write(txn, name, skey, b"", incoming)
            old = Versions() if old_raw is None else decode_record(old_raw)[1]
            new = vclock.sync(old, incoming)
            if new == old and old_raw is not None:
                return Stored(old, False), None
            return Stored(new, True), self._write(txn, name, skey, old_raw, new)

        stored, stats = await self.engine.apply(mutation)
        if stats is not None:
            self.stats = stats
            self._bump(skey)
        return stored

    def _write(self, txn: Txn, name: ObjectName, skey: bytes, old_raw: bytes | None,
               new: Versions) -> StoreStats:
        return self._write_raw(txn, skey, old_raw, encode_record(name, new))

    def _write_raw(self, txn: Txn, skey: bytes, old_raw: bytes | None, raw: bytes
                   ) -> StoreStats:
        """Store a record; `old_raw` is what was there (None: nothing; b"": unreadable)."""
        txn.put(KV, skey, raw)
        _fold_tree(txn, skey, old_raw, raw)
        return self._account(txn, 0 if old_raw is not None else 1,
                             len(raw) - (len(old_raw) if old_raw is not None else 0))

    def _bump(self, *skeys: bytes) -> None:
        """After a commit: the tree nodes above the leaves it touched are stale. Marked after
        the commit, so nodes computed from pre-commit leaves are never kept as current. A
        bare partition prefix (a rebuild of all its leaves) drops the partition's nodes."""
        for skey in skeys:
            part = int.from_bytes(skey[:2], "big")
            if len(skey) <= 2:
                self._inner.pop(part, None)
                self._stale.pop(part, None)
            elif part in self._inner:
                group = antientropy.leaf_index(skey) // antientropy.DEFAULT_FANOUT
                self._stale.setdefault(part, set()).add(group)

    def _account(self, txn: Txn, keys_delta: int, bytes_delta: int) -> StoreStats:
        """Move the key/byte counters in the same transaction as the change they count."""
        stats_raw = txn.get(META, _STATS)
        count, size = msgpack.unpackb(stats_raw) if stats_raw else (0, 0)
        count, size = max(0, count + keys_delta), max(0, size + bytes_delta)
        txn.put(META, _STATS, msgpack.packb((count, size)))
        return StoreStats(count, size)

    # --- whole partitions: ownership transfers (dfsring.replication.transfers) --------------------

    def read_partition(self, partition: int, after: bytes | None, max_bytes: int,
                       max_keys: int) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        """Records of a partition after storage key `after`, in key order, up to the bounds;
        the second item is where to resume (None once the partition is exhausted). Corrupt
        records are skipped (and counted by the caller's metrics): another replica has them."""
        start, end = partition_range(partition)
        if after is not None:
            start = after + b"\x00"
        out: list[tuple[bytes, bytes]] = []
        size = 0
        scanned = self.engine.scan_keys(KV, start, end, limit=max_keys)
        for skey in scanned:
            try:
                raw = self.engine.get(KV, skey)
            except errors.CorruptValue:
                self.corrupt_skipped += 1
                continue
            if raw is None:
                continue
            out.append((skey, raw))
            size += len(skey) + len(raw)
            if size >= max_bytes:
                return out, skey
        return out, (scanned[-1] if len(scanned) >= max_keys else None)

    async def merge_records(self, partition: int, records: list[tuple[bytes, bytes]],
                            cursor_key: bytes, cursor: bytes) -> int:
        """Fold a batch of a peer's records into ours and move the transfer cursor, in one
        transaction: after a crash the transfer resumes exactly after the last batch applied.
        Raises ValueError (nothing applied) if a record is malformed or outside the partition.
        """
        start = partition_range(partition)[0]
        if any(not skey.startswith(start) for skey, _ in records):
            raise ValueError("a transferred key lies outside its partition")
        return await self.merge_raw(records, (cursor_key, cursor))

    async def merge_raw(self, records: list[tuple[bytes, bytes]],
                        meta: tuple[bytes, bytes] | None = None) -> int:
        """Fold stored records (storage key, record) from a peer into ours in one transaction,
        with an optional META entry written alongside; returns how many keys changed.
        Raises ValueError (nothing applied) if any record or storage key is malformed.
        A repair batch (up to batching.MAX_BATCH_BYTES) is decoded in a worker thread, off
        the event loop that carries the heartbeats (issue 15 part 7)."""
        if len(records) > DECODE_ON_LOOP:
            decoded = await batching.off_loop(_decode_records, records, self.partition_bits,
                                              self.max_value_size)
        else:
            decoded = _decode_records(records, self.partition_bits, self.max_value_size)

        def mutation(txn: Txn) -> tuple[int, StoreStats | None]:
            changed, stats = 0, None
            for skey, full, incoming in decoded:
                try:
                    old_raw = txn.get(KV, skey)
                except errors.CorruptValue:
                    old_raw, old = b"", Versions()
                    txn.delete(META, _CLAIM + skey)  # forgotten: see merge()
                else:
                    old = Versions() if old_raw is None else decode_record(old_raw)[1]
                new = vclock.sync(old, incoming)
                if new == old and old_raw:
                    continue
                stats = self._write_raw(txn, skey, old_raw, _record(full, new))
                changed += 1
            if meta is not None:
                txn.put(META, *meta)
            return changed, stats

        changed, stats = await self.engine.apply(mutation)
        if stats is not None:
            self.stats = stats
            self._bump(*(skey for skey, _, _ in decoded))
        return changed

    def meta_get(self, key: bytes) -> bytes | None:
        return self.engine.get(META, key)

    def meta_keys(self, prefix: bytes) -> list[bytes]:
        return self.engine.scan_keys(META, prefix, keys.prefix_end(prefix))

    async def meta_put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        def mutation(txn: Txn) -> None:
            for key, value in items:
                txn.put(META, key, value)
        await self.engine.apply(mutation)

    async def meta_delete(self, meta_keys: list[bytes]) -> None:
        def mutation(txn: Txn) -> None:
            for key in meta_keys:
                txn.delete(META, key)
        await self.engine.apply(mutation)

    async def drop_partition(self, partition: int, batch: int = 512) -> int:
        """Delete up to `batch` of this partition's records (it moved to other owners);
        returns how many went, so the caller loops until 0 without one huge transaction."""
        start, end = partition_range(partition)
        doomed = self.engine.scan_keys(KV, start, end, limit=batch)
        if not doomed:
            return 0

        def mutation(txn: Txn) -> StoreStats:
            stats = self.stats
            for skey in doomed:
                try:
                    old_raw = txn.get(KV, skey)
                except errors.CorruptValue:
                    old_raw = b""
                txn.delete(META, _CLAIM + skey)  # forgotten with the record (dfsring.core.actors)
                if txn.delete(KV, skey):
                    _fold_tree(txn, skey, old_raw, None)
                    stats = self._account(txn, -1, -len(old_raw or b""))
            return stats

        self.stats = await self.engine.apply(mutation)
        self._bump(*doomed)
        return len(doomed)

    def has_partition_data(self, partition: int) -> bool:
        start, end = partition_range(partition)
        return bool(self.engine.scan_keys(KV, start, end, limit=1))

    # --- anti-entropy: Merkle leaves kept with the data (dfsring.antientropy) -----------------

    async def tree_roots(self, partitions: Iterable[int]) -> list[bytes]:
        """``tree_root`` of each partition, in order. Building or rehashing the roots of
        every partition a node owns takes a second or more after a restart or a refill, so
        it runs in slices that yield to the loop (batching.sliced); each root is computed
        whole on the loop, so no write's _bump can fall between reading and keeping it."""
        return await batching.sliced(partitions, self.tree_root)

    def tree_root(self, partition: int) -> bytes:
        """The partition's root: its inner nodes are kept, and only those above leaves that
        changed since the last call are rehashed (antientropy.InnerNodes)."""
        start = partition.to_bytes(2, "big")
        inner = self._inner.get(partition)
        if inner is None:
            leaves = {int.from_bytes(k[2:4], "big"): v
                      for k, v in self.engine.scan(TREE, start, keys.prefix_end(start))
                      if len(k) == 4}
            inner = self._inner[partition] = antientropy.InnerNodes(leaves)
            self._stale.pop(partition, None)
            return inner.root()
        stale = self._stale.pop(partition, None)
        if stale:
            inner.update({group: self._group_leaves(start, group) for group in stale})
        return inner.root()

    def tree_view(self, partition: int) -> antientropy.TreeView:
        """The partition's tree for an exchange walk, brought up to date first; its leaves
        are read per bottom node as the walk reaches them."""
        self.tree_root(partition)
        start = partition.to_bytes(2, "big")
        return antientropy.TreeView(self._inner[partition],
                                    lambda group: self._group_leaves(start, group))

    def _group_leaves(self, start: bytes, group: int) -> list[bytes]:
        fanout = antientropy.DEFAULT_FANOUT
        first = group * fanout
        leaves = [antientropy.EMPTY_LEAF] * fanout
        for k, v in self.engine.scan(TREE, start + first.to_bytes(2, "big"),
                                     start + (first + fanout).to_bytes(2, "big")):
            if len(k) == 4:
                leaves[int.from_bytes(k[2:4], "big") - first] = v
        return leaves

    def scan_records(self, partition: int, after: bytes | None = None, page: int = 512
                     ) -> tuple[list[tuple[bytes, bytes]], list[bytes], bytes | None]:
        """One page of a partition's records: (records, corrupt storage keys, where to resume;
        None at the end). A record that fails its checksum is reported, never returned."""
        start, end = partition_range(partition)
        if after is not None:
            start = after + b"\x00"
        records: list[tuple[bytes, bytes]] = []
        corrupt: list[bytes] = []
        last: bytes | None = None
        while len(records) + len(corrupt) < page:
            want = page - len(records) - len(corrupt)
            try:
                rows = self.engine.scan(KV, start, end, limit=want)
            except errors.CorruptValue as exc:
                if exc.key is None:
                    raise
                for skey in self.engine.scan_keys(KV, start, exc.key):
                    raw = self._get_or_none(skey)
                    if raw is None:
                        corrupt.append(skey)
                    else:
                        records.append((skey, raw))
                corrupt.append(exc.key)
                last, start = exc.key, exc.key + b"\x00"
                continue
            records.extend(rows)
            if len(rows) < want:
                return records, corrupt, None
            last = rows[-1][0]
            start = last + b"\x00"
        return records, corrupt, last

    def _get_or_none(self, skey: bytes) -> bytes | None:
        try:
            return self.engine.get(KV, skey)
        except errors.CorruptValue:
            return None

    def leaf_items(self, partition: int, leaves: set[int]) -> dict[bytes, bytes]:
        """{storage key: version digest} of the partition's records in these leaves."""
        out: dict[bytes, bytes] = {}
        after = None
        while True:
            records, _, after = self.scan_records(partition, after)
            for skey, raw in records:
                if antientropy.leaf_index(skey) in leaves:
                    out[skey] = antientropy.version_digest(raw)
            if after is None:
                return out

    def records(self, skeys: list[bytes], max_bytes: int | None = None
                ) -> list[tuple[bytes, bytes]]:
        """The stored records of these keys that exist here and read back intact, in the
        order asked; with `max_bytes`, only as many as fit (at least one: see
        batching.within_budget; the caller asks again after the last one returned)."""
        found = ((k, raw) for k in skeys if (raw := self._get_or_none(k)) is not None)
        if max_bytes is None:
            return list(found)
        return batching.within_budget(found, max_bytes)

    async def quarantine(self, skey: bytes, now_ms: int) -> bool:
        """Take a record that failed its checksum out of service: it is deleted (so it is
        never served, and anti-entropy sees it missing), its key noted, and its partition's
        leaves marked for a rebuild (its old digest is unknowable). False if it was gone."""
        def mutation(txn: Txn) -> StoreStats | None:
            try:
                txn.get(KV, skey)
            except errors.CorruptValue:
                return self._forget(txn, skey, b"", now_ms)
            return None  # gone, or rewritten intact meanwhile

        return await self._apply_to(skey, mutation)

    async def _apply_to(self, skey: bytes, mutation: Callable[[Txn], StoreStats | None]) -> bool:
        """Apply a mutation of ``skey`` that returns the new stats, or None if it changed
        nothing; keep the stats and mark the key's leaf. True if it changed the key."""
        stats = await self.engine.apply(mutation)
        if stats is None:
            return False
        self.stats = stats
        self._bump(skey)
        return True

    def dirty_partitions(self) -> list[int]:
        return [int.from_bytes(k[len(_DIRTY):], "big") for k in self.meta_keys(_DIRTY)]

    async def rebuild_tree(self, partition: int, visit: PageVisitor | None = None) -> bool:
        """Recompute the partition's leaves from its records; True if the stored ones were
        wrong and have been rewritten. The stored leaves are read before the data scan and
        checked unchanged in the rewriting transaction, so a write racing the rebuild makes it
        give up (the next pass tries again) instead of overwriting that write's leaf.
        `visit` sees each page of (records, corrupt keys) first: the scrubber's one read of
        the partition serves both its checks and the rebuild."""
        start = partition.to_bytes(2, "big")
        have = {int.from_bytes(k[2:4], "big"): v
                for k, v in self.engine.scan(TREE, start, keys.prefix_end(start))
                if len(k) == 4}
        fresh: dict[int, int] = {}
        after = None
        while True:  # each page read and hashed in a worker thread (issue 15 part 7)
            records, corrupt, after = await batching.off_loop(
                self._fold_page, partition, after, fresh)
            if visit is not None:
                await visit(records, corrupt)
            if after is None:
                break
        want = {leaf: v.to_bytes(antientropy.HASH_BYTES, "big")
                for leaf, v in fresh.items() if v}
        dirty = _DIRTY + start
        if have == want:
            if self.engine.get(META, dirty) is not None:
                await self.meta_delete([dirty])
            return False

        def mutation(txn: Txn) -> bool:
            for leaf in have.keys() | want.keys():
                if txn.get(TREE, start + leaf.to_bytes(2, "big")) != have.get(leaf):
                    return False
            for leaf in have.keys() - want.keys():
                txn.delete(TREE, start + leaf.to_bytes(2, "big"))
            for leaf, value in want.items():
                txn.put(TREE, start + leaf.to_bytes(2, "big"), value)
            txn.delete(META, dirty)
            return True

        rebuilt = await self.engine.apply(mutation)
        if rebuilt:
            self._bump(start)
        return rebuilt

    def _fold_page(self, partition: int, after: bytes | None, fresh: dict[int, int]
                   ) -> tuple[list[tuple[bytes, bytes]], list[bytes], bytes | None]:
        """One page of scan_records, its items XORed into `fresh` (leaf -> hash as int);
        runs in a worker thread, `fresh` is the caller's alone until it returns."""
        records, corrupt, after = self.scan_records(partition, after)
        for skey, raw in records:
            leaf = antientropy.leaf_index(skey)
            fresh[leaf] = fresh.get(leaf, 0) ^ antientropy.item_digest(
                skey, antientropy.version_digest(raw))
        return records, corrupt, after

    async def purge_tombstone(self, skey: bytes, digest: bytes) -> bool:
        """Delete a key's record iff it is still exactly the tombstone-only record with this
        digest (compare-and-delete: a write that arrived meanwhile keeps it)."""
        def mutation(txn: Txn) -> StoreStats | None:
            try:
                raw = txn.get(KV, skey)
            except errors.CorruptValue:
                return None
            if raw is None or antientropy.version_digest(raw) != digest:
                return None
            if decode_record(raw)[1].live():
                return None
            txn.delete(KV, skey)
            txn.delete(META, _CLAIM + skey)  # forgotten with the record (dfsring.core.actors)
            _fold_tree(txn, skey, raw, None)
            return self._account(txn, -1, -len(raw))

        return await self._apply_to(skey, mutation)

    def list_live(self, bucket: bytes, prefix: bytes, after: bytes | None,
                  limit: int) -> list[tuple[bytes, bytes]]:
        """Up to `limit` live (not deleted) keys of a bucket as (suffix, full key), in suffix
        order (byte order but for very long keys, see dfsring.core.keys), after suffix `after`."""
        streams = [self._live_in_partition(p, bucket, prefix, after)
                   for p in range(1 << self.partition_bits)]
        out: list[tuple[bytes, bytes]] = []
        for item in _merge_sorted(streams):
            out.append(item)
            if len(out) >= limit:
                break
        return out

    def list_partition(self, partition: int, bucket: bytes, prefix: bytes, after: bytes | None,
                       limit: int) -> list[tuple[bytes, bytes]]:
        """``list_live`` within one partition only: for the grouped system tables
        (dfsring.core.keys.GROUPED_BUCKETS), whose keys of one user bucket all sit in one
        partition, a page costs a range scan of that partition, not one per partition."""
        if not 0 <= partition < 1 << self.partition_bits:
            raise errors.BadRequest(f"partition {partition} is outside this node's ring")
        return list(itertools.islice(
            self._live_in_partition(partition, bucket, prefix, after), max(0, limit)))

    def _live_in_partition(self, part: int, bucket: bytes, prefix: bytes,
                           after: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        base = keys.bucket_prefix(part, bucket)
        start = base + prefix if after is None or after < prefix else base + after + b"\x00"
        end = keys.prefix_end(base + prefix)
        page = 16
        while True:
            rows = self.engine.scan(KV, start, end, limit=page)
            for skey, raw in rows:
                full, versions = decode_record(raw)
                if versions.live():
                    suffix = skey[len(base):]
                    yield suffix, full if full is not None else suffix
            if len(rows) < page:
                return
            start = rows[-1][0] + b"\x00"
            page = min(page * 4, 1024)


def partition_range(partition: int) -> tuple[bytes, bytes | None]:
    """[start, end) of one partition's storage keys: they all begin with its 2-byte index."""
    start = partition.to_bytes(2, "big")
    return start, keys.prefix_end(start)


def _decode_records(records: list[tuple[bytes, bytes]], partition_bits: int,
                    max_value_size: int) -> list[tuple[bytes, bytes | None, Versions]]:
    """(storage key, full key or None, versions) of a peer's records; ValueError if any
    storage key is malformed or outside the partitions, or any record does not decode or
    holds what a client could not have written (dfsring.core.validate: a reserved bucket,
    a value past the limit, a content type with control characters)."""
    partitions = 1 << partition_bits
    decoded = []
    for skey, raw in records:
        if not 2 < len(skey) <= keys.MAX_STORAGE_KEY or \
                int.from_bytes(skey[:2], "big") >= partitions or _SEP not in skey[2:]:
            raise ValueError("a storage key is malformed or outside the partitions")
        full, versions = decode_record(raw)
        try:
            validate.peer_bucket(skey[2:].split(_SEP, 1)[0])
            validate.versions(versions, max_value_size)
        except errors.DfsError as exc:
            raise ValueError(f"a record is refused: {exc}") from exc
        decoded.append((skey, full, versions))
    return decoded


def _merge_sorted(streams: list[Iterator[tuple[bytes, bytes]]]) -> Iterator[tuple[bytes, bytes]]:
    return heapq.merge(*streams)


def _fold_tree(txn: Txn, skey: bytes, old_raw: bytes | None, new_raw: bytes | None) -> None:
    """Move the key's Merkle leaf from the old record to the new one in the same transaction
    as the data. An unreadable old record (b"") has an unknowable digest: the partition is
    marked for a rebuild from its data instead."""
    part = skey[:2]
    if old_raw == b"":
        txn.put(META, _DIRTY + part, b"1")
    old = antientropy.version_digest(old_raw) if old_raw else None
    new = antientropy.version_digest(new_raw) if new_raw is not None else None
    if old == new:
        return
    tkey = part + antientropy.leaf_index(skey).to_bytes(2, "big")
    try:
        leaf = txn.get(TREE, tkey)
    except errors.CorruptValue:
        leaf = None
        txn.put(META, _DIRTY + part, b"1")
    value = antientropy.fold_leaf(leaf, skey, old, new)
    if value == antientropy.EMPTY_LEAF:
        txn.delete(TREE, tkey)
    else:
        txn.put(TREE, tkey, value)
