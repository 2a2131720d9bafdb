"""A listener's connection and time limits on loopback (issue 23, part 3): the aiohttp server
of dfsring.http.server with a ConnectionGuard, small limits, and raw sockets as clients.

Each test is named after what went wrong before: no per-source or listener cap, no header
timeout (slowloris held a connection for aiohttp's 3630 s), no minimum upload rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from dfsring.foundation.metrics import NodeMetrics
from dfsring.http.connlimits import ConnectionGuard, ConnLimits
from dfsring.http.server import ProblemAppRunner

pytestmark = pytest.mark.component

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
LIMITS = ConnLimits(max_total=8, max_per_source=4, header_timeout=0.5, idle_timeout=1.0,
                    min_upload_rate=1000, upload_window=0.5)
Server = tuple[int, NodeMetrics]


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _upload(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(text=str(len(body)))


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    app = web.Application()
    app.router.add_get("/", _ok)
    app.router.add_put("/up", _upload)
    metrics = NodeMetrics()
    runner = ProblemAppRunner(app, guard=ConnectionGuard(LIMITS, metrics), access_log=None,
                              keepalive_timeout=LIMITS.idle_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port, metrics
    finally:
        await runner.cleanup()


async def _connect(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader,
                                                                   asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _status(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  send: bytes = GET) -> int:
    writer.write(send)
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1])


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closed the connection (EOF or reset)."""
    start = time.monotonic()
    async with asyncio.timeout(seconds):
        while True:
            try:
                if not await reader.read(1 << 16):
                    break
            except ConnectionResetError:
                break
    return time.monotonic() - start


def _sample(metrics: NodeMetrics, name: str, reason: str) -> float:
    return metrics.registry.get_sample_value(f"{name}_total", {"reason": reason}) or 0.0


async def _close_all(writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.close()


async def _with_sockets(count: int, port: int, source: str,
                        body: Callable[[list[asyncio.StreamWriter]], Awaitable[None]]) -> None:
    writers = [(await _connect(port, source))[1] for _ in range(count)]
    try:
        await body(writers)
    finally:
        await _close_all(writers)


async def test_one_source_over_its_share_is_refused_with_503_and_others_still_served(
        server: Server) -> None:
    port, metrics = server

    async def check(_: list[asyncio.StreamWriter]) -> None:
        reader, writer = await _connect(port, "127.0.0.2")
        assert await _status(reader, writer, b"") == 503
        writer.close()
        reader, writer = await _connect(port, "127.0.0.3")
        assert await _status(reader, writer) == 200
        writer.close()

    await _with_sockets(LIMITS.max_per_source, port, "127.0.0.2", check)
    assert _sample(metrics, "dfsring_connections_refused", "source") == 1


async def test_full_listener_evicts_idle_flood_connections_to_serve_a_new_client(
        server: Server) -> None:
    port, metrics = server

    async def check(flood: list[asyncio.StreamWriter]) -> None:
        for i in range(3):  # every new client gets in, pushing out the oldest idle socket
            reader, writer = await _connect(port, f"127.0.1.{i + 1}")
            flood.append(writer)  # held open, so each one needs an eviction
            assert await _status(reader, writer) == 200

    flood: list[asyncio.StreamWriter] = []
    try:
        for i in range(LIMITS.max_total // 2):
            flood += [(await _connect(port, f"127.0.0.{10 + i}"))[1] for _ in range(2)]
        await check(flood)
    finally:
        await _close_all(flood)
    assert _sample(metrics, "dfsring_connections_closed", "evicted") >= 3
    assert metrics.registry.get_sample_value("dfsring_connections_max") == LIMITS.max_total


async def test_slowloris_request_head_is_closed_after_the_header_timeout(
        server: Server) -> None:
    port, metrics = server
    reader, writer = await _connect(port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(4):  # a header line now and then, never the blank line
            await asyncio.sleep(0.2)
            if reader.at_eof():
                break
            writer.write(b"X-Slow: 1\r\n")
        took = await _closed_within(reader, 5)
    finally:
        writer.close()
    assert took < 2 * LIMITS.header_timeout
    assert _sample(metrics, "dfsring_connections_closed", "header_timeout") == 1


async def test_a_silent_new_connection_is_closed_after_the_header_timeout(
        server: Server) -> None:
    port, _ = server
    reader, writer = await _connect(port)
    start = time.monotonic()
    try:
        await _closed_within(reader, 5)
    finally:
        writer.close()
    assert time.monotonic() - start < 2 * LIMITS.header_timeout


async def test_kept_alive_connection_is_closed_after_the_idle_timeout(server: Server) -> None:
    port, metrics = server
    reader, writer = await _connect(port)
    try:
        assert await _status(reader, writer) == 200
        await reader.readexactly(2)  # "ok"
        took = await _closed_within(reader, 5)
    finally:
        writer.close()
    assert LIMITS.idle_timeout / 2 < took < 3 * LIMITS.idle_timeout
    assert _sample(metrics, "dfsring_connections_closed", "idle_timeout") == 1


async def test_upload_below_the_minimum_rate_is_closed(server: Server) -> None:
    port, metrics = server
    reader, writer = await _connect(port)
    try:
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(20):  # 10 bytes per 0.1 s: 100 B/s against a minimum of 1000
            if reader.at_eof():
                break
            writer.write(b"x" * 10)
            await asyncio.sleep(0.1)
        await _closed_within(reader, 5)
    finally:
        writer.close()
    assert _sample(metrics, "dfsring_connections_closed", "slow_upload") == 1


async def test_upload_at_a_fair_rate_completes(server: Server) -> None:
    port, _ = server
    reader, writer = await _connect(port)
    try:
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n")
        for _ in range(10):  # 2000 bytes per 0.1 s: 20 kB/s
            writer.write(b"x" * 2000)
            await asyncio.sleep(0.1)
        assert await _status(reader, writer, b"") == 200
    finally:
        writer.close()
