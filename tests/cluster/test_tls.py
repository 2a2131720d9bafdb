"""Mutual TLS between real node processes (issue 18, part 5).

Every node gets its own certificate from one cluster CA (dfsring certs' make_ca and
make_node_cert). The must-show: a node whose certificate another CA signed can neither join
nor send a single peer message, even though it trusts the cluster CA itself. And certificates
are reloaded on SIGHUP without a restart, a broken file leaving the node serving.

Peer messages are sent to `peer_address(node)`: today the node's one listener; once peers have
a listener of their own (--peer-port), that one line changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pytest
from cryptography import x509

from dfsring.cli.certs import NodePaths, make_ca, make_node_cert
from dfsring.cli.launcher import LocalCluster, NodeProcess, TlsFiles
from dfsring.cli.main import main as cli_main
from dfsring.client import DfsClient
from dfsring.testing.wait import wait_until
from dfsring.transport import PeerUnavailable
from dfsring.transport.messages import GossipAck, GossipSyn
from dfsring.transport.rpc import RpcClient
from dfsring.transport.tls import client_context_for, peer_client_context
from tests.conftest import ClusterFactory

HOST = "127.0.0.1"
NEVER_JOINS_S = 6.0  # twelve gossip intervals: a node that could join would have by then


def peer_address(node: NodeProcess) -> str:
    """Where a node takes peer messages: its --peer-port listener."""
    return node.peer_address


@dataclasses.dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path
    ca: Path

    @property
    def tls_cert(self) -> str:
        return str(self.cert)

    @property
    def tls_key(self) -> str:
        return str(self.key)

    @property
    def tls_ca(self) -> str:
        return str(self.ca)

    def files(self) -> TlsFiles:
        return TlsFiles(self.cert, self.key, self.ca)


def _issue(ca: Path, name: str, out: Path, *, force: bool = False) -> NodePaths:
    return make_node_cert(ca, name, [HOST], ["localhost"], out, force=force)


def _files(paths: NodePaths) -> TlsFiles:
    return TlsFiles(paths.cert, paths.key, paths.ca)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_ca(tmp_path / "ca")
    return tmp_path


def _mtls_cluster(cluster_factory: ClusterFactory, pki: Path, size: int = 3) -> LocalCluster:
    """`size` nodes, each with its own certificate; probes present a client one."""
    probe = _files(_issue(pki / "ca", "probe", pki / "certs"))
    per_node = {i: _files(_issue(pki / "ca", f"node{i}", pki / "certs")).args()
                for i in range(1, size + 1)}
    return cluster_factory(size, tls=probe, node_args=per_node)


def _client_tls(pki: Path) -> ssl.SSLContext:
    """Our client, presenting a certificate: the one listener still asks every caller."""
    paths = _issue(pki / "ca", "client", pki / "certs", force=True)
    return client_context_for(paths.ca, cert=paths.cert, key=paths.key)


async def _put_get(a: NodeProcess, b: NodeProcess, tls: ssl.SSLContext) -> bytes | None:
    creds = a.credentials
    async with DfsClient(a.url, ssl=tls, credentials=creds) as one, \
            DfsClient(b.url, ssl=tls, credentials=creds) as other:
        await one.put("tls", "k", b"over mutual TLS")
        found = await other.get("tls", "k")
        return None if found is None else found.value


def test_three_nodes_with_mutual_tls_replicate(cluster_factory: ClusterFactory,
                                              pki: Path) -> None:
    cluster = _mtls_cluster(cluster_factory, pki)
    assert all(url.startswith("https://") for url in cluster.urls)
    got = asyncio.run(_put_get(cluster.nodes[0], cluster.nodes[2], _client_tls(pki)))
    assert got == b"over mutual TLS"


def _rogue_tls(pki: Path) -> Tls:
    """A certificate from another CA, on a node that trusts both CAs: only the cluster's
    refusal of its certificate keeps it out."""
    make_ca(pki / "rogue-ca")
    paths = make_node_cert(pki / "rogue-ca", "rogue", [HOST], ["localhost"], pki / "rogue")
    bundle = pki / "rogue" / "both-cas.pem"
    bundle.write_bytes((pki / "ca" / "ca.pem").read_bytes() + paths.ca.read_bytes())
    return Tls(paths.cert, paths.key, bundle)


def _members(node: NodeProcess) -> set[str]:
    return {m["node_id"] for m in node.get_json("/v1/cluster/members")}


def test_node_with_certificate_of_another_ca_cannot_join(cluster_factory: ClusterFactory,
                                                        pki: Path) -> None:
    cluster = _mtls_cluster(cluster_factory, pki)
    rogue_tls = _rogue_tls(pki)
    rogue = cluster.add_node(rogue_tls.files().args(), start=False)
    rogue.spec = dataclasses.replace(rogue.spec, tls=rogue_tls.files())
    rogue.start()
    wait_until(lambda: "founding" in _health(rogue), timeout=20,
               message="the rogue node asked its seed and reported why it waits")
    deadline = time.monotonic() + NEVER_JOINS_S
    while time.monotonic() < deadline:  # bounded: it must never happen in the window
        health = _health(rogue)
        assert health["status"] != "ok" and health["members"] <= 1, health
        for node in cluster.nodes[:3]:
            assert rogue.node_id not in _members(node)
        time.sleep(0.25)


def _health(node: NodeProcess) -> dict[str, Any]:
    """/health, also while it answers 503 (joining): the body still tells."""
    try:
        return node.health()
    except HTTPError as exc:
        doc: dict[str, Any] = json.loads(exc.read())
        return doc


async def _gossip_syn(address: str, tls: Tls, secret: str) -> GossipAck:
    dialer = peer_client_context(tls)
    rpc = RpcClient(secret, ssl=dialer)
    try:
        return await rpc.call(address, GossipSyn("", "probe", (), 0, "", ()), GossipAck, 5.0)
    finally:
        await rpc.close()


def test_node_with_certificate_of_another_ca_cannot_send_a_peer_message(
        cluster_factory: ClusterFactory, pki: Path) -> None:
    cluster = _mtls_cluster(cluster_factory, pki)
    target = peer_address(cluster.nodes[0])
    good = _issue(pki / "ca", "caller", pki / "certs")
    ack = asyncio.run(_gossip_syn(target, Tls(good.cert, good.key, good.ca), cluster.secret))
    assert ack.ring is not None  # the same call with a cluster certificate goes through
    rogue = _rogue_tls(pki)
    with pytest.raises(PeerUnavailable):
        asyncio.run(_gossip_syn(target, rogue, cluster.secret))
    # Where: the handshake itself. Under TLS 1.3 the server's refusal reaches the client only
    # at its first read (aiohttp: "Server disconnected"); TLS 1.2 shows it in the handshake.
    ca = pki / "ca" / "ca.pem"
    peer_port = cluster.nodes[0].spec.peer_port
    _served_serial(cluster.nodes[0], ca, present=_files(good), tls12=True, port=peer_port)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _served_serial(cluster.nodes[0], ca, present=rogue, tls12=True, port=peer_port)
    # the client listener asks no certificate: API keys authenticate clients
    _served_serial(cluster.nodes[0], ca, present=rogue, tls12=True)


def _served_serial(node: NodeProcess, ca: Path, *, present: Tls | TlsFiles | None = None,
                   tls12: bool = False, port: int | None = None) -> int:
    """The serial of the certificate a fresh TLS handshake with the node's client listener
    (or `port`) is given, presenting `present` (default: the launcher's probe certificate)."""
    mine = present or node.spec.tls
    assert mine is not None
    ctx = client_context_for(ca, cert=mine.cert, key=mine.key)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    async def handshake() -> int:
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            HOST, port or node.spec.port, ssl=ctx, server_hostname=HOST), 5)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            return int(x509.load_der_x509_certificate(der).serial_number)
        finally:
            writer.close()

    return asyncio.run(handshake())


def _log_has(node: NodeProcess, text: str) -> bool:
    return text in node.log_path.read_text(errors="replace")


def test_sighup_reloads_a_replaced_certificate_and_survives_a_broken_one(
        cluster_factory: ClusterFactory, pki: Path) -> None:
    cluster = _mtls_cluster(cluster_factory, pki, size=1)
    node = cluster.nodes[0]
    ca = pki / "ca" / "ca.pem"
    before = _served_serial(node, ca)
    renewed = _issue(pki / "ca", "node1", pki / "certs", force=True)
    assert node.pid is not None
    os.kill(node.pid, signal.SIGHUP)
    new = wait_until(lambda: (s := _served_serial(node, ca)) != before and s, timeout=10,
                     message="a fresh connection gets the renewed certificate")
    assert new == x509.load_pem_x509_certificate(renewed.cert.read_bytes()).serial_number
    assert node.running

    renewed.cert.write_text("-----BEGIN CERTIFICATE-----\nbroken\n")
    os.kill(node.pid, signal.SIGHUP)
    wait_until(lambda: _log_has(node, "TLS reload failed"), timeout=10,
               message="the failed reload is logged")
    assert node.running and node.health()["status"] == "ok"
    assert _served_serial(node, ca) == new


def test_cli_verifies_an_https_node_against_the_ca_it_is_given(
        cluster_factory: ClusterFactory, pki: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _issue(pki / "ca", "node1", pki / "certs")
    cluster = cluster_factory(1, n=1, r=1, w=1,
                              tls=dataclasses.replace(_files(paths), mutual=False))
    monkeypatch.setenv("DFSRING_ACCESS_KEY", cluster.credentials.access_key)
    monkeypatch.setenv("DFSRING_SECRET_KEY", cluster.credentials.secret_key)
    url = cluster.nodes[0].url
    assert url.startswith("https://")
    ca = ["--url", url, "--ca", str(paths.ca)]
    assert cli_main(["put", *ca, "b/k", "secret value"]) == 0
    assert cli_main(["get", *ca, "b/k"]) == 0
    assert capsys.readouterr().out == "secret value"
    assert cli_main(["status", *ca]) == 0
    capsys.readouterr()
    other = pki / "other-ca"
    make_ca(other)
    assert cli_main(["get", "--url", url, "--ca", str(other / "ca.pem"), "b/k"]) == 1
    err = capsys.readouterr().err
    assert "certificate" in err.lower() and len(err.strip().splitlines()) == 1, err
