"""The S3 layer's shared vocabulary: what the object layer returns and the S3 edge renders.

Pure data, no I/O. The object layer (dfsring.s3.objects and its neighbours) maps S3's
buckets, objects, versions and multipart uploads onto the files layer (immutable manifests
over content-defined chunks, dfsring.files); the S3 edge (dfsring.s3.app and the handlers)
parses requests, calls the object layer through the ``ObjectLayer`` Protocol and renders
XML. Keeping the Protocol here lets either side be read, and tested, without the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

NULL_VERSION = "null"  # S3's version id of a version written while versioning was off
Versioning = Literal["", "Enabled", "Suspended"]  # "": never enabled
SYSTEM_HEADERS = ("cache-control", "content-disposition", "content-encoding",
                  "content-language", "expires")  # kept and returned as given
CHECKSUM_ALGORITHMS = ("CRC32", "CRC32C", "SHA1", "SHA256")
Consistency = Literal["quorum", "strong", "eventual"]  # R, N (all owners) or 1 replicas read


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What a writer says about an object besides its bytes, all header-safe text."""

    content_type: str = "binary/octet-stream"
    headers: Mapping[str, str] = field(default_factory=dict)  # SYSTEM_HEADERS, lower-case
    user: Mapping[str, str] = field(default_factory=dict)  # x-amz-meta-*, name lower-case
    # without the prefix


@dataclass(frozen=True, slots=True)
class Checksum:
    """An ``x-amz-checksum-*`` value: the algorithm (CHECKSUM_ALGORITHMS) and its base64
    value; for a multipart object the composite ``base64-N``."""

    algorithm: str
    value: str


ChecksumSource = Callable[[], "Checksum | None"] | None


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One version of one object, as HEAD/GET need it (no bytes)."""

    bucket: str
    key: str
    version_id: str  # NULL_VERSION or the version's own id
    size: int
    etag: str  # hex MD5, or hex MD5 of the parts' MD5s + "-N"; no quotes
    last_modified_ms: int
    meta: ObjectMeta
    delete_marker: bool = False
    parts: int = 0  # 0: a single-part object
    checksum: Checksum | None = None


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One version key as a listing sees it: enough for ListObjects and ListObjectVersions
    without reading a manifest."""

    key: str
    version_id: str  # NULL_VERSION or the version's own id
    order: str  # sorts versions of one key oldest first (the version's stamp)
    delete_marker: bool
    size: int
    etag: str
    last_modified_ms: int


@dataclass(frozen=True, slots=True)
class BucketInfo:
    name: str
    created_ms: int
    owner: str  # access key id
    versioning: Versioning = ""


@dataclass(frozen=True, slots=True)
class DeleteResult:
    version_id: str | None  # the version removed, or of the marker made (None: unversioned)
    delete_marker: bool  # a marker was made, or the version removed was one


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """One multipart upload in progress."""

    bucket: str
    key: str
    upload_id: str
    initiated_ms: int
    meta: ObjectMeta
    owner: str


@dataclass(frozen=True, slots=True)
class PartInfo:
    number: int  # 1..10000
    size: int
    etag: str  # hex MD5 of the part, no quotes
    last_modified_ms: int
    checksum: Checksum | None = None


@dataclass(frozen=True, slots=True)
class Conditions:
    """Write preconditions the object layer guarantees (checked and written without a gap
    another writer of the same key through any node could use) or refuses with
    NotImplemented; never best effort."""

    if_match: str | None = None  # an ETag (no quotes) or "*"
    if_none_match: str | None = None  # only "*" is supported


class ObjectLayer(Protocol):
    """What the S3 edge asks of the store. Errors are dfsring.s3.errors.S3Error with the
    S3 code (NoSuchBucket, NoSuchKey, NoSuchVersion, NoSuchUpload, InvalidPart, ...)."""

    # --- buckets ---------------------------------------------------------------------------
    async def create_bucket(self, bucket: str, owner: str) -> BucketInfo: ...
    async def bucket(self, bucket: str) -> BucketInfo: ...  # NoSuchBucket
    async def list_buckets(self) -> list[BucketInfo]: ...
    async def delete_bucket(self, bucket: str) -> None: ...  # BucketNotEmpty
    async def set_versioning(self, bucket: str, state: Versioning) -> BucketInfo: ...

    # --- objects ---------------------------------------------------------------------------
    async def put_object(self, bucket: str, key: str, body: AsyncIterator[bytes], *,
                         meta: ObjectMeta, conditions: Conditions = Conditions(),
                         checksum: ChecksumSource = None) -> ObjectVersion: ...
    # The body is already verified by the edge (Content-MD5, x-amz-checksum-*, signed
    # payloads: dfsring.s3.checksums), which raises from the iterator on a mismatch, so a
    # bad body never becomes a version. ``checksum`` is called once the body is exhausted.
    async def head_object(self, bucket: str, key: str, version_id: str | None = None, *,
                          consistency: Consistency = "quorum") -> ObjectVersion: ...
    # NoSuchKey (a current delete marker: NoSuchKey with header x-amz-delete-marker: true),
    # NoSuchVersion; a version id naming a delete marker: MethodNotAllowed (405) as S3.
    def read_object(self, obj: ObjectVersion, start: int, end: int
                    ) -> AsyncIterator[bytes | memoryview]: ...  # inclusive end
    async def delete_object(self, bucket: str, key: str,
                            version_id: str | None = None) -> DeleteResult: ...
    async def copy_object(self, source: ObjectVersion, bucket: str, key: str, *,
                          meta: ObjectMeta | None) -> ObjectVersion: ...  # None: COPY
    def scan(self, bucket: str, prefix: str, after: str | None, *, versions: bool,
             consistency: Consistency = "quorum") -> AsyncIterator[ListEntry]: ...
    # ``after``: start strictly after this key (all its versions skipped); entries in key
    # order, versions of a key oldest first; with versions=False only each key's current
    # version, delete markers included (the lister drops them).

    # --- multipart -------------------------------------------------------------------------
    async def create_upload(self, bucket: str, key: str, *, meta: ObjectMeta,
                            owner: str, checksum_algorithm: str | None = None) -> UploadInfo: ...
    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int,
                          body: AsyncIterator[bytes], *,
                          checksum: ChecksumSource = None) -> PartInfo: ...
    async def upload_part_copy(self, bucket: str, key: str, upload_id: str, number: int,
                               source: ObjectVersion, start: int, end: int) -> PartInfo: ...
    async def complete_upload(self, bucket: str, key: str, upload_id: str,
                              parts: Sequence[tuple[int, str]], *,
                              conditions: Conditions = Conditions()) -> ObjectVersion: ...
    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None: ...
    async def list_uploads(self, bucket: str, prefix: str, key_marker: str | None,
                           upload_id_marker: str | None, limit: int
                           ) -> tuple[list[UploadInfo], bool]: ...
    async def list_parts(self, bucket: str, key: str, upload_id: str, marker: int,
                         limit: int) -> tuple[UploadInfo, list[PartInfo], bool]: ...
