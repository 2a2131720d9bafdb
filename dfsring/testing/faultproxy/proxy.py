"""One proxy: its listener, its connections and their two links (Toxiproxy's ``proxy.go``).

Data-plane rules (TOXIPROXY.md §5):

- accept the client first, then dial the upstream; if the dial fails close the client at once
  (the client sees accept-then-EOF, not a refusal);
- each direction is its own link and toxic chain; end-of-stream on either side closes the
  destination fully, which ends the other direction too;
- disabling closes the listener (new clients are refused) and every connection (FIN), keeping
  the toxics; enabling binds ``listen`` again, which after the first start is the numeric
  address actually bound, so the port stays the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass

from dfsring.testing.faultproxy.chain import ToxicCollection
from dfsring.testing.faultproxy.link import Link, Peer
from dfsring.testing.faultproxy.spec import DOWNSTREAM, UPSTREAM, ProxyInput
from dfsring.testing.faultproxy.wire import ApiError, format_address, split_host_port

log = logging.getLogger("dfsring.faultproxy")

DIAL_TIMEOUT = 10.0  # seconds; Go has none, but a stand-in must not hang on a black hole
CLOSE_GRACE_DRAIN = 10.0  # seconds a closed socket may take to flush before it is aborted
CLOSE_GRACE_STOP = 0.25  # the same when the proxy is being stopped
STOP_WAIT = 0.75  # seconds stop() waits for connections to finish closing
MAX_CONNECTIONS = 1024  # per proxy; further clients are accepted and closed at once
BACKLOG = 128
LOOKUP_TIMEOUT = 0.5  # seconds to resolve a listen host name


@dataclass
class ProxyStats:
    """Counters behind the stand-in-only ``/standin/stats`` route."""

    connections_total: int = 0
    connections_active: int = 0
    dial_failures: int = 0
    bytes_upstream: int = 0
    bytes_downstream: int = 0

    def add_bytes(self, direction: str, count: int) -> None:
        if direction == UPSTREAM:
            self.bytes_upstream += count
        else:
            self.bytes_downstream += count

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


async def bind_listener(listen: str) -> socket.socket:
    """A listening socket for a Go-style ``host:port``; errors read like Go's ``net.Listen``.

    ``localhost`` binds 127.0.0.1 and an empty host binds every interface (dual-stack where
    possible), so the reported address is always numeric.
    """
    try:
        host, port = split_host_port(listen) if listen else ("", 0)  # Go: "" is any, any port
    except ValueError as exc:
        raise ApiError(f"listen tcp: {exc}", 500) from None
    try:
        family, ip = await _resolve_listen_host(host, port)
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise ApiError(f"listen tcp {listen}: {_go_errno(exc)}", 500) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((ip, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ApiError(f"listen tcp {listen}: bind: {_go_errno(exc)}", 500) from None
    return sock


async def _resolve_listen_host(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    if host == "":
        return (socket.AF_INET6, "::") if socket.has_ipv6 else (socket.AF_INET, "0.0.0.0")
    if host == "localhost":
        return socket.AF_INET, "127.0.0.1"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return (socket.AF_INET6 if literal.version == 6 else socket.AF_INET), str(literal)
    try:
        async with asyncio.timeout(LOOKUP_TIMEOUT):  # the API must answer within 1 s
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
    except TimeoutError:
        raise OSError(f"lookup {host}: timed out") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # Go prefers IPv4 to listen on
    family, _type, _proto, _name, address = infos[0]
    return socket.AddressFamily(family), str(address[0])


def _go_errno(exc: OSError) -> str:
    """Go prints syscall errors in lower case ("address already in use")."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _bound_address(sock: socket.socket) -> str:
    ip, port = sock.getsockname()[:2]
    return format_address(ip, port)


class Connection:
    """A client and its upstream: dial, run both links, then close both sockets."""

    def __init__(
        self, proxy: Proxy, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self._proxy = proxy
        self._client = Peer(client_reader, client)
        self._upstream: Peer | None = None
        self.task: asyncio.Task[None] | None = None

    def _peers(self) -> list[Peer]:
        return [p for p in (self._client, self._upstream) if p is not None]

    async def run(self) -> None:
        stats = self._proxy.stats
        try:
            self._upstream = await self._dial()
            if self._upstream is None:
                stats.dial_failures += 1
                return
            stats.connections_active += 1
            try:
                await self._carry(self._upstream)
            finally:
                stats.connections_active -= 1
        except Exception:
            log.exception("proxied connection of %s failed", self._proxy.name)
        finally:
            task = asyncio.current_task()
            stopping = task is not None and task.cancelling() > 0
            await self._close_sockets(CLOSE_GRACE_STOP if stopping else CLOSE_GRACE_DRAIN)

    async def _dial(self) -> Peer | None:
        try:
            host, port = split_host_port(self._proxy.upstream)
            async with asyncio.timeout(DIAL_TIMEOUT):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError, ValueError) as exc:
            log.info(
                "cannot reach upstream; closing client",
                extra={"fields": {"proxy": self._proxy.name, "error": repr(exc)}},
            )
            return None
        return Peer(reader, writer)

    async def _carry(self, upstream: Peer) -> None:
        toxics, stats = self._proxy.toxics, self._proxy.stats
        links = [
            Link(
                UPSTREAM,
                self._client,
                upstream,
                toxics.chain(UPSTREAM),
                self.reset,
                lambda n: stats.add_bytes(UPSTREAM, n),
            ),
            Link(
                DOWNSTREAM,
                upstream,
                self._client,
                toxics.chain(DOWNSTREAM),
                self.reset,
                lambda n: stats.add_bytes(DOWNSTREAM, n),
            ),
        ]
        for link in links:  # no await since chain(): the links miss no change
            toxics.attach(link)
        tasks = [asyncio.create_task(link.run()) for link in links]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for link in links:
                toxics.detach(link)

    def reset(self) -> None:
        """RST both sockets: SO_LINGER {on, 0 s} then abort, so no FIN is sent."""
        for peer in self._peers():
            transport = peer.writer.transport
            if transport.is_closing():
                continue
            sock = peer.writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            peer.reader.feed_eof()

    async def _close_sockets(self, grace: float) -> None:
        """Close both sockets (FIN); abort any that has not flushed within ``grace`` seconds.

        asyncio keeps a closed transport open until its write buffer is flushed, which a peer
        that never reads would make forever; the grace is short when the proxy is stopping.
        """
        peers = self._peers()
        for peer in peers:
            peer.close()
        waiters = [asyncio.ensure_future(peer.writer.wait_closed()) for peer in peers]
        try:
            await asyncio.wait(waiters, timeout=grace)
        finally:
            for peer, waiter in zip(peers, waiters, strict=True):
                if not waiter.done():
                    peer.writer.transport.abort()
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)


class Proxy:
    """A named listener forwarding to ``upstream`` through its :class:`ToxicCollection`."""

    def __init__(self, name: str, listen: str, upstream: str) -> None:
        self.name, self.listen, self.upstream = name, listen, upstream
        self.enabled = False
        self.toxics = ToxicCollection()
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxics.all()],
        }

    async def start(self) -> None:
        """Listen on ``listen`` (which then becomes the numeric bound address). Idempotent."""
        if self.enabled:
            return
        sock = await bind_listener(self.listen)
        try:
            self._server = await asyncio.start_server(self._accept, sock=sock)
        except OSError as exc:
            sock.close()
            raise ApiError(f"listen tcp {self.listen}: {_go_errno(exc)}", 500) from None
        self.listen = _bound_address(sock)
        self.enabled = True
        log.info("proxy started", extra={"fields": {"proxy": self.name, "listen": self.listen}})

    async def stop(self) -> None:
        """Refuse new clients and close every connection; toxics stay. Idempotent."""
        if not self.enabled:
            return
        self.enabled = False
        server, self._server = self._server, None
        if server is not None:
            server.close()  # the listening socket closes now: new clients are refused
        tasks = [c.task for c in self._connections if c.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT)
        # server.wait_closed() is not needed: connections are ours to track (and on 3.11 it
        # returns at once anyway); the listening socket closed in server.close().
        log.info("proxy stopped", extra={"fields": {"proxy": self.name}})

    async def update(self, change: ProxyInput) -> None:
        """Toxiproxy's ``Proxy.Update``: a new listen or upstream restarts; then enable/disable."""
        listen = self.listen if change.listen is None else change.listen
        upstream = self.upstream if change.upstream is None else change.upstream
        enabled = self.enabled if change.enabled is None else change.enabled
        if listen != self.listen or upstream != self.upstream:
            await self.stop()
            self.listen, self.upstream = listen, upstream
        if enabled and not self.enabled:
            await self.start()
        elif not enabled and self.enabled:
            await self.stop()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Called by the listener for each client; the connection task is tracked, never lost."""
        self.stats.connections_total += 1
        if not self.enabled or len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        connection = Connection(self, reader, writer)
        connection.task = asyncio.create_task(connection.run())
        self._connections.add(connection)
        connection.task.add_done_callback(lambda _task: self._connections.discard(connection))
