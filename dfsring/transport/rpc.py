"""The aiohttp transport, client half: msgpack messages over pooled keep-alive HTTP.

One aiohttp session per node, reused for every peer, so a call costs a request on a warm
connection, not a TCP handshake. Every call has a deadline. Every request carries the shared
cluster secret; the receiving side (dfsring.http.internal_api, the server half) refuses calls
without it (401). `RpcClient` implements dfsring.transport.Transport; the errors it raises
(RpcError, PeerUnavailable, PeerRefused) belong to the error tree (dfsring.foundation.errors) and
are
re-exported here.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import TypeVar

import aiohttp

from dfsring.transport import PeerRefused, PeerUnavailable, RpcError, read_reply
from dfsring.transport.messages import Message, MessageError

__all__ = ["FRAMED", "MSGPACK", "RPC_PATH", "SECRET_HEADER", "PeerRefused", "PeerUnavailable",
           "RpcClient", "RpcError", "frame", "unframe"]
SECRET_HEADER = "Dfs-Cluster-Secret"
RPC_PATH = "/internal/v1/"
MSGPACK = "application/msgpack"
FRAMED = "application/x-dfsring-framed"  # a message, then raw payload bytes (frame, unframe)
_LENGTH = 4
R = TypeVar("R", bound=Message)


class RpcClient:
    def __init__(self, secret: str, *, pool_size: int = 512, per_peer: int = 128,
                 dial: dict[str, str] | None = None, ssl: ssl.SSLContext | None = None) -> None:
        """`dial` maps an advertised address to the one actually dialled (--dial): a fault
        proxy per link in chaos tests. It is fixed at start; gossip never changes it.
        `ssl`: dial peers over HTTPS with this context (dfsring.transport.tls
        .peer_client_context); the peer's certificate is checked against the host of its
        advertised address, also when --dial sends the call elsewhere."""
        self._secret = secret
        self._ssl = ssl
        self._dial = dict(dial or {})
        self._pool_size = pool_size
        self._per_peer = per_peer
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ssl=self._ssl or True,
                                             limit_per_host=self._per_peer,
                                             keepalive_timeout=30, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    async def call(self, address: str, message: Message, reply_type: type[R],
                   deadline_s: float) -> R:
        """Send `message` to the node at `address`; its reply, or an RpcError."""
        status, _, body = await self._post(address, message.KIND, message.encode(),
                                           {"Content-Type": MSGPACK}, deadline_s)
        return read_reply(address, status, body, reply_type)

    async def call_with_payload(self, address: str, message: Message,
                                payload: bytes | memoryview, reply_type: type[R],
                                deadline_s: float) -> R:
        """`call`, with raw `payload` bytes after the message in the body (a framed call):
        bulk data such as a file chunk goes out as it is, never copied into msgpack."""
        head = frame(message)

        async def body() -> AsyncIterator[bytes | memoryview]:
            yield head
            yield payload

        headers = {"Content-Type": FRAMED, "Content-Length": str(len(head) + len(payload))}
        status, _, raw = await self._post(address, message.KIND, body(), headers, deadline_s)
        return read_reply(address, status, raw, reply_type)

    async def call_for_payload(self, address: str, message: Message, reply_type: type[R],
                               deadline_s: float) -> tuple[R, memoryview]:
        """`call`, for a reply with raw payload bytes after its message (a framed reply)."""
        status, kind, raw = await self._post(address, message.KIND, message.encode(),
                                             {"Content-Type": MSGPACK}, deadline_s)
        if kind != FRAMED:
            return read_reply(address, status, raw, reply_type), memoryview(b"")
        try:
            head, payload = unframe(raw)
        except MessageError as exc:
            raise PeerUnavailable(address, f"unreadable reply (HTTP {status}): {exc}") from exc
        return read_reply(address, status, head, reply_type), payload

    async def _post(self, address: str, kind: str, data: object, headers: dict[str, str],
                    deadline_s: float) -> tuple[int, str, bytes]:
        scheme = "https" if self._ssl is not None else "http"
        url = f"{scheme}://{self._dial.get(address, address)}{RPC_PATH}{kind}"
        timeout = aiohttp.ClientTimeout(total=deadline_s)
        verify_as = _host(address) if self._ssl is not None else None
        try:
            async with self._http().post(url, data=data, timeout=timeout, headers={
                    SECRET_HEADER: self._secret, **headers}, server_hostname=verify_as) as resp:
                return resp.status, resp.content_type, await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PeerUnavailable(address, f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _host(address: str) -> str:
    """HOST of HOST:PORT ([v6]:PORT unbracketed): the name a peer's certificate must carry."""
    return address.rpartition(":")[0].strip("[]")


def frame(message: Message) -> bytes:
    """The head of a framed body: the encoded message after its length (4 bytes, big
    endian). The raw payload follows it, to the end of the body."""
    raw = message.encode()
    return len(raw).to_bytes(_LENGTH, "big") + raw


def unframe(body: bytes | bytearray | memoryview) -> tuple[bytes, memoryview]:
    """(encoded message, payload) of a framed body, without copying the payload."""
    view = memoryview(body)
    if len(view) < _LENGTH:
        raise MessageError("a framed body starts with the length of its message")
    end = _LENGTH + int.from_bytes(view[:_LENGTH], "big")
    if end > len(view):
        raise MessageError("a framed body is shorter than its message")
    return bytes(view[_LENGTH:end]), view[end:]
