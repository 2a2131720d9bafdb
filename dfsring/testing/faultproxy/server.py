"""Running the fault proxy: in a test's event loop, in a background thread, or standalone.

- :class:`FaultProxyServer` is an async context manager for code that already runs a loop.
- :class:`ThreadedFaultProxy` runs one in its own thread and loop, for synchronous callers such
  as the toxiproxy-python client (``requests``) driven from pytest; it is a context manager too.

Port 0 picks a free port; ``.port`` and ``.url`` tell which. Stopping closes the API first, then
every proxy and connection, then waits for any API handler still running, so nothing outlives
the server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from types import TracebackType

from aiohttp import web

from dfsring.testing.faultproxy.api import ProxyApi
from dfsring.testing.faultproxy.collection import ProxyCollection
from dfsring.testing.faultproxy.wire import format_address

log = logging.getLogger("dfsring.faultproxy")

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8474
API_SHUTDOWN_TIMEOUT = 1.0  # seconds in-flight API requests get when the server stops


def _api_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class FaultProxyServer:
    """A Toxiproxy-compatible API on ``host:port`` and the proxies it creates."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.host = host
        self._requested_port = port
        self.proxies = ProxyCollection()
        self._api = ProxyApi(self.proxies)
        self._runner: web.ServerRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxyServer is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{format_address(self.host, self.port)}"

    async def start(self) -> None:
        sock = _api_socket(self.host, self._requested_port)
        self._port = sock.getsockname()[1]
        server = web.Server(self._api.handle, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=API_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner
        log.info("fault proxy API listening", extra={"fields": {"url": self.url}})

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.proxies.close()
        await self._api.close()

    async def __aenter__(self) -> FaultProxyServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class ThreadedFaultProxy:
    """A :class:`FaultProxyServer` on its own thread and event loop.

    ``with ThreadedFaultProxy() as fp: Toxiproxy().update_api_consumer(fp.host, fp.port)``.
    Starting and stopping each wait at most ``timeout`` seconds.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, *, timeout: float = 5.0) -> None:
        self.host = host
        self._requested_port = port
        self._timeout = timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ThreadedFaultProxy is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{format_address(self.host, self.port)}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._timeout):
            raise TimeoutError(f"fault proxy did not start within {self._timeout:g}s")
        if self._error is not None:
            self._thread.join(self._timeout)
            raise self._error

    def stop(self) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is None or stop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:
            pass  # the loop already ended
        thread.join(self._timeout)
        if thread.is_alive():
            raise TimeoutError(f"fault proxy did not stop within {self._timeout:g}s")

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if self._ready.is_set():
                log.exception("fault proxy thread failed")
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with FaultProxyServer(self.host, self._requested_port) as server:
            self._port = server.port
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedFaultProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
