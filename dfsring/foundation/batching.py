"""Repair batches bounded by bytes as well as by count, and work sliced so the loop breathes.

Why bytes. A batch of 500 keys is 500 KiB with 1 KiB values and 500 MiB with values at the
inline limit (1 MiB), far over what a peer accepts in one body (64 x the inline limit, see
dfsring.http.internal_api) and seconds of (de)serialising on one event loop. So the sender
cuts its batches at ``MAX_BATCH_BYTES``, the receiver answers a bigger body with a clear 413
(and a fetch with a reply cut at the same budget), and the sender halves a refused batch
(Cassandra bounds its streaming and hint pages by size for the same reason). A single record
always travels alone, whatever its size: the body limit is sized to hold any one record.

Why slices. The node's heartbeats (gossip rounds, dfsring.core.failure) share the event loop with
repair. Work that is a loop over many partitions (their Merkle roots) runs in slices of at
most ``SLICE_S`` seconds with a yield between them; scans of a partition's records run in a
worker thread, as the chunk store's walks already do, but in their own pool of
``REPAIR_THREADS`` (``off_loop``): a refill's many scans then neither queue ahead of the file
service's chunk reads in asyncio's default executor nor crowd the loop thread out of the GIL.

Pure but for ``sliced``, whose only effect is yielding to the loop.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
U = TypeVar("U")

MAX_BATCH_BYTES = 4 << 20  # records per repair call, in bytes (plus one record at most)
MAX_BATCH_KEYS = 500
SLICE_S = 0.005  # at most this long on the loop between yields
REPAIR_THREADS = 2  # worker threads for repair scans, apart from asyncio's default executor
_executor: ThreadPoolExecutor | None = None


def record_size(record: tuple[bytes, bytes]) -> int:
    return len(record[0]) + len(record[1])


def byte_batches(items: Iterable[T], *, max_bytes: int, max_count: int,
                 size: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive batches of `items`, in order, each of at most `max_count` items and at
    most `max_bytes` bytes, except that an item bigger than `max_bytes` forms a batch alone.
    Every item is in exactly one batch; no batch is empty."""
    if max_bytes < 1 or max_count < 1:
        raise ValueError("max_bytes and max_count must be >= 1")
    batch: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if batch and (len(batch) >= max_count or total + n > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += n
    if batch:
        yield batch


def within_budget(records: Iterable[tuple[bytes, bytes]], max_bytes: int
                  ) -> list[tuple[bytes, bytes]]:
    """The longest prefix of `records` within `max_bytes`, but at least the first record:
    what a reply carries when the caller will ask again for the rest."""
    out: list[tuple[bytes, bytes]] = []
    total = 0
    for record in records:
        total += record_size(record)
        if out and total > max_bytes:
            break
        out.append(record)
    return out


def resume_after(asked: Sequence[bytes], got: Sequence[tuple[bytes, bytes]]) -> int:
    """How many of the `asked` keys a byte-bounded reply `got` covered: every key up to its
    last record's key (the ones before it that it lacks are absent there). A reply with no
    record, or ending in a key not asked for, covers them all, so a caller that asks again
    for ``asked[resume_after(...):]`` always makes progress."""
    if not got:
        return len(asked)
    position = {key: i for i, key in enumerate(asked)}
    last = position.get(got[-1][0])
    return len(asked) if last is None else last + 1


async def send_halving(items: list[T], send: Callable[[list[T]], Awaitable[object]],
                       too_large: Callable[[Exception], bool]) -> None:
    """``await send(items)``; if the receiver refuses it as too large (`too_large`), send
    each half the same way, down to single items (whose refusal is raised): a peer whose
    body limit is smaller than our budget still gets everything, in as few calls as fit."""
    try:
        await send(items)
    except Exception as exc:
        if len(items) < 2 or not too_large(exc):
            raise
        half = len(items) // 2
        await send_halving(items[:half], send, too_large)
        await send_halving(items[half:], send, too_large)


async def sliced(items: Iterable[T], work: Callable[[T], U], slice_s: float = SLICE_S,
                 clock: Callable[[], float] = time.monotonic) -> list[U]:
    """``[work(x) for x in items]`` on the loop, yielding to it whenever a slice of
    `slice_s` seconds is used up, so timers and heartbeats run in between."""
    out: list[U] = []
    deadline = clock() + slice_s
    for item in items:
        out.append(work(item))
        if clock() >= deadline:
            await asyncio.sleep(0)
            deadline = clock() + slice_s
    return out


async def off_loop(fn: Callable[..., U], *args: Any) -> U:
    """``fn(*args)`` in the repair worker pool; the loop keeps running meanwhile."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(REPAIR_THREADS, thread_name_prefix="repair")
    return await asyncio.get_running_loop().run_in_executor(
        _executor, functools.partial(fn, *args))
