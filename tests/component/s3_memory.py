"""An in-memory ObjectLayer for the S3 edge's component tests: a test double of the
dfsring.s3.model.ObjectLayer Protocol, not of our own components (the real object layer is
dfsring.s3.objects; tests/s3 run the real clients against real processes).

It keeps what the edge's tests look at (the exact keys stored, the consistency level asked
for, bodies read to the end so the edge's checks fire from the iterator) and little else:
unversioned buckets only, a bucket's creation granted through the real AccessService as the
real layer does.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from dfsring.replication.access.service import AccessService
from dfsring.s3.errors import S3Error
from dfsring.s3.model import (
    NULL_VERSION,
    BucketInfo,
    ChecksumSource,
    Conditions,
    Consistency,
    DeleteResult,
    ListEntry,
    ObjectMeta,
    ObjectVersion,
    PartInfo,
    UploadInfo,
    Versioning,
)

NO_CONDITIONS = Conditions()


@dataclass
class Stored:
    version: ObjectVersion
    data: bytes


@dataclass
class MemoryLayer:
    access: AccessService | None = None
    buckets: dict[str, BucketInfo] = field(default_factory=dict)
    objects: dict[tuple[str, str], Stored] = field(default_factory=dict)
    consistency_seen: list[Consistency] = field(default_factory=list)
    fail_with: BaseException | None = None  # raised by head_object, to test translation

    async def create_bucket(self, bucket: str, owner: str) -> BucketInfo:
        if bucket in self.buckets:
            raise S3Error("BucketAlreadyOwnedByYou", "you own it", resource=f"/{bucket}")
        if self.access is not None:
            await self.access.create_bucket(bucket, owner=owner, public_read=False)
        info = BucketInfo(bucket, int(time.time() * 1000), owner)
        self.buckets[bucket] = info
        return info

    async def bucket(self, bucket: str) -> BucketInfo:
        info = self.buckets.get(bucket)
        if info is None:
            raise S3Error("NoSuchBucket", "The specified bucket does not exist",
                          resource=f"/{bucket}")
        return info

    async def list_buckets(self) -> list[BucketInfo]:
        return sorted(self.buckets.values(), key=lambda b: b.name)

    async def delete_bucket(self, bucket: str) -> None:
        await self.bucket(bucket)
        if any(b == bucket for b, _ in self.objects):
            raise S3Error("BucketNotEmpty", "not empty", resource=f"/{bucket}")
        del self.buckets[bucket]

    async def set_versioning(self, bucket: str, state: Versioning) -> BucketInfo:
        raise S3Error("NotImplemented", "the memory layer has no versioning")

    async def put_object(self, bucket: str, key: str, body: AsyncIterator[bytes], *,
                         meta: ObjectMeta, conditions: Conditions = NO_CONDITIONS,
                         checksum: ChecksumSource = None) -> ObjectVersion:
        await self.bucket(bucket)
        data = b"".join([bytes(piece) async for piece in body])
        version = ObjectVersion(bucket, key, NULL_VERSION, len(data),
                                hashlib.md5(data, usedforsecurity=False).hexdigest(),
                                int(time.time() * 1000), meta,
                                checksum=checksum() if checksum is not None else None)
        self.objects[(bucket, key)] = Stored(version, data)
        return version

    async def head_object(self, bucket: str, key: str, version_id: str | None = None, *,
                          consistency: Consistency = "quorum") -> ObjectVersion:
        self.consistency_seen.append(consistency)
        if self.fail_with is not None:
            raise self.fail_with
        await self.bucket(bucket)
        stored = self.objects.get((bucket, key))
        if stored is None:
            raise S3Error("NoSuchKey", "The specified key does not exist.",
                          resource=f"/{bucket}/{key}")
        return stored.version

    async def read_object(self, obj: ObjectVersion, start: int, end: int
                          ) -> AsyncIterator[bytes | memoryview]:
        data = self.objects[(obj.bucket, obj.key)].data
        yield data[start:end + 1]

    async def delete_object(self, bucket: str, key: str,
                            version_id: str | None = None) -> DeleteResult:
        await self.bucket(bucket)
        self.objects.pop((bucket, key), None)
        return DeleteResult(None, False)

    async def copy_object(self, source: ObjectVersion, bucket: str, key: str, *,
                          meta: ObjectMeta | None) -> ObjectVersion:
        data = self.objects[(source.bucket, source.key)].data

        async def body() -> AsyncIterator[bytes]:
            yield data

        return await self.put_object(bucket, key, body(), meta=meta or source.meta)

    async def scan(self, bucket: str, prefix: str, after: str | None, *, versions: bool,
                   consistency: Consistency = "quorum") -> AsyncIterator[ListEntry]:
        self.consistency_seen.append(consistency)
        for (b, key), stored in sorted(self.objects.items()):
            if b == bucket and key.startswith(prefix) and (after is None or key > after):
                v = stored.version
                yield ListEntry(key, v.version_id, "0", False, v.size, v.etag,
                                v.last_modified_ms)

    async def create_upload(self, bucket: str, key: str, *, meta: ObjectMeta, owner: str,
                            checksum_algorithm: str | None = None) -> UploadInfo:
        raise S3Error("NotImplemented", "the memory layer has no multipart uploads")

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int,
                          body: AsyncIterator[bytes], *,
                          checksum: ChecksumSource = None) -> PartInfo:
        raise S3Error("NoSuchUpload", "no uploads here")

    async def upload_part_copy(self, bucket: str, key: str, upload_id: str, number: int,
                               source: ObjectVersion, start: int, end: int) -> PartInfo:
        raise S3Error("NoSuchUpload", "no uploads here")

    async def complete_upload(self, bucket: str, key: str, upload_id: str,
                              parts: Sequence[tuple[int, str]], *,
                              conditions: Conditions = NO_CONDITIONS) -> ObjectVersion:
        raise S3Error("NoSuchUpload", "no uploads here")

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        raise S3Error("NoSuchUpload", "no uploads here")

    async def list_uploads(self, bucket: str, prefix: str, key_marker: str | None,
                           upload_id_marker: str | None, limit: int
                           ) -> tuple[list[UploadInfo], bool]:
        return [], False

    async def list_parts(self, bucket: str, key: str, upload_id: str, marker: int,
                         limit: int) -> tuple[UploadInfo, list[PartInfo], bool]:
        raise S3Error("NoSuchUpload", "no uploads here")
