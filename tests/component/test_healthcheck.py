"""`python -m dfsring.cli.healthcheck` (the image's HEALTHCHECK): healthy only on a 200
"ok" from /health on the port DFSRING_PORT names; joining (503), garbage and nothing
listening all fail, each within its timeout."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from dfsring.cli import healthcheck


async def _serve(status: int, body: str) -> TestServer:
    async def health(_: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/health", health)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def _check(status: int, body: str) -> str | None:
    import asyncio
    server = await _serve(status, body)
    try:
        env = {"DFSRING_PORT": str(server.port)}
        return await asyncio.to_thread(healthcheck.check, env, 3.0)
    finally:
        await server.close()


async def test_ok_is_healthy() -> None:
    assert await _check(200, '{"status": "ok"}') is None


async def test_joining_node_is_not_healthy() -> None:
    problem = await _check(503, '{"status": "joining"}')
    assert problem is not None and "503" in problem


async def test_a_200_that_is_not_ok_json_is_not_healthy() -> None:
    assert await _check(200, "not json") is not None
    assert await _check(200, '{"status": "stopping"}') is not None


def test_nothing_listening_fails() -> None:
    from dfsring.cli.launcher import free_port
    assert healthcheck.check({"DFSRING_PORT": str(free_port())}, 1.0) is not None
    assert healthcheck.check({"DFSRING_PORT": "99999"}, 1.0) is not None


def test_url_follows_the_node_settings() -> None:
    assert healthcheck.health_url({}) == "http://127.0.0.1:7070/health"
    assert healthcheck.health_url({"DFSRING_PORT": "8080", "DFSRING_TLS_CERT": "/c.pem"}) == \
        "https://127.0.0.1:8080/health"
