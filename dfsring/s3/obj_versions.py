"""S3 objects as file versions: names, version ids and the choice of a version. Pure.

An S3 object is a file of the files layer (bucket = bucket, key = path); each of its
versions is a version key of dfsring.files.versions, which carries what listings need (size,
ETag, the version's HLC stamp, whether it is a delete marker or a "null" version). This
module maps between the two vocabularies:

* the S3 version id of a version is its HLC string (already URL-safe: ``[0-9a-f]{20}`` then
  the node id's ``[A-Za-z0-9._-]``), or ``"null"`` for a null version (written while the
  bucket's versioning was never enabled or suspended);
* of several null versions of one key (a crash between writing one and removing the one it
  replaces) only the newest exists (dfsring.files.versions.visible);
* S3 keys are validated here: at most ``MAX_KEY_BYTES`` (dfsring.files.versions.MAX_PATH_BYTES,
  280) bytes of UTF-8 and no NUL, so that a version key is never abbreviated
  (KeyTooLongError beyond: S3 itself allows 1024 bytes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from dfsring.core import hlc
from dfsring.files import versions as fv
from dfsring.files.versions import VersionRef
from dfsring.s3.errors import S3Error
from dfsring.s3.model import NULL_VERSION, ListEntry

MAX_KEY_BYTES = fv.MAX_PATH_BYTES
_VERSION_RE = re.compile(r"[0-9a-f]{20}[A-Za-z0-9._-]{1,64}", re.ASCII)
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
_IP_RE = re.compile(r"\d+\.\d+\.\d+\.\d+", re.ASCII)


def object_path(key: str) -> str:
    """The file path of S3 key ``key``: KeyTooLongError past MAX_KEY_BYTES, InvalidArgument
    for an empty key, NUL or text that is not UTF-8."""
    if not key:
        raise S3Error("InvalidArgument", "the object key must not be empty")
    if "\x00" in key:
        raise S3Error("InvalidArgument", "the object key must not contain NUL")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise S3Error("InvalidArgument", "the object key is not valid UTF-8") from exc
    if len(raw) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError",
                      f"the key is {len(raw)} bytes; this store keeps at most {MAX_KEY_BYTES}")
    return key


def check_new_bucket(name: str) -> str:
    """S3's bucket naming rules for a new bucket: 3-63 of a-z, 0-9, '.', '-', starting and
    ending with a letter or digit, no '..', not an IP address (InvalidBucketName)."""
    if (not _BUCKET_RE.fullmatch(name) or ".." in name or _IP_RE.fullmatch(name)
            or ".-" in name or "-." in name):
        raise S3Error("InvalidBucketName", "bucket names are 3-63 characters of a-z, 0-9, "
                      "'.' and '-', starting and ending with a letter or digit",
                      resource=name[:80])
    return name


def check_version_id(version_id: str) -> str:
    """A version id a client sent: "null" or one this store issued (InvalidArgument)."""
    if version_id == NULL_VERSION:
        return version_id
    if not _VERSION_RE.fullmatch(version_id):
        raise S3Error("InvalidArgument", "Invalid version id specified")
    try:
        hlc.Timestamp.decode(version_id)
    except ValueError as exc:
        raise S3Error("InvalidArgument", "Invalid version id specified") from exc
    return version_id


def version_id(ref: VersionRef) -> str:
    return NULL_VERSION if ref.null else ref.version


def current(refs: Iterable[VersionRef]) -> VersionRef | None:
    """The version a GET without versionId sees: the newest visible one (which may be a
    delete marker; the caller says NoSuchKey then)."""
    found = fv.visible(refs)
    return found[0] if found else None


def find(refs: Iterable[VersionRef], wanted: str) -> VersionRef | None:
    """The visible version named by S3 version id ``wanted`` ("null": the newest null one)."""
    for ref in fv.visible(refs):
        if version_id(ref) == wanted:
            return ref
    return None


def entry(ref: VersionRef) -> ListEntry:
    """A version key as listings see it (no manifest read)."""
    return ListEntry(key=ref.path, version_id=version_id(ref), order=ref.version,
                     delete_marker=ref.deleted, size=ref.size, etag=ref.etag,
                     last_modified_ms=ref.created_ms)


def group_entries(group: Sequence[VersionRef], *, versions: bool) -> list[ListEntry]:
    """One key's listing entries: every visible version oldest first, or only the current
    one (delete markers included: the lister drops them)."""
    found = fv.visible(group)
    if not found:
        return []
    if not versions:
        return [entry(found[0])]
    return [entry(ref) for ref in reversed(found)]
