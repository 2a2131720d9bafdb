"""A bounded cache of records read from a replicated table, each with the time it was read.

Pure: time is passed in. Used by the access layer (dfsring.replication.access) so that a
request is authenticated from memory, yet a change made on another node shows within a
stated time:

* an entry older than ``ttl_s`` is not served (``fresh`` answers None): the caller reads the
  table again, so any change is seen after at most ``ttl_s`` (plus the read's own time);
* an entry may be re-read early, on a failed check, at most once per ``min_reread_s``: a
  rotated key works at once everywhere, while a stream of wrong secrets costs at most one
  table read per key per ``min_reread_s``;
* "absent" is cached too (value None), so unknown ids cost no more reads than known ones;
* at most ``max_entries`` entries; past that the least recently used one is dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    value: T | None  # None: the table holds no such record
    read_at: float


class TtlCache(Generic[T]):
    def __init__(self, max_entries: int, ttl_s: float, min_reread_s: float) -> None:
        if max_entries < 1 or ttl_s <= 0 or min_reread_s < 0:
            raise ValueError("max_entries and ttl_s must be positive")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.min_reread_s = min_reread_s
        self._entries: OrderedDict[str, Entry[T]] = OrderedDict()

    def fresh(self, key: str, now_s: float) -> Entry[T] | None:
        entry = self._entries.get(key)
        if entry is None or not 0 <= now_s - entry.read_at < self.ttl_s:
            return None
        self._entries.move_to_end(key)
        return entry

    def may_reread(self, key: str, now_s: float) -> bool:
        entry = self._entries.get(key)
        return entry is None or not 0 <= now_s - entry.read_at < self.min_reread_s

    def put(self, key: str, value: T | None, now_s: float) -> None:
        self._entries[key] = Entry(value, now_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
