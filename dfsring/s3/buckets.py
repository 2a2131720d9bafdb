"""S3 buckets over the bucket records of the access service (``dfs..buckets``).

A bucket exists when it has a live record (dfsring.core.accessrecords.BucketRecord); its
objects are the files of the files layer under the same name. Files written to a name through
the native API without a record are invisible to S3 until the bucket is created.

* CreateBucket: the owner is the caller's access key. A live record already there is
  ``BucketAlreadyOwnedByYou`` (409) when the caller owns it, else ``BucketAlreadyExists``
  (409): AWS's behaviour in every region but us-east-1, whose legacy 200 for a re-create by
  the owner we do not copy (a client cannot tell that 200 from a real creation).
* DeleteBucket: ``BucketNotEmpty`` while any version key (a delete marker included) or any
  multipart upload is under the bucket (a quorum read of its partition); then a grave
  replaces the record (a concurrent re-create is either superseded or survives whole,
  accessrecords' merge rule). A PUT racing
  the delete may leave a version under the graved name, which a later re-create shows: the
  check and the grave are not atomic (leaderless quorum writes cannot make them so).
* Versioning: Enabled or Suspended, never back to "" (S3's rule); the later change wins.
"""

from __future__ import annotations

from dfsring.core.accessrecords import BucketRecord
from dfsring.core.keys import UPLOADS_BUCKET, validate_user_bucket
from dfsring.files import versions as fv
from dfsring.files.service import FileService
from dfsring.foundation import errors
from dfsring.replication.access.service import AccessService
from dfsring.s3 import obj_uploads as up
from dfsring.s3.errors import S3Error
from dfsring.s3.model import BucketInfo, Versioning
from dfsring.s3.obj_errors import s3_errors
from dfsring.s3.obj_versions import check_new_bucket

MAX_BUCKETS = 10_000


def info(rec: BucketRecord) -> BucketInfo:
    state: Versioning = "Enabled" if rec.versioning == "Enabled" else (
        "Suspended" if rec.versioning == "Suspended" else "")
    return BucketInfo(rec.bucket, rec.created_ms, rec.owner, state)


def no_such_bucket(bucket: str) -> S3Error:
    return S3Error("NoSuchBucket", "The specified bucket does not exist",
                   resource=bucket[:80])


class S3Buckets:
    def __init__(self, *, access: AccessService, files: FileService) -> None:
        self.access = access
        self.files = files

    async def record(self, bucket: str) -> BucketRecord:
        """The bucket's live record from the access service's cache; NoSuchBucket."""
        try:
            validate_user_bucket(bucket)
        except (errors.InvalidKey, UnicodeEncodeError, TypeError) as exc:
            raise S3Error("InvalidBucketName", "The specified bucket is not valid.",
                          resource=str(bucket)[:80]) from exc
        with s3_errors(bucket):
            found = await self.access.cached_bucket(bucket)
        if found is None:
            raise no_such_bucket(bucket)
        return found

    async def create(self, bucket: str, owner: str) -> BucketInfo:
        check_new_bucket(bucket)
        with s3_errors(bucket):
            try:
                rec = await self.access.create_bucket(bucket, owner=owner, public_read=False)
            except errors.Conflict as exc:
                existing, _ = await self.access.tables.read_bucket(bucket)
                if existing is not None and existing.owner == owner:
                    raise S3Error("BucketAlreadyOwnedByYou", "Your previous request to "
                                  "create the named bucket succeeded and you already own it.",
                                  resource=bucket) from exc
                raise S3Error("BucketAlreadyExists", "The requested bucket name is not "
                              "available.", resource=bucket) from exc
        return info(rec)

    async def get(self, bucket: str) -> BucketInfo:
        return info(await self.record(bucket))

    async def list(self) -> list[BucketInfo]:
        with s3_errors():
            found = await self.access.list_buckets(MAX_BUCKETS)
        return [info(r) for r in found]

    async def delete(self, bucket: str) -> None:
        await self.record(bucket)
        if await self._has_objects(bucket):
            raise S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty",
                          resource=bucket)
        with s3_errors(bucket):
            try:
                await self.access.delete_bucket(bucket)
            except errors.NotFound as exc:
                raise no_such_bucket(bucket) from exc

    async def _has_objects(self, bucket: str) -> bool:
        """Any version key (delete markers too) or multipart upload under the bucket, read
        from R owners of its partition: with R + W > N every acknowledged write is seen (a
        write still in flight is the documented race), and a bucket can still be deleted
        with one owner down."""
        n = self.files.settings.r
        with s3_errors(bucket):
            versions = await self.files.coordinator.list_partition(
                fv.SYSTEM_BUCKET.encode(), bucket, fv.listing_prefix(bucket, "").encode(),
                None, 1, r=n)
            if versions:
                return True
            uploads = await self.files.coordinator.list_partition(
                UPLOADS_BUCKET, bucket, up.uploads_prefix(bucket).encode(), None, 1, r=n)
        return bool(uploads)

    async def set_versioning(self, bucket: str, state: Versioning) -> BucketInfo:
        if state not in ("Enabled", "Suspended"):
            raise S3Error("MalformedXML", "versioning status is Enabled or Suspended")
        await self.record(bucket)
        with s3_errors(bucket):
            try:
                rec = await self.access.set_versioning(bucket, state)
            except errors.NotFound as exc:
                raise no_such_bucket(bucket) from exc
        return info(rec)
