"""The seam between the services and the wire: how a node calls its peers, and how it answers.

Client side, every service (coordinator, gossip, handoff, exchange, transfers, ring changes,
scrub, discovery, files) holds a `Transport` and calls `call(address, message, reply_type,
deadline_s)`; a peer is named by the address it advertises. Two implementations exist:
dfsring.transport.rpc.RpcClient (msgpack over pooled HTTP, what a node runs) and
dfsring.transport.local.LocalTransport (one event loop, for component tests, with injected
loss, delay and partitions).

Server side, a node answers with a `PeerService`: a table `{message type: handler}` of plain
async functions (dfsring.replication.replica, dfsring.files.replica) that take the decoded message
and any
raw payload bytes and return the reply. `PeerService.answer` is the one place where a handler's
exception becomes an ErrorReply (`peer_error`, one lookup); both transports call it, so a
handler behaves the same over HTTP and in-process. Handlers never see a socket or a request;
the cluster secret is checked before them, once, by the transport that has one
(dfsring.http.internal_api).

    RpcError
    ├── PeerUnavailable   could not reach the peer, or no answer before the deadline
    └── PeerRefused       the peer answered with an ErrorReply (code, detail, needed, acked)

Invariant: a call either returns a reply of `reply_type`, or raises an RpcError; it never
outlives its deadline by more than one event-loop turn.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from dfsring.foundation import errors
from dfsring.foundation.errors import PeerRefused as PeerRefused
from dfsring.foundation.errors import PeerUnavailable as PeerUnavailable
from dfsring.foundation.errors import RpcError as RpcError
from dfsring.transport.messages import ErrorReply, Message, MessageError, decode, kind_of

log = logging.getLogger("dfsring.internal")
R = TypeVar("R", bound=Message)
Payload = bytes | memoryview
Pieces = Sequence[Payload]
"""A request's raw payload in the pieces it arrived in (a chunk is never joined)."""
DETAIL_LIMIT = 500


class Transport(Protocol):
    """What a service needs to talk to its peers. Each call has its own deadline."""

    async def call(self, address: str, message: Message, reply_type: type[R],
                   deadline_s: float) -> R:
        """Send `message` to the node at `address`; its reply, or an RpcError."""
        ...

    async def call_with_payload(self, address: str, message: Message, payload: Payload,
                                reply_type: type[R], deadline_s: float) -> R:
        """`call`, with raw `payload` bytes after the message (bulk data such as a chunk
        travels as it is, never copied into msgpack)."""
        ...

    async def call_for_payload(self, address: str, message: Message, reply_type: type[R],
                               deadline_s: float) -> tuple[R, memoryview]:
        """`call`, for a reply with raw payload bytes after its message."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class WithPayload:
    """A handler's reply that carries raw bytes after its message (a chunk read)."""

    message: Message
    payload: Payload


Reply = Message | WithPayload
Handler = Callable[[Any, Pieces], Awaitable[Reply]]
"""handler(message, payload) -> reply; `message` is of the type the table files it under."""
Handlers = Mapping[type[Message], Handler]


@dataclass(frozen=True)
class Answer:
    """What goes back on the wire: a status (HTTP's numbers, which every transport reuses
    for logs and tests), the reply message, and raw payload bytes if any."""

    status: int
    message: Message
    payload: Payload | None = None


def peer_error(exc: BaseException) -> ErrorReply | None:
    """The ErrorReply a handler's exception becomes, or None for one that is a bug (it
    propagates). One lookup: a DfsError carries its own peer code and figures
    (dfsring.foundation.errors); of the rest, only a ValueError (a field the catalogue let through
    but a
    rule refused) and an OSError (the disk) have an answer."""
    if isinstance(exc, errors.DfsError):
        return ErrorReply.of(exc)
    if isinstance(exc, ValueError):
        return ErrorReply.of(errors.BadRequest(str(exc)))
    if isinstance(exc, OSError):
        return ErrorReply.of(errors.StorageError(str(exc)))
    return None


def status_of(reply: ErrorReply) -> int:
    """The status a code travels with (500 for a code no error carries)."""
    cls = errors.peer_class(reply.code)
    return cls.peer_status if cls is not None else 500


@dataclass(frozen=True)
class PeerService:
    """A node's answering side: its handler table and what to count on the way out."""

    handlers: Handlers
    on_corrupt: Callable[[], None] = field(default=lambda: None)

    def knows(self, kind: str) -> type[Message] | None:
        cls = kind_of(kind)
        return cls if cls is not None and cls in self.handlers else None

    async def answer(self, kind: type[Message], raw: bytes, payload: Pieces,
                     peer: str = "") -> Answer:
        """Decode `raw` as a `kind` message, run its handler, and translate what it raised.
        A malformed message is logged and answered with 400; the node keeps serving."""
        try:
            msg = decode(raw, kind)
            reply = await self.handlers[kind](msg, payload)
        except Exception as exc:
            return self._refusal(kind, exc, peer)
        if isinstance(reply, WithPayload):
            return Answer(200, reply.message, reply.payload)
        return Answer(200, reply)

    def _refusal(self, kind: type[Message], exc: Exception, peer: str) -> Answer:
        reply = peer_error(exc)
        if reply is None:
            raise exc
        if isinstance(exc, (MessageError, ValueError)) and reply.code == "bad-request":
            log.warning("malformed peer message", extra={"fields": {
                "peer": peer, "kind": kind.KIND, "error": str(exc)[:300]}})
            detail = f"malformed {kind.KIND} message: {exc}"
            reply = ErrorReply(reply.code, detail[:DETAIL_LIMIT], 0, 0)
        elif isinstance(exc, errors.CorruptValue):
            self.on_corrupt()
        elif reply.code == "internal":
            log.error("peer request failed", extra={"fields": {
                "peer": peer, "kind": kind.KIND, "error": str(exc)[:300]}})
        return Answer(status_of(reply), reply)


def read_reply(address: str, status: int, body: bytes, reply_type: type[R]) -> R:
    """The caller's half of `Answer`: the reply, PeerRefused for an ErrorReply, and
    PeerUnavailable for bytes that are not a reply at all."""
    try:
        reply = decode(body, reply_type)
    except MessageError as exc:
        raise PeerUnavailable(address, f"unreadable reply (HTTP {status}): {exc}") from exc
    if isinstance(reply, ErrorReply):
        raise PeerRefused(address, reply)
    if status != 200:
        raise PeerUnavailable(address, f"HTTP {status} with a {reply.KIND} reply")
    return reply
