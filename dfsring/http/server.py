"""Running the aiohttp application, with parse-level errors answered as problem+json.

aiohttp answers requests its HTTP parser rejects (an over-long header line, too many headers,
a garbled request line) with a text/plain 400 before any middleware runs. A production store's
clients deserve the same error shape and a Dfs-Request-Id on every response, so the runner swaps
in a request handler whose `handle_error` builds our problem document (and 431 for headers over
the limit). This touches aiohttp's server classes (pinned < 4 in pyproject); the bad-input
cluster test pins the behaviour.

The same handler enforces the listener's connection and time limits (dfsring.http.connlimits):
it asks the guard to admit each new connection, refusing past a cap with a 503 and
Retry-After written before closing, closes a connection whose request head is late or whose
upload is too slow, and tells the guard when a connection is busy, so only idle ones are
evicted. The connection-flood cluster test pins it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from dfsring.http.connlimits import ConnectionGuard
from dfsring.http.middleware import new_request_id
from dfsring.http.problems import problem

log = logging.getLogger("dfsring.http")


_REFUSAL_BODY = (b'{"type":"https://dfsring.dev/problems/too-many-connections",'
                 b'"title":"Too many connections","status":503,"retryable":true}')
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
            b"Content-Type: application/problem+json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY))


class _ProblemRequestHandler(RequestHandler):  # type: ignore[misc]
    def __init__(self, manager: _ProblemServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager.guard
        self._refused = False
        self._busy = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._upload_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._guard is None:
            super().connection_made(transport)
            return
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        admission = self._guard.admit(self, source)
        if admission.refused is not None:
            self._refused = True
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_REFUSAL)
            transport.close()
            return
        if isinstance(admission.evict, RequestHandler):
            admission.evict.force_close()
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        if self._guard is not None:
            self._guard.table.release(self)
            self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._guard is not None and not self._busy and not self._messages:
            self._arm_head_timer()
        super().data_received(data)
        if self._messages and self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    async def _handle_request(self, request: BaseRequest, start_time: float | None,
                              request_handler: Any) -> tuple[web.StreamResponse, bool]:
        if self._guard is None:
            return await super()._handle_request(request, start_time, request_handler)
        self._busy = True
        self._guard.table.busy(self)
        if self._guard.limits.min_upload_rate and request.can_read_body:
            self._upload_timer = self._loop.call_later(
                self._guard.limits.upload_window, self._check_upload, request,
                request.content.total_bytes)
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self._busy = False
            if self._upload_timer is not None:
                self._upload_timer.cancel()
                self._upload_timer = None
            self._guard.table.idle(self)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self._guard is not None:
            self._head_timer = self._loop.call_later(self._guard.limits.header_timeout,
                                                     self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._busy or self._messages or self._force_close or self._guard is None:
            return
        self._guard.closed("header_timeout")
        self.force_close()

    def _check_upload(self, request: BaseRequest, seen: int) -> None:
        """Closes an upload slower than --min-upload-rate over the last window, unless the
        node itself paused reading (its buffers are full: backpressure, not a slow client)."""
        self._upload_timer = None
        content = request.content
        if self._guard is None or self._force_close or content.is_eof():
            return
        limits = self._guard.limits
        got = content.total_bytes - seen
        if not self._reading_paused and got < limits.min_upload_rate * limits.upload_window:
            self._guard.closed("slow_upload")
            self.force_close()
            return
        self._upload_timer = self._loop.call_later(limits.upload_window, self._check_upload,
                                                   request, content.total_bytes)

    def _process_keepalive(self) -> None:
        was_closed = self._force_close
        super()._process_keepalive()
        if self._force_close and not was_closed and self._guard is not None:
            self._guard.closed("idle_timeout")

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._upload_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._upload_timer = None

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
    guard: ConnectionGuard | None = None

    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """`guard`: the listener's connection and time limits (None: aiohttp's defaults only).
    Pass `keepalive_timeout` with the guard's idle timeout."""

    def __init__(self, app: web.Application, *, guard: ConnectionGuard | None = None,
                 **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._guard = guard

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer
        cast(_ProblemServer, server).guard = self._guard
        return server
