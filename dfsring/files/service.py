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
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Mapping,
)
from dataclasses import dataclass, field, replace
from typing import Any

from dfsring.core import keys, manifest
from dfsring.core.chunker import ChunkParams
from dfsring.core.manifest import Manifest
from dfsring.core.vclock import VersionVector
from dfsring.files import placement
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
    ref: VersionRef | None = None  # the version key written


@dataclass(frozen=True)
class StoredBody:
    """Bytes stored and not yet referenced by a version: chunks or inline bytes."""

    chunks: tuple[tuple[bytes, int], ...] | None  # (chunk id, size), in order
    inline: bytes | None
    sha256: str  # hex; "" when unknown (a multipart object)
    md5: str  # hex MD5 of the bytes (the S3 ETag of a single-part object); "" when unknown
    size: int
    new_chunks: int


@dataclass(frozen=True)
class VersionExtras:
    """What the S3 layer records with a version besides the files layer's own fields."""

    null: bool = False  # an S3 null version (dfsring.files.versions)
    etag: str = ""  # "": the body's MD5
    parts: int = 0
    checksum: tuple[str, str] | None = None  # (algorithm, base64)
    checksum_source: Callable[[], tuple[str, str] | None] | None = None  # after the body
    headers: Mapping[str, str] = field(default_factory=dict)
    prune: bool = True  # apply the retention rule after the write


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
        self.retention_exempt: Callable[[str], Awaitable[bool]] | None = None

    # --- upload ----------------------------------------------------------------------------

    async def upload(self, bucket: str, path: str, body: AsyncIterator[bytes], *,
                     content_type: str, metadata: Mapping[str, str],
                     extras: VersionExtras | None = None) -> UploadResult:
        """Store a new version of the file from the body stream (see the module docstring).
        ``extras``: what the S3 layer adds (null version, system headers, checksum; the
        ETag is the body's MD5 unless given)."""
        stored = await self.store_body(body)
        extras = extras or VersionExtras()
        if extras.checksum_source is not None:
            got = extras.checksum_source()
            extras = replace(extras, checksum=got)
        return await self.commit(bucket, path, stored, content_type=content_type,
                                 metadata=metadata, extras=extras)

    async def store_body(self, body: AsyncIterator[bytes], *,
                         inline_ok: bool = True) -> StoredBody:
        """Cut the body into chunks stored on W of their owners each (or keep it inline if
        it is small and ``inline_ok``); nothing is visible until a version references it."""
        cfg = self.settings
        cutter = Cutter(cfg.params)
        pipeline = ChunkPipeline(self.chunks, cfg.w, cfg.window, renew_s=cfg.grace_s / 3)
        refs: list[tuple[bytes, int]] = []
        head: list[bytes] | None = [] if inline_ok else None  # the first pieces, maybe inline
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
        if head is not None:
            inline = b"".join(head)
            return StoredBody(None, inline, hashlib.sha256(inline).hexdigest(),
                              hashlib.md5(inline, usedforsecurity=False).hexdigest(),
                              len(inline), 0)
        return StoredBody(tuple(refs), None, cutter.sha256, cutter.md5, cutter.size,
                          pipeline.new_chunks)

    async def commit(self, bucket: str, path: str, stored: StoredBody, *, content_type: str,
                     metadata: Mapping[str, str],
                     extras: VersionExtras = VersionExtras()) -> UploadResult:
        """Write the version key of stored bytes (a new upload, a copy, a completed
        multipart upload: the chunks are referenced, never copied). A null version
        (``extras.null``) then removes the path's earlier null versions (versions module
        docstring: a crash in between leaves two, and readers take the newest)."""
        seen = await self.versions(bucket, path)
        current = fv.newest(seen)
        stamp = self.clock.next(current.timestamp if current is not None else None)
        checksum = extras.checksum
        if stored.chunks is not None and not stored.chunks:
            stored = replace(stored, chunks=None, inline=b"",  # an empty file is inline
                             sha256=hashlib.sha256(b"").hexdigest())
        try:
            built = Manifest.create(
                bucket, path, stamp.encode(), sha256=stored.sha256, created_ms=stamp.wall_ms,
                content_type=content_type, metadata=metadata,
                chunks=stored.chunks, inline=stored.inline,
                s3_etag=extras.etag or stored.md5, parts=extras.parts,
                checksum=None if checksum is None else (checksum[0], checksum[1]),
                headers=extras.headers)
        except ValueError as exc:
            raise errors.BadRequest(f"the version cannot be stored: {exc}") from exc
        kind = Kind.CHUNKED if built.inline is None else Kind.INLINE
        ref = VersionRef(bucket, path, built.version, kind, built.size, built.s3_etag,
                         extras.null)
        await self._write(ref, manifest.encode(built))
        if extras.null and current is not None:
            await self._drop_older_nulls(seen, ref)
        if extras.prune:
            self._spawn(self._prune_quietly(bucket, path))
        chunk_ids = len(set(stored.chunks or ()))
        self.metrics.upload(built.size, chunk_ids, stored.new_chunks)
        return UploadResult(built, stored.new_chunks, ref)

    async def _drop_older_nulls(self, seen: list[VersionRef], keep: VersionRef) -> None:
        """Remove the null versions older than ``keep`` among those listed before it was
        written (only older: of two concurrent null writes through two nodes, the older
        one's writer must not remove the newer; one written concurrently and missed here
        is hidden by readers and removed by the collector, dfsring.files.versions)."""
        for ref in seen:
            if ref.null and ref.timestamp < keep.timestamp:
                await self.remove_version(ref)

    async def write_marker(self, bucket: str, path: str, *, null: bool) -> VersionRef:
        """A delete marker as the newest version, whatever is there (S3: a DELETE in a
        versioned bucket always adds one); a null one replaces the earlier null versions."""
        seen = await self.versions(bucket, path)
        current = fv.newest(seen)
        stamp = self.clock.next(current.timestamp if current is not None else None)
        marker = VersionRef(bucket, path, stamp.encode(), Kind.DELETED, 0, "", null)
        await self._write(marker, b"")
        if null and current is not None:
            await self._drop_older_nulls(seen, marker)
        return marker

    async def _store(self, cut: list[tuple[bytes, bytes]], pipeline: ChunkPipeline,
                     refs: list[tuple[bytes, int]]) -> None:
        for cid, data in cut:
            refs.append((cid, len(data)))
            await pipeline.submit(cid, data)

    async def _write(self, ref: VersionRef, value: bytes) -> None:
        await self.coordinator.put(system_name(ref.key), VersionVector(), value,
                                   fv.MANIFEST_TYPE, w=self.settings.w)

    # --- versions and manifests ------------------------------------------------------------

    async def versions(self, bucket: str, path: str, *,
                       r: int | None = None) -> list[VersionRef]:
        """Every version of the file that is kept, newest first (delete markers included):
        one listing of the bucket's partition on ``r`` (default R) of its owners."""
        found = await self._list(bucket, fv.path_prefix(bucket, path), None, None, r=r)
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
        return await self.manifest_of(ref)

    async def _live(self, ref: VersionRef, r: int | None) -> list[bytes | None]:
        """The live values of a version key by one quorum read of ``r`` (default R)."""
        versions = await self.coordinator.get(system_name(ref.key),
                                              r=self.settings.r if r is None else r)
        return [v.value for v in versions.live()]

    async def is_live(self, ref: VersionRef, *, r: int | None = None) -> bool:
        """Whether the version key is still there by a quorum read (a listing can name a
        version a quorum already removed, until anti-entropy reaches a stale owner)."""
        return bool(await self._live(ref, r))

    async def manifest_of(self, ref: VersionRef, *, r: int | None = None) -> Manifest:
        """The manifest a version key names (one quorum read of ``r``, default R);
        NotFound if the version was removed meanwhile."""
        live = await self._live(ref, r)
        if not live or ref.deleted:
            raise errors.NotFound(f"version {ref.version} of {ref.bucket}/{ref.path} is gone")
        try:
            return manifest.decode(live[0] or b"")
        except ValueError as exc:
            raise errors.StorageError(f"the manifest of {ref.key!r} is unreadable: {exc}") \
                from exc

    async def retouch(self, ids: list[bytes]) -> None:
        """Before a new version references chunks stored earlier (a copy, a completed
        multipart upload): each must be on W of its owners, and is touched there, so the
        collector's grace starts again (dfsring.files.gc). QuorumNotMet otherwise."""
        ring = self.chunks.views.cluster_view().ring
        holders = {cid: list(placement.owners(ring, cid)) for cid in dict.fromkeys(ids)}
        if holders:
            await self.chunks.confirm(holders, self.settings.w)

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
        async for ref in self.iterate(bucket, fv.listing_prefix(bucket, prefix), start):
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
        if self.retention_exempt is not None and await self.retention_exempt(bucket):
            return 0  # an S3 versioned bucket (dfsring.files.gc "Retention and S3")
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

    async def _list(self, bucket: str, prefix: str, after: str | None,
                    limit: int | None, *, r: int | None = None) -> list[VersionRef]:
        out = []
        async for ref in self.iterate(bucket, prefix, after, r=r):
            out.append(ref)
            if limit is not None and len(out) >= limit:
                break
        return out

    async def iterate(self, bucket: str, prefix: str, after: str | None, *,
                      r: int | None = None, page_size: int = LIST_PAGE
                      ) -> AsyncIterator[VersionRef]:
        """Version keys of ``bucket`` under ``prefix`` (a whole version-key prefix, see
        fv.listing_prefix) after ``after`` in key order, page by page, each page read from
        ``r`` (default R) owners of the bucket's one partition (dfsring.core.keys)."""
        cursor = after.encode("utf-8") if after is not None else None
        for _ in range(MAX_LIST_PAGES):
            page = await self.coordinator.list_partition(
                _SYSTEM, bucket, prefix.encode("utf-8"), cursor, page_size,
                r=self.settings.r if r is None else r)
            for ref in fv.parse_keys(full.decode("utf-8", "replace") for _, full in page):
                yield ref
            if len(page) < page_size:
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
