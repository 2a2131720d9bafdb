"""The seam between the services and the wire: how a node calls its peers, and how it answers.

Client side, every service (coordinator, gossip, handoff, exchange, transfers, ring changes,
scrub, discovery, files) holds a `Transport` and calls `call(address, message, reply_type,
deadline_s)`; a peer is named by the address it advertises. Two implementations exist:
dfsring.rpc.RpcClient (msgpack over pooled HTTP, what a node runs) and
dfsring.localtransport.LocalTransport (one event loop, for component tests, with injected
loss, delay and partitions).

Server side, a node answers with a `PeerService`: a table `{message type: handler}` of plain
async functions (dfsring.replica, dfsring.files.replica) that take the decoded message and any
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

from dfsring import errors
from dfsring.messages import ErrorReply, Message, MessageError, decode, kind_of

log = logging.getLogger("dfsring.internal")
R = TypeVar("R", bound=Message)
Payload = bytes | memoryview
Pieces = Sequence[Payload]
"""A request's raw payload in the pieces it arrived in (a chunk is never joined)."""
DETAIL_LIMIT = 500


class RpcError(Exception):
    def __init__(self, peer: str, detail: str) -> None:
        super().__init__(f"{peer}: {detail}")
        self.peer = peer
        self.detail = detail


class PeerUnavailable(RpcError):
    """Connection refused or reset, or no reply in time: the peer may be down."""


class PeerRefused(RpcError):
    def __init__(self, peer: str, reply: ErrorReply) -> None:
        super().__init__(peer, f"{reply.code}: {reply.detail}")
        self.reply = reply


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


# The peer reply of each error, most specific class first by MRO (see peer_error). A sender
# re-raises from the code: "quorum-not-met" and "too-many-siblings" carry their figures in
# needed/acked, "payload-too-large" makes it split its batch (dfsring.batching).
_PEER_REPLIES: dict[type[BaseException], tuple[int, str]] = {
    MessageError: (400, "bad-request"),
    ValueError: (400, "bad-request"),  # a field the catalogue let through but a rule refused
    errors.BadRequest: (400, "bad-request"),
    errors.InvalidKey: (400, "invalid-key"),
    errors.InvalidContext: (400, "invalid-context"),
    errors.PayloadTooLarge: (413, "payload-too-large"),
    errors.Unauthorized: (401, "unauthorized"),
    errors.RequestTimeout: (408, "request-timeout"),
    errors.StaleRing: (409, "stale-ring"),
    errors.TooManySiblings: (409, "too-many-siblings"),
    errors.HintsFull: (507, "hints-full"),
    errors.QuorumNotMet: (503, "quorum-not-met"),
    errors.CorruptValue: (500, "corrupt-value"),
    errors.DfsError: (500, "internal"),
    OSError: (500, "internal"),
}


def register_peer_reply(cls: type[BaseException], status: int, code: str) -> None:
    """For an error class defined above this layer (gossip's WrongCluster), so this module
    need not import the service that raises it."""
    _PEER_REPLIES[cls] = (status, code)


def peer_error(exc: BaseException) -> ErrorReply | None:
    """The ErrorReply a handler's exception becomes, or None for one that is a bug (it
    propagates). One lookup along the class's MRO, so a subclass inherits its parent's reply
    unless it has its own."""
    for cls in type(exc).__mro__:
        found = _PEER_REPLIES.get(cls)
        if found is not None:
            needed, acked = _figures(exc)
            return ErrorReply(found[1], str(exc)[:DETAIL_LIMIT], needed, acked)
    return None


def status_of(reply: ErrorReply) -> int:
    """The status a code travels with (500 for a code not in the table)."""
    for status, code in _PEER_REPLIES.values():
        if code == reply.code:
            return status
    return 500


def _figures(exc: BaseException) -> tuple[int, int]:
    if isinstance(exc, errors.QuorumNotMet):
        return exc.needed, exc.acked
    if isinstance(exc, errors.TooManySiblings):  # a forwarded write: its figures
        return exc.limit, exc.siblings
    return 0, 0


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
