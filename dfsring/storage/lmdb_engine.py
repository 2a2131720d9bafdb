"""The production Engine: LMDB, one writer thread, group commit.

Why LMDB: copy-on-write B+tree with MVCC, so readers never block the writer and a crash can
only ever leave the last committed state (no WAL replay, no repair step). Its cost is one fsync
per write transaction, which group commit amortises: mutations that arrive while a commit is in
progress share the next transaction and its fsync, as in database WALs (Gray & Reuter §9.4.7).

Threading. LMDB allows one write transaction per environment at a time, bound to the thread
that opened it, so every write happens on one dedicated thread (a one-worker executor), driven
by one asyncio task per engine. Reads are short read transactions on the calling thread
(py-lmdb sets MDB_NOTLS, so any thread may read) and return copies (``buffers=False``), so no
read transaction outlives a call and nothing pins old pages across an await.

Invariants:
- a future returned to an apply() caller is resolved only after its transaction committed
  (and, with ``durable=True``, was fsync'd), or with the error that prevented it;
- each mutation runs in its own nested transaction: one that raises is rolled back alone and
  its exception goes to its caller, while the rest of the batch commits;
- the writer task never dies of an exception: a failed batch fails its own futures (with
  StorageError) and is logged; only cancellation or close() ends it, and both fail whatever is
  still queued with StorageClosed;
- cancellation: a caller cancelled after submitting may still see its mutation committed
  (if the batch had already started); one cancelled before its batch was taken is skipped.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import lmdb

from dfsring.foundation.errors import StorageClosed, StorageError
from dfsring.storage.engine import (
    DEFAULT_MAX_PENDING,
    MAX_KEY_SIZE,
    GroupCommitter,
    Mutation,
    Outcome,
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

_OPEN_PATHS: weakref.WeakValueDictionary[str, LmdbEngine] = weakref.WeakValueDictionary()
_OPEN_PATHS_LOCK = threading.Lock()


def _map_full(exc: BaseException) -> StorageError:
    return StorageError(
        f"LMDB map is full: the data no longer fits in map_size; reopen with a larger "
        f"map_size ({exc})"
    )


class _LmdbTxn:
    """The Txn a mutation sees: one nested LMDB write transaction, with framing."""

    __slots__ = ("_dbs", "_txn")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, lmdb._Database]) -> None:
        self._txn = txn
        self._dbs = dbs

    def _db(self, table: str) -> lmdb._Database:
        try:
            return self._dbs[table]
        except KeyError:
            raise unknown_table(table) from None

    def get(self, table: str, key: bytes) -> bytes | None:
        check_key(key)
        framed = self._txn.get(key, db=self._db(table))
        return None if framed is None else unframe(table, key, framed)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        check_key(key)
        check_value(value)
        db = self._db(table)
        try:
            self._txn.put(key, frame(value), db=db)
        except lmdb.MapFullError as exc:
            raise _map_full(exc) from exc

    def delete(self, table: str, key: bytes) -> bool:
        check_key(key)
        return self._txn.delete(key, db=self._db(table))


def _open_env(path: str, table_count: int, durable: bool, map_size: int) -> lmdb.Environment:
    os.makedirs(path, exist_ok=True)
    try:
        env = lmdb.open(
            path,
            map_size=map_size,
            subdir=True,
            max_dbs=max(32, 2 * table_count),
            sync=durable,
            metasync=durable,
            readahead=False,
            lock=True,
        )
    except lmdb.Error as exc:
        raise StorageError(f"cannot open LMDB environment at {path}: {exc}") from exc
    env.reader_check()  # drop reader slots left by killed processes, so pages can be reused
    return env


def _key_range(
    cursor: lmdb.Cursor, start: bytes, end: bytes | None, limit: int | None
) -> Iterator[bytes]:
    """Keys in [start, end), at most ``limit``; the cursor rests on each key as it is yielded.

    LMDB cannot position on a key longer than MAX_KEY_SIZE, so a longer ``start`` is truncated
    for positioning and the (at most one) key below it skipped.
    """
    if limit == 0:
        return
    found = cursor.set_range(start[:MAX_KEY_SIZE]) if start else cursor.first()
    if not found:
        return
    produced = 0
    for key in cursor.iternext(keys=True, values=False):
        if key < start:
            continue
        if end is not None and key >= end:
            return
        yield key
        produced += 1
        if produced == limit:
            return


class LmdbEngine:
    """Engine protocol on LMDB: one named database per table, group-committed writes.

    The constructor opens the environment synchronously (usable inside a running loop; use
    :meth:`open` to keep the loop free while a large environment opens). The writer task is
    started by the first apply() and belongs to that event loop.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        tables: Sequence[str],
        *,
        durable: bool = True,
        map_size: int = 64 << 30,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        names = check_tables(tables)
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._path = os.path.realpath(os.fspath(path))
        self._durable = durable
        self._max_pending = max_pending
        self._claim_path()
        try:
            self._env = _open_env(self._path, len(names), durable, map_size)
            self._dbs = {name: self._env.open_db(name.encode("utf-8")) for name in names}
        except BaseException:
            self._release_path()
            raise
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmdb-writer")
        self._committer: GroupCommitter | None = None
        self._closing = False
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        tables: Sequence[str],
        *,
        durable: bool = True,
        map_size: int = 64 << 30,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> LmdbEngine:
        """Open on a worker thread, so file creation and locking do not stall the loop."""
        return await asyncio.to_thread(
            cls, path, tables, durable=durable, map_size=map_size, max_pending=max_pending
        )

    def _claim_path(self) -> None:
        """LMDB forbids opening one environment twice in a process (its locks would break)."""
        with _OPEN_PATHS_LOCK:
            if self._path in _OPEN_PATHS:
                raise StorageError(f"LMDB environment {self._path} is already open here")
            _OPEN_PATHS[self._path] = self

    def _release_path(self) -> None:
        with _OPEN_PATHS_LOCK:
            if _OPEN_PATHS.get(self._path) is self:
                del _OPEN_PATHS[self._path]

    # -- reads: calling thread, short read transactions ------------------------------------

    def _db(self, table: str) -> lmdb._Database:
        if self._closed:
            raise StorageClosed("LMDB engine is closed")
        try:
            return self._dbs[table]
        except KeyError:
            raise unknown_table(table) from None

    def get(self, table: str, key: bytes) -> bytes | None:
        db = self._db(table)
        check_key(key)
        try:
            with self._env.begin(db=db) as txn:
                framed = txn.get(key)
        except lmdb.Error as exc:
            raise StorageError(f"LMDB read failed: {exc}") from exc
        return None if framed is None else unframe(table, key, framed)

    def scan(
        self, table: str, start: bytes = b"", end: bytes | None = None, *, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        check_limit(limit)
        db = self._db(table)
        try:
            with self._env.begin(db=db) as txn, txn.cursor() as cursor:
                raw = [(key, cursor.value()) for key in _key_range(cursor, start, end, limit)]
        except lmdb.Error as exc:
            raise StorageError(f"LMDB scan failed: {exc}") from exc
        return [(key, unframe(table, key, framed)) for key, framed in raw]

    def scan_keys(
        self, table: str, start: bytes = b"", end: bytes | None = None, *, limit: int | None = None
    ) -> list[bytes]:
        check_limit(limit)
        db = self._db(table)
        try:
            with self._env.begin(db=db) as txn, txn.cursor() as cursor:
                return list(_key_range(cursor, start, end, limit))
        except lmdb.Error as exc:
            raise StorageError(f"LMDB scan failed: {exc}") from exc

    def count(self, table: str) -> int:
        db = self._db(table)
        with self._env.begin() as txn:
            return txn.stat(db)["entries"]

    def identity(self) -> str | None:
        """Device and inode of the data file: a copy restored from a backup is a new file.
        None without fsync (durability none): a crash may lose writes a reader relied on."""
        if not self._durable:
            return None
        st = os.stat(os.path.join(self._path, "data.mdb"))
        return f"{st.st_dev}:{st.st_ino}"

    def info(self) -> dict[str, object]:
        committer = self._committer
        info: dict[str, object] = {
            "engine": "lmdb",
            "path": self._path,
            "durable": self._durable,
            "closing": self._closing,
            "closed": self._closed,
            "commits": committer.commits if committer else 0,
            "mutations": committer.mutations if committer else 0,
            "largest_group": committer.largest_batch if committer else 0,
            "pending": committer.pending if committer else 0,
        }
        if not self._closed:
            info.update(self._space())
        return info

    def _space(self) -> dict[str, object]:
        env_info, stat = self._env.info(), self._env.stat()
        return {
            "entries": {table: self.count(table) for table in self._dbs},
            "used_bytes": (env_info["last_pgno"] + 1) * stat["psize"],
            "map_bytes": env_info["map_size"],
        }

    # -- writes: one writer thread, group commit -------------------------------------------

    async def apply(self, mutation: Callable[[Txn], T]) -> T:
        """Run ``mutation`` in the next group commit; return its result once durable.

        Cancellation: if the caller is cancelled after submitting, the mutation still commits
        if its batch had started, and is skipped if it was still queued; callers must treat
        the outcome as unknown.
        """
        if self._closing or self._closed:
            raise StorageClosed("LMDB engine is closed")
        result: T = await self._writer().submit(mutation)
        return result

    def _writer(self) -> GroupCommitter:
        loop = asyncio.get_running_loop()
        if self._committer is None:
            self._committer = GroupCommitter(self._run_batch, self._executor, self._max_pending)
        elif self._committer.loop is not loop:
            raise RuntimeError("this LmdbEngine's writer runs on another event loop")
        return self._committer

    def _run_batch(self, mutations: list[Mutation]) -> list[Outcome]:
        """Writer thread: the batch as one transaction; LMDB errors become StorageError."""
        try:
            return self._commit_batch(mutations)
        except lmdb.MapFullError as exc:
            raise _map_full(exc) from exc
        except lmdb.Error as exc:
            raise StorageError(f"LMDB write transaction failed: {exc}") from exc

    def _commit_batch(self, mutations: list[Mutation]) -> list[Outcome]:
        """One parent transaction, one nested transaction per mutation, one commit."""
        parent = self._env.begin(write=True)
        try:
            outcomes = [self._run_nested(parent, mutation) for mutation in mutations]
            parent.commit()
        except BaseException:
            parent.abort()
            raise
        return outcomes

    def _run_nested(self, parent: lmdb.Transaction, mutation: Mutation) -> Outcome:
        child = self._env.begin(write=True, parent=parent)
        try:
            result = mutation(_LmdbTxn(child, self._dbs))
            check_mutation_result(result)
        except Exception as exc:
            child.abort()
            return Outcome(error=exc)
        child.commit()
        return Outcome(value=result)

    # -- shutdown --------------------------------------------------------------------------

    async def close(self) -> None:
        """Commit what is queued, flush, close; concurrent and repeated calls share one close."""
        if self._close_task is None:
            self._closing = True
            self._close_task = asyncio.get_running_loop().create_task(self._shutdown())
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._committer is not None and self._committer.loop is loop:
                await self._committer.stop()
            await loop.run_in_executor(self._executor, self._env.sync, True)
        finally:
            self._closed = True
            self._executor.shutdown(wait=True)
            self._env.close()
            self._release_path()
