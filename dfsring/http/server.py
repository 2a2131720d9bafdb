"""Running the aiohttp application, with parse-level errors answered as problem+json.

aiohttp answers requests its HTTP parser rejects (an over-long header line, too many headers,
a garbled request line) with a text/plain 400 before any middleware runs. A production store's
clients deserve the same error shape and a Dfs-Request-Id on every response, so the runner swaps
in a request handler whose `handle_error` builds our problem document (and 431 for headers over
the limit). This touches aiohttp's server classes (pinned < 4 in pyproject); the bad-input
cluster test pins the behaviour.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from dfsring.http.middleware import new_request_id
from dfsring.http.problems import problem

log = logging.getLogger("dfsring.http")


class _ProblemRequestHandler(RequestHandler):  # type: ignore[misc]
    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        rid = new_request_id()
        too_long = isinstance(exc, LineTooLong) or "too many headers" in str(message).lower()
        status = 431 if too_long else status
        slug = "headers-too-large" if too_long else "malformed-request"
        title = "Request header fields too large" if too_long else "Malformed HTTP request"
        log.info("request rejected by the HTTP parser",
                 extra={"fields": {"request_id": rid, "status": status,
                                   "detail": str(message)[:200]}})
        resp = problem(status, slug, title, str(message or title)[:300], rid)
        resp.force_close()
        return resp


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer
        return server
