"""The moving parts of one upload: cutting the stream, and keeping a bounded window of chunks
on their way to their replicas.

Memory is bounded by construction: the body is read in batches of ``BLOCK`` (4 MiB), the
chunker holds less than two maximal chunks (dfsring.core.chunker), and at most ``window`` chunks are
in flight, each released only when every replica has it or the deadline passed. With the
default chunk sizes (2 MiB average, 8 MiB at most) and the service's window of 4 that is
~30 MiB typical and ~60 MiB at worst per upload, whatever the file's size (a 1 GiB upload
through a 3-node cluster peaked at ~140 MiB RSS on the coordinating node, ~85 MiB on the
others).

CPU: the whole-file SHA-256 and MD5 (the S3 ETag), the content-defined cut (pyfastcdc) and
the chunk ids (SHA-256 again) all run in a worker thread one block at a time (each releases
the GIL on large inputs), so the event loop keeps receiving and replicating meanwhile. Each
byte is copied twice in user space on its way from the socket to a chunk (aiohttp's read
buffer to the chunker's, and out as the chunk), then sent to the replicas and written as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from dfsring.core.chunker import Chunker, ChunkParams
from dfsring.files.chunks import ChunkReplicator
from dfsring.foundation import errors

BLOCK = 4 << 20
Cut = list[tuple[bytes, bytes]]  # (chunk id, chunk bytes), in file order


class Cutter:
    """The CPU-bound part of an upload: the file's SHA-256 and its chunks with their ids.

    Not thread-safe; one worker thread at a time (the upload awaits each call)."""

    def __init__(self, params: ChunkParams) -> None:
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._chunker = Chunker.from_params(params)
        self.size = 0

    def feed(self, pieces: list[bytes]) -> Cut:
        chunks: list[bytes] = []
        for piece in pieces:
            self._sha.update(piece)
            self._md5.update(piece)
            self.size += len(piece)
            chunks += self._chunker.feed(piece)
        return _with_ids(chunks)

    def finish(self) -> Cut:
        return _with_ids(self._chunker.finish())

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    @property
    def md5(self) -> str:
        """The whole file's MD5 (hex): the S3 ETag of a single-part object."""
        return self._md5.hexdigest()


def _with_ids(chunks: list[bytes]) -> Cut:
    return [(hashlib.sha256(c).digest(), c) for c in chunks]


async def batches(body: AsyncIterator[bytes], size: int,
                  idle_s: float) -> AsyncIterator[list[bytes]]:
    """The body as lists of the pieces it arrived in, each list ``size`` bytes or more but the
    last (no copy: the cutter takes the pieces as they are). A client that sends nothing for
    ``idle_s`` seconds is given up on (408), never waited for forever."""
    batch: list[bytes] = []
    held = 0
    iterator = aiter(body)
    while True:
        try:
            async with asyncio.timeout(idle_s):
                piece = await anext(iterator, None)
        except TimeoutError as exc:
            raise errors.RequestTimeout(f"no body data for {idle_s:g} s") from exc
        if piece is None:
            break
        batch.append(piece)
        held += len(piece)
        if held >= size:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


class ChunkPipeline:
    """Chunks of one upload on their way to their replicas, at most ``window`` at a time.

    ``submit`` waits for room; ``finish`` waits until every chunk reached W replicas and returns
    where each is held. The first failure fails the upload at the next ``submit`` or in
    ``finish``; ``abort`` cancels what is in flight. Chunks that recur within the file are
    stored once.

    The chunks an upload stored are unreferenced until its manifest is written, so the garbage
    collector would take them once they are older than its grace period. While the upload
    runs, every ``renew_s`` (a third of the grace) the pipeline touches them all again where
    they are held (dfsring.files.chunks.confirm), and ``finish`` does it once more if the last
    time is more than ``renew_s`` ago: the manifest is then written well within the grace of
    the last touch of every chunk it references, however long the upload took
    (dfsring.files.gc has the argument)."""

    def __init__(self, replicator: ChunkReplicator, w: int, window: int,
                 renew_s: float) -> None:
        self._replicator = replicator
        self._w = w
        self._slots = asyncio.Semaphore(window)
        self._acked: dict[bytes, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.holders: dict[bytes, list[str]] = {}
        self.new_chunks = 0
        self._error: BaseException | None = None
        self._renew_s = renew_s
        self._renewed = asyncio.get_running_loop().time()
        self._renewer = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._renew_s)
            await self._touch_all()

    async def _touch_all(self) -> None:
        started = asyncio.get_running_loop().time()
        try:
            await self._replicator.confirm(dict(self.holders), self._w)
        except Exception as exc:  # a chunk lost meanwhile: the upload must not commit
            self._error = self._error or exc
            return
        self._renewed = started

    async def submit(self, cid: bytes, data: bytes) -> None:
        self._raise_if_failed()
        if cid in self._acked:
            return
        await self._slots.acquire()
        self._raise_if_failed()
        acked = asyncio.get_running_loop().create_future()
        self._acked[cid] = acked
        task = asyncio.ensure_future(self._one(cid, data, acked))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(self, cid: bytes, data: bytes, acked: asyncio.Future[None]) -> None:
        """``acked`` only says "settled"; a failure is kept in ``_error`` for the upload."""
        try:
            outcome = await self._replicator.put(cid, data, self._w)
        except asyncio.CancelledError:
            self._settle(acked)
            raise
        except Exception as exc:
            self._error = self._error or exc
            self._settle(acked)
            return
        self.holders[cid] = outcome.holders
        self.new_chunks += outcome.new
        acked.set_result(None)
        try:
            await outcome.tail  # the other replicas: the chunk's memory is held until then
        finally:
            self._slots.release()

    def _settle(self, acked: asyncio.Future[None]) -> None:
        if not acked.done():
            acked.set_result(None)
        self._slots.release()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def finish(self) -> dict[bytes, list[str]]:
        """Wait for W copies of every chunk; the replicas beyond W finish in the background
        (tracked by the replicator, bounded by the request deadline)."""
        if self._acked:
            await asyncio.gather(*self._acked.values())
        await self._stop_renewing()
        if asyncio.get_running_loop().time() - self._renewed > self._renew_s:
            await self._touch_all()
        self._raise_if_failed()
        for task in list(self._tasks):
            self._replicator.adopt(task)
        return self.holders

    async def _stop_renewing(self) -> None:
        self._renewer.cancel()
        await asyncio.gather(self._renewer, return_exceptions=True)

    async def abort(self) -> None:
        await self._stop_renewing()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
