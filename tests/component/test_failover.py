"""dfsring.client.failover, the one loop the client and both CLI transports fail over with, against
real sockets: a port nobody listens on (never sent), a server that drops the connection
without answering (answer lost), and servers that answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dfsring.cli.launcher import free_port
from dfsring.client.errors import ConnectionFailed, OutcomeUnknown
from dfsring.client.failover import Lost, describe, first_answer

pytestmark = pytest.mark.component


def _app(status: int = 200, drop: bool = False) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        if drop:  # the request arrived; its answer never leaves
            assert request.transport is not None
            request.transport.close()
        return web.Response(status=status, text=f"{status} from {request.host}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
async def urls() -> AsyncIterator[dict[str, str]]:
    servers = {"ok": TestServer(_app()), "busy": TestServer(_app(503)),
               "drops": TestServer(_app(drop=True))}
    for server in servers.values():
        await server.start_server()
    yield {name: f"http://{s.host}:{s.port}" for name, s in servers.items()} | {
        "dead": f"http://127.0.0.1:{free_port()}", "dead2": f"http://127.0.0.1:{free_port()}"}
    for server in servers.values():
        await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def _sender(http: aiohttp.ClientSession, method: str,
            tried: list[str]) -> Callable[[str], Awaitable[tuple[int, str]]]:
    async def send(base: str) -> tuple[int, str]:
        tried.append(base)
        async with http.request(method, base + "/x") as resp:
            return resp.status, await resp.text()

    return send


@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "DELETE"])
async def test_a_request_never_sent_moves_on_whatever_its_method(
        http: aiohttp.ClientSession, urls: dict[str, str], method: str) -> None:
    tried: list[str] = []
    bases = [urls["dead"], urls["ok"], urls["busy"]]
    index, (status, _) = await first_answer(bases, _sender(http, method, tried),
                                            lost=Lost(method, "/x"))
    assert (index, status, tried) == (1, 200, bases[:2])


async def test_the_loop_starts_at_start_and_wraps_around(
        http: aiohttp.ClientSession, urls: dict[str, str]) -> None:
    tried: list[str] = []
    bases = [urls["ok"], urls["dead"], urls["dead2"]]
    index, _ = await first_answer(bases, _sender(http, "GET", tried), lost=Lost("GET", "/x"),
                                  start=1)
    assert (index, tried) == (0, [bases[1], bases[2], bases[0]])


async def test_an_error_answer_is_an_answer(
        http: aiohttp.ClientSession, urls: dict[str, str]) -> None:
    tried: list[str] = []
    bases = [urls["busy"], urls["ok"]]
    index, (status, _) = await first_answer(bases, _sender(http, "GET", tried),
                                            lost=Lost("GET", "/x"))
    assert (index, status, tried) == (0, 503, bases[:1])


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_read_whose_answer_was_lost_moves_on(
        http: aiohttp.ClientSession, urls: dict[str, str], method: str) -> None:
    tried: list[str] = []
    bases = [urls["drops"], urls["ok"]]
    index, (status, _) = await first_answer(bases, _sender(http, method, tried),
                                            lost=Lost(method, "/x"))
    assert (index, status, tried) == (1, 200, bases)


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
async def test_a_write_whose_answer_was_lost_is_outcome_unknown_and_not_resent(
        http: aiohttp.ClientSession, urls: dict[str, str], method: str) -> None:
    tried: list[str] = []
    bases = [urls["drops"], urls["ok"]]
    with pytest.raises(OutcomeUnknown) as caught:
        await first_answer(bases, _sender(http, method, tried),
                           lost=Lost(method, "/x", note="; it may have been applied"))
    assert tried == bases[:1]
    assert str(caught.value).startswith(f"{method} {bases[0]}/x: ")
    assert str(caught.value).endswith("; it may have been applied")
    assert isinstance(caught.value.__cause__, aiohttp.ClientError)


async def test_the_cli_resends_only_get(http: aiohttp.ClientSession, urls: dict[str, str]) -> None:
    with pytest.raises(OutcomeUnknown):
        await first_answer([urls["drops"], urls["ok"]], _sender(http, "HEAD", []),
                           lost=Lost("HEAD", "/x", resend=("GET",)))


async def test_without_a_policy_a_lost_answer_is_the_callers(
        http: aiohttp.ClientSession, urls: dict[str, str]) -> None:
    tried: list[str] = []
    with pytest.raises(aiohttp.ClientError):
        await first_answer([urls["drops"], urls["ok"]], _sender(http, "GET", tried), lost=None)
    assert tried == [urls["drops"]]


async def test_when_none_answers_each_url_is_tried_once_and_named(
        http: aiohttp.ClientSession, urls: dict[str, str]) -> None:
    tried: list[str] = []
    bases = [urls["dead"], urls["drops"], urls["dead2"]]
    with pytest.raises(ConnectionFailed) as caught:
        await first_answer(bases, _sender(http, "GET", tried), lost=Lost("GET", "/x"), start=2)
    assert sorted(tried) == sorted(bases)
    assert list(caught.value.failures) == [bases[2], bases[0], bases[1]]
    assert caught.value.failures[bases[0]].startswith("cannot connect: ")
    assert caught.value.failures[bases[1]] == "ServerDisconnectedError: Server disconnected"


async def test_no_base_urls_is_a_connection_failure(http: aiohttp.ClientSession) -> None:
    with pytest.raises(ConnectionFailed):
        await first_answer([], _sender(http, "GET", []), lost=Lost("GET", "/x"))


def test_describe_words_a_timeout_with_and_without_the_limit() -> None:
    assert describe(TimeoutError()) == "no answer in time"
    assert describe(TimeoutError(), 0.25) == "no answer within 0.25 s"
    assert describe(aiohttp.ConnectionTimeoutError()) == "cannot connect: timed out"
    assert describe(aiohttp.ServerDisconnectedError()) == \
        "ServerDisconnectedError: Server disconnected"
