"""The aiohttp transport, server half: POST /internal/v1/{kind} routed to the peer handlers.

This module is only the wire: it checks the cluster secret (401 otherwise; the one place it
is checked), reads a size-bounded body, and hands the raw message and payload to
dfsring.transport.PeerService.answer, which decodes it against the typed catalogue, runs the
handler (dfsring.replication.replica, dfsring.files.replica) and turns a domain error into an
ErrorReply
the caller re-raises. A malformed message is a 400 ErrorReply and a log line, and the node
keeps serving. The client half is dfsring.transport.rpc.RpcClient.

Two body limits. A key/value message may carry many siblings of a value: MAX_SIBLINGS_CARRIED
x --max-value-size. A chunk call ("files/..." kinds) carries at most one chunk, whatever
--max-value-size says, as raw payload after its message (a framed body,
dfsring.transport.rpc.frame),
and is handed on in the pieces it arrived in, never joined or copied into msgpack.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dfsring.files.replica import MAX_BODY, MAX_MESSAGE
from dfsring.foundation import errors
from dfsring.http.appkeys import CONFIG
from dfsring.http.body import read_body
from dfsring.http.middleware import REQUEST_ID
from dfsring.http.params import header_bytes
from dfsring.transport import Answer, PeerService, Pieces, peer_error, status_of
from dfsring.transport.messages import ErrorReply, Message
from dfsring.transport.rpc import FRAMED, MSGPACK, RPC_PATH, SECRET_HEADER, frame

log = logging.getLogger("dfsring.internal")
MAX_SIBLINGS_CARRIED = 64
PEER_SERVICE = web.AppKey("peer_service", PeerService)
FILES_PREFIX = "files/"


def setup(app: web.Application, service: PeerService) -> None:
    app[PEER_SERVICE] = service
    app.router.add_post(RPC_PATH + "{kind:(?:files/)?[a-z0-9-]+}", dispatch)


def _reply(message: Message, status: int = 200) -> web.Response:
    return web.Response(status=status, body=message.encode(), content_type=MSGPACK)


def _error(status: int, code: str, detail: str) -> web.Response:
    """A refusal of the transport itself (no secret, no such kind, a stalled body). Its code
    names no error class on purpose: the caller sees a failed peer (dfsring.foundation.errors
    PeerRefused.error), never the 401 or 408 as its own client's answer."""
    return _reply(ErrorReply(code, detail[:500], 0, 0), status)


def _refused(exc: errors.DfsError) -> web.Response:
    reply = peer_error(exc)
    assert reply is not None  # every DfsError has a peer reply
    return _reply(reply, status_of(reply))


async def _respond(request: web.Request, answer: Answer) -> web.StreamResponse:
    """The reply message; with a payload, a framed reply written as head then payload, so
    the payload (a chunk) is never copied into one buffer with it."""
    if answer.payload is None:
        return _reply(answer.message, answer.status)
    head = frame(answer.message)
    resp = web.StreamResponse(status=answer.status, headers={"Content-Type": FRAMED})
    resp.content_length = len(head) + len(answer.payload)
    await resp.prepare(request)
    await resp.write(head)
    if answer.payload:
        await resp.write(answer.payload)
    await resp.write_eof()
    return resp


async def dispatch(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(header_bytes(given), cfg.cluster_secret.encode()):
        log.warning("internal call without the cluster secret", extra={"fields": {
            "peer": request.remote, "request_id": request[REQUEST_ID]}})
        return _error(401, "unauthorized", "missing or wrong cluster secret")
    service = request.app[PEER_SERVICE]
    name = request.match_info["kind"]
    kind = service.knows(name)
    if kind is None:
        return _error(404, "no-such-route", f"unknown message kind {name}")
    try:
        raw, payload = await _read(request, kind, cfg.max_value_size, cfg.request_timeout)
    except TimeoutError:
        return _error(408, "request-timeout", "the request body did not arrive in time")
    except (errors.PayloadTooLarge, errors.BadRequest) as exc:
        return _refused(exc)  # too large: the sender splits its batch (dfsring.foundation.batching)
    except (HttpProcessingError, ConnectionError, asyncio.IncompleteReadError) as exc:
        return _refused(errors.BadRequest(f"request body is malformed or truncated: {exc}"))
    answer = await service.answer(kind, raw, payload, peer=request.remote or "")
    return await _respond(request, answer)


async def _read(request: web.Request, kind: type[Message], max_value_size: int,
                wait_s: float) -> tuple[bytes, Pieces]:
    if not kind.KIND.startswith(FILES_PREFIX):
        limit = max_value_size * MAX_SIBLINGS_CARRIED + (1 << 16)
        return await read_body(request, limit, wait_s), ()
    async with asyncio.timeout(wait_s):
        return await _read_framed(request)


async def _read_framed(request: web.Request) -> tuple[bytes, Pieces]:
    """The message, and the raw payload after it if the body is framed
    (dfsring.transport.rpc.frame),
    in the pieces it arrived in: a chunk is never joined into one buffer here."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY:
        raise errors.PayloadTooLarge(declared, MAX_BODY)
    if request.content_type != FRAMED:
        return await read_body(request, MAX_MESSAGE, 3600.0), ()
    length = int.from_bytes(await request.content.readexactly(4), "big")
    if length > MAX_MESSAGE:
        raise errors.BadRequest("the message of a framed body is too long")
    raw = await request.content.readexactly(length)
    parts: list[bytes] = []
    size = 0
    async for piece in request.content.iter_any():
        size += len(piece)
        if size > MAX_BODY:
            raise errors.PayloadTooLarge(size, MAX_BODY)
        parts.append(piece)
    return raw, parts
