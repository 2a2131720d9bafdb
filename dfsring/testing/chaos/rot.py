"""Bit rot and lost disks, done to a stopped node's files the way a failing disk would.

These reach into a node's data dir (the only place rot happens), so they run only against a
local :class:`~dfsring.testing.chaos.wiring.ChaosCluster` node that is stopped: LMDB maps its
file while running, and a chunk being written would race the flip.

- :func:`flip_values` flips one byte inside each stored copy of a value (found by a marker
  the value carries, e.g. the chaos header ``dfschaos1 <write-id> ``); the store's record
  checksum must catch it, and the scrubber must quarantine and re-fetch it.
- :func:`flip_chunks` flips one byte in the middle of chunk files; a chunk's name is its
  SHA-256, so :func:`chunk_intact` tells a repaired chunk from a rotten one.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from pathlib import Path

_HEX = frozenset("0123456789abcdef")


def flip_values(db_file: Path, markers: Iterable[bytes], limit: int) -> list[bytes]:
    """Flip a byte in the middle of every occurrence of each marker in `db_file` (a stale
    copy in a free page included), stopping after `limit` markers were found; returns the
    markers flipped."""
    data = db_file.read_bytes()
    flipped: list[bytes] = []
    with db_file.open("r+b") as fh:
        for marker in markers:
            at = data.find(marker)
            if at < 0:
                continue
            while at >= 0:
                pos = at + len(marker) // 2
                fh.seek(pos)
                fh.write(bytes([data[pos] ^ 0x20]))
                at = data.find(marker, at + 1)
            flipped.append(marker)
            if len(flipped) >= limit:
                break
    return flipped


def chunk_files(chunks_dir: Path) -> list[Path]:
    """The chunk files under a node's ``chunks`` dir (``<aa>/<bb>/<64 hex>``), sorted."""
    return sorted(p for p in chunks_dir.glob("??/??/*")
                  if len(p.name) == 64 and set(p.name) <= _HEX)


def flip_chunks(chunks_dir: Path, count: int, rng: random.Random) -> list[Path]:
    """Flip one byte in the middle of `count` chunk files picked by `rng`; returns them."""
    files = chunk_files(chunks_dir)
    picked = rng.sample(files, min(count, len(files)))
    for path in picked:
        with path.open("r+b") as fh:
            size = path.stat().st_size
            fh.seek(size // 2)
            byte = fh.read(1)
            fh.seek(size // 2)
            fh.write(bytes([byte[0] ^ 0x01]))
    return picked


def chunk_intact(path: Path) -> bool:
    """True if the chunk file exists and its bytes hash to its name."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    except FileNotFoundError:
        return False
