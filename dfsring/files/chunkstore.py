"""This node's chunks: content-addressed files on disk, verified on read.

Layout: ``<data-dir>/chunks/<aa>/<bb>/<64 hex digits>``, the hex being the chunk's SHA-256
(dfsring.core.contenthash); two levels of 256 directories keep directories small (Swift's
``objects/<partition>/<suffix>/<hash>``, MinIO's ``xl.meta`` tree).

Why files and not LMDB. Chunks are megabytes; LMDB has one writer thread, and a file stream
through it would queue every key/value write behind it. A file per chunk lets writes go in
parallel (the disk takes several fsyncs at once far faster than one after another), needs no
compaction (deleting a chunk frees its space at once) and keeps big values out of the memory
map.

Durability (Swift's ``DiskFile``): a chunk is written to ``tmp/``, fsynced, renamed into place
and its directory fsynced (and a new directory's parent), so a chunk that was acknowledged is
there whole after a crash, and a crash mid-write leaves only a temp file, removed on the next
start. With ``durable=False`` (--durability none) the fsyncs are skipped.

Integrity: a chunk's name is its checksum. ``get`` verifies by default; a copy that does not
match is deleted at once (it can never be served, and deleting it lets a repair put a good copy
back) and reported as CorruptValue. Peers verify what they receive before storing it.

Garbage collection (dfsring.files.gc) needs "how long since anyone last relied on this chunk":
that is the file's mtime, set when the chunk is written and again (``touch``) whenever an upload
finds the chunk already there and decides not to send it. A lock makes each of "exists? then
touch", "rename into place" and "still old? then unlink" atomic with respect to the others, so
the collector can never delete a chunk in the instant an upload starts relying on it.

Hooks for anti-entropy and scrubbing (dfsring.files.chunksync): ``iter_chunks`` lists what is
here (id, size, mtime) and ``verify`` re-reads one chunk against its id, deleting a bad copy.

All methods block (disk I/O); the services call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dfsring.core.contenthash import CHUNK_ID_BYTES
from dfsring.foundation import errors

log = logging.getLogger("dfsring.chunks")
Buffer = bytes | bytearray | memoryview
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    cid: bytes
    size: int
    mtime: float  # seconds since the epoch: last written or touched


@dataclass(frozen=True, slots=True)
class ChunkStats:
    count: int = 0
    bytes: int = 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_id(cid: bytes) -> str:
    if type(cid) is not bytes or len(cid) != CHUNK_ID_BYTES:
        raise ValueError(f"a chunk id is {CHUNK_ID_BYTES} bytes")
    return cid.hex()


class ChunkStore:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.durable = durable
        self._tmp = root / "tmp"
        self._lock = threading.Lock()
        self._count = 0
        self._bytes = 0
        self.corrupt_found = 0

    # --- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Create the layout, drop temp files of writes a crash cut short, count what is here."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        self._tmp.mkdir()
        count = size = 0
        for info in self.iter_chunks():
            count += 1
            size += info.size
        with self._lock:
            self._count, self._bytes = count, size

    @property
    def stats(self) -> ChunkStats:
        return ChunkStats(self._count, self._bytes)

    def path_of(self, cid: bytes) -> Path:
        name = _check_id(cid)
        return self.root / name[:2] / name[2:4] / name

    # --- presence and touch ----------------------------------------------------------------

    def has(self, cid: bytes) -> bool:
        return self.path_of(cid).is_file()

    def touch(self, cid: bytes) -> bool:
        """Mark the chunk as relied on now (see the module docstring); False if absent."""
        path = self.path_of(cid)
        with self._lock:
            try:
                os.utime(path)
            except FileNotFoundError:
                return False
        return True

    def have(self, ids: Iterable[bytes], *, touch: bool) -> list[bytes]:
        """The ids present here, touched if asked (an upload about to rely on them)."""
        if touch:
            return [cid for cid in ids if self.touch(cid)]
        return [cid for cid in ids if self.has(cid)]

    # --- writing ---------------------------------------------------------------------------

    def put(self, cid: bytes, data: Buffer | Sequence[Buffer], *, verify: bool = True,
            replace: bool = False) -> bool:
        """Store a chunk durably; True if written, False if it was here (then touched).

        ``data`` is the chunk, or its parts in order (as they came off the network: written
        with no join). ``verify`` checks the data against the id first (BadRequest if it does
        not match): peers' data is verified, data this node hashed itself need not be.
        ``replace`` overwrites a copy already here (a repair of a copy found corrupt).
        """
        final = self.path_of(cid)
        if not replace and self.touch(cid):
            return False
        parts = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)
        if verify and _digest(parts) != cid:
            raise errors.BadRequest(f"chunk data does not match its id {cid.hex()}")
        size = sum(len(p) for p in parts)
        tmp = self._tmp / f"{cid.hex()}.{secrets.token_hex(4)}"
        self._write(tmp, parts)
        created = self._make_dirs(final.parent)
        with self._lock:
            try:
                old = final.stat().st_size
            except FileNotFoundError:
                old = None
            if old is not None and not replace:
                os.utime(final)
                os.unlink(tmp)
                return False
            os.replace(tmp, final)
            self._count += old is None
            self._bytes += size - (old or 0)
        if self.durable:
            for directory in (final.parent, *created):
                _fsync_dir(directory)
        return True

    def _write(self, tmp: Path, parts: list[Buffer]) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view):]
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _make_dirs(self, leaf: Path) -> list[Path]:
        """Create <aa>/<bb> as needed; returns the parents whose entries changed (to fsync)."""
        if leaf.is_dir():
            return []
        changed = []
        for directory in (leaf.parent, leaf):
            try:
                directory.mkdir()
                changed.append(directory.parent)
            except FileExistsError:
                pass
        return changed

    # --- reading ---------------------------------------------------------------------------

    def get(self, cid: bytes, *, verify: bool = True) -> bytes | None:
        """The chunk's bytes, None if absent. A copy that fails verification is deleted and
        reported as CorruptValue: never returned."""
        try:
            with open(self.path_of(cid), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        if verify and hashlib.sha256(data).digest() != cid:
            self._quarantine(cid)
            raise errors.CorruptValue("chunks", cid)
        return data

    def verify(self, cid: bytes) -> bool | None:
        """Scrub one chunk: True if sound, False if it was corrupt (now deleted), None absent."""
        try:
            data = self.get(cid)
        except errors.CorruptValue:
            return False
        return None if data is None else True

    def _quarantine(self, cid: bytes) -> None:
        self.corrupt_found += 1
        log.warning("corrupt chunk deleted", extra={"fields": {"chunk": cid.hex()}})
        self._unlink(cid)

    def iter_chunks(self) -> Iterator[ChunkInfo]:
        """Every chunk here, in no particular order (a hook for anti-entropy and scrubbing)."""
        for top in _subdirs(self.root):
            for leaf in _subdirs(top):
                for entry in os.scandir(leaf):
                    if len(entry.name) == 2 * CHUNK_ID_BYTES and set(entry.name) <= _HEX:
                        try:
                            st = entry.stat()
                        except FileNotFoundError:
                            continue
                        yield ChunkInfo(bytes.fromhex(entry.name), st.st_size, st.st_mtime)

    # --- garbage collection ----------------------------------------------------------------

    def older_than(self, cutoff: float, limit: int) -> dict[bytes, float]:
        """Up to ``limit`` chunks not written or touched since ``cutoff`` -> their mtime."""
        out: dict[bytes, float] = {}
        for info in self.iter_chunks():
            if info.mtime < cutoff:
                out[info.cid] = info.mtime
                if len(out) >= limit:
                    break
        return out

    def delete_if_older(self, ids: Iterable[bytes], cutoff: float) -> int:
        """Delete each chunk still not touched since ``cutoff``; returns how many went."""
        deleted = 0
        for cid in ids:
            path = self.path_of(cid)
            with self._lock:
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                if st.st_mtime >= cutoff:
                    continue  # an upload relied on it since the collector looked
                path.unlink()
                self._count -= 1
                self._bytes -= st.st_size
            deleted += 1
        return deleted

    def _unlink(self, cid: bytes) -> None:
        path = self.path_of(cid)
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return
            self._count -= 1
            self._bytes -= size


def _digest(parts: Iterable[Buffer]) -> bytes:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part)
    return sha.digest()


def _subdirs(path: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(path)
                if e.is_dir() and len(e.name) == 2 and set(e.name) <= _HEX]
    except FileNotFoundError:
        return []


def now() -> float:
    """The clock chunk mtimes are compared with (the collector's cutoffs use it too)."""
    return time.time()
