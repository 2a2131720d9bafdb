"""Files over the replicated key/value layer and the chunk replicas: the service the files API
calls (CONTRACT.md "Files"; the design is in dfsring/files/__init__.py).

Upload: the body is cut into content-defined chunks while it streams in; each chunk is stored on
W of its owners (dfsring.files.chunks) with a bounded window in flight; only once every chunk is
stored does the manifest become a new version key (dfsring.files.versions), written through the
ordinary coordinator with W acks. Until that write nothing is visible, so a failed or cancelled
upload leaves no version, only unreferenced chunks for the collector (dfsring.files.gc).

Download: the current version is the greatest version key of the path (a key listing), its
manifest one quorum read; chunks are then fetched in order with a bounded read-ahead, each
verified against its id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from dfsring.core import keys, manifest
from dfsring.core.chunker import ChunkParams
from dfsring.core.manifest import Manifest
from dfsring.core.vclock import VersionVector
from dfsring.files import versions as fv
from dfsring.files.chunks import ChunkReplicator
from dfsring.files.chunkstore import Buffer
from dfsring.files.clock import VersionClock
from dfsring.files.metrics import FileMetrics
from dfsring.files.upload import BLOCK, ChunkPipeline, Cutter, batches
from dfsring.files.versions import Kind, Retention, VersionRef
from dfsring.foundation import errors
from dfsring.replication.background import BackgroundTasks, log_errors
from dfsring.replication.coordinator import Coordinator

log = logging.getLogger("dfsring.files")
LIST_PAGE = 1_000
MAX_BACKGROUND = 256  # retention passes in flight after uploads
MAX_LIST_PAGES = 1_000  # a listing reads at most this many pages of version keys
_SYSTEM = fv.SYSTEM_BUCKET.encode()


@dataclass(frozen=True)
class FileSettings:
    params: ChunkParams
    r: int
    w: int
    retention: Retention
    grace_s: float  # the collector's: uploads re-touch their chunks every third of it
    window: int = 4  # chunks of one upload in flight
    read_ahead: int = 4  # chunks of one download fetched ahead
    idle_s: float = 30.0  # a client silent this long mid-body is given up on


@dataclass(frozen=True)
class UploadResult:
    manifest: Manifest
    new_chunks: int  # chunks some owner had to store (the rest were there already)


def system_name(key: str) -> keys.ObjectName:
    return keys.ObjectName(fv.SYSTEM_BUCKET, key, _SYSTEM, key.encode("utf-8"))


class FileService:
    def __init__(self, *, coordinator: Coordinator, chunks: ChunkReplicator,
                 clock: VersionClock, settings: FileSettings,
                 metrics: FileMetrics | None = None) -> None:
        self.coordinator = coordinator
        self.chunks = chunks
        self.clock = clock
        self.settings = settings
        self.metrics = metrics or FileMetrics()
        self._background = BackgroundTasks(MAX_BACKGROUND, log_errors(log, "file background task"))

    # --- upload ----------------------------------------------------------------------------

    async def upload(self, bucket: str, path: str, body: AsyncIterator[bytes], *,
                     content_type: str, metadata: Mapping[str, str]) -> UploadResult:
        """Store a new version of the file from the body stream (see the module docstring)."""
        cfg = self.settings
        cutter = Cutter(cfg.params)
        pipeline = ChunkPipeline(self.chunks, cfg.w, cfg.window, renew_s=cfg.grace_s / 3)
        refs: list[tuple[bytes, int]] = []
        head: list[bytes] | None = []  # the first pieces, while the file may still be inline
        received = 0
        try:
            async for batch in batches(body, BLOCK, cfg.idle_s):
                received += sum(len(piece) for piece in batch)
                if received > manifest.MAX_FILE_SIZE:
                    raise errors.FileTooLarge(received, manifest.MAX_FILE_SIZE)
                if head is not None:
                    head += batch
                    if received <= manifest.INLINE_MAX:
                        continue
                    batch, head = head, None
                await self._store(await asyncio.to_thread(cutter.feed, batch), pipeline, refs)
            if head is None:
                await self._store(await asyncio.to_thread(cutter.finish), pipeline, refs)
                await pipeline.finish()
            else:
                await pipeline.abort()  # an inline file: no chunks, only stop the renewer
        except BaseException:
            await pipeline.abort()
            raise
        inline = None if head is None else b"".join(head)
        digest = cutter.sha256 if inline is None else hashlib.sha256(inline).hexdigest()
        current = await self._newest(bucket, path)
        stamp = self.clock.next(current.timestamp if current is not None else None)
        built = Manifest.create(bucket, path, stamp.encode(), sha256=digest,
                                created_ms=stamp.wall_ms, content_type=content_type,
                                metadata=metadata, chunks=None if inline is not None else refs,
                                inline=inline)
        kind = Kind.CHUNKED if inline is None else Kind.INLINE
        await self._write(VersionRef(bucket, path, built.version, kind, built.size),
                          manifest.encode(built))
        self._spawn(self._prune_quietly(bucket, path))
        self.metrics.upload(built.size, len(set(refs)), pipeline.new_chunks)
        return UploadResult(built, pipeline.new_chunks)

    async def _store(self, cut: list[tuple[bytes, bytes]], pipeline: ChunkPipeline,
                     refs: list[tuple[bytes, int]]) -> None:
        for cid, data in cut:
            refs.append((cid, len(data)))
            await pipeline.submit(cid, data)

    async def _write(self, ref: VersionRef, value: bytes) -> None:
        await self.coordinator.put(system_name(ref.key), VersionVector(), value,
                                   fv.MANIFEST_TYPE, w=self.settings.w)

    # --- versions and manifests ------------------------------------------------------------

    async def versions(self, bucket: str, path: str) -> list[VersionRef]:
        """Every version of the file that is kept, newest first (delete markers included)."""
        found = await self._list(fv.path_prefix(bucket, path), None, None)
        return fv.newest_first(r for r in found if r.path == path and r.bucket == bucket)

    async def _newest(self, bucket: str, path: str) -> VersionRef | None:
        return fv.newest(await self.versions(bucket, path))

    async def manifest(self, bucket: str, path: str, version: str | None = None) -> Manifest:
        """The manifest of the current version, or of ``version``; NotFound if there is none
        (or the current version is a delete marker, or ``version`` is one)."""
        refs = await self.versions(bucket, path)
        if version is None:
            ref = fv.current(refs)
            if ref is None:
                raise errors.NotFound(f"no file {bucket}/{path}")
        else:
            ref = next((r for r in refs if r.version == version), None)
            if ref is None or ref.deleted:
                raise errors.NotFound(f"no version {version} of {bucket}/{path}")
        versions = await self.coordinator.get(system_name(ref.key), r=self.settings.r)
        live = versions.live()
        if not live:
            raise errors.NotFound(f"version {ref.version} of {bucket}/{path} was removed")
        try:
            return manifest.decode(live[0].value or b"")
        except ValueError as exc:
            raise errors.StorageError(f"the manifest of {ref.key!r} is unreadable: {exc}") \
                from exc

    def read(self, m: Manifest, start: int, end: int) -> AsyncGenerator[bytes | memoryview, None]:
        """Bytes ``start..end`` (inclusive) of the file, in order, each chunk verified."""
        if m.inline is not None:
            return _once(memoryview(m.inline)[start:end + 1])
        return self._read_chunks(m, start, end)

    async def _read_chunks(self, m: Manifest, start: int, end: int
                           ) -> AsyncGenerator[bytes | memoryview, None]:
        slices = manifest.chunk_span(m, start, end)
        ahead: dict[int, asyncio.Task[Buffer]] = {}
        try:
            for i, piece in enumerate(slices):
                for j in range(i, min(i + self.settings.read_ahead, len(slices))):
                    if j not in ahead:
                        ahead[j] = asyncio.ensure_future(
                            self.chunks.get(m.chunks[slices[j].index].digest))
                data = await ahead.pop(i)
                self.metrics.served.inc(piece.stop - piece.start)
                yield memoryview(data)[piece.start:piece.stop]
        finally:
            for task in ahead.values():
                task.cancel()
            await asyncio.gather(*ahead.values(), return_exceptions=True)

    # --- delete, list, retention -----------------------------------------------------------

    async def delete(self, bucket: str, path: str, version: str | None = None) -> VersionRef:
        """Without ``version``: a delete marker becomes the newest version (the file reads as
        absent; its versions stay listed until retention prunes them). With ``version``:
        that version is removed for good. NotFound if there is nothing to delete."""
        refs = await self.versions(bucket, path)
        if version is not None:
            ref = next((r for r in refs if r.version == version), None)
            if ref is None:
                raise errors.NotFound(f"no version {version} of {bucket}/{path}")
            await self.remove_version(ref)
            return ref
        newest = fv.newest(refs)
        if newest is None or newest.deleted:
            raise errors.NotFound(f"no file {bucket}/{path}")
        stamp = self.clock.next(newest.timestamp)
        marker = VersionRef(bucket, path, stamp.encode(), Kind.DELETED, 0)
        await self._write(marker, b"")
        return marker

    async def remove_version(self, ref: VersionRef) -> None:
        """Remove one version for good (a tombstone over exactly the copies read)."""
        name = system_name(ref.key)
        seen = await self.coordinator.get(name, r=self.settings.r)
        if seen.live():
            await self.coordinator.put(name, seen.clock, None, "", w=self.settings.w)

    async def list_files(self, bucket: str, prefix: str, after: str | None,
                         limit: int) -> tuple[list[VersionRef], bool]:
        """The current versions of up to ``limit`` live files whose path starts with
        ``prefix``, after path ``after``, in path order; and whether there are more."""
        found: list[VersionRef] = []
        group: list[VersionRef] = []
        start = fv.after_path(bucket, after) if after is not None else None
        async for ref in self._iterate(fv.listing_prefix(bucket, prefix), start):
            if group and ref.path != group[0].path:
                if (top := fv.current(group)) is not None:
                    found.append(top)
                    if len(found) > limit:
                        return found[:limit], True
                group = []
            group.append(ref)
        if group and (top := fv.current(group)) is not None:
            found.append(top)
        return found[:limit], len(found) > limit

    async def prune(self, bucket: str, path: str) -> int:
        """Apply the retention rule to one file; returns how many versions were removed."""
        rule = self.settings.retention
        if rule.keeps_all:
            return 0
        refs = await self.versions(bucket, path)
        _, pruned = fv.retention(refs, rule, time.time_ns() // 1_000_000)
        for ref in pruned:
            await self.remove_version(ref)
        self.metrics.versions_pruned.inc(len(pruned))
        return len(pruned)

    async def _prune_quietly(self, bucket: str, path: str) -> None:
        try:
            removed = await self.prune(bucket, path)
        except (errors.DfsError, OSError) as exc:
            log.info("retention after an upload failed; the collector will retry",
                     extra={"fields": {"path": f"{bucket}/{path}", "error": str(exc)}})
            return
        if removed:
            log.info("old versions pruned", extra={"fields": {
                "path": f"{bucket}/{path}", "removed": removed}})

    async def _list(self, prefix: str, after: str | None,
                    limit: int | None) -> list[VersionRef]:
        out = []
        async for ref in self._iterate(prefix, after):
            out.append(ref)
            if limit is not None and len(out) >= limit:
                break
        return out

    async def _iterate(self, prefix: str, after: str | None) -> AsyncIterator[VersionRef]:
        """Version keys under ``prefix`` after ``after`` in key order, page by page."""
        cursor = after.encode("utf-8") if after is not None else None
        for _ in range(MAX_LIST_PAGES):
            page = await self.coordinator.list_keys(_SYSTEM, prefix.encode("utf-8"), cursor,
                                                    LIST_PAGE)
            for ref in fv.parse_keys(full.decode("utf-8", "replace") for _, full in page):
                yield ref
            if len(page) < LIST_PAGE:
                return
            cursor = page[-1][0]
        raise errors.StorageError(f"listing {prefix!r} needs more than {MAX_LIST_PAGES} pages")

    # --- background ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._background.spawn(coro)  # past the bound: the next upload or GC round prunes

    async def close(self) -> None:
        await self._background.close()
        await self.chunks.close()


async def _once(piece: memoryview) -> AsyncGenerator[bytes | memoryview, None]:
    yield piece
