"""Actor epochs on a real LMDB store (dfsring.core.actors): what a reopen costs a key's clock.

A clean or crashed reopen of the same durable file keeps every claim (no clock growth); a
copy of the data dir put back (a restored backup: a new file) voids them all, so the next
write of each key takes a fresh epoch (one more clock entry per key written afterwards).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dfsring.core import keys
from dfsring.core.vclock import Versions, VersionVector
from dfsring.storage import LmdbEngine
from dfsring.storage.localstore import TABLES, LocalStore

NAME = keys.object_name("b", "k")


async def _write(path: Path, value: bytes, *, blind: bool = False) -> Versions:
    engine = LmdbEngine(path, TABLES, durable=True)
    try:
        store = LocalStore(engine, "node1", 4)
        await store.open()
        context = VersionVector() if blind else store.get(NAME).clock
        return await store.coordinate(NAME, context, value, "text/plain", 1_000)
    finally:
        await engine.close()


async def test_kv679_reopening_the_same_file_keeps_the_key_s_actor(tmp_path: Path) -> None:
    for i in range(3):
        state = await _write(tmp_path / "db", b"v%d" % i)
    assert len(state.clock.entries) == 1 and state.clock.entries[0][1] == 3


async def test_kv679_a_restored_copy_takes_a_fresh_actor_for_its_next_write(
        tmp_path: Path) -> None:
    await _write(tmp_path / "db", b"first")
    shutil.copytree(tmp_path / "db", tmp_path / "backup")
    after_backup = await _write(tmp_path / "db", b"after-backup")
    (tmp_path / "db").rename(tmp_path / "lost")
    shutil.copytree(tmp_path / "backup", tmp_path / "db")
    after_restore = await _write(tmp_path / "db", b"after-restore", blind=True)
    new_dot = next(s.dot for s in after_restore.siblings if s.value == b"after-restore")
    assert not after_backup.clock.covers(new_dot)  # not after-backup's dot minted again
    assert len(after_restore.clock.entries) == 2  # the cost: one more actor for this key
