"""The HTTP face of the fault proxy: Toxiproxy's routes, status codes and bodies (``api.go``).

Routing is done here rather than by aiohttp's router because Toxiproxy's gorilla/mux answers in
ways aiohttp would not: an unknown path is a ``404 page not found`` text line, a known path with
the wrong method an empty 405, and only a matched route passes the browser check (403 for a
``Mozilla/`` user agent) and the 25 s handler timeout (503). Bodies are read whatever their
Content-Type. Errors are ``{"error": msg, "status": code}`` plus a newline as
``text/plain; charset=utf-8``, as Go's ``http.Error`` sends them.

Stand-in extras: ``GET /standin/stats`` (per-proxy connection and byte counters).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from dfsring.testing.faultproxy.collection import ProxyCollection
from dfsring.testing.faultproxy.wire import ApiError

VERSION = "2.x-standin"
HANDLER_TIMEOUT = 25.0  # seconds, Toxiproxy's http.TimeoutHandler
_TIMEOUT_BODY = "<html><head><title>Timeout</title></head><body><h1>Timeout</h1></body></html>"

Handler = Callable[["ProxyApi", web.BaseRequest, Mapping[str, str]], Awaitable[web.Response]]


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def text_error(text: str, status: int) -> web.Response:
    """Go's ``http.Error``: the text plus a newline, as text/plain."""
    return web.Response(
        text=text + "\n",
        status=status,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def api_error(error: ApiError) -> web.Response:
    return text_error(orjson.dumps(error.to_json()).decode(), error.status)


def no_content() -> web.Response:
    return web.Response(status=204)


class ProxyApi:
    """Turns requests into :class:`ProxyCollection` calls; one instance per server."""

    def __init__(self, proxies: ProxyCollection) -> None:
        self.proxies = proxies
        self._inflight: set[asyncio.Task[web.Response]] = set()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """aiohttp's low-level handler: route, check, run with the 25 s limit."""
        route = _match(request.path)
        if route is None:
            return text_error("404 page not found", 404)
        handlers, params = route
        handler = handlers.get(request.method)
        if handler is None:
            return web.Response(status=405)
        if request.headers.get("User-Agent", "").startswith("Mozilla/"):
            return text_error("User agent not allowed", 403)
        return await self._run_limited(handler(self, request, params))

    async def _run_limited(self, work: Awaitable[web.Response]) -> web.Response:
        """Run a handler; past HANDLER_TIMEOUT answer 503 and let it finish in the background
        (tracked, awaited by :meth:`close`), as Go's TimeoutHandler leaves its goroutine."""
        task = asyncio.ensure_future(_guarded(work))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        done, _pending = await asyncio.wait({task}, timeout=HANDLER_TIMEOUT)
        if task not in done:
            return web.Response(text=_TIMEOUT_BODY, status=503, content_type="text/html")
        return task.result()

    async def close(self) -> None:
        """Wait for handlers that outlived their request."""
        if self._inflight:
            await asyncio.wait(set(self._inflight))

    # Route handlers: (api, request, path parameters) -> response.

    async def proxy_index(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        return json_response(await self.proxies.index())

    async def proxy_create(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        return json_response(await self.proxies.create(await request.read()), 201)

    async def populate(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        result = await self.proxies.populate(await request.read())
        return json_response(result.to_json(), result.status)

    async def proxy_show(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        return json_response(await self.proxies.show(p["proxy"]))

    async def proxy_update(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        return json_response(await self.proxies.update(p["proxy"], await request.read()))

    async def proxy_delete(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        await self.proxies.delete(p["proxy"])
        return no_content()

    async def toxic_index(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        return json_response(await self.proxies.toxics(p["proxy"]))

    async def toxic_create(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        return json_response(await self.proxies.create_toxic(p["proxy"], await request.read()))

    async def toxic_show(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        return json_response(await self.proxies.show_toxic(p["proxy"], p["toxic"]))

    async def toxic_update(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        body = await request.read()
        return json_response(await self.proxies.update_toxic(p["proxy"], p["toxic"], body))

    async def toxic_delete(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        await self.proxies.delete_toxic(p["proxy"], p["toxic"])
        return no_content()

    async def reset(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        await self.proxies.reset()
        return no_content()

    async def version(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        body = f'{{"version": {orjson.dumps(VERSION).decode()}}}\n'  # Go's exact format
        return web.Response(
            body=body.encode(), headers={"Content-Type": "application/json;charset=utf-8"}
        )

    async def stats(self, request: web.BaseRequest, p: Mapping[str, str]) -> web.Response:
        return json_response(await self.proxies.stats())


async def _guarded(work: Awaitable[web.Response]) -> web.Response:
    """ApiError becomes its response; anything else is a 500 with the same JSON shape."""
    try:
        return await work
    except ApiError as exc:
        return api_error(exc)
    except Exception as exc:
        return api_error(ApiError(str(exc) or type(exc).__name__, 500))


_SEGMENT = r"(?P<{}>[^/]+)"
_ROUTES: list[tuple[re.Pattern[str], Mapping[str, Handler]]] = [
    (
        re.compile(pattern.format(proxy=_SEGMENT.format("proxy"), toxic=_SEGMENT.format("toxic"))),
        handlers,
    )
    for pattern, handlers in (
        ("/reset", {"POST": ProxyApi.reset}),
        ("/proxies", {"GET": ProxyApi.proxy_index, "POST": ProxyApi.proxy_create}),
        ("/populate", {"POST": ProxyApi.populate}),
        (
            "/proxies/{proxy}",
            {
                "GET": ProxyApi.proxy_show,
                "POST": ProxyApi.proxy_update,
                "PATCH": ProxyApi.proxy_update,
                "DELETE": ProxyApi.proxy_delete,
            },
        ),
        ("/proxies/{proxy}/toxics", {"GET": ProxyApi.toxic_index, "POST": ProxyApi.toxic_create}),
        (
            "/proxies/{proxy}/toxics/{toxic}",
            {
                "GET": ProxyApi.toxic_show,
                "POST": ProxyApi.toxic_update,
                "PATCH": ProxyApi.toxic_update,
                "DELETE": ProxyApi.toxic_delete,
            },
        ),
        ("/version", {"GET": ProxyApi.version}),
        ("/standin/stats", {"GET": ProxyApi.stats}),
    )
]


def _match(path: str) -> tuple[Mapping[str, Handler], dict[str, str]] | None:
    for pattern, handlers in _ROUTES:
        found = pattern.fullmatch(path)
        if found is not None:
            return handlers, found.groupdict()
    return None
