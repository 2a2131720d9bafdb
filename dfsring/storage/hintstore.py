"""Durable hints on a fallback node: the queue per target, an index by key, the counters.

Three things change together in one engine transaction on every operation, so a crash at any
point leaves them consistent: the queue entry (``hints`` table, keyed by dfsring.core.hints'
``queue_key``), the per-target counters (same table, ``stats_key``), and the index from a
storage key to the targets it is queued for (``hintidx``), which lets a read on this node
find hinted data for a key with one lookup.

Hinted data lives only here, never in this node's own key/value table: the fallback does not
own the key, so nothing else (listings, transfers, anti-entropy) should see it, and deleting
the hint after delivery leaves no stray copy behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgpack

from dfsring.core import hints, keys, vclock
from dfsring.core.hints import Hint, TargetStats
from dfsring.core.vclock import Versions
from dfsring.foundation import errors
from dfsring.storage import Engine, Txn
from dfsring.storage.localstore import LocalStore, decode_record, encode_record

HINTS = "hints"
HINT_INDEX = "hintidx"
TABLES = (HINTS, HINT_INDEX)


@dataclass(frozen=True, slots=True)
class Added:
    stored: bool  # False: refused, the target's queue is full
    merged: bool  # True: folded into a hint already queued for that key and target


class HintStore:
    def __init__(self, engine: Engine, max_bytes: int) -> None:
        self.engine = engine
        self.max_bytes = max_bytes
        self.stats: dict[str, TargetStats] = {}
        self._last_seq = 0

    def open(self) -> None:
        """Load the counters, and the last sequence number so new hints queue after old."""
        end = keys.prefix_end(hints.STATS_PREFIX)
        for key, raw in self.engine.scan(HINTS, hints.STATS_PREFIX, end):
            stats = TargetStats.decode(raw)
            if stats.count:
                self.stats[key[1:].decode("utf-8")] = stats
        for target in self.stats:
            tail = self.engine.scan_keys(HINTS, hints.target_prefix(target),
                                         keys.prefix_end(hints.target_prefix(target)))
            if tail:
                self._last_seq = max(self._last_seq, hints.parse_queue_key(tail[-1])[1])

    def _next_seq(self) -> int:
        """Time-based, so order survives restarts; strictly increasing within one life."""
        self._last_seq = max(self._last_seq + 1, time.time_ns())
        return self._last_seq

    # --- queries (synchronous, short reads) ----------------------------------------------

    @property
    def pending(self) -> int:
        return sum(s.count for s in self.stats.values())

    @property
    def pending_bytes(self) -> int:
        return sum(s.bytes for s in self.stats.values())

    def targets(self) -> list[str]:
        return sorted(t for t, s in self.stats.items() if s.count)

    def versions_for(self, skey: bytes) -> Versions:
        """The join of every hint held here for this storage key (empty when none)."""
        if not self.stats:
            return Versions()
        raw = self.engine.get(HINT_INDEX, skey)
        if raw is None:
            return Versions()
        out = Versions()
        for target, seq in _decode_index(raw).items():
            value = self.engine.get(HINTS, hints.queue_key(target, seq))
            if value is not None:
                out = vclock.sync(out, decode_record(hints.decode_hint(
                    hints.queue_key(target, seq), value).record)[1])
        return out

    def oldest(self, target: str, max_keys: int, max_bytes: int,
               after_seq: int | None = None) -> list[Hint]:
        """Up to the bounds of `target`'s hints, in queue order (at least one if any);
        `after_seq`: only those queued after that one (a scan resumed where it stopped)."""
        prefix = hints.target_prefix(target)
        start = prefix if after_seq is None else hints.queue_key(target, after_seq + 1)
        out: list[Hint] = []
        size = 0
        for key, value in self.engine.scan(HINTS, start, keys.prefix_end(prefix),
                                           limit=max_keys):
            hint = hints.decode_hint(key, value)
            if out and size + hint.size > max_bytes:
                break
            out.append(hint)
            size += hint.size
        return out

    def oldest_created_ms(self, target: str) -> int | None:
        found = self.oldest(target, 1, 1 << 62)
        return found[0].created_ms if found else None

    # --- changes ---------------------------------------------------------------------------

    async def add(self, target: str, name: keys.ObjectName, skey: bytes, versions: Versions,
                  now_ms: int) -> Added:
        """Queue (or fold into the queued) hint of `versions` for `target`, durably."""
        record = encode_record(name, versions)
        max_bytes = self.max_bytes

        def mutation(txn: Txn) -> tuple[Added, TargetStats]:
            stats = TargetStats.decode(txn.get(HINTS, hints.stats_key(target)))
            index = _index_of(txn, skey)
            seq = index.get(target)
            if seq is not None:
                old_raw = txn.get(HINTS, hints.queue_key(target, seq))
                if old_raw is not None:
                    old = hints.decode_hint(hints.queue_key(target, seq), old_raw)
                    merged = vclock.sync(decode_record(old.record)[1], versions)
                    new = hints.folded(old, encode_record(name, merged), now_ms)
                    txn.put(HINTS, hints.queue_key(target, seq), new.encode_value())
                    stats = stats.plus(0, new.size - old.size)
                    txn.put(HINTS, hints.stats_key(target), stats.encode())
                    return Added(True, True), stats
            size = len(skey) + len(record)
            if not hints.admit(stats, size, max_bytes):
                return Added(False, False), stats
            seq = self._next_seq()
            txn.put(HINTS, hints.queue_key(target, seq),
                    hints.encode_value(skey, record, now_ms))
            index[target] = seq
            txn.put(HINT_INDEX, skey, _encode_index(index))
            stats = stats.plus(1, size)
            txn.put(HINTS, hints.stats_key(target), stats.encode())
            return Added(True, False), stats

        added, stats = await self.engine.apply(mutation)
        self.stats[target] = stats
        return added

    async def remove(self, delivered: list[Hint]) -> int:
        """Delete hints the target acknowledged, unless a later write folded more into one
        meanwhile (its stored value changed): that one stays queued and goes again."""
        def mutation(txn: Txn) -> tuple[int, dict[str, TargetStats]]:
            gone = 0
            touched: dict[str, TargetStats] = {}
            for hint in delivered:
                key = hints.queue_key(hint.target, hint.seq)
                try:
                    current = txn.get(HINTS, key)
                except errors.CorruptValue:
                    current = hint.encode_value()  # unreadable: it was delivered, drop it
                if current != hint.encode_value():
                    continue
                _delete(txn, hint, touched)
                gone += 1
            return gone, touched

        gone, touched = await self.engine.apply(mutation)
        self._update(touched)
        return gone

    async def drop_expired(self, target: str, now_ms: int, max_age_ms: int,
                           batch: int = 512) -> int:
        """Drop those of the first `batch` of `target`'s hints whose newest write is older
        than `max_age_ms`."""
        doomed = [h for h in self.oldest(target, batch, 1 << 62)
                  if hints.expired(h.created_ms, now_ms, max_age_ms)]
        return await self.drop(doomed)

    async def drop(self, doomed: list[Hint]) -> int:
        if not doomed:
            return 0

        def mutation(txn: Txn) -> dict[str, TargetStats]:
            touched: dict[str, TargetStats] = {}
            for hint in doomed:
                if txn.get(HINTS, hints.queue_key(hint.target, hint.seq)) is not None:
                    _delete(txn, hint, touched)
            return touched

        self._update(await self.engine.apply(mutation))
        return len(doomed)

    def _update(self, touched: dict[str, TargetStats]) -> None:
        for target, stats in touched.items():
            if stats.count:
                self.stats[target] = stats
            else:
                self.stats.pop(target, None)


def _delete(txn: Txn, hint: Hint, touched: dict[str, TargetStats]) -> None:
    """Remove one queued hint with its index entry, and move its target's counters."""
    key = hints.queue_key(hint.target, hint.seq)
    try:
        raw = txn.get(HINTS, key)
    except errors.CorruptValue:
        raw = None
    size = hints.decode_hint(key, raw).size if raw is not None else hint.size
    txn.delete(HINTS, key)
    index = _index_of(txn, hint.skey)
    if index.get(hint.target) == hint.seq:
        del index[hint.target]
        if index:
            txn.put(HINT_INDEX, hint.skey, _encode_index(index))
        else:
            txn.delete(HINT_INDEX, hint.skey)
    stats = touched.get(hint.target) or TargetStats.decode(
        txn.get(HINTS, hints.stats_key(hint.target)))
    stats = stats.plus(-1, -size)
    touched[hint.target] = stats
    if stats.count:
        txn.put(HINTS, hints.stats_key(hint.target), stats.encode())
    else:
        txn.delete(HINTS, hints.stats_key(hint.target))


def _index_of(txn: Txn, skey: bytes) -> dict[str, int]:
    try:
        raw = txn.get(HINT_INDEX, skey)
    except errors.CorruptValue:
        return {}
    return {} if raw is None else _decode_index(raw)


def _encode_index(index: dict[str, int]) -> bytes:
    return msgpack.packb(index)


def _decode_index(raw: bytes) -> dict[str, int]:
    try:
        value = msgpack.unpackb(raw, raw=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
        raise hints.HintFormatError(f"hint index does not decode: {exc}") from exc
    if not isinstance(value, dict):
        raise hints.HintFormatError("hint index is not a map")
    return {str(k): int(v) for k, v in value.items()}


def local_view(store: LocalStore, hint_store: HintStore, name: keys.ObjectName) -> Versions:
    """What this node answers a read with: its own replica joined with any hints it keeps
    for the key, so a fallback standing in for a down owner serves what it took."""
    own = store.get(name)
    if not hint_store.stats:
        return own
    return vclock.sync(own, hint_store.versions_for(store.storage_key(name)))
