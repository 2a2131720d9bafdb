"""An in-memory Engine for component tests: same contract as LMDB, no files, no threads.

It stores framed bytes (so ``dfsring.testing.bitrot`` can simulate bit rot and reads verify CRCs
exactly as on disk) and enforces the same key limit as LMDB, so a test that passes here does
not fail only in production. Each mutation runs against a staging overlay that is merged into
the tables only if the mutation returns, which gives the per-mutation rollback of the LMDB
engine's nested transactions.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Sequence
from typing import TypeVar

from dfsring.foundation.errors import StorageClosed
from dfsring.storage.engine import (
    Txn,
    check_key,
    check_limit,
    check_mutation_result,
    check_tables,
    check_value,
    frame,
    unframe,
    unknown_table,
)

T = TypeVar("T")

_DELETED = None


class _Table:
    """A dict for lookups plus a sorted key list for ordered scans (bisect)."""

    __slots__ = ("data", "keys")

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.keys: list[bytes] = []

    def put(self, key: bytes, framed: bytes) -> None:
        if key not in self.data:
            bisect.insort(self.keys, key)
        self.data[key] = framed

    def delete(self, key: bytes) -> None:
        if self.data.pop(key, None) is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]

    def key_range(self, start: bytes, end: bytes | None, limit: int | None) -> list[bytes]:
        lo = bisect.bisect_left(self.keys, start)
        hi = len(self.keys) if end is None else bisect.bisect_left(self.keys, end, lo)
        if limit is not None:
            hi = min(hi, lo + limit)
        return self.keys[lo:hi]


class _OverlayTxn:
    """Buffers one mutation's writes; the engine merges them only if the mutation succeeds."""

    def __init__(self, engine: MemoryEngine) -> None:
        self._engine = engine
        self.writes: dict[tuple[str, bytes], bytes | None] = {}

    def get(self, table: str, key: bytes) -> bytes | None:
        check_key(key)
        self._engine._table(table)
        if (table, key) in self.writes:
            framed = self.writes[(table, key)]
            return None if framed is None else unframe(table, key, framed)
        return self._engine._read(table, key)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        check_key(key)
        check_value(value)
        self._engine._table(table)
        self.writes[(table, key)] = frame(value)

    def delete(self, table: str, key: bytes) -> bool:
        check_key(key)
        existed = self._exists(table, key)
        self.writes[(table, key)] = _DELETED
        return existed

    def _exists(self, table: str, key: bytes) -> bool:
        if (table, key) in self.writes:
            return self.writes[(table, key)] is not None
        return key in self._engine._table(table).data


class MemoryEngine:
    """Engine protocol over Python dicts; every apply() is its own "commit"."""

    def __init__(self, tables: Sequence[str]) -> None:
        self._tables = {name: _Table() for name in check_tables(tables)}
        self._closed = False
        self._commits = 0
        self._mutations = 0
        self._failed = 0

    def _table(self, table: str) -> _Table:
        try:
            return self._tables[table]
        except KeyError:
            raise unknown_table(table) from None

    def _open_table(self, table: str) -> _Table:
        if self._closed:
            raise StorageClosed("memory engine is closed")
        return self._table(table)

    def _read(self, table: str, key: bytes) -> bytes | None:
        framed = self._table(table).data.get(key)
        return None if framed is None else unframe(table, key, framed)

    def get(self, table: str, key: bytes) -> bytes | None:
        self._open_table(table)
        check_key(key)
        return self._read(table, key)

    def scan(
        self, table: str, start: bytes = b"", end: bytes | None = None, *, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        data = self._open_table(table).data
        keys = self.scan_keys(table, start, end, limit=limit)
        return [(key, unframe(table, key, data[key])) for key in keys]

    def scan_keys(
        self, table: str, start: bytes = b"", end: bytes | None = None, *, limit: int | None = None
    ) -> list[bytes]:
        check_limit(limit)
        return self._open_table(table).key_range(start, end, limit)

    async def apply(self, mutation: Callable[[Txn], T]) -> T:
        """Run ``mutation`` on an overlay and merge it if it returns.

        The mutation runs before the first suspension point, so a close() issued afterwards
        still sees it; the trailing yield makes apply() a real await, as with LMDB, so tests
        exercise the interleavings production code will meet. As with LMDB, a caller cancelled
        at that await may find its mutation committed.
        """
        if self._closed:
            raise StorageClosed("memory engine is closed")
        txn = _OverlayTxn(self)
        self._mutations += 1
        try:
            result = mutation(txn)
            check_mutation_result(result)
        except BaseException:
            self._failed += 1
            raise
        self._merge(txn.writes)
        await asyncio.sleep(0)
        return result

    def _merge(self, writes: dict[tuple[str, bytes], bytes | None]) -> None:
        for (table, key), framed in writes.items():
            if framed is None:
                self._tables[table].delete(key)
            else:
                self._tables[table].put(key, framed)
        self._commits += 1

    def count(self, table: str) -> int:
        return len(self._open_table(table).data)

    def info(self) -> dict[str, object]:
        return {
            "engine": "memory",
            "path": None,
            "durable": False,
            "closing": self._closed,
            "closed": self._closed,
            "entries": {name: len(t.data) for name, t in self._tables.items()},
            "commits": self._commits,
            "mutations": self._mutations,
            "mutations_failed": self._failed,
            "pending": 0,
        }

    async def close(self) -> None:
        """Nothing is ever queued, so closing only refuses further calls."""
        self._closed = True

    def identity(self) -> str | None:
        """Nothing outlives the process: no stored file to vouch for."""
        return None

