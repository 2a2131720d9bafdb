"""Helpers for tests and benchmarks of the files API: big pseudo-random data made on the fly,
and what /proc says about a node process (peak RSS, CPU time)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

MIB = 1 << 20
_POOL = 16 * MIB


def random_blocks(size: int, seed: int = 1, block: int = MIB) -> Iterator[bytes]:
    """``size`` pseudo-random bytes in blocks of ``block``, never held whole in memory.

    Block ``i`` is the XOR of two windows of a 16 MiB random pool chosen by ``i`` (and ``i``
    itself), ~500 MB/s against ~230 MB/s for random.randbytes. No two blocks are equal, so
    content-defined chunking finds no repeated chunk in the stream."""
    pool = hashlib.shake_256(seed.to_bytes(8, "big")).digest(_POOL + block)
    left, i = size, 0
    while left > 0:
        a = (i * 7_919 * 64) % _POOL
        b = (i * 104_729 * 64 + 4_096) % _POOL
        mixed = int.from_bytes(pool[a:a + block], "little") ^ int.from_bytes(
            pool[b:b + block], "little") ^ (i + 1)
        yield mixed.to_bytes(block, "little")[:left]
        left -= block
        i += 1


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
