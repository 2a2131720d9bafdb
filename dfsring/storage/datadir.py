"""The node's data directory: an exclusive lock and the node's identity.

The engine (LMDB) allows several processes on one environment, so exclusivity is ours to
enforce: an flock held for the life of the process. The kernel drops it when the process dies,
even by kill -9, so a crashed node never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class DataDirError(RuntimeError):
    """A data directory we must not or cannot use; the message is one line for the operator."""


@dataclass
class DataDir:
    path: Path
    lock_fd: int
    node_id: str

    @property
    def db_path(self) -> Path:
        return self.path / "db"

    def release(self) -> None:
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1


def open_data_dir(path: Path, node_id: str | None) -> DataDir:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DataDirError(f"cannot use data dir {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirError(f"data dir {path} is in use by another live node (pid {holder}); "
                           "stop it or choose another --data-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    try:
        return DataDir(path, fd, _identity(path, node_id))
    except DataDirError:
        os.close(fd)
        raise


def _identity(path: Path, wanted: str | None) -> str:
    """Node ids are generated once and kept, so a restart is the same member of the ring."""
    ident = path / "node.json"
    if wanted is not None and not _NODE_ID_RE.fullmatch(wanted):
        raise DataDirError(f"--node-id {wanted!r}: use 1-64 of A-Z a-z 0-9 . _ -")
    if ident.exists():
        try:
            stored = orjson.loads(ident.read_bytes())["node_id"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataDirError(f"{ident} is unreadable; fix or remove it") from exc
        if wanted is not None and wanted != stored:
            raise DataDirError(f"data dir {path} belongs to node {stored!r}, not {wanted!r}")
        return str(stored)
    node_id = wanted or f"n{secrets.token_hex(4)}"
    tmp = ident.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps({"node_id": node_id}))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, ident)
    return node_id
