"""TLS on loopback: the contexts of dfsring.transport.tls against real handshakes.

Certificates come from dfsring certs' own functions (make_ca, make_node_cert), so these tests
also pin that what the command issues is usable as server and as client certificate.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from dfsring.cli.certs import NodePaths, make_ca, make_node_cert
from dfsring.client import DfsClient
from dfsring.transport import PeerUnavailable
from dfsring.transport.rpc import RpcClient
from dfsring.transport.tls import (
    TlsReloader,
    client_context_for,
    client_server_context,
    peer_client_context,
    peer_server_context,
)

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Cfg:
    tls_cert: str
    tls_key: str
    tls_ca: str


@dataclass(frozen=True)
class Pki:
    node: NodePaths  # signed by the cluster CA, SAN 127.0.0.1
    client: NodePaths  # another certificate of the cluster CA
    rogue: NodePaths  # signed by another CA, SAN 127.0.0.1
    wrong_ip: NodePaths  # cluster CA, but for 10.0.0.5 only

    def cfg(self, paths: NodePaths) -> Cfg:
        return Cfg(str(paths.cert), str(paths.key), str(self.node.ca))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    make_ca(root / "ca")
    make_ca(root / "rogue-ca")
    return Pki(
        node=make_node_cert(root / "ca", "node1", ["127.0.0.1"], ["localhost"], root / "certs"),
        client=make_node_cert(root / "ca", "node2", ["127.0.0.1"], [], root / "certs"),
        rogue=make_node_cert(root / "rogue-ca", "rogue", ["127.0.0.1"], [], root / "certs"),
        wrong_ip=make_node_cert(root / "ca", "far", ["10.0.0.5"], [], root / "certs"))


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    runners: list[web.AppRunner] = []

    async def start(ctx: ssl.SSLContext | None) -> int:
        app = web.Application()
        app.router.add_get("/health", _hello)
        app.router.add_post("/internal/v1/{kind}", _hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, ssl_context=ctx)
        await site.start()
        runners.append(runner)
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    yield start
    for runner in runners:
        await runner.cleanup()


async def _handshake(port: int, ctx: ssl.SSLContext) -> x509.Certificate:
    """One TLS connection that also sends a request (TLS 1.3 reports a refused client
    certificate only after the client's first read); the server's certificate."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(HOST, port, ssl=ctx, server_hostname=HOST), 5)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(64), 5)
        if not head:
            raise ssl.SSLError("connection closed before an answer")
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der)
    finally:
        writer.close()


async def test_peer_listener_refuses_a_certificate_from_another_ca(serve, pki: Pki) -> None:
    port = await serve(peer_server_context(pki.cfg(pki.node)))
    rogue = client_context_for(pki.node.ca, cert=pki.rogue.cert, key=pki.rogue.key)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _handshake(port, rogue)


async def test_peer_listener_refuses_a_client_without_certificate(serve, pki: Pki) -> None:
    port = await serve(peer_server_context(pki.cfg(pki.node)))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _handshake(port, client_context_for(pki.node.ca))


async def test_peer_listener_accepts_a_certificate_of_the_cluster_ca(serve, pki: Pki) -> None:
    port = await serve(peer_server_context(pki.cfg(pki.node)))
    cert = await _handshake(port, client_context_for(pki.node.ca, cert=pki.client.cert,
                                                     key=pki.client.key))
    assert cert.subject.rfc4514_string() == "CN=node1"


async def test_client_listener_serves_https_our_client_verifies(serve, pki: Pki) -> None:
    port = await serve(client_server_context(pki.cfg(pki.node)))
    async with DfsClient(f"https://{HOST}:{port}",
                         ssl=client_context_for(pki.node.ca)) as client:
        assert (await client.health())["status"] == "ok"


async def test_client_refuses_a_node_certificate_from_another_ca(serve, pki: Pki) -> None:
    port = await serve(client_server_context(pki.cfg(pki.rogue)))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _handshake(port, client_context_for(pki.node.ca))


async def _rpc_reaches(port: int, ctx: ssl.SSLContext) -> str:
    """'ok' if the TLS handshake and the request went through (the stub's JSON is no reply
    our message catalogue reads), else why the call never got an answer."""
    rpc = RpcClient("secret", ssl=ctx)
    try:
        status, _, _ = await rpc._post(f"{HOST}:{port}", "ping", b"", {}, 5.0)
        return "ok" if status == 200 else f"HTTP {status}"
    except PeerUnavailable as exc:
        return str(exc)
    finally:
        await rpc.close()


async def test_peer_call_checks_the_peer_address_against_its_certificate(serve,
                                                                         pki: Pki) -> None:
    dialer = peer_client_context(pki.cfg(pki.client))
    assert dialer is not None
    good = await serve(peer_server_context(pki.cfg(pki.node)))
    assert await _rpc_reaches(good, dialer) == "ok"
    far = await serve(peer_server_context(pki.cfg(pki.wrong_ip)))
    assert "certificate" in (await _rpc_reaches(far, dialer)).lower()


async def test_peer_call_presenting_another_ca_fails_at_the_handshake(serve, pki: Pki) -> None:
    port = await serve(peer_server_context(pki.cfg(pki.node)))
    rogue = peer_client_context(Cfg(str(pki.rogue.cert), str(pki.rogue.key), str(pki.node.ca)))
    assert rogue is not None
    assert await _rpc_reaches(port, rogue) != "ok"


async def test_reload_serves_the_new_certificate_to_new_connections(serve, pki: Pki,
                                                                    tmp_path: Path) -> None:
    ca_dir = pki.node.ca.parent
    live = make_node_cert(ca_dir, "live", ["127.0.0.1"], [], tmp_path)
    cfg = pki.cfg(live)
    ctx = client_server_context(cfg)
    assert ctx is not None
    port = await serve(ctx)
    check = client_context_for(pki.node.ca)
    before = (await _handshake(port, check)).serial_number
    make_node_cert(ca_dir, "live", ["127.0.0.1"], [], tmp_path, force=True)
    info = TlsReloader(cfg, [ctx]).reload()
    after = (await _handshake(port, check)).serial_number
    assert after != before and after == info.serial


async def test_reload_with_a_broken_file_keeps_the_old_certificate(serve, pki: Pki,
                                                                   tmp_path: Path) -> None:
    live = make_node_cert(pki.node.ca.parent, "live", ["127.0.0.1"], [], tmp_path)
    cfg = pki.cfg(live)
    ctx = client_server_context(cfg)
    assert ctx is not None
    port = await serve(ctx)
    check = client_context_for(pki.node.ca)
    before = (await _handshake(port, check)).serial_number
    live.cert.write_text("-----BEGIN CERTIFICATE-----\nbroken\n")
    reloader = TlsReloader(cfg, [ctx])
    with pytest.raises(ValueError, match="tls-cert"):
        reloader.reload()
    reloader.reload_and_log()  # the SIGHUP path: logs, does not raise
    assert (await _handshake(port, check)).serial_number == before


async def test_https_client_session_with_the_cli_context(serve, pki: Pki) -> None:
    """The CLI's sessions take the same context on their connector."""
    port = await serve(client_server_context(pki.cfg(pki.node)))
    connector = aiohttp.TCPConnector(ssl=client_context_for(pki.node.ca))
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get(f"https://{HOST}:{port}/health") as resp:
        assert resp.status == 200
