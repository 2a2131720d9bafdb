"""The aiohttp transport on loopback: RpcClient (client half) against dfsring.http.internal_api
(server half) serving a real chunk store's handlers. The secret is checked once, in the
adapter; refusals come back as ErrorReply codes; chunks travel as framed payload both ways."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from dfsring.core.contenthash import chunk_id
from dfsring.files import replica as files_replica
from dfsring.files.chunkstore import ChunkStore
from dfsring.foundation.config import load_config
from dfsring.foundation.metrics import NodeMetrics
from dfsring.http import internal_api
from dfsring.http.appkeys import CONFIG
from dfsring.http.middleware import make_middleware
from dfsring.transport import PeerRefused, PeerService
from dfsring.transport.messages import Ack, ChunkData, ChunkGet, ChunkHave, ChunkHaveReply, ChunkPut
from dfsring.transport.rpc import RPC_PATH, SECRET_HEADER, RpcClient

pytestmark = pytest.mark.component
SECRET = "s3cret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[tuple[str, ChunkStore]]:
    store = ChunkStore(tmp_path / "chunks", durable=False)
    store.open()
    metrics = NodeMetrics()
    app = web.Application(middlewares=[make_middleware(metrics)])
    app[CONFIG] = load_config(["--data-dir", str(tmp_path), "--cluster-secret", SECRET],
                              environ={})
    internal_api.setup(app, PeerService(files_replica.handlers(store),
                                        on_corrupt=metrics.count_corrupt))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"127.0.0.1:{port}", store
    finally:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[RpcClient]:
    rpc = RpcClient(SECRET)
    try:
        yield rpc
    finally:
        await rpc.close()


async def test_a_chunk_goes_out_and_comes_back_as_framed_payload(
        peer: tuple[str, ChunkStore], client: RpcClient) -> None:
    address, store = peer
    data = b"0123456789" * 5000
    cid = chunk_id(data)
    ack = await client.call_with_payload(address, ChunkPut(cid, len(data), False), data, Ack, 5)
    assert ack.changed and store.get(cid) == data
    have = await client.call(address, ChunkHave((cid,), False), ChunkHaveReply, 5)
    assert have.present == (cid,)
    reply, payload = await client.call_for_payload(address, ChunkGet(cid), ChunkData, 5)
    assert reply.size == len(data) and bytes(payload) == data
    missing, nothing = await client.call_for_payload(address, ChunkGet(chunk_id(b"x")),
                                                     ChunkData, 5)
    assert missing.size is None and bytes(nothing) == b""


async def test_a_handler_refusal_comes_back_with_its_code(
        peer: tuple[str, ChunkStore], client: RpcClient) -> None:
    address, _ = peer
    with pytest.raises(PeerRefused) as caught:
        await client.call_with_payload(address, ChunkPut(chunk_id(b"abc"), 3, False), b"abd",
                                       Ack, 5)
    assert caught.value.reply.code == "bad-request"


async def test_without_the_secret_nothing_reaches_a_handler(
        peer: tuple[str, ChunkStore]) -> None:
    address, store = peer
    data = b"payload"
    outsider = RpcClient("wrong")
    try:
        with pytest.raises(PeerRefused) as caught:
            await outsider.call_with_payload(address, ChunkPut(chunk_id(data), len(data), False),
                                             data, Ack, 5)
    finally:
        await outsider.close()
    assert caught.value.reply.code == "unauthorized"
    assert store.get(chunk_id(data)) is None


async def test_malformed_and_unknown_messages_are_refused_and_the_peer_keeps_serving(
        peer: tuple[str, ChunkStore], client: RpcClient) -> None:
    address, _ = peer
    headers = {SECRET_HEADER: SECRET}
    async with aiohttp.ClientSession() as http:
        for kind, status in (("files/chunk-have", 400), ("files/nope", 404),
                             ("replica-read", 404)):
            async with http.post(f"http://{address}{RPC_PATH}{kind}", data=b"\xc1",
                                 headers=headers) as resp:
                assert resp.status == status, kind
    have = await client.call(address, ChunkHave((), False), ChunkHaveReply, 5)
    assert have.present == ()
