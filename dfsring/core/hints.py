"""Hinted handoff, the pure part: how hints are keyed, encoded, bounded, aged and routed.

Pure: no I/O, no clocks (times are passed in). dfsring.storage.hintstore keeps hints in the storage
engine with these encodings; dfsring.replication.handoff delivers them; the coordinator picks
fallbacks
with dfsring.core.clusterview.FallbackPicker.

A hint is "this versions record belongs to `target`": a fallback that took a write for a
down owner keeps it until the owner is back (Dynamo §4.6). Hints are queued per target in
arrival order under ``queue_key(target, seq)``, so delivery reads them oldest first with one
range scan, and one target's queue never blocks another's. A second write to the same key
for the same target folds into the existing hint (the causal join), so a hot key costs one
hint, not one per write; the hint keeps its place in the queue, and its age restarts from
the newest write it holds (`folded`).

Bounds (Cassandra's ``max_hints_file_size`` / ``max_hint_window``, Garage's bounded resync
queue): a target's queue may hold at most ``max_bytes``; a hint that would cross the bound
is refused, so the coordinator tries the next fallback or reports the quorum it really got:
an acknowledged write is never silently dropped for space. Hints whose newest write is older
than ``max_age`` are dropped and counted: by then anti-entropy is the cheaper repair. Age
counts from the newest write, not the first: a hint for a key rewritten every second would
otherwise be dropped while it holds a write a second old (issue 15 part 5; Cassandra's
hint window likewise bounds how long ago a write was missed, not when the first one was).
"""

from __future__ import annotations

import builtins
import struct
from dataclasses import dataclass

import msgpack

from dfsring.foundation.errors import (
    HintFormatError as HintFormatError,  # its home before dfsring.foundation.errors
)
from dfsring.ring import Ring

_SEQ = struct.Struct(">Q")
STATS_PREFIX = b"\x00"  # per-target counters; queue keys start with a length byte >= 1
MAX_TARGET = 255


def _target_bytes(target: str) -> bytes:
    raw = target.encode("utf-8")
    if not 1 <= len(raw) <= MAX_TARGET:
        raise ValueError(f"a hint target is 1..{MAX_TARGET} bytes, got {len(raw)}")
    return raw


def target_prefix(target: str) -> bytes:
    """The common prefix of every queue key of `target`: no target's prefix is another's."""
    raw = _target_bytes(target)
    return bytes([len(raw)]) + raw


def queue_key(target: str, seq: int) -> bytes:
    return target_prefix(target) + _SEQ.pack(seq)


def parse_queue_key(key: bytes) -> tuple[str, int]:
    if not key or key[0] == 0 or len(key) != 1 + key[0] + _SEQ.size:
        raise HintFormatError("not a hint queue key")
    return key[1:1 + key[0]].decode("utf-8"), _SEQ.unpack_from(key, 1 + key[0])[0]


def stats_key(target: str) -> bytes:
    return STATS_PREFIX + _target_bytes(target)


@dataclass(frozen=True, slots=True)
class Hint:
    """One queued hint: `record` is the storage record (dfsring.storage.localstore) for `skey`."""

    target: str
    seq: int
    skey: bytes
    record: bytes
    created_ms: int  # wall ms of the newest write folded in: the hint's age counts from it

    @property
    def size(self) -> int:
        return len(self.skey) + len(self.record)

    def encode_value(self) -> bytes:
        return encode_value(self.skey, self.record, self.created_ms)


def folded(old: Hint, record: bytes, now_ms: int) -> Hint:
    """`old` after a later write for its key and target was joined into it (`record` is the
    join): same queue place, and `created_ms` is the time of the newest write it holds, the
    moment its age counts from. Never earlier than before: clocks may step back."""
    return Hint(old.target, old.seq, old.skey, record, max(old.created_ms, now_ms))


def encode_value(skey: bytes, record: bytes, created_ms: int) -> bytes:
    raw: bytes = msgpack.packb((skey, record, created_ms), use_bin_type=True)
    return raw


def decode_hint(key: bytes, value: bytes) -> Hint:
    target, seq = parse_queue_key(key)
    try:
        skey, record, created = msgpack.unpackb(value, raw=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise HintFormatError(f"hint value does not decode: {exc}") from exc
    if not (isinstance(skey, bytes) and isinstance(record, bytes) and type(created) is int):
        raise HintFormatError("hint value is not (skey, record, created_ms)")
    return Hint(target, seq, skey, record, created)


@dataclass(frozen=True, slots=True)
class TargetStats:
    """A target's queue: how many hints, how many bytes (key + record), kept in the same
    transaction as the queue so the bound holds across crashes."""

    count: int = 0
    bytes: int = 0

    def encode(self) -> builtins.bytes:  # `bytes` is a field's name in this class
        raw: builtins.bytes = msgpack.packb((self.count, self.bytes))
        return raw

    @classmethod
    def decode(cls, raw: builtins.bytes | None) -> TargetStats:
        if raw is None:
            return cls()
        try:
            count, size = msgpack.unpackb(raw)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
            raise HintFormatError(f"hint counters do not decode: {exc}") from exc
        return cls(max(0, int(count)), max(0, int(size)))

    def plus(self, count: int, size: int) -> TargetStats:
        return TargetStats(max(0, self.count + count), max(0, self.bytes + size))


def admit(stats: TargetStats, size: int, max_bytes: int) -> bool:
    """May a new hint of `size` bytes join this queue? An empty queue always takes one hint,
    so a bound below one value's size cannot refuse every write."""
    return stats.count == 0 or stats.bytes + size <= max_bytes


def expired(created_ms: int, now_ms: int, max_age_ms: int) -> bool:
    return now_ms - created_ms > max_age_ms


def backoff_s(failures: int, *, base: float = 0.5, cap: float = 30.0,
              jitter: float = 0.0) -> float:
    """Delay before the next delivery attempt after `failures` failed ones in a row:
    exponential, capped; `jitter` in [0, 1) spreads retries of many fallbacks apart."""
    if failures <= 0:
        return 0.0
    delay = min(cap, base * (2.0 ** min(failures - 1, 30)))
    return delay * (1.0 - 0.5 * jitter)


def destinations(target: str, partition: int, ring: Ring) -> tuple[str, ...]:
    """Where a hint for `target` goes now: the target if it still owns the partition,
    else the partition's current owners (the target left, or ownership moved meanwhile)."""
    owners = ring.preference_list(partition)
    return (target,) if target in owners else owners
