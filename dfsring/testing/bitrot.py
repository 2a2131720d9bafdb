"""Bit rot on demand: store bytes in an engine exactly as given, bypassing its framing.

The engines frame every value with a checksum and refuse to return one that fails it
(dfsring.storage.engine, CorruptValue). Testing that refusal needs a stored value the engine
never framed, which no real write path can produce, so this helper reaches into each engine
the way a failing disk would, instead of the engines carrying a test-only write method.
"""

from __future__ import annotations

from dfsring.storage import Engine, LmdbEngine, MemoryEngine
from dfsring.storage.engine import check_key


def store_raw(engine: Engine, table: str, key: bytes, framed: bytes) -> None:
    """Store ``framed`` under ``key`` as-is (ValueError for an unknown table or a bad key)."""
    check_key(key)
    if isinstance(engine, MemoryEngine):
        engine._open_table(table).put(key, framed)
    elif isinstance(engine, LmdbEngine):
        _store_raw_lmdb(engine, table, key, framed)
    else:
        raise TypeError(f"no raw access to a {type(engine).__name__}")


def _store_raw_lmdb(engine: LmdbEngine, table: str, key: bytes, framed: bytes) -> None:
    """On the writer thread, like every LMDB write: LMDB allows one writer at a time."""
    db = engine._db(table)

    def write() -> None:
        with engine._env.begin(write=True) as txn:
            txn.put(key, framed, db=db)

    engine._executor.submit(write).result()
