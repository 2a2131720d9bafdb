"""Identity and access across real node processes (issue 18, "Must show").

One three-node cluster with root credentials (given through the environment, as operators
do) serves the whole module; every test makes its own keys and buckets.

The stated bound (dfsring.replication.access.service): a deleted or disabled key is refused
by every node at most TTL (5 s) + one request timeout (5 s) after the delete was
acknowledged; in practice at once, since the change is announced to every member.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dfsring.cli.launcher import NodeProcess
from dfsring.http.auth import ROUTE_NEEDS
from dfsring.node import build_app, build_peer_app
from dfsring.replication.access.service import AccessSettings
from dfsring.testing.localcluster import start_cluster
from dfsring.testing.wait import wait_until
from tests.cluster.accesskit import AuthCluster, Resp, bearer, call

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]
REQUEST_TIMEOUT_S = 5.0
DELETE_BOUND_S = AccessSettings().ttl_s + REQUEST_TIMEOUT_S
PLACEHOLDERS = {"bucket": "a", "key": "k", "path": "p", "node_id": "node9",
                "access_key": "DKAAAAAAAAAAAAAAAAAA", "action": "rotate", "kind": "replica-read",
                "asset": "app.js"}
# The console's public routes (dfsring.http.console): its page and assets, the API docs, and
# the login form, which checks the key it is given itself (here: a 400, the body is "{}").
CONSOLE_PUBLIC = {"/ui", "/ui/{asset}", "/v1/openapi.json", "/v1/docs", "/v1/docs/{asset}",
                  "/v1/console/login"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthCluster]:
    with AuthCluster(3, tmp_path_factory.mktemp("access"),
                     extra_args=("--request-timeout", str(REQUEST_TIMEOUT_S))) as cluster:
        yield cluster


def bucket_name() -> str:
    return f"b-{secrets.token_hex(4)}"


def new_key(cluster: AuthCluster, node: NodeProcess, **body: Any) -> tuple[str, str]:
    got = cluster.as_root(node, "POST", "/v1/admin/keys", body=body)
    assert got.status == 201, got.doc
    return got.doc["access_key"], got.doc["secret_key"]


def audit_lines(node: NodeProcess, request_id: str) -> list[str]:
    text = node.spec.log_path.read_text(errors="replace")
    return [line for line in text.splitlines()
            if "dfsring.audit" in line and f"request_id={request_id}" in line]


def assert_forbidden(got: Resp, missing: str, node: NodeProcess, who: str) -> None:
    assert got.status == 403, got.doc
    doc = got.doc
    assert doc["type"].endswith("/forbidden") and doc["missing_grant"] == missing, doc
    lines = wait_until(lambda: audit_lines(node, doc["request_id"]), timeout=5.0,
                       message=f"the audit line of {doc['request_id']}")
    assert len(lines) == 1
    line = lines[0]
    for part in (f"who={who}", "decision=refused", "reason=forbidden", "status=403",
                 "peer=127.0.0.1"):
        assert part in line, line


def test_read_key_cannot_write_read_another_bucket_or_call_admin(cluster: AuthCluster) -> None:
    n1, n2, n3 = cluster.nodes
    a, b = bucket_name(), bucket_name()
    for bucket in (a, b):
        assert cluster.as_root(n1, "PUT", f"/v1/kv/{bucket}/x", body=b"data").status == 204
    access, secret = new_key(cluster, n1, name="reader")
    got = cluster.as_root(n1, "PUT", f"/v1/buckets/{a}/grants/{access}", body={"role": "read"})
    assert got.status == 200, got.doc
    creds = bearer(access, secret)
    assert call(n2.url, "GET", f"/v1/kv/{a}/x", headers=creds).body == b"data"

    assert_forbidden(call(n2.url, "PUT", f"/v1/kv/{a}/y", headers=creds, body=b"no"),
                     f"write on bucket {a}", n2, access)
    assert_forbidden(call(n3.url, "GET", f"/v1/kv/{b}/x", headers=creds),
                     f"read on bucket {b}", n3, access)
    assert_forbidden(call(n1.url, "GET", "/v1/admin/keys", headers=creds), "admin", n1, access)
    assert_forbidden(call(n1.url, "POST", "/v1/node/gc", headers=creds), "admin", n1, access)
    # a bucket that does not exist reads exactly like one that does
    ghost = call(n3.url, "GET", f"/v1/kv/{bucket_name()}/x", headers=creds).doc
    real = call(n3.url, "GET", f"/v1/kv/{b}/x", headers=creds).doc
    assert (ghost["status"], ghost["title"]) == (real["status"], real["title"]) == (403,
                                                                                  "Forbidden")


def route_list(tmp_path: Path, *, peer: bool = False) -> list[tuple[str, str]]:
    """(method, canonical) of every route of the node's real client app (node.build_app),
    or of its peer app (node.build_peer_app)."""

    async def routes() -> list[tuple[str, str]]:
        local = await start_cluster(tmp_path, 1, gossip=False)
        try:
            build = build_peer_app if peer else build_app
            app = build(local.nodes[0].cfg, local.nodes[0].svc)
            return sorted({(r.method, r.resource.canonical) for r in app.router.routes()
                           if r.resource is not None})
        finally:
            await local.stop()

    return asyncio.run(routes())


def concrete(route: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PLACEHOLDERS[m.group(1)], route)


def test_every_endpoint_refuses_unauthenticated_calls(cluster: AuthCluster,
                                                      tmp_path: Path) -> None:
    """Enumerates the apps' routes, so a new route cannot slip through: each is called on a
    real node without credentials; only /health and /metrics answer, every peer route
    (on the peer listener) wants the cluster secret, and everything else is a 401 problem."""
    node = cluster.nodes[0]
    peer_routes = route_list(tmp_path / "peer", peer=True)
    assert peer_routes
    for method, route in peer_routes:
        got = call(f"http://{node.peer_address}", method, concrete(route), body=b"\x80")
        assert got.status == 401, (method, route, got.status)
    routes = route_list(tmp_path / "client")
    assert len(routes) == len(ROUTE_NEEDS)
    public = {"/health", "/metrics"}
    for method, route in routes:
        sent = "GET" if method == "*" else method
        got = call(node.url, sent, concrete(route), body=b"{}" if sent in ("PUT", "POST")
                   else None)
        if route in public:
            assert got.status == 200, (method, route, got.status)
        elif route in CONSOLE_PUBLIC:
            assert got.status in (200, 400, 404), (method, route, got.status)
        else:
            assert got.status == 401, (method, route, got.status, got.body[:200])
            assert got.headers["www-authenticate"].startswith("Bearer"), (method, route)
            if method != "HEAD":  # a HEAD answer has no body to hold the problem
                assert got.doc["type"].endswith("/unauthenticated"), (method, route, got.doc)


def test_a_rotated_key_works_at_once_on_every_node(cluster: AuthCluster) -> None:
    n1, n2, n3 = cluster.nodes
    bucket = bucket_name()
    access, old = new_key(cluster, n1)
    cluster.as_root(n1, "PUT", f"/v1/buckets/{bucket}/grants/{access}", body={"role": "write"})
    for node in cluster.nodes:  # every node has the key, old secret, in its cache
        assert call(node.url, "PUT", f"/v1/kv/{bucket}/{node.node_id}",
                    headers=bearer(access, old), body=b"v").status == 204
    got = cluster.as_root(n1, "POST", f"/v1/admin/keys/{access}/rotate")
    assert got.status == 200
    new = got.doc["secret_key"]
    for node in (n2, n3, n1):
        key = f"/v1/kv/{bucket}/{node.node_id}"
        assert call(node.url, "GET", key, headers=bearer(access, new)).status == 200
        assert call(node.url, "GET", key, headers=bearer(access, old)).status == 401


def test_a_deleted_key_stops_working_within_the_stated_bound(cluster: AuthCluster) -> None:
    n1 = cluster.nodes[0]
    bucket = bucket_name()
    access, secret = new_key(cluster, n1)
    cluster.as_root(n1, "PUT", f"/v1/buckets/{bucket}/grants/{access}", body={"role": "read"})
    for node in cluster.nodes:
        assert call(node.url, "GET", f"/v1/kv/{bucket}/k",
                    headers=bearer(access, secret)).status == 404
    assert cluster.as_root(n1, "DELETE", f"/v1/admin/keys/{access}").status == 204
    deleted_at = time.monotonic()
    for node in cluster.nodes:
        wait_until(lambda node=node: call(node.url, "GET", f"/v1/kv/{bucket}/k",
                                          headers=bearer(access, secret)).status == 401,
                   timeout=max(0.0, DELETE_BOUND_S - (time.monotonic() - deleted_at)),
                   message=f"{node.node_id} refuses the deleted key")
    assert cluster.as_root(n1, "GET", f"/v1/admin/keys/{access}").status == 404


def test_a_disabled_key_stops_working_within_the_stated_bound(cluster: AuthCluster) -> None:
    n1, n2, _ = cluster.nodes
    access, secret = new_key(cluster, n1, admin=True)
    assert call(n2.url, "GET", "/v1/cluster/ring", headers=bearer(access, secret)).status == 200
    assert cluster.as_root(n1, "POST", f"/v1/admin/keys/{access}/disable").status == 200
    wait_until(lambda: call(n2.url, "GET", "/v1/cluster/ring",
                            headers=bearer(access, secret)).status == 401,
               timeout=DELETE_BOUND_S, message="the disabled key is refused")


def test_a_public_read_bucket_is_readable_without_credentials_but_not_writable(
        cluster: AuthCluster) -> None:
    n1, n2, n3 = cluster.nodes
    public, private = bucket_name(), bucket_name()
    got = cluster.as_root(n1, "PUT", f"/v1/buckets/{public}", body={"public_read": True})
    assert got.status == 201 and got.doc["public_read"] is True, got.doc
    for bucket in (public, private):
        assert cluster.as_root(n1, "PUT", f"/v1/kv/{bucket}/x", body=b"open").status == 204
    for node in (n2, n3):
        assert call(node.url, "GET", f"/v1/kv/{public}/x").body == b"open"
        assert call(node.url, "GET", f"/v1/kv/{public}").status == 200
        assert call(node.url, "GET", f"/v1/kv/{private}/x").status == 401
        assert call(node.url, "PUT", f"/v1/kv/{public}/x", body=b"vandal").status == 401
        assert call(node.url, "DELETE", f"/v1/kv/{public}/x").status == 401
    stranger = new_key(cluster, n1)
    got = call(n2.url, "PUT", f"/v1/kv/{public}/x", headers=bearer(*stranger), body=b"no")
    assert got.status == 403 and got.doc["missing_grant"] == f"write on bucket {public}"
    assert call(n3.url, "GET", f"/v1/kv/{public}/x").body == b"open"
