"""The S3 object layer: S3's buckets, objects, versions and multipart uploads over the files
layer (dfsring.s3.model.ObjectLayer, called by the S3 edge).

An S3 object is a file (bucket = bucket, key = path): the native files API and S3 see the
same objects. Each S3 version is a file version key (dfsring.files.versions), which carries
size, ETag, the HLC stamp (LastModified) and the delete-marker and null flags, so listings
read keys only; one bucket's keys sit in one partition (dfsring.core.keys), so a listing
page or a key's versions is one range read on R owners of that partition.

Versioning, S3's rules (docs: S3-PITFALLS.md "Versioning"):

* never enabled or Suspended: a PUT writes a *null* version (version id "null") and then
  removes the key's earlier null version; other versions stay. A crash in between leaves
  two null versions: readers take the newest (dfsring.files.versions.visible) and the next
  null write or the collector removes the older.
* Enabled: every PUT adds a version; DELETE without versionId adds a delete marker (its id
  returned); Suspended: that marker is a null one and replaces the null version; never
  enabled: the null version is removed (and a null marker hides any older non-null
  version written through the native API, so the key reads as absent as S3 would say).
* DELETE with versionId removes that version (a marker too); "null" names the null version.
* GET/HEAD of a key whose current version is a marker: NoSuchKey with
  ``x-amz-delete-marker: true``; naming a marker by versionId: MethodNotAllowed with it.

Conditional writes (If-Match / If-None-Match on PUT and Complete) are refused with
NotImplemented: leaderless quorum writes cannot check and write without a gap another writer
through another node could use, and the issue asks for guaranteed or refused.

Retention (--keep-versions/--keep-days) is for native files: uploads through S3 never prune,
and the collector exempts the buckets whose versioning is Enabled or Suspended
(``retention_exempt``), so an S3 versioned bucket is never pruned behind its user's back.

Consistency of reads (``Consistency``): "quorum" lists and reads R owners (read-after-write
with R + W > N), "strong" every owner of the partition (ServiceUnavailable unless all N
answer; sees every acknowledged write even while N - R owners are stale), "eventual" one
owner (may miss writes the others acknowledged until anti-entropy or read repair).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence

from dfsring.core import manifest
from dfsring.core.manifest import Manifest
from dfsring.files import versions as fv
from dfsring.files.service import FileService, StoredBody, VersionExtras
from dfsring.files.versions import VersionRef
from dfsring.files.wiring import FilesNode
from dfsring.foundation import errors
from dfsring.foundation.config import NodeConfig
from dfsring.foundation.worker import Worker
from dfsring.replication.access.service import AccessService
from dfsring.s3 import obj_versions as ov
from dfsring.s3.buckets import S3Buckets
from dfsring.s3.errors import S3Error
from dfsring.s3.model import (
    NULL_VERSION,
    BucketInfo,
    Checksum,
    ChecksumSource,
    Conditions,
    Consistency,
    DeleteResult,
    ListEntry,
    ObjectLayer,
    ObjectMeta,
    ObjectVersion,
    PartInfo,
    UploadInfo,
    Versioning,
)
from dfsring.s3.multipart import Multipart
from dfsring.s3.obj_errors import s3_errors

log = logging.getLogger("dfsring.s3")
NO_CONDITIONS = Conditions()
MANIFEST_CACHE = 1_024  # manifests kept between head_object and read_object
MANIFEST_CACHE_BYTES = 32 << 20  # and the bytes they may hold, about
MAX_STALE_LISTED = 8  # removed versions a GET passes over before answering 503 (_locate)


def no_such_key(key: str, headers: dict[str, str] | None = None) -> S3Error:
    return S3Error("NoSuchKey", "The specified key does not exist.", resource=key[:300],
                   headers=headers)


def refuse_conditions(conditions: Conditions) -> None:
    if conditions.if_match is not None or conditions.if_none_match is not None:
        raise S3Error("NotImplemented", "Conditional writes (If-Match, If-None-Match) are not "
                      "supported: a leaderless store cannot guarantee them, and does not "
                      "pretend to")


def object_version(m: Manifest, ref: VersionRef) -> ObjectVersion:
    """HEAD's view of a version from its manifest."""
    meta = ObjectMeta(m.content_type, dict(m.headers), dict(m.metadata))
    checksum = None if m.checksum is None else Checksum(*m.checksum)
    return ObjectVersion(bucket=m.bucket, key=m.path, version_id=ov.version_id(ref),
                         size=m.size, etag=m.s3_etag or ref.etag or m.sha256[:32],
                         last_modified_ms=m.created_ms, meta=meta, parts=m.parts,
                         checksum=checksum)


class S3Objects:
    """dfsring.s3.model.ObjectLayer over one node's files service and access service."""

    def __init__(self, *, files: FileService, access: AccessService,
                 max_upload_age_s: float = 7 * 86_400.0) -> None:
        self.files = files
        self.access = access
        self.buckets = S3Buckets(access=access, files=files)
        self.multipart = Multipart(files=files, buckets=self.buckets,
                                   max_age_s=max_upload_age_s)
        self._manifests: OrderedDict[tuple[str, str, str, int], tuple[Manifest, VersionRef]] \
            = OrderedDict()
        self._cached_bytes = 0

    # --- buckets ---------------------------------------------------------------------------

    async def create_bucket(self, bucket: str, owner: str) -> BucketInfo:
        return await self.buckets.create(bucket, owner)

    async def bucket(self, bucket: str) -> BucketInfo:
        return await self.buckets.get(bucket)

    async def list_buckets(self) -> list[BucketInfo]:
        return await self.buckets.list()

    async def delete_bucket(self, bucket: str) -> None:
        await self.buckets.delete(bucket)

    async def set_versioning(self, bucket: str, state: Versioning) -> BucketInfo:
        return await self.buckets.set_versioning(bucket, state)

    async def retention_exempt(self, bucket: str) -> bool:
        """For the collector: a bucket whose versioning was ever enabled keeps every
        version whatever the native retention rule."""
        rec = await self.access.cached_bucket(bucket)
        return rec is not None and rec.versioning in ("Enabled", "Suspended")

    # --- reads -----------------------------------------------------------------------------

    def _r(self, consistency: Consistency) -> int:
        if consistency == "strong":
            return self.files.coordinator.n
        if consistency == "eventual":
            return 1
        return self.files.settings.r

    async def _listed(self, bucket: str, path: str, r: int) -> list[VersionRef]:
        with s3_errors(path):
            return await self.files.versions(bucket, path, r=r)

    async def _locate(self, bucket: str, key: str, version_id: str | None,
                      r: int) -> tuple[VersionRef, Manifest | None]:
        """The version a GET/HEAD names (module docstring for the errors), with its manifest
        when finding it needed one.

        A listing is the union of R owners' key listings, so it can still name a version
        removed by a quorum write (a deleted delete marker, a replaced null version) that
        one stale owner lists until anti-entropy reaches it: a GET through another node then
        said NoSuchKey right after the marker's removal was acknowledged. So the current
        version is confirmed by a quorum read of its own key (R + W > N sees the removal),
        and a removed one is passed over for the next newest, at most MAX_STALE_LISTED
        times."""
        path = ov.object_path(key)
        wanted = None if version_id is None else ov.check_version_id(version_id)
        await self.buckets.record(bucket)
        listed = await self._listed(bucket, path, r)
        if wanted is not None:
            ref = ov.find(fv.visible(listed), wanted)
            if ref is None:
                raise S3Error("NoSuchVersion", "The specified version does not exist.",
                              resource=key[:300])
            if ref.deleted:
                raise S3Error("MethodNotAllowed", "The specified method is not allowed "
                              "against this resource.", resource=key[:300],
                              headers={"x-amz-delete-marker": "true",
                                       "x-amz-version-id": ov.version_id(ref)})
            return ref, None
        gone: set[str] = set()
        for _ in range(MAX_STALE_LISTED):
            ref = ov.current(fv.visible([x for x in listed if x.key not in gone]))
            if ref is None:
                raise no_such_key(key)
            with s3_errors(path):
                if not ref.deleted:
                    try:
                        return ref, await self.files.manifest_of(ref, r=r)
                    except errors.NotFound:
                        pass
                elif await self.files.is_live(ref, r=r):
                    raise no_such_key(key, {"x-amz-delete-marker": "true",
                                            "x-amz-version-id": ov.version_id(ref)})
            gone.add(ref.key)
        raise S3Error("ServiceUnavailable", f"the newest {MAX_STALE_LISTED} versions listed "
                      "for this key were all removed; anti-entropy has not caught up",
                      resource=key[:300])

    async def head_object(self, bucket: str, key: str, version_id: str | None = None, *,
                          consistency: Consistency = "quorum") -> ObjectVersion:
        r = self._r(consistency)
        ref, m = await self._locate(bucket, key, version_id, r)
        if m is None:
            m = await self._manifest(ref, r)
        obj = object_version(m, ref)
        self._remember(obj, m, ref)
        return obj

    async def _manifest(self, ref: VersionRef, r: int) -> Manifest:
        with s3_errors(ref.path):
            try:
                return await self.files.manifest_of(ref, r=r)
            except errors.NotFound as exc:
                raise no_such_key(ref.path) from exc

    def _remember(self, obj: ObjectVersion, m: Manifest, ref: VersionRef) -> None:
        """Keep the manifest for the read_object that follows a HEAD (bounded by count and
        by an estimate of the bytes held: inline bodies and chunk lists)."""
        key = _cache_key(obj)
        old = self._manifests.pop(key, None)
        if old is not None:
            self._cached_bytes -= _weight(old[0])
        self._manifests[key] = (m, ref)
        self._cached_bytes += _weight(m)
        while self._manifests and (len(self._manifests) > MANIFEST_CACHE
                                   or self._cached_bytes > MANIFEST_CACHE_BYTES):
            _, (gone, _) = self._manifests.popitem(last=False)
            self._cached_bytes -= _weight(gone)

    async def _source(self, obj: ObjectVersion) -> tuple[Manifest, VersionRef]:
        """The manifest of a version head_object returned (cached, or found again)."""
        found = self._manifests.get(_cache_key(obj))
        if found is not None:
            return found
        ref, m = await self._locate(obj.bucket, obj.key, obj.version_id,
                                    self.files.settings.r)
        if m is None:
            m = await self._manifest(ref, self.files.settings.r)
        if m.created_ms != obj.last_modified_ms:
            raise no_such_key(obj.key)  # a null version replaced since the HEAD
        return m, ref

    async def read_object(self, obj: ObjectVersion, start: int, end: int
                          ) -> AsyncIterator[bytes | memoryview]:
        m, _ = await self._source(obj)
        if m.size == 0 and (start, end) in ((0, -1), (0, 0)):
            return
        if not 0 <= start <= end < m.size:
            raise S3Error("InvalidRange", "The requested range is not satisfiable",
                          resource=obj.key[:300], headers={"Content-Range": f"bytes */{m.size}"})
        with s3_errors(obj.key):
            async for piece in self.files.read(m, start, end):
                yield piece

    def scan(self, bucket: str, prefix: str, after: str | None, *, versions: bool,
             consistency: Consistency = "quorum") -> AsyncIterator[ListEntry]:
        return self._scan(bucket, prefix, after, versions, self._r(consistency))

    async def _scan(self, bucket: str, prefix: str, after: str | None, versions: bool,
                    r: int) -> AsyncIterator[ListEntry]:
        """Version keys under the prefix, grouped by key (one partition's range on r
        owners, page by page), each group's entries as ov.group_entries gives them."""
        await self.buckets.record(bucket)
        if "\x00" in prefix or len(prefix.encode("utf-8", "surrogatepass")) > ov.MAX_KEY_BYTES:
            return
        floor = after.encode("utf-8", "surrogatepass") if after else None
        start = None
        if floor is not None:
            # a cursor past the key bound (a CommonPrefix + U+10FFFF) is cut to the bound:
            # for keys within it, "greater than the cut" is "greater than the cursor" but
            # for the cut itself, which the filter below drops
            cut = floor[:ov.MAX_KEY_BYTES].decode("utf-8", "ignore")
            start = fv.after_path(bucket, cut) if cut else None
        group: list[VersionRef] = []
        with s3_errors(bucket):
            async for ref in self.files.iterate(bucket, fv.listing_prefix(bucket, prefix),
                                                start, r=r):
                if floor is not None and ref.path.encode("utf-8") <= floor:
                    continue
                if group and ref.path != group[0].path:
                    for item in ov.group_entries(group, versions=versions):
                        yield item
                    group = []
                group.append(ref)
        for item in ov.group_entries(group, versions=versions):
            yield item

    # --- writes ----------------------------------------------------------------------------

    async def put_object(self, bucket: str, key: str, body: AsyncIterator[bytes], *,
                         meta: ObjectMeta, conditions: Conditions = NO_CONDITIONS,
                         checksum: ChecksumSource = None) -> ObjectVersion:
        refuse_conditions(conditions)
        path = ov.object_path(key)
        rec = await self.buckets.record(bucket)
        check_meta(meta)

        def verified() -> tuple[str, str] | None:
            got = checksum() if checksum is not None else None
            return None if got is None else (got.algorithm, got.value)

        extras = VersionExtras(null=rec.versioning != "Enabled", headers=dict(meta.headers),
                               checksum_source=verified, prune=not rec.versioning)
        with s3_errors(key):
            result = await self.files.upload(bucket, path, body,
                                             content_type=meta.content_type,
                                             metadata=dict(meta.user), extras=extras)
        assert result.ref is not None
        obj = object_version(result.manifest, result.ref)
        self._remember(obj, result.manifest, result.ref)
        return obj

    async def delete_object(self, bucket: str, key: str,
                            version_id: str | None = None) -> DeleteResult:
        path = ov.object_path(key)
        wanted = None if version_id is None else ov.check_version_id(version_id)
        rec = await self.buckets.record(bucket)
        with s3_errors(key):
            if wanted is not None:
                return await self._delete_version(bucket, path, wanted)
            if rec.versioning == "Enabled":
                marker = await self.files.write_marker(bucket, path, null=False)
                return DeleteResult(marker.version, True)
            if rec.versioning == "Suspended":
                await self.files.write_marker(bucket, path, null=True)
                return DeleteResult(NULL_VERSION, True)
            return await self._delete_unversioned(bucket, path)

    async def _delete_version(self, bucket: str, path: str, wanted: str) -> DeleteResult:
        refs = await self.files.versions(bucket, path)
        doomed = [r for r in refs if ov.version_id(r) == wanted]  # every null one for "null"
        for ref in doomed:
            await self.files.remove_version(ref)
        marker = any(r.deleted for r in fv.visible(doomed))
        return DeleteResult(wanted, marker)

    async def _delete_unversioned(self, bucket: str, path: str) -> DeleteResult:
        """Never-versioned bucket: the null version goes; if native (non-null) versions
        remain live under it, a null marker hides them, as the key must read as absent."""
        refs = fv.visible(await self.files.versions(bucket, path))
        for ref in (r for r in refs if r.null):
            await self.files.remove_version(ref)
        rest = [r for r in refs if not r.null]
        if rest and not rest[0].deleted:
            await self.files.write_marker(bucket, path, null=True)
        return DeleteResult(None, False)

    async def copy_object(self, source: ObjectVersion, bucket: str, key: str, *,
                          meta: ObjectMeta | None) -> ObjectVersion:
        """A new version referencing the source's chunks (no data copied); ``meta`` None
        keeps the source's metadata (COPY). The ETag stays the source's (for a multipart
        source the "-N" tag: this store does not re-read the bytes to compute an MD5)."""
        path = ov.object_path(key)
        rec = await self.buckets.record(bucket)
        m, _ = await self._source(source)
        new_meta = meta if meta is not None else source.meta
        check_meta(new_meta)
        stored = StoredBody(tuple((c.digest, c.size) for c in m.chunks) if m.inline is None
                            else None, m.inline, m.sha256, source.etag, m.size, 0)
        extras = VersionExtras(null=rec.versioning != "Enabled", etag=source.etag,
                               parts=m.parts, checksum=m.checksum if meta is None else None,
                               headers=dict(new_meta.headers), prune=not rec.versioning)
        with s3_errors(key):
            if m.inline is None:
                await self.files.retouch([c.digest for c in m.chunks])
            result = await self.files.commit(bucket, path, stored,
                                             content_type=new_meta.content_type,
                                             metadata=dict(new_meta.user), extras=extras)
        assert result.ref is not None
        obj = object_version(result.manifest, result.ref)
        self._remember(obj, result.manifest, result.ref)
        return obj

    # --- multipart (dfsring.s3.multipart) --------------------------------------------------

    async def create_upload(self, bucket: str, key: str, *, meta: ObjectMeta,
                            owner: str, checksum_algorithm: str | None = None) -> UploadInfo:
        check_meta(meta)
        return await self.multipart.create(bucket, key, meta=meta, owner=owner,
                                           checksum_algorithm=checksum_algorithm)

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int,
                          body: AsyncIterator[bytes], *,
                          checksum: ChecksumSource = None) -> PartInfo:
        return await self.multipart.upload_part(bucket, key, upload_id, number, body,
                                                checksum=checksum)

    async def upload_part_copy(self, bucket: str, key: str, upload_id: str, number: int,
                               source: ObjectVersion, start: int, end: int) -> PartInfo:
        return await self.multipart.upload_part(bucket, key, upload_id, number,
                                                _bytes_of(self.read_object(source, start, end)))

    async def complete_upload(self, bucket: str, key: str, upload_id: str,
                              parts: Sequence[tuple[int, str]], *,
                              conditions: Conditions = NO_CONDITIONS) -> ObjectVersion:
        refuse_conditions(conditions)
        result = await self.multipart.complete(bucket, key, upload_id, parts)
        assert result.ref is not None
        obj = object_version(result.manifest, result.ref)
        self._remember(obj, result.manifest, result.ref)
        return obj

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self.multipart.abort(bucket, key, upload_id)

    async def list_uploads(self, bucket: str, prefix: str, key_marker: str | None,
                           upload_id_marker: str | None, limit: int
                           ) -> tuple[list[UploadInfo], bool]:
        return await self.multipart.list_uploads(bucket, prefix, key_marker,
                                                 upload_id_marker, limit)

    async def list_parts(self, bucket: str, key: str, upload_id: str, marker: int,
                         limit: int) -> tuple[UploadInfo, list[PartInfo], bool]:
        return await self.multipart.list_parts(bucket, key, upload_id, marker, limit)

    def workers(self) -> list[Worker]:
        """The layer's background loops: the multipart abort worker."""
        return [self.multipart.worker()]

    async def close(self) -> None:
        self._manifests.clear()
        self._cached_bytes = 0


def check_meta(meta: ObjectMeta) -> None:
    """Refuse, before any byte is stored, metadata a manifest cannot hold."""
    try:
        manifest.check_object_meta(meta.content_type, dict(meta.user), dict(meta.headers))
    except ValueError as exc:
        raise S3Error("InvalidArgument", f"metadata not accepted: {exc}") from exc


def _weight(m: Manifest) -> int:
    return 256 + len(m.inline or b"") + 48 * len(m.chunks)


def _cache_key(obj: ObjectVersion) -> tuple[str, str, str, int]:
    return obj.bucket, obj.key, obj.version_id, obj.last_modified_ms


async def _bytes_of(pieces: AsyncIterator[bytes | memoryview]) -> AsyncIterator[bytes]:
    async for piece in pieces:
        yield bytes(piece)
        await asyncio.sleep(0)


def build_object_layer(cfg: NodeConfig, files: FilesNode,
                       access: AccessService) -> S3Objects:
    """The node's object layer, with the collector's hooks installed (multipart parts count
    as chunk references; S3 versioned buckets are exempt from native retention). Register
    ``layer.workers()`` with the node's supervisor."""
    layer = S3Objects(files=files.service, access=access,
                      max_upload_age_s=cfg.s3_multipart_max_age)
    files.gc.extra_references = layer.multipart.chunk_references
    files.gc.retention_exempt = layer.retention_exempt
    files.service.retention_exempt = layer.retention_exempt
    return layer


def as_layer(objects: S3Objects) -> ObjectLayer:
    """The layer as the S3 edge types it (and mypy's proof that S3Objects implements the
    dfsring.s3.model.ObjectLayer Protocol)."""
    return objects
