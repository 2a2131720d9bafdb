"""The local storage contract: what every engine offers, and how stored values are framed.

Layer: local storage. Imports only foundations (errors); knows nothing about rings, vclocks or
the network. Services depend on the :class:`Engine` protocol, never on a concrete engine, so
component tests swap in :class:`~dfsring.storage.memory.MemoryEngine`.

Framing. Every value is stored as ``0x01 | crc32(payload) (4 bytes, big endian) | payload``.
Disk, controller or memory corruption must never be served as data (Dynamo assumes replicas are
fail-stop, not byzantine; a silently flipped bit breaks that), so every read verifies the CRC
and reports a mismatch as :class:`~dfsring.foundation.errors.CorruptValue` naming the key, which
lets a
scrubber or read repair fetch a good copy from another replica. The leading format byte leaves
room for a stronger checksum later without a migration.

Writes. All writes go through :meth:`Engine.apply`, which runs a *mutation* (a plain function of
a :class:`Txn`, no awaits) atomically and returns only once the change is durable. Engines may
group many mutations into one transaction (group commit) but each mutation succeeds or fails
alone. :class:`GroupCommitter` is the shared machinery for engines that batch writes on one
writer thread.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from dfsring.foundation.errors import CorruptValue, StorageClosed, StorageError

T = TypeVar("T")

FORMAT_V1 = 0x01
HEADER_SIZE = 5
MAX_KEY_SIZE = 511
"""LMDB's compiled-in key limit; MemoryEngine enforces it too so tests catch oversized keys."""
DEFAULT_MAX_PENDING = 4096
MAX_MUTATIONS_PER_TXN = 1024

_FORMAT_BYTE = bytes([FORMAT_V1])

log = logging.getLogger(__name__)


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with the format byte and its CRC32 so reads can verify it."""
    return _FORMAT_BYTE + zlib.crc32(payload).to_bytes(4, "big") + payload


def unframe(table: str, key: bytes, framed: bytes) -> bytes:
    """Return the payload of a framed value; raise CorruptValue if anything about it is off.

    Short data, an unknown format byte and a CRC mismatch are all corruption: none of them can
    come out of :func:`frame`.
    """
    if len(framed) < HEADER_SIZE or framed[0] != FORMAT_V1:
        raise CorruptValue(table, key)
    payload = framed[HEADER_SIZE:]
    if zlib.crc32(payload) != int.from_bytes(framed[1:HEADER_SIZE], "big"):
        raise CorruptValue(table, key)
    return payload


def check_key(key: bytes) -> None:
    """Reject keys an engine cannot store, with the same rule for every engine."""
    if not isinstance(key, bytes):
        raise TypeError(f"keys are bytes, got {type(key).__name__}")
    if not 0 < len(key) <= MAX_KEY_SIZE:
        raise ValueError(f"key must be 1..{MAX_KEY_SIZE} bytes, got {len(key)}")


def check_value(value: bytes) -> None:
    """Values are bytes; anything else is a caller bug better caught before framing."""
    if not isinstance(value, bytes):
        raise TypeError(f"values are bytes, got {type(value).__name__}")


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def check_tables(tables: Sequence[str]) -> tuple[str, ...]:
    """Table names are fixed at open time; duplicates or empty names are configuration bugs."""
    names = tuple(tables)
    if not names or any(not isinstance(t, str) or not t for t in names):
        raise ValueError("tables must be a non-empty sequence of non-empty names")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate table names in {names!r}")
    return names


def check_mutation_result(result: object) -> None:
    """Refuse an awaitable result: the mutation was written as ``async def`` and did nothing.

    Mutations run on the writer thread inside a transaction, where nothing can be awaited; an
    ``async def`` mutation would "succeed" without writing, which is worse than failing.
    """
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError("a mutation must be a plain function; it returned an awaitable")


def unknown_table(table: str) -> ValueError:
    return ValueError(f"unknown table {table!r}")


class Txn(Protocol):
    """A write transaction handed to a mutation; it sees its own and earlier writes."""

    def get(self, table: str, key: bytes) -> bytes | None:
        """The checksum-verified payload, or None; raises CorruptValue on mismatch."""
        ...

    def put(self, table: str, key: bytes, value: bytes) -> None: ...

    def delete(self, table: str, key: bytes) -> bool:
        """True if the key existed."""
        ...


@runtime_checkable
class Engine(Protocol):
    """An ordered, checksummed, transactional key/value store with named tables.

    Reads are synchronous and short (no read transaction outlives a call, so nothing is held
    across an await); writes are asynchronous and durable on return.
    """

    def get(self, table: str, key: bytes) -> bytes | None:
        """Verified payload or None; raises CorruptValue on a checksum mismatch."""
        ...

    def scan(
        self, table: str, start: bytes = b"", end: bytes | None = None, *, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        """Entries with ``start <= key < end`` in key byte order, verified.

        A corrupt entry raises CorruptValue whose ``.key`` is that entry's key, so a caller can
        resume the scan just after it.
        """
        ...

    def scan_keys(
        self, table: str, start: bytes = b"", end: bytes | None = None, *, limit: int | None = None
    ) -> list[bytes]:
        """Keys only, same range rules as :meth:`scan`; values are not read or verified."""
        ...

    async def apply(self, mutation: Callable[[Txn], T]) -> T:
        """Run ``mutation`` atomically; return its result once the change is durable.

        The mutation's own exception is re-raised here after its writes were rolled back.
        A caller cancelled after submitting must assume the mutation may have committed.
        """
        ...

    def count(self, table: str) -> int: ...

    def info(self) -> dict[str, object]: ...

    async def close(self) -> None:
        """Finish queued writes, flush and close; idempotent."""
        ...

    def identity(self) -> str | None:
        """Names the stored file this engine runs on, so a store can tell a copy put back
        (a restored backup) from the file it last wrote; None if its writes do not survive
        a crash or it has no file (then nothing it stored can be vouched for on reopening).
        """
        ...


Mutation = Callable[[Txn], Any]


@dataclass(slots=True)
class Outcome:
    """One mutation's result or exception, carried back from the writer thread."""

    value: Any = None
    error: BaseException | None = None

    def resolve(self, future: asyncio.Future[Any]) -> None:
        if future.done():  # the caller was cancelled; the committed write stands
            return
        if self.error is not None:
            future.set_exception(self.error)
        else:
            future.set_result(self.value)


@dataclass(slots=True)
class _Pending:
    mutation: Mutation
    future: asyncio.Future[Any]


def _batch_error(exc: BaseException) -> StorageError:
    """What apply() callers see when a whole batch failed; the cause stays chained."""
    text = str(exc) if isinstance(exc, StorageError) else f"write transaction failed: {exc!r}"
    error = StorageError(text)
    error.__cause__ = exc
    return error


class GroupCommitter:
    """Group commit (as in database WALs, Gray & Reuter §9.4.7): one fsync for many writes.

    One asyncio task drains pending mutations in batches of at most MAX_MUTATIONS_PER_TXN and
    hands each batch to ``run_batch`` on ``executor`` (a single writer thread), which runs it
    as one transaction and returns one Outcome per mutation. Futures are resolved only after
    ``run_batch`` returned, i.e. after the commit. Mutations that arrive during a commit wait
    for the next one, so batches grow with load while an idle engine commits at once.

    Backpressure: a semaphore of ``max_pending`` slots, taken before queueing and given back
    when the writer takes the mutation into a batch. Bound to the loop it was created on.
    The task never dies of an exception: a failed batch fails its own futures and is logged.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Mutation]], list[Outcome]],
        executor: Executor,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._run_batch = run_batch
        self._executor = executor
        self._pending: deque[_Pending] = deque()
        self._room = asyncio.Semaphore(max_pending)
        self._wakeup = asyncio.Event()
        self._closing = False
        self.commits = 0
        self.mutations = 0
        self.largest_batch = 0
        self._task = self.loop.create_task(self._run(), name="group-commit")

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def submit(self, mutation: Mutation) -> Any:
        """Queue ``mutation`` (waiting for room) and return its result once committed."""
        self._check_accepting()
        await self._room.acquire()
        try:
            self._check_accepting()
        except StorageClosed:
            self._room.release()
            raise
        future = self.loop.create_future()
        self._pending.append(_Pending(mutation, future))
        self._wakeup.set()
        return await future

    def _check_accepting(self) -> None:
        if self._closing or self._task.done():
            raise StorageClosed("engine is closing; no new writes accepted")

    async def stop(self) -> None:
        """Refuse new work, commit everything already queued, then end the task."""
        self._closing = True
        self._wakeup.set()
        if not self._task.done():
            await asyncio.wait([self._task])  # a writer cancelled earlier is not our error

    async def _run(self) -> None:
        try:
            while not (self._closing and not self._pending):
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._pending:
                    await self._commit(self._take_batch())
        finally:
            self._fail_queued()

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while self._pending and len(batch) < MAX_MUTATIONS_PER_TXN:
            item = self._pending.popleft()
            self._room.release()
            if not item.future.done():  # cancelled before its batch: nobody waits, skip it
                batch.append(item)
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        mutations = [item.mutation for item in batch]
        try:
            outcomes = await self.loop.run_in_executor(self._executor, self._run_batch, mutations)
        except asyncio.CancelledError:
            _fail(batch, lambda: StorageClosed("writer cancelled mid-commit; outcome unknown"))
            raise
        except BaseException as exc:  # the writer must survive anything a batch throws
            log.error("group commit of %d mutations failed", len(batch), exc_info=exc)
            error = exc
            _fail(batch, lambda: _batch_error(error))
            return
        self.commits += 1
        self.mutations += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        for item, outcome in zip(batch, outcomes, strict=True):
            outcome.resolve(item.future)

    def _fail_queued(self) -> None:
        while self._pending:
            item = self._pending.popleft()
            self._room.release()
            _fail([item], lambda: StorageClosed("engine writer stopped"))


def _fail(batch: list[_Pending], make_error: Callable[[], BaseException]) -> None:
    """One exception instance per caller, so their tracebacks do not pile up on one."""
    for item in batch:
        if not item.future.done():
            item.future.set_exception(make_error())
