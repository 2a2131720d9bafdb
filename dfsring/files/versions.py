"""File versions as keys of the replicated key/value layer: names, selection, retention. Pure.

Layout. Every version of every file is its own immutable key of the reserved bucket
``SYSTEM_BUCKET`` (a name with "..", which the key/value API refuses:
dfsring.core.keys.is_reserved),
written once through the ordinary coordinator and never changed:

    {bucket}/{path} NUL {version} NUL {kind}{size} [NUL {etag}]

* ``version`` is an encoded hybrid-logical-clock timestamp (dfsring.core.hlc): unique across nodes
  (the node id breaks ties) and sorting like the timestamps, so the newest version is the
  greatest key of the path and concurrent writers make two keys, never siblings of one.
* ``kind`` says what the version is: ``c`` a manifest with chunks, ``i`` a manifest with the
  bytes inline, ``d`` a delete marker; in upper case (``C``, ``I``, ``D``) the same for a
  "null" version (S3: written while the bucket's versioning was never enabled or suspended;
  its S3 version id is "null"). ``size`` is the file's length in decimal; ``etag`` the S3
  ETag (hex MD5, or hex MD5 of the parts' MD5s + "-N"; absent for delete markers and for
  keys written before it existed, which read as ""). All in the key so that listing files
  (S3 ListObjects included: ETag, size, LastModified from the version's HLC wall time),
  finding the current version and deciding retention need only a key listing, and the
  garbage collector fetches only the manifests that reference chunks.
* Paths never contain NUL, and every character of a version or kind is above NUL, so the keys
  of one path are contiguous, follow path order (a path sorts before its extensions, as
  ``a`` + NUL < ``a/b``), and within a path follow version order.
* Placement: every key of one bucket is in one partition (dfsring.core.keys: the grouped
  system tables), so a path's versions and a bucket's listing are one partition's range.

Null versions. Writing a new null version removes the previous null versions of the path
*after* the new one is written; a crash in between leaves two. The rule that makes that
harmless (``visible`` / ``superseded_nulls``): of a path's null versions only the newest
exists for readers; the older ones are removed by the next null write or by the collector's
retention pass.

Bounds. A storage key is at most 511 bytes (LMDB), and keys.key_suffix abbreviates longer ones,
which would break prefix scans; the longest version id is 84 characters, the longest size 12
digits, the longest etag 38 characters, so paths are limited to ``MAX_PATH_BYTES`` (280)
bytes to keep every key exact (S3 keys longer than that are refused with KeyTooLongError).

Retention (``retention``) is S3 lifecycle's NewerNoncurrentVersions + NoncurrentDays, as in
dfsring.core.manifest.prune: a version is kept if it is the newest, among the ``keep_versions``
newest, or younger than ``keep_days``; with neither rule every version is kept. A path whose
listing shows only delete markers has nothing left to hide, and its markers go too
(``lone_markers``, S3's "expired object delete markers").
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dfsring.core import hlc
from dfsring.core.keys import MAX_STORAGE_KEY, utf8_name, validate_bucket
from dfsring.core.manifest import MAX_FILE_SIZE, split_retained
from dfsring.foundation.errors import InvalidKey

SYSTEM_BUCKET = "dfs..files"
MAX_PATH_BYTES = 280
MANIFEST_TYPE = "application/x-dfsring-manifest"
_SEP = "\x00"
_BEYOND_VERSIONS = "\x7f"  # above every character a version, kind or size can hold
_KEY_RE = re.compile(r"([a-z0-9][a-z0-9._-]{0,62})/([^\x00]+)\x00([0-9a-f]{20}[A-Za-z0-9._-]{1,64})"
                     r"\x00([cidCID])(0|[1-9][0-9]{0,11})"
                     r"(?:\x00([0-9a-f]{32}(?:-[1-9][0-9]{0,4})?))?", re.DOTALL)
ETAG_RE = re.compile(r"[0-9a-f]{32}(?:-[1-9][0-9]{0,4})?", re.ASCII)
_MAX_SIZE_DIGITS = 12
_MAX_ETAG = 32 + 1 + 5
assert len(str(MAX_FILE_SIZE)) <= _MAX_SIZE_DIGITS
assert (63 + 1 + MAX_PATH_BYTES + 1 + hlc.ENCODED_MAX_LEN + 1 + 1 + _MAX_SIZE_DIGITS + 1
        + _MAX_ETAG < MAX_STORAGE_KEY - 3 - len(SYSTEM_BUCKET)), \
    "a version key could be abbreviated"


class Kind(enum.Enum):
    CHUNKED = "c"
    INLINE = "i"
    DELETED = "d"


def validate_path(path: str) -> bytes:
    """A file path: 1..MAX_PATH_BYTES bytes of UTF-8 without NUL (it may contain '/')."""
    if _SEP in path:
        raise InvalidKey("file path must not contain NUL")
    return utf8_name(path, "file path", MAX_PATH_BYTES)


@dataclass(frozen=True, slots=True)
class VersionRef:
    """One version of one file as its key names it (no manifest needed)."""

    bucket: str
    path: str
    version: str  # an encoded hlc.Timestamp
    kind: Kind
    size: int
    etag: str = ""  # S3 ETag without quotes ("" for delete markers and older keys)
    null: bool = False  # an S3 "null" version (module docstring)

    def __post_init__(self) -> None:
        validate_bucket(self.bucket)
        validate_path(self.path)
        hlc.Timestamp.decode(self.version)
        if type(self.size) is not int or not 0 <= self.size <= MAX_FILE_SIZE:
            raise ValueError(f"size must be an integer in 0..{MAX_FILE_SIZE}")
        if self.kind is Kind.DELETED and (self.size or self.etag):
            raise ValueError("a delete marker has size 0 and no etag")
        if self.etag and not ETAG_RE.fullmatch(self.etag):
            raise ValueError(f"not an etag: {self.etag!r:.60}")

    @property
    def key(self) -> str:
        kind = self.kind.value.upper() if self.null else self.kind.value
        tail = f"{_SEP}{self.etag}" if self.etag else ""
        return f"{self.bucket}/{self.path}{_SEP}{self.version}{_SEP}{kind}{self.size}{tail}"

    @property
    def timestamp(self) -> hlc.Timestamp:
        return hlc.Timestamp.decode(self.version)

    @property
    def created_ms(self) -> int:
        """When the version was written, to the writer's hybrid clock (close to wall time)."""
        return self.timestamp.wall_ms

    @property
    def deleted(self) -> bool:
        return self.kind is Kind.DELETED

    @classmethod
    def parse(cls, key: str) -> VersionRef:
        """Inverse of ``key``; ValueError for anything else (keys come from peers' disks)."""
        match = _KEY_RE.fullmatch(key)
        if match is None:
            raise ValueError(f"not a file version key: {key!r:.120}")
        bucket, path, version, kind, size, etag = match.groups()
        try:
            return cls(bucket, path, version, Kind(kind.lower()), int(size), etag or "",
                       kind.isupper())
        except InvalidKey as exc:
            raise ValueError(str(exc)) from exc


def path_prefix(bucket: str, path: str) -> str:
    """The prefix of every version key of one file."""
    return f"{bucket}/{path}{_SEP}"


def listing_prefix(bucket: str, prefix: str) -> str:
    """The prefix of every version key of the files of ``bucket`` whose path starts so."""
    return f"{bucket}/{prefix}"


def after_path(bucket: str, path: str) -> str:
    """An exclusive lower bound above every version key of ``path`` and below the next path's."""
    return f"{bucket}/{path}{_SEP}{_BEYOND_VERSIONS}"


def parse_keys(keys: Iterable[str]) -> list[VersionRef]:
    """The version keys among ``keys`` (others, which no node of ours writes, are skipped)."""
    out = []
    for key in keys:
        try:
            out.append(VersionRef.parse(key))
        except ValueError:
            continue
    return out


# --- selection -----------------------------------------------------------------------------


def superseded_nulls(refs: Iterable[VersionRef]) -> list[VersionRef]:
    """The null versions of one path other than the newest null one: left behind by a
    crash between writing a null version and removing the one it replaces; readers ignore
    them and the next null write or the collector removes them (module docstring)."""
    nulls = newest_first(r for r in refs if r.null)
    return nulls[1:]


def visible(refs: Iterable[VersionRef]) -> list[VersionRef]:
    """One path's versions as readers see them, newest first: superseded null versions
    left out."""
    ordered = newest_first(refs)
    seen_null = False
    out = []
    for ref in ordered:
        if ref.null:
            if seen_null:
                continue
            seen_null = True
        out.append(ref)
    return out


def newest_first(refs: Iterable[VersionRef]) -> list[VersionRef]:
    return sorted(refs, key=lambda r: r.timestamp, reverse=True)


def newest(refs: Iterable[VersionRef]) -> VersionRef | None:
    return max(refs, key=lambda r: r.timestamp, default=None)


def current(refs: Iterable[VersionRef]) -> VersionRef | None:
    """The version a plain GET serves: the newest, unless that is a delete marker."""
    top = newest(refs)
    return None if top is None or top.deleted else top


def by_path(refs: Iterable[VersionRef]) -> dict[tuple[str, str], list[VersionRef]]:
    """Versions grouped by (bucket, path), each group newest first."""
    groups: dict[tuple[str, str], list[VersionRef]] = {}
    for ref in refs:
        groups.setdefault((ref.bucket, ref.path), []).append(ref)
    return {name: newest_first(group) for name, group in groups.items()}


def live_files(refs: Iterable[VersionRef]) -> list[VersionRef]:
    """The current version of every file that is not deleted, in path order (a listing)."""
    found = (current(group) for group in by_path(refs).values())
    return sorted((ref for ref in found if ref is not None), key=lambda r: r.path.encode())


# --- retention -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retention:
    """What to keep of each file; None disables a rule, and with both None all is kept."""

    keep_versions: int | None = None
    keep_days: float | None = None

    def __post_init__(self) -> None:
        if self.keep_versions is not None and (type(self.keep_versions) is not int
                                               or self.keep_versions < 1):
            raise ValueError("keep_versions must be a positive integer or None")
        if self.keep_days is not None and not (isinstance(self.keep_days, int | float)
                                               and self.keep_days > 0):
            raise ValueError("keep_days must be a positive number or None")

    @property
    def keeps_all(self) -> bool:
        return self.keep_versions is None and self.keep_days is None


def retention(refs: Sequence[VersionRef], rule: Retention,
              now_ms: int) -> tuple[list[VersionRef], list[VersionRef]]:
    """Split one file's versions into (kept, pruned), both newest first (module docstring).

    The newest version is always kept, so pruning never changes what a GET serves.
    """
    ordered = newest_first(refs)
    if len({(r.bucket, r.path) for r in ordered}) > 1:
        raise ValueError("versions of more than one file")
    return split_retained(ordered, rule.keep_versions, rule.keep_days, now_ms)


def lone_markers(refs: Sequence[VersionRef]) -> list[VersionRef]:
    """All of one file's versions if every one is a delete marker (nothing left to hide)."""
    return list(refs) if refs and all(r.deleted for r in refs) else []


# --- garbage collection --------------------------------------------------------------------


def collectable(candidates: dict[bytes, float], referenced: set[bytes],
                cutoff: float) -> list[bytes]:
    """The chunks a GC round may delete: not referenced by any version its scan saw, and
    last written or touched before ``cutoff`` (see dfsring.files.gc for why this is safe)."""
    return sorted(cid for cid, mtime in candidates.items()
                  if mtime < cutoff and cid not in referenced)
