"""Internal (node-to-node) chunk endpoints: POST /internal/v1/files/{kind}, msgpack messages.

Separate from dfsring.http.internal_api for two reasons. The body limit: key/value messages
may carry many siblings of a value (that dispatcher allows 64 x --max-value-size), a chunk
call carries at most one chunk, so these are read with exactly that bound (the largest chunk
the chunker can make, plus framing) whatever --max-value-size says. And the bytes: a chunk
travels as raw payload after its message (a framed body, dfsring.rpc.frame), and is handed
to the chunk store in the pieces it arrived in, never joined or copied into msgpack. Otherwise
the rules are the same: the cluster secret is required (401), messages are decoded against
the typed catalogue (dfsring.messages, kinds "files/..."), malformed ones are a 400
ErrorReply, and domain errors travel back as ErrorReply for the caller to re-raise.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dfsring import errors, messages
from dfsring.contenthash import CHUNK_ID_BYTES
from dfsring.files.chunkstore import ChunkStore
from dfsring.http.appkeys import CONFIG, METRICS
from dfsring.http.body import read_body
from dfsring.manifest import MAX_CHUNK_SIZE
from dfsring.messages import (
    Ack,
    ChunkData,
    ChunkGet,
    ChunkHave,
    ChunkHaveReply,
    ChunkPut,
    ErrorReply,
    Message,
)
from dfsring.rpc import FRAMED, MSGPACK, RPC_PATH, SECRET_HEADER, frame

log = logging.getLogger("dfsring.internal")
ROUTE = RPC_PATH + "{kind:files/[a-z-]+}"
MAX_BODY = MAX_CHUNK_SIZE + (1 << 16)
MAX_MESSAGE = 4 << 20  # a ChunkHave of 100 000 ids is 3.4 MB
INLINE_HAVE = 8
CHUNK_STORE = web.AppKey("chunk_store", ChunkStore)


def setup(app: web.Application, store: ChunkStore) -> None:
    app[CHUNK_STORE] = store
    app.router.add_post(ROUTE, dispatch)


def _reply(msg: Message, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msg.encode(), content_type=MSGPACK)


def _error(status: int, code: str, detail: str) -> web.Response:
    return _reply(ErrorReply(code, detail[:500], 0, 0), status)


async def dispatch(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), cfg.cluster_secret.encode()):
        log.warning("internal call without the cluster secret", extra={"fields": {
            "peer": request.remote}})
        return _error(401, "unauthorized", "missing or wrong cluster secret")
    kind = messages.kind_of(request.match_info["kind"])
    handler = _HANDLERS.get(kind) if kind is not None else None
    if kind is None or handler is None:
        return _error(404, "no-such-route", f"unknown message kind {request.match_info['kind']}")
    try:
        async with asyncio.timeout(cfg.request_timeout):
            msg, payload = await _read(request, kind)
        return await handler(request, msg, payload)
    except TimeoutError:
        return _error(408, "request-timeout", "the request body did not arrive in time")
    except (messages.MessageError, ValueError) as exc:
        log.warning("malformed peer message", extra={"fields": {
            "peer": request.remote, "kind": kind.KIND, "error": str(exc)[:300]}})
        return _error(400, "bad-request", f"malformed {kind.KIND} message: {exc}")
    except (HttpProcessingError, ConnectionError, asyncio.IncompleteReadError) as exc:
        return _error(400, "bad-request", f"request body is malformed or truncated: {exc}")
    except (errors.BadRequest, errors.PayloadTooLarge, errors.CorruptValue) as exc:
        if isinstance(exc, errors.CorruptValue):
            request.app[METRICS].count_corrupt()
        return _reply(ErrorReply.of(exc), exc.peer_status)  # by its class (dfsring.errors)
    except (errors.DfsError, OSError) as exc:
        log.error("chunk request failed", extra={"fields": {"kind": kind.KIND,
                                                            "error": str(exc)[:300]}})
        return _error(500, "internal", str(exc))


async def _read(request: web.Request, kind: type[Message]) -> tuple[Message, list[bytes]]:
    """The message, and the raw payload after it if the body is framed (dfsring.rpc.frame),
    in the pieces it arrived in: a chunk is never joined into one buffer here."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY:
        raise errors.PayloadTooLarge(declared, MAX_BODY)
    if request.content_type != FRAMED:
        return messages.decode(await read_body(request, MAX_MESSAGE, 3600.0), kind), []
    length = int.from_bytes(await request.content.readexactly(4), "big")
    if length > MAX_MESSAGE:
        raise errors.BadRequest("the message of a framed body is too long")
    msg = messages.decode(await request.content.readexactly(length), kind)
    parts: list[bytes] = []
    size = 0
    async for piece in request.content.iter_any():
        size += len(piece)
        if size > MAX_BODY:
            raise errors.PayloadTooLarge(size, MAX_BODY)
        parts.append(piece)
    return msg, parts


def _check_id(cid: bytes) -> bytes:
    if len(cid) != CHUNK_ID_BYTES:
        raise errors.BadRequest(f"a chunk id is {CHUNK_ID_BYTES} bytes")
    return cid


async def _chunk_have(request: web.Request, msg: ChunkHave, _: list[bytes]) -> web.Response:
    """A few ids (an upload asking before it sends a chunk) are checked right here, a stat
    each; long lists (an upload renewing its chunks) in a worker thread."""
    ids = [_check_id(cid) for cid in msg.ids]
    store = request.app[CHUNK_STORE]
    if len(ids) <= INLINE_HAVE:
        present = store.have(ids, touch=msg.touch)
    else:
        present = await asyncio.to_thread(store.have, ids, touch=msg.touch)
    return _reply(ChunkHaveReply(tuple(present)))


async def _chunk_put(request: web.Request, msg: ChunkPut, parts: list[bytes]) -> web.Response:
    """Verified against its id before it is stored: a peer's bytes are not trusted."""
    size = sum(len(p) for p in parts)
    if size != msg.size or not 1 <= size <= MAX_CHUNK_SIZE:
        raise errors.BadRequest(f"a chunk is 1..{MAX_CHUNK_SIZE} bytes, and {msg.size} "
                                f"were announced; {size} came")
    changed = await asyncio.to_thread(request.app[CHUNK_STORE].put, _check_id(msg.cid), parts,
                                      verify=True, replace=msg.repair)
    return _reply(Ack(changed))


async def _chunk_get(request: web.Request, msg: ChunkGet, _: list[bytes]
                     ) -> web.StreamResponse:
    """Served as stored, after the reply message (a framed reply): the reader verifies it
    where it is consumed (one hash pass, not two), and repairs a bad copy."""
    data = await asyncio.to_thread(request.app[CHUNK_STORE].get, _check_id(msg.cid),
                                   verify=False)
    head = frame(ChunkData(None if data is None else len(data)))
    resp = web.StreamResponse(headers={"Content-Type": FRAMED})
    resp.content_length = len(head) + len(data or b"")
    await resp.prepare(request)
    await resp.write(head)
    if data:
        await resp.write(data)
    await resp.write_eof()
    return resp


Handler = Callable[[web.Request, Any, list[bytes]], Awaitable[web.StreamResponse]]
_HANDLERS: dict[type[Message], Handler] = {
    ChunkHave: _chunk_have,
    ChunkPut: _chunk_put,
    ChunkGet: _chunk_get,
}
