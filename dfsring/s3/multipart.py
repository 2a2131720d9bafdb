"""S3 multipart uploads: records in the grouped system table ``dfs..uploads``
(dfsring.s3.obj_uploads has the layout and the rules), parts stored as chunks.

* CreateMultipartUpload writes the upload record (a quorum write) with the object's
  metadata; the upload id is random.
* UploadPart stores the body as chunks (always chunks, even a tiny part: the completed
  object is a chunk list) and then writes the part record (number, size, MD5, chunk refs,
  checksum), superseding an earlier record of that number.
* CompleteMultipartUpload checks the list by S3's rules, touches the chunks (they must be on
  W owners), writes ONE manifest that is the concatenation of the parts' chunk lists (no data
  is copied), then removes the upload's records. A crash between the two leaves records of
  a completed upload: a retry of Complete finds the upload and writes the object again (a
  new version of the same bytes), and the abort worker removes them at the latest.
* The collector never deletes chunks a part record references (``chunk_references``,
  asked before its version listing: dfsring.files.gc).
* The ``s3-multipart-abort`` worker aborts uploads older than --s3-multipart-max-age.

Known limit: a part uploaded while its upload is being aborted may outlive the abort (its
record written after the abort listed the parts); its chunks then stay referenced until an
operator removes the record. Bounded by the number of such races.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

from dfsring.core.keys import UPLOADS_BUCKET, ObjectName
from dfsring.core.manifest import MAX_CHUNKS
from dfsring.core.vclock import VersionVector
from dfsring.files.service import FileService, StoredBody, UploadResult, VersionExtras
from dfsring.foundation import errors
from dfsring.foundation.worker import Schedule, Worker, WorkResult
from dfsring.s3 import obj_uploads as up
from dfsring.s3 import obj_versions as ov
from dfsring.s3.buckets import S3Buckets
from dfsring.s3.errors import S3Error
from dfsring.s3.model import Checksum, ChecksumSource, ObjectMeta, PartInfo, UploadInfo
from dfsring.s3.obj_errors import s3_errors
from dfsring.s3.obj_uploads import PartRecord, UploadRecord

log = logging.getLogger("dfsring.s3")
CONTENT_TYPE = "application/x-dfsring-upload"
READS = 16  # record reads in flight
PAGE = 1_000
MAX_PAGES = 1_000
T = TypeVar("T")


def _name(key: str) -> ObjectName:
    return ObjectName(up.UPLOADS, key, UPLOADS_BUCKET, key.encode("utf-8"))


def no_such_upload(upload_id: str) -> S3Error:
    return S3Error("NoSuchUpload", "The specified upload does not exist. The upload ID may "
                   "be invalid, or the upload may have been aborted or completed.",
                   resource=upload_id[:64])


def upload_info(bucket: str, rec: UploadRecord) -> UploadInfo:
    return UploadInfo(bucket, rec.key, rec.upload_id, rec.initiated_ms, rec.meta, rec.owner)


async def _bounded(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    limit = asyncio.Semaphore(READS)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with limit:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


class Multipart:
    def __init__(self, *, files: FileService, buckets: S3Buckets, max_age_s: float,
                 now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.files = files
        self.coordinator = files.coordinator
        self.buckets = buckets
        self.max_age_s = max_age_s
        self.now_ms = now_ms

    # --- records ---------------------------------------------------------------------------

    async def _read(self, key: str) -> tuple[list[bytes], VersionVector]:
        found = await self.coordinator.get(_name(key), r=self.files.settings.r)
        return [s.value for s in found.live() if s.value is not None], found.clock

    async def _write(self, key: str, value: bytes | None, context: VersionVector) -> None:
        await self.coordinator.put(_name(key), context, value, CONTENT_TYPE,
                                   w=self.files.settings.w)

    async def _remove(self, key: str) -> None:
        values, clock = await self._read(key)
        if values:
            await self._write(key, None, clock)

    async def _upload(self, bucket: str, key: str, upload_id: str) -> UploadRecord:
        up.check_upload_id(upload_id)
        with s3_errors(key):
            values, _ = await self._read(up.upload_key(bucket, key, upload_id))
        for raw in values:
            try:
                rec = up.decode_upload(raw)
            except ValueError:
                log.warning("an upload record does not decode", extra={"fields": {
                    "upload_id": upload_id}})
                continue
            if rec.key == key and rec.upload_id == upload_id:
                return rec
        raise no_such_upload(upload_id)

    async def _part(self, bucket: str, upload_id: str, number: int) -> PartRecord | None:
        values, _ = await self._read(up.part_key(bucket, upload_id, number))
        found = []
        for raw in values:
            try:
                found.append(up.decode_part(raw))
            except ValueError:
                continue
        return up.newest_part([p for p in found if p.number == number])

    # --- operations ------------------------------------------------------------------------

    async def create(self, bucket: str, key: str, *, meta: ObjectMeta, owner: str,
                     checksum_algorithm: str | None) -> UploadInfo:
        ov.object_path(key)
        await self.buckets.record(bucket)
        rec = UploadRecord(key, up.new_upload_id(), self.now_ms(), owner, meta,
                           checksum_algorithm)
        with s3_errors(key):
            await self._write(up.upload_key(bucket, key, rec.upload_id), up.encode_upload(rec),
                              VersionVector())
        return upload_info(bucket, rec)

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int,
                          body: AsyncIterator[bytes], *,
                          checksum: ChecksumSource = None) -> PartInfo:
        up.check_part_number(number)
        await self.buckets.record(bucket)
        await self._upload(bucket, key, upload_id)
        with s3_errors(key):
            stored = await self.files.store_body(body, inline_ok=False)
        if stored.size > up.MAX_PART_SIZE:
            raise S3Error("EntityTooLarge", f"a part is at most {up.MAX_PART_SIZE} bytes")
        got: Checksum | None = checksum() if checksum is not None else None
        part = PartRecord(number, stored.size, stored.md5, stored.chunks or (), self.now_ms(),
                          got)
        pkey = up.part_key(bucket, upload_id, number)
        with s3_errors(key):
            _, clock = await self._read(pkey)
            await self._write(pkey, up.encode_part(part), clock)
        return part.info()

    async def complete(self, bucket: str, key: str, upload_id: str,
                       asked: Sequence[tuple[int, str]]) -> UploadResult:
        bucket_rec = await self.buckets.record(bucket)
        rec = await self._upload(bucket, key, upload_id)
        if len(asked) > up.MAX_PART_NUMBER:
            raise S3Error("InvalidArgument", f"at most {up.MAX_PART_NUMBER} parts")
        for number, _ in asked:
            up.check_part_number(number)
        numbers = list(dict.fromkeys(n for n, _ in asked))
        with s3_errors(key):
            read = await _bounded([partial(self._part, bucket, upload_id, n) for n in numbers])
        found = {p.number: p for p in read if p is not None}
        chosen = up.check_complete(asked, found)
        chunks = tuple(c for p in chosen for c in p.chunks)
        if len(chunks) > MAX_CHUNKS:
            raise S3Error("EntityTooLarge", f"the object would have more than {MAX_CHUNKS} "
                          "chunks")
        size = sum(p.size for p in chosen)
        etag = up.multipart_etag([p.md5 for p in chosen])
        total = None
        if rec.checksum_algorithm:
            total = up.composite_checksum([p.checksum for p in chosen], rec.checksum_algorithm)
        stored = StoredBody(chunks, None, "", "", size, 0)
        extras = VersionExtras(null=bucket_rec.versioning != "Enabled", etag=etag,
                               parts=len(chosen),
                               checksum=None if total is None else (total.algorithm,
                                                                    total.value),
                               headers=dict(rec.meta.headers),
                               prune=not bucket_rec.versioning)
        with s3_errors(key):
            await self.files.retouch([c for c, _ in chunks])
            result = await self.files.commit(bucket, key, stored,
                                             content_type=rec.meta.content_type,
                                             metadata=dict(rec.meta.user), extras=extras)
            await self._drop(bucket, key, upload_id)
        return result

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        await self.buckets.record(bucket)
        await self._upload(bucket, key, upload_id)
        with s3_errors(key):
            await self._drop(bucket, key, upload_id)

    async def _drop(self, bucket: str, key: str, upload_id: str) -> None:
        """Remove the upload's part records, then the upload record (so an upload whose
        parts are gone is never listed as complete-able with missing parts)."""
        keys = await self._list(bucket, up.parts_prefix(bucket, upload_id), None,
                                up.MAX_PART_NUMBER + 1)
        await _bounded([partial(self._remove, k) for k in keys])
        await self._remove(up.upload_key(bucket, key, upload_id))

    async def _list(self, bucket: str, prefix: str, after: str | None,
                    limit: int) -> list[str]:
        out: list[str] = []
        cursor = None if after is None else after.encode("utf-8", "surrogatepass")
        while len(out) < limit:
            asked = min(PAGE, limit - len(out))
            page = await self.coordinator.list_partition(
                UPLOADS_BUCKET, bucket, prefix.encode("utf-8", "surrogatepass"), cursor,
                asked, r=self.files.settings.r)
            out += [full.decode("utf-8", "replace") for _, full in page]
            if len(page) < asked:
                break
            cursor = page[-1][0]
        return out

    async def list_uploads(self, bucket: str, prefix: str, key_marker: str | None,
                           upload_id_marker: str | None, limit: int
                           ) -> tuple[list[UploadInfo], bool]:
        await self.buckets.record(bucket)
        limit = max(0, min(limit, 1000))
        after = None
        if key_marker:
            after = (up.upload_key(bucket, key_marker, upload_id_marker) if upload_id_marker
                     else up.uploads_prefix(bucket, key_marker) + "\x00\x7f")
        with s3_errors(bucket):
            keys = await self._list(bucket, up.uploads_prefix(bucket, prefix), after,
                                    limit + 1)
            names = [n for n in (up.parse_upload_key(bucket, k) for k in keys) if n]
            read = await _bounded([partial(self._maybe_upload, bucket, *n) for n in names[:limit]])
        return [upload_info(bucket, r) for r in read if r is not None], len(names) > limit

    async def _maybe_upload(self, bucket: str, key: str, upload_id: str
                            ) -> UploadRecord | None:
        try:
            return await self._upload(bucket, key, upload_id)
        except S3Error:
            return None

    async def list_parts(self, bucket: str, key: str, upload_id: str, marker: int,
                         limit: int) -> tuple[UploadInfo, list[PartInfo], bool]:
        await self.buckets.record(bucket)
        rec = await self._upload(bucket, key, upload_id)
        limit = max(0, min(limit, 1000))
        after = up.part_key(bucket, upload_id, marker) if marker > 0 else None
        with s3_errors(key):
            keys = await self._list(bucket, up.parts_prefix(bucket, upload_id), after,
                                    limit + 1)
            numbers = [n for n in (up.parse_part_key(k) for k in keys) if n]
            read = await _bounded([partial(self._part, bucket, upload_id, n)
                                   for n in numbers[:limit]])
        parts = [p.info() for p in read if p is not None]
        return upload_info(bucket, rec), parts, len(numbers) > limit

    # --- the collector's references and the abort worker ---------------------------------

    async def _all_keys(self) -> list[str]:
        """Every live key of the uploads table, from every member (dfsring's ordinary
        listing: it tolerates N-1 silent members, each key being on N of them)."""
        out: list[str] = []
        cursor: bytes | None = None
        for _ in range(MAX_PAGES):
            page = await self.coordinator.list_keys(UPLOADS_BUCKET, b"", cursor, PAGE)
            out += [full.decode("utf-8", "replace") for _, full in page]
            if len(page) < PAGE:
                return out
            cursor = page[-1][0]
        raise errors.StorageError("the uploads table lists more than "
                                  f"{PAGE * MAX_PAGES} records")

    async def chunk_references(self) -> set[bytes]:
        """Every chunk a part record references (dfsring.files.gc asks before its version
        listing; any failure raises and ends the round)."""
        parts = [k for k in await self._all_keys() if "/p\x00" in k]
        ids: set[bytes] = set()

        async def chunks_of(key: str) -> None:
            values, _ = await self._read(key)
            for raw in values:
                try:
                    ids.update(c for c, _ in up.decode_part(raw).chunks)
                except ValueError:  # unusable by Complete too; must not stop every round
                    log.warning("a part record does not decode; skipped", extra={
                        "fields": {"key": key[:200]}})

        await _bounded([partial(chunks_of, k) for k in parts])
        return ids

    async def abort_expired(self) -> int:
        """Abort every upload initiated more than max_age_s ago; how many were."""
        horizon = self.now_ms() - int(self.max_age_s * 1000)
        aborted = 0
        for full in await self._all_keys():
            bucket, _, rest = full.partition("/")
            named = up.parse_upload_key(bucket, full) if rest.startswith("u\x00") else None
            if named is None:
                continue
            try:
                rec = await self._upload(bucket, *named)
                if rec.initiated_ms < horizon:
                    await self._drop(bucket, rec.key, rec.upload_id)
                    aborted += 1
            except S3Error:
                continue
        if aborted:
            log.info("expired multipart uploads aborted", extra={"fields": {
                "aborted": aborted, "max_age_s": self.max_age_s}})
        return aborted

    def worker(self) -> Worker:
        """The ``s3-multipart-abort`` worker: every max_age/4 (at most hourly, at least
        every 10 s), jittered; waits first."""
        interval = min(3600.0, max(10.0, self.max_age_s / 4))

        async def work() -> WorkResult:
            await self.abort_expired()
            return WorkResult.IDLE

        return Worker("s3-multipart-abort", work, Schedule(interval, jitter=0.2,
                                                           first_wait=True),
                      expected=(errors.DfsError,))
