"""The replica side of the chunk protocol (message kinds "files/..."): have, put, get.

Plain async handlers over the local ChunkStore, as dfsring.replication.replica is for key/value; the
transport decodes the message and hands over the raw payload in the pieces it arrived in.
A chunk travels as raw bytes after its message, never copied into msgpack, and is given to
the chunk store in those pieces, never joined here. A peer's chunk is verified against its
id before it is stored; a chunk is served as stored, and the reader verifies it where it is
consumed (one hash pass, not two) and repairs a bad copy.

The transport bounds a files body to one chunk (MAX_BODY) whatever --max-value-size says:
a key/value message may carry many siblings of a value, a chunk call at most one chunk.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from dfsring.core.contenthash import CHUNK_ID_BYTES
from dfsring.core.manifest import MAX_CHUNK_SIZE
from dfsring.files.chunkstore import ChunkStore
from dfsring.foundation import errors
from dfsring.transport import Handler, Pieces, Reply, WithPayload
from dfsring.transport.messages import (
    Ack,
    ChunkData,
    ChunkGet,
    ChunkHave,
    ChunkHaveReply,
    ChunkPut,
    Message,
)

MAX_BODY = MAX_CHUNK_SIZE + (1 << 16)
MAX_MESSAGE = 4 << 20  # a ChunkHave of 100 000 ids is 3.4 MB
INLINE_HAVE = 8


def handlers(store: ChunkStore) -> dict[type[Message], Handler]:
    """The chunk handler table of one node, each handler bound to its chunk store."""
    return {kind: functools.partial(fn, store) for kind, fn in _TABLE.items()}


def _check_id(cid: bytes) -> bytes:
    if len(cid) != CHUNK_ID_BYTES:
        raise errors.BadRequest(f"a chunk id is {CHUNK_ID_BYTES} bytes")
    return cid


async def chunk_have(store: ChunkStore, msg: ChunkHave, _: Pieces) -> Reply:
    """A few ids (an upload asking before it sends a chunk) are checked right here, a stat
    each; long lists (an upload renewing its chunks) in a worker thread."""
    ids = [_check_id(cid) for cid in msg.ids]
    if len(ids) <= INLINE_HAVE:
        present = store.have(ids, touch=msg.touch)
    else:
        present = await asyncio.to_thread(store.have, ids, touch=msg.touch)
    return ChunkHaveReply(tuple(present))


async def chunk_put(store: ChunkStore, msg: ChunkPut, parts: Pieces) -> Reply:
    """Verified against its id before it is stored: a peer's bytes are not trusted."""
    size = sum(len(p) for p in parts)
    if size != msg.size or not 1 <= size <= MAX_CHUNK_SIZE:
        raise errors.BadRequest(f"a chunk is 1..{MAX_CHUNK_SIZE} bytes, and {msg.size} "
                                f"were announced; {size} came")
    changed = await asyncio.to_thread(store.put, _check_id(msg.cid), list(parts),
                                      verify=True, replace=msg.repair)
    return Ack(changed)


async def chunk_get(store: ChunkStore, msg: ChunkGet, _: Pieces) -> Reply:
    """Served as stored, after the reply message (the reader verifies it)."""
    data = await asyncio.to_thread(store.get, _check_id(msg.cid), verify=False)
    return WithPayload(ChunkData(None if data is None else len(data)), data or b"")


_TABLE: dict[type[Message], Callable[..., Any]] = {
    ChunkHave: chunk_have,
    ChunkPut: chunk_put,
    ChunkGet: chunk_get,
}
