"""S3 listings (ListObjects V1/V2, ListObjectVersions) over a sorted key scan.

The object layer gives a ``Scan``: ``scan(prefix, after)`` yields the bucket's entries whose
key starts with ``prefix`` and sorts strictly after ``after``, in key order (code point order,
which is UTF-8 byte order, S3's), versions of one key oldest first. This module turns that
stream into one S3 page. It does no I/O of its own: the only awaits are on the scan.

Rules (as S3; pinned by tests/unit/test_s3_listing.py against a brute-force model):

- An *item* is a key or a CommonPrefix. With a delimiter D, a key K under prefix P whose
  rest ``K[len(P):]`` holds D rolls up into the CommonPrefix ``P + rest[:i + len(D)]`` (i:
  where D first occurs). Each CommonPrefix counts once against max-keys and is listed at
  the place of its first key.
- ListObjects lists each key's current version and drops delete markers: a key whose current
  version is a delete marker is not listed, and a CommonPrefix is listed only if it holds a
  listed key (seaweedfs#10416). ListObjectVersions lists every version, delete markers
  included, newest first within a key, ``IsLatest`` on the newest.
- Resuming (V1 marker, V2 start-after or continuation token, versions key-marker) starts
  strictly after the mark; a mark that falls inside a CommonPrefix (``P/`` itself, or a key
  under it) resumes after the whole CommonPrefix, never inside it (localstack#9605,
  versitygw#816, noobaa#7281).
- The rest of a CommonPrefix is skipped by scanning again from ``P + U+10FFFF`` (no key
  under P sorts between P's keys and that point except keys holding U+10FFFF itself, which
  are dropped as they come), after reading at most SKIP_INLINE keys of it from the current
  scan: a large prefix is never read through, a small one costs no new scan.
- ``IsTruncated`` is exact: a page is truncated only if one more item exists, which is
  read (one look-ahead) before answering. ``max-keys=0`` answers an empty page that is not
  truncated (AWS, and versitygw#248, fakecloud#2003).
- The continuation token is ``base64url(version byte 1 || UTF-8 of the last item)``,
  unpadded, and decoded strictly (canonical form only): it is a mark like the V1 marker,
  opaque to clients only by convention.

Versions of one key are buffered only as far as the page needs: at most max-keys + 1 of
them (a deque of the newest), however many the key has. A page that ends inside a key's
versions gives NextKeyMarker = the key and NextVersionIdMarker = the last version listed;
the next page re-reads that key's versions (oldest first, as the scan gives them) up to the
marker, keeping the newest max-keys + 1 before it. A key with V versions paged through in
pages of M costs O(V * V / M) entries read and O(M) memory. If the version marker is gone
(deleted between pages), the key is listed again from its newest version: a repeat is
harmless to a client emptying a bucket, an omission is not.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from dfsring.s3.errors import S3Error
from dfsring.s3.model import ListEntry

MAX_KEYS = 1000  # S3's largest page; larger asked values are clamped to it
MAX_TEXT_BYTES = 1024  # prefix, delimiter, markers: at most a key's length (UTF-8)
MAX_TOKEN_CHARS = 2048  # base64 of 1 + MAX_TEXT_BYTES bytes fits
MAX_VERSION_ID = 1024
TOKEN_FORMAT = 1
LAST_CHAR = "\U0010ffff"  # sorts after every other code point
SKIP_INLINE = 32  # keys of a CommonPrefix read from the current scan before scanning again
BAD_TOKEN = "The continuation token provided is incorrect"
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")

Scan = Callable[[str, str | None], AsyncIterator[ListEntry]]  # (prefix, after) -> entries
Kind = Literal["v1", "v2", "versions"]


@dataclass(frozen=True)
class ListQuery:
    prefix: str = ""
    delimiter: str = ""  # "" = none
    max_keys: int = 1000  # 0..1000 (larger asked values are clamped to 1000)
    start_after: str = ""  # V1 marker, V2 start-after, versions key-marker
    token: str | None = None  # V2 continuation-token as received (opaque to clients)
    version_marker: str = ""  # versions listing: version-id-marker
    encode_url: bool = False  # encoding-type=url


@dataclass(frozen=True)
class ListPage:
    entries: list[ListEntry]  # Contents / Versions+DeleteMarkers, in S3 order
    latest: list[bool]  # versions listing: IsLatest per entry ([] otherwise)
    common_prefixes: list[str]
    truncated: bool
    next_marker: str | None  # V1 NextMarker / versions NextKeyMarker
    next_version_marker: str | None
    next_token: str | None  # V2 NextContinuationToken


# --- the query -----------------------------------------------------------------------------


def parse_list_query(query: Mapping[str, str], kind: Kind) -> ListQuery:
    """The listing parameters of a request's query (``list-type`` is the edge's). Raises
    S3Error InvalidArgument naming the bad parameter."""
    encoding = query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")
    start = {"v1": "marker", "v2": "start-after", "versions": "key-marker"}[kind]
    token = query.get("continuation-token") if kind == "v2" else None
    if token is not None:
        decode_token(token)  # refused now, not after the edge did work
    version_marker = _text(query, "version-id-marker") if kind == "versions" else ""
    start_after = _text(query, start)
    if version_marker and not start_after:
        raise S3Error("InvalidArgument",
                      "A version-id marker cannot be specified without a key marker.")
    if len(version_marker) > MAX_VERSION_ID:
        raise S3Error("InvalidArgument", "Invalid version id specified")
    return ListQuery(prefix=_text(query, "prefix"), delimiter=_text(query, "delimiter"),
                     max_keys=_max_keys(query.get("max-keys")), start_after=start_after,
                     token=token, version_marker=version_marker,
                     encode_url=encoding == "url")


def _text(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise S3Error("InvalidArgument", f"{name} is not valid UTF-8") from None
    if size > MAX_TEXT_BYTES:
        raise S3Error("InvalidArgument", f"{name} is longer than {MAX_TEXT_BYTES} bytes")
    return value


def _max_keys(value: str | None) -> int:
    """max-keys: ASCII digits only (no sign, no blanks, no other Unicode digits);
    larger than MAX_KEYS reads as MAX_KEYS, as S3 does."""
    if value is None:
        return MAX_KEYS
    if not value.isascii() or not value.isdigit():
        raise S3Error("InvalidArgument", "Provided max-keys not an integer or within "
                      "integer range")
    digits = value.lstrip("0") or "0"
    return MAX_KEYS if len(digits) > len(str(MAX_KEYS)) else min(int(digits), MAX_KEYS)


# --- continuation tokens --------------------------------------------------------------------


def encode_token(mark: str) -> str:
    raw = bytes([TOKEN_FORMAT]) + mark.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(token: str) -> str:
    """The mark a token carries; S3Error InvalidArgument unless the token is exactly one
    this module made (canonical base64url, known format, UTF-8, not empty)."""
    if not 0 < len(token) <= MAX_TOKEN_CHARS or not _TOKEN_RE.fullmatch(token):
        raise S3Error("InvalidArgument", BAD_TOKEN)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        mark = raw[1:].decode("utf-8")
    except (binascii.Error, ValueError):
        raise S3Error("InvalidArgument", BAD_TOKEN) from None
    if raw[:1] != bytes([TOKEN_FORMAT]) or not mark or encode_token(mark) != token:
        raise S3Error("InvalidArgument", BAD_TOKEN)
    return mark


# --- pure rules -----------------------------------------------------------------------------


def common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    """The CommonPrefix ``key`` rolls up into, or None (listed as itself)."""
    if not delimiter or not key.startswith(prefix):
        return None
    at = key.find(delimiter, len(prefix))
    return None if at < 0 else key[:at + len(delimiter)]


def resume_point(mark: str, q: ListQuery) -> tuple[str, str | None]:
    """Where a listing resumed at ``mark`` starts: (scan strictly after this, CommonPrefix
    whose keys are skipped or None). A mark inside a CommonPrefix skips all of it."""
    cp = common_prefix(mark, q.prefix, q.delimiter)
    if cp is None:
        return mark, None
    return cp + LAST_CHAR, cp


# --- the scan cursor ------------------------------------------------------------------------


async def _next(it: AsyncIterator[ListEntry]) -> ListEntry | None:
    try:
        return await it.__anext__()
    except StopAsyncIteration:
        return None


async def _close(it: AsyncIterator[ListEntry] | None) -> None:
    """Close an async generator now rather than when it is collected (a scan may hold a
    read transaction or a peer stream)."""
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


class _Cursor:
    """One pass over the scan with look-back of one entry, skipping of a CommonPrefix, and a
    floor: entries not strictly after the last resume point are dropped, so a layer that
    repeats itself cannot make a page repeat or loop."""

    def __init__(self, scan: Scan, prefix: str) -> None:
        self._scan = scan
        self._prefix = prefix
        self._it: AsyncIterator[ListEntry] | None = None
        self._after: str | None = None
        self._skip: str | None = None
        self._skipped = 0
        self._held: ListEntry | None = None

    async def seek(self, after: str | None, skip: str | None = None) -> None:
        await self.close()
        self._it = self._scan(self._prefix, after).__aiter__()
        self._after, self._skip, self._skipped, self._held = after, skip, 0, None

    def skip(self, cp: str) -> None:
        """Drop the keys under ``cp`` from here on (it was just listed)."""
        self._skip, self._skipped = cp, 0

    def push_back(self, entry: ListEntry) -> None:
        self._held = entry

    async def next(self) -> ListEntry | None:
        if self._held is not None:
            held, self._held = self._held, None
            return held
        while self._it is not None:
            entry = await _next(self._it)
            if entry is None:
                return None
            if self._after is not None and entry.key <= self._after:
                continue
            if self._skip is None or not entry.key.startswith(self._skip):
                return entry
            self._skipped += 1
            if self._skipped >= SKIP_INLINE:
                await self.seek(self._skip + LAST_CHAR, self._skip)
        return None

    async def close(self) -> None:
        it, self._it = self._it, None
        await _close(it)


# --- ListObjects V1 / V2 --------------------------------------------------------------------


@dataclass
class _Page:
    """A page being filled: items in order and the last item (the resume mark)."""

    limit: int
    entries: list[ListEntry] = field(default_factory=list)
    latest: list[bool] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    last: str | None = None
    last_version: str | None = None
    truncated: bool = False

    @property
    def room(self) -> int:
        return self.limit - len(self.entries) - len(self.prefixes)

    def add_prefix(self, cp: str) -> None:
        self.prefixes.append(cp)
        self.last, self.last_version = cp, None

    def add_entry(self, entry: ListEntry, latest: bool | None = None) -> None:
        self.entries.append(entry)
        if latest is not None:
            self.latest.append(latest)
        self.last, self.last_version = entry.key, (None if latest is None
                                                   else entry.version_id)

    def result(self) -> ListPage:
        mark = self.last if self.truncated else None
        return ListPage(entries=self.entries, latest=self.latest,
                        common_prefixes=self.prefixes, truncated=self.truncated,
                        next_marker=mark,
                        next_version_marker=self.last_version if self.truncated else None,
                        next_token=None if mark is None else encode_token(mark))


async def list_objects(scan: Scan, q: ListQuery) -> ListPage:
    """One page of ListObjects (V1 or V2): each key's current version, delete markers
    dropped, keys rolled up into CommonPrefixes by the delimiter."""
    page = _Page(q.max_keys)
    if q.max_keys == 0:
        return page.result()
    mark = decode_token(q.token) if q.token is not None else q.start_after
    cursor = _Cursor(scan, q.prefix)
    try:
        after, skip = resume_point(mark, q) if mark else (None, None)
        await cursor.seek(after, skip)
        while (entry := await cursor.next()) is not None:
            if entry.delete_marker:
                continue
            if page.room == 0:
                page.truncated = True
                break
            cp = common_prefix(entry.key, q.prefix, q.delimiter)
            if cp is None:
                page.add_entry(entry)
            else:
                page.add_prefix(cp)
                cursor.skip(cp)
    finally:
        await cursor.close()
    return page.result()


# --- ListObjectVersions ---------------------------------------------------------------------


async def list_versions(scan: Scan, q: ListQuery) -> ListPage:
    """One page of ListObjectVersions: every version, newest first within a key, delete
    markers included, IsLatest on each key's newest; CommonPrefixes as ListObjects."""
    page = _Page(q.max_keys)
    if q.max_keys == 0:
        return page.result()
    cursor = _Cursor(scan, q.prefix)
    try:
        after, skip = resume_point(q.start_after, q) if q.start_after else (None, None)
        if q.version_marker and skip is None and q.start_after.startswith(q.prefix):
            await _rest_of_key(scan, q.start_after, q.version_marker, page)
        if not page.truncated:
            await cursor.seek(after, skip)
        while not page.truncated and (entry := await cursor.next()) is not None:
            if page.room == 0:
                page.truncated = True
                break
            cp = common_prefix(entry.key, q.prefix, q.delimiter)
            if cp is not None:
                page.add_prefix(cp)
                cursor.skip(cp)
            else:
                await _key_versions(cursor, entry, page)
    finally:
        await cursor.close()
    return page.result()


async def _key_versions(cursor: _Cursor, first: ListEntry, page: _Page) -> None:
    """List the versions of ``first.key`` (the scan gives them oldest first, from ``first``)
    newest first, as many as the page has room for; truncate the page if some are left."""
    newest: deque[ListEntry] = deque([first], maxlen=page.room + 1)
    while (entry := await cursor.next()) is not None and entry.key == first.key:
        newest.append(entry)
    if entry is not None:
        cursor.push_back(entry)
    _emit(page, list(reversed(newest)), newest_is_latest=True)


async def _rest_of_key(scan: Scan, key: str, marker: str, page: _Page) -> None:
    """The versions of ``key`` older than version ``marker`` (a page ended at it), newest
    first; all of the key's versions if the marker is no longer among them."""
    room = page.room
    before: deque[ListEntry] = deque(maxlen=room + 1)
    found = False
    it = scan(key, None).__aiter__()  # ``key`` is the first key with this prefix
    try:
        while (entry := await _next(it)) is not None and entry.key == key:
            if entry.version_id == marker:
                found = True
                break
            before.append(entry)
    finally:
        await _close(it)
    _emit(page, list(reversed(before)), newest_is_latest=not found)


def _emit(page: _Page, newest_first: list[ListEntry], *, newest_is_latest: bool) -> None:
    room = page.room
    for i, entry in enumerate(newest_first[:room]):
        page.add_entry(entry, latest=newest_is_latest and i == 0)
    if len(newest_first) > room:
        page.truncated = True
