"""LMDB durability and corruption detection against the real files.

1. Acknowledged means durable: a child process writes through group commit and prints each key
   only after apply() returned; we SIGKILL it mid-stream and every printed key must be there.
2. Bit rot in data.mdb is reported as CorruptValue, never served.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import dfsring
from dfsring.foundation.errors import CorruptValue
from dfsring.storage import LmdbEngine

pytestmark = pytest.mark.component

REPO_ROOT = Path(dfsring.__file__).resolve().parents[1]
MAP_SIZE = 256 << 20
WANTED_ACKS = 200
ACK_DEADLINE_S = 60.0

# Eight concurrent writers so acknowledgements come out of real group commits. The value
# depends on the key and varies in size; each line is "<key hex> <value hex>", printed after
# apply() returned (i.e. after the fsync'd commit).
CHILD = """
import asyncio, hashlib, sys
from dfsring.storage import LmdbEngine

async def writer(engine, worker, count):
    for i in range(count):
        key = b"w%d-%06d" % (worker, i)
        value = hashlib.sha256(key).digest() * (1 + i % 7)
        await engine.apply(lambda txn, k=key, v=value: txn.put("kv", k, v))
        sys.stdout.write(key.hex() + " " + value.hex() + "\\n")
        sys.stdout.flush()

async def main(path):
    engine = LmdbEngine(path, ["kv"], durable=True, map_size=256 << 20)
    await asyncio.gather(*(writer(engine, w, 20000) for w in range(8)))

asyncio.run(main(sys.argv[1]))
"""


def _start_writer(path: Path, stderr_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with stderr_path.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, stderr=stderr, env=env
        )


def _read_acks(proc: subprocess.Popen[bytes], stderr_path: Path) -> bytes:
    """Read the child's stdout until WANTED_ACKS full lines arrived (or fail at the deadline)."""
    assert proc.stdout is not None
    received = b""
    deadline = time.monotonic() + ACK_DEADLINE_S
    while (acked := received.count(b"\n")) < WANTED_ACKS:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"only {acked} acks after {ACK_DEADLINE_S}s")
        ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 0.5))
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 1 << 16)
        if not chunk:
            pytest.fail(f"writer exited early: {stderr_path.read_text()}")
        received += chunk
    return received


def _parse_acks(output: bytes) -> dict[bytes, bytes]:
    """Complete lines only: a line cut by the kill was never fully acknowledged."""
    acks: dict[bytes, bytes] = {}
    for line in output.split(b"\n")[:-1]:
        key_hex, value_hex = line.split(b" ")
        acks[bytes.fromhex(key_hex.decode())] = bytes.fromhex(value_hex.decode())
    return acks


async def test_every_acknowledged_write_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "db"
    proc = _start_writer(path, tmp_path / "writer.stderr")
    try:
        output = _read_acks(proc, tmp_path / "writer.stderr")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.stdout is not None
        output += proc.stdout.read()  # acks already in the pipe count too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the writer must die by the kill, mid-stream"
    acks = _parse_acks(output)
    assert len(acks) >= WANTED_ACKS
    engine = LmdbEngine(path, ["kv"], map_size=MAP_SIZE)
    try:
        missing = [k for k, v in acks.items() if engine.get("kv", k) != v]
        assert missing == [], f"{len(missing)} of {len(acks)} acknowledged writes lost"
        assert engine.count("kv") >= len(acks)
    finally:
        await engine.close()


def _flip_marker_bytes(data_file: Path, marker: bytes) -> int:
    """Flip one byte in the middle of every copy of ``marker`` in the file; return the count."""
    content = data_file.read_bytes()
    offsets, at = [], content.find(marker)
    while at != -1 and len(offsets) < 100:
        offsets.append(at)
        at = content.find(marker, at + 1)
    fd = os.open(data_file, os.O_RDWR)
    try:
        for offset in offsets:
            position = offset + len(marker) // 2
            os.pwrite(fd, bytes([content[position] ^ 0x01]), position)
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(offsets)


async def _write_marker(engine: LmdbEngine) -> bytes:
    marker = b"dfsring-marker-" + uuid.uuid4().hex.encode()
    await engine.apply(lambda txn: txn.put("kv", b"marked", b"<" + marker + b">"))
    await engine.apply(lambda txn: txn.put("kv", b"neighbour", b"fine"))
    return marker


async def test_flipped_byte_in_data_mdb_is_detected_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db"
    engine = LmdbEngine(path, ["kv"], map_size=MAP_SIZE)
    marker = await _write_marker(engine)
    await engine.close()
    assert _flip_marker_bytes(path / "data.mdb", marker) >= 1
    reopened = LmdbEngine(path, ["kv"], map_size=MAP_SIZE)
    try:
        with pytest.raises(CorruptValue) as caught:
            reopened.get("kv", b"marked")
        assert caught.value.key == b"marked"
        with pytest.raises(CorruptValue) as caught:
            reopened.scan("kv")
        assert caught.value.key == b"marked"
        assert reopened.get("kv", b"neighbour") == b"fine"
    finally:
        await reopened.close()


async def test_flipped_byte_in_data_mdb_is_detected_while_open(tmp_path: Path) -> None:
    """Without writemap LMDB maps the file read-only and shared: file writes show through."""
    path = tmp_path / "db"
    engine = LmdbEngine(path, ["kv"], map_size=MAP_SIZE)
    try:
        marker = await _write_marker(engine)
        assert engine.get("kv", b"marked") == b"<" + marker + b">"
        assert _flip_marker_bytes(path / "data.mdb", marker) >= 1
        with pytest.raises(CorruptValue):
            engine.get("kv", b"marked")
        with pytest.raises(CorruptValue):
            await asyncio.wait_for(engine.apply(lambda txn: txn.get("kv", b"marked")), 30)
    finally:
        await engine.close()
