"""`dfsring cluster --tls`, CA discovery and POST /v1/admin/tls/reload over real processes
(issue 18, parts 4-5).

The must-shows: after `dfsring cluster --tls`, `dfsring put` on an https:// URL works from the
same directory without a flag (the CA and the root credentials are both found under
./dfsring-data), and so does the Python client; a node reloads a certificate replaced on disk
when asked over the API, a fresh TLS client then seeing the new serial, while a broken file
is a 400 problem naming it and the node keeps serving the certificate it had.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509

from dfsring.cli.certs import NodePaths, make_ca, make_node_cert
from dfsring.cli.launcher import LocalCluster, NodeProcess, TlsFiles, free_port_block, spawn
from dfsring.cli.main import main as cli_main
from dfsring.client import SyncDfsClient
from dfsring.testing.wait import wait_until
from dfsring.transport.tls import client_context_for
from tests.conftest import ClusterFactory

HOST = "127.0.0.1"
READY_S = 60.0
RELOAD = "/v1/admin/tls/reload"
_OUR_ENV = ("DFSRING_CA", "DFSRING_ACCESS_KEY", "DFSRING_SECRET_KEY", "DFSRING_URL",
            "XDG_CONFIG_HOME")


def _clean_env(home: Path) -> dict[str, str]:
    """This environment without any dfsring setting, and a HOME of its own, so that only
    ./dfsring-data can supply the CA and the credentials."""
    env = {k: v for k, v in os.environ.items() if k not in _OUR_ENV}
    return {**env, "HOME": str(home)}


def _serial(pem: Path) -> int:
    return int(x509.load_pem_x509_certificate(pem.read_bytes()).serial_number)


# --- dfsring cluster --tls, then the CLI and the client with no flag ---------------------------


@pytest.fixture
def tls_cli_cluster(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    """`dfsring cluster --tls --nodes 2` run as a user would, its data dir ./dfsring-data of
    tmp_path; killed if left over (its nodes die with it, by their parent-death signal)."""
    base, peer_base = free_port_block(2), free_port_block(2)
    out = tmp_path / "cli.out"
    argv = [sys.executable, "-m", "dfsring.cli.main", "cluster", "--tls", "--nodes", "2",
            "--n", "2", "--base-port", str(base), "--peer-base-port", str(peer_base),
            "--s3-base-port", str(free_port_block(2)),
            "--data-dir", str(tmp_path / "dfsring-data")]
    with out.open("wb") as fh:
        proc = spawn(argv, output=fh, env=_clean_env(tmp_path / "home"))
    try:
        yield proc, out, base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait(timeout=10)


def _ready(proc: subprocess.Popen[bytes], out: Path) -> str:
    wait_until(lambda: "nodes ready" in out.read_text() or proc.poll() is not None,
               timeout=READY_S, message="dfsring cluster --tls reports its nodes ready")
    text = out.read_text()
    assert proc.poll() is None, text
    return text


def _cli(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dfsring.cli.main", *argv], cwd=cwd,
                          env=_clean_env(cwd / "home"), capture_output=True, text=True,
                          timeout=60, check=False)


def test_cluster_tls_then_cli_put_and_get_over_https_with_no_flag(
        tls_cli_cluster: tuple[subprocess.Popen[bytes], Path, int], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    proc, out, base = tls_cli_cluster
    text = _ready(proc, out)
    url = f"https://{HOST}:{base}"
    assert url in text and f"https://{HOST}:{base + 1}" in text
    ca = tmp_path / "dfsring-data" / "pki" / "ca" / "ca.pem"
    assert str(ca) in text and "PRIVATE KEY" not in text
    put = _cli(tmp_path, "put", "demo/k", "over https", "--url", url)
    assert put.returncode == 0, put.stderr
    got = _cli(tmp_path, "get", "demo/k", "--url", f"https://{HOST}:{base + 1}")
    assert (got.returncode, got.stdout) == (0, "over https"), got.stderr
    # the Python client finds the same CA and credentials from the same directory
    monkeypatch.chdir(tmp_path)
    for name in _OUR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with SyncDfsClient(url) as client:
        found = client.get("demo", "k")
    assert found is not None and found.value == b"over https"
    # elsewhere, without the CA, the node's certificate is not trusted: one clear line
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = _cli(elsewhere, "get", "demo/k", "--url", url)
    assert refused.returncode == 1 and "certificate" in refused.stderr.lower(), refused.stderr


# --- POST /v1/admin/tls/reload -------------------------------------------------------------------


def _https(node: NodeProcess, ca: Path, method: str, path: str,
           headers: dict[str, str]) -> tuple[int, Any]:
    parts = urlsplit(node.url)
    conn = http.client.HTTPSConnection(parts.hostname or HOST, parts.port, timeout=10,
                                       context=client_context_for(ca))
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if body else None
    finally:
        conn.close()


def _served_serial(node: NodeProcess, ca: Path) -> int:
    """The serial a fresh TLS connection to the node's client listener is shown."""
    parts = urlsplit(node.url)
    conn = http.client.HTTPSConnection(parts.hostname or HOST, parts.port, timeout=10,
                                       context=client_context_for(ca))
    try:
        conn.connect()
        assert isinstance(conn.sock, ssl.SSLSocket)
        der = conn.sock.getpeercert(binary_form=True)
        assert der is not None
        return int(x509.load_der_x509_certificate(der).serial_number)
    finally:
        conn.close()


def _issue(ca_dir: Path, name: str, out: Path, *, force: bool = False) -> NodePaths:
    return make_node_cert(ca_dir, name, [HOST], ["localhost"], out, force=force)


def _files(paths: NodePaths) -> TlsFiles:
    return TlsFiles(paths.cert, paths.key, paths.ca)


def _tls_node(cluster_factory: ClusterFactory, tmp_path: Path) -> tuple[LocalCluster, NodePaths]:
    """One node with mutual TLS and its own certificate; the launcher's probes present a
    certificate of their own, so breaking the node's file on disk leaves them working."""
    make_ca(tmp_path / "ca")
    probe = _issue(tmp_path / "ca", "probe", tmp_path / "certs")
    paths = _issue(tmp_path / "ca", "node1", tmp_path / "certs")
    cluster = cluster_factory(1, n=1, r=1, w=1, tls=_files(probe),
                              node_args={1: _files(paths).args()})
    return cluster, paths


def test_tls_reload_route_serves_a_replaced_certificate_and_keeps_it_past_a_broken_one(
        cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    cluster, paths = _tls_node(cluster_factory, tmp_path)
    node, ca = cluster.nodes[0], paths.ca
    before = _served_serial(node, ca)
    renewed = _issue(tmp_path / "ca", "node1", tmp_path / "certs", force=True)
    assert _served_serial(node, ca) == before  # replaced on disk, not yet reloaded
    status, doc = _https(node, ca, "POST", RELOAD, cluster.auth_headers)
    assert status == 200, doc
    assert int(doc["serial"], 16) == _serial(renewed.cert) != before
    assert doc["subject"] == "CN=node1" and doc["not_after"].endswith("Z")
    served = _served_serial(node, ca)
    assert served == _serial(renewed.cert)

    renewed.cert.write_text("-----BEGIN CERTIFICATE-----\nbroken\n")
    status, doc = _https(node, ca, "POST", RELOAD, cluster.auth_headers)
    assert status == 400 and doc["type"].endswith("/bad-request"), doc
    assert str(renewed.cert) in doc["detail"] and "kept" in doc["detail"], doc
    assert node.running and node.health()["status"] == "ok"
    assert _served_serial(node, ca) == served


def test_tls_reload_cli_prints_the_served_certificate(
        cluster_factory: ClusterFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    cluster, paths = _tls_node(cluster_factory, tmp_path)
    monkeypatch.setenv("DFSRING_ACCESS_KEY", cluster.credentials.access_key)
    monkeypatch.setenv("DFSRING_SECRET_KEY", cluster.credentials.secret_key)
    renewed = _issue(tmp_path / "ca", "node1", tmp_path / "certs", force=True)
    url = cluster.nodes[0].url
    assert cli_main(["tls", "reload", "--url", url, "--ca", str(paths.ca)]) == 0
    out = capsys.readouterr().out
    assert f"serial {_serial(renewed.cert):x}" in out and "CN=node1" in out, out
    assert "PRIVATE" not in out


def test_tls_reload_without_tls_is_a_409_problem(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(1, n=1, r=1, w=1)
    node = cluster.nodes[0]
    parts = urlsplit(node.url)
    conn = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=10)
    try:
        conn.request("POST", RELOAD, headers=cluster.auth_headers)
        resp = conn.getresponse()
        doc = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 409 and doc["type"].endswith("/conflict"), doc
    assert "TLS is not configured" in doc["detail"]
