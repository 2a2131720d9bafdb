"""Local storage: the Engine contract, checksum framing, and the LMDB and in-memory engines.

Services import from here and type against :class:`Engine`; only ``node.py`` picks a concrete
engine (LMDB in production, memory in component tests).
"""

from dfsring.storage.engine import (
    DEFAULT_MAX_PENDING,
    FORMAT_V1,
    HEADER_SIZE,
    MAX_KEY_SIZE,
    MAX_MUTATIONS_PER_TXN,
    Engine,
    Txn,
    frame,
    unframe,
)
from dfsring.storage.lmdb_engine import LmdbEngine
from dfsring.storage.memory import MemoryEngine

__all__ = [
    "DEFAULT_MAX_PENDING",
    "FORMAT_V1",
    "HEADER_SIZE",
    "MAX_KEY_SIZE",
    "MAX_MUTATIONS_PER_TXN",
    "Engine",
    "LmdbEngine",
    "MemoryEngine",
    "Txn",
    "frame",
    "unframe",
]
