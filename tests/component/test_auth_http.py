"""The auth middleware and the admin API of one real node's app, served on loopback from an
in-process cluster (dfsring.testing.localcluster) with root credentials configured.

What the cluster tests (tests/cluster/test_access.py) show across real processes is not
repeated here; this is the detail: credential parsing, one answer for every bad credential,
the per-source failure limit, expiry, body validation, audit lines without secrets, the
refusal metric, and that the route table covers the app exactly."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from dfsring.core.access import Need
from dfsring.foundation import errors
from dfsring.http.auth import ROUTE_NEEDS, auth_enforced, need_of, root_problem
from dfsring.node import build_app
from dfsring.testing.localcluster import InProcessCluster, start_cluster
from dfsring.testing.wait import async_wait_until

pytestmark = pytest.mark.component
ROOT = ("ROOTKEY", "root-secret-value-0123456789")


def bearer(access: str, secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}:{secret}"}


@dataclass
class Node:
    url: str
    http: aiohttp.ClientSession
    app: Any

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        async with self.http.request(method, self.url + path, headers=headers or {},
                                     **kwargs) as resp:
            body = await resp.read()
            doc = await resp.json() if "json" in resp.content_type else body
            return resp.status, doc, dict(resp.headers)

    async def root(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, doc, _ = await self.call(method, path, bearer(*ROOT), **kwargs)
        return status, doc


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    cluster = await start_cluster(tmp_path, 1, n=1, r=1, w=1, admin_access_key=ROOT[0],
                                  admin_secret_key=ROOT[1], cluster_secret="s" * 16)
    try:
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
async def node(cluster: InProcessCluster) -> AsyncIterator[Node]:
    local = cluster.nodes[0]
    app = build_app(local.cfg, local.svc)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
        yield Node(str(server.make_url("")).rstrip("/"), http, app)


async def new_key(node: Node, **body: Any) -> tuple[str, str]:
    status, doc = await node.root("POST", "/v1/admin/keys", json=body)
    assert status == 201, doc
    return doc["access_key"], doc["secret_key"]


def test_the_route_table_names_exactly_the_routes_of_the_app(node: Node) -> None:
    routes = {(r.method, r.resource.canonical) for r in node.app.router.routes()
              if r.resource is not None}
    assert routes - set(ROUTE_NEEDS) == set(), "a route without an access rule"
    assert set(ROUTE_NEEDS) - routes == set(), "a rule for a route that does not exist"


async def test_bearer_and_x_api_key_both_authenticate(node: Node) -> None:
    assert (await node.root("PUT", "/v1/kv/a/k", data=b"v"))[0] == 204
    for headers in (bearer(*ROOT), {"X-Api-Key": f"{ROOT[0]}:{ROOT[1]}"},
                    {"Authorization": f"bearer  {ROOT[0]}:{ROOT[1]}"}):
        status, _, _ = await node.call("GET", "/v1/kv/a/k", headers)
        assert status == 200, headers


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer nocolon"},
    {"Authorization": "Bearer :secret"},
    {"Authorization": "Basic cm9vdDpyb290"},
    {"Authorization": "Bearer " + "A" * 600 + ":x"},
    {"Authorization": f"Bearer {ROOT[0]}:{ROOT[1]}", "X-Api-Key": f"{ROOT[0]}:{ROOT[1]}"},
])
async def test_malformed_or_ambiguous_credentials_are_a_401_problem(
        node: Node, headers: dict[str, str]) -> None:
    status, doc, hdrs = await node.call("GET", "/v1/kv/a/k", headers)
    assert status == 401 and doc["type"].endswith("/unauthenticated"), doc
    assert doc["request_id"] and hdrs["WWW-Authenticate"].startswith("Bearer")


async def test_unknown_key_wrong_secret_disabled_and_expired_get_one_answer(node: Node) -> None:
    access, secret = await new_key(node)
    disabled, disabled_secret = await new_key(node)
    assert (await node.root("POST", f"/v1/admin/keys/{disabled}/disable"))[0] == 200
    expiring, expiring_secret = await new_key(node, expires_in_s=1)
    answers = []
    for creds in ((access, secret + "x"), ("DK" + "Z" * 18, secret),
                  (disabled, disabled_secret), ("ROOTKEY", "wrong")):
        status, doc, _ = await node.call("GET", "/v1/kv/a/k", bearer(*creds))
        answers.append((status, doc["title"], doc["detail"]))

    async def expired() -> bool:
        status, doc, _ = await node.call("GET", "/v1/kv/a/k", bearer(expiring, expiring_secret))
        if status == 401:
            answers.append((status, doc["title"], doc["detail"]))
        return status == 401

    await async_wait_until(expired, timeout=5.0, interval=0.2, message="the key expires")
    assert len(set(answers)) == 1, answers
    assert (await node.root("POST", f"/v1/admin/keys/{disabled}/enable"))[0] == 200
    await node.root("PUT", f"/v1/buckets/a/grants/{disabled}", json={"role": "read"})
    assert (await node.call("GET", "/v1/kv/a/k", bearer(disabled, disabled_secret)))[0] == 404


async def test_failed_authentications_from_one_source_get_429_with_retry_after(
        node: Node) -> None:
    statuses = []
    for _ in range(25):
        status, doc, headers = await node.call("GET", "/v1/kv/a/k", bearer("ROOTKEY", "bad"))
        statuses.append(status)
    assert statuses[:20] == [401] * 20 and statuses[-1] == 429
    assert int(headers["Retry-After"]) >= 1 and doc["type"].endswith("/too-many-requests")
    # past the limit even the right secret is not checked: that is what bounds guessing
    assert (await node.root("GET", "/v1/cluster/ring"))[0] == 429
    status, _, _ = await node.call("GET", "/v1/kv/a/k")  # no credentials: not an attempt
    assert status == 401


async def test_refusals_are_counted_by_reason(node: Node) -> None:
    await node.call("GET", "/v1/kv/a/k")
    await node.call("GET", "/v1/kv/a/k", bearer("ROOTKEY", "bad"))
    async with node.http.get(node.url + "/metrics") as resp:
        text = await resp.text()
    assert 'dfsring_auth_refusals_total{reason="missing"} 1.0' in text
    assert 'dfsring_auth_refusals_total{reason="bad_credentials"} 1.0' in text


async def test_audit_lines_name_who_and_why_and_never_a_secret(
        node: Node, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dfsring.audit")
    access, secret = await new_key(node, name="audited")
    await node.call("GET", "/v1/admin/keys", bearer(access, secret))
    await node.root("POST", f"/v1/admin/keys/{access}/rotate")
    records = [r for r in caplog.records if r.name == "dfsring.audit"]
    fields = [r.fields for r in records]  # type: ignore[attr-defined]
    assert any(f["who"] == access and f["decision"] == "refused" and f["status"] == 403
               for f in fields)
    assert any(f["who"] == ROOT[0] and f["route"].endswith("{action}") and f["status"] == 200
               for f in fields)
    text = " ".join(str(f) for f in fields) + caplog.text
    assert secret not in text and ROOT[1] not in text


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/admin/keys", b"[1]"),
    ("POST", "/v1/admin/keys", b"{not json"),
    ("POST", "/v1/admin/keys", b'{"expires_in_s": -5}'),
    ("POST", "/v1/admin/keys", b'{"admin": "yes"}'),
    ("POST", "/v1/admin/keys", b'{"name": "x", "colour": "red"}'),
    ("POST", "/v1/admin/keys", b'{"name": "' + b"n" * 5000 + b'"}'),
    ("PUT", "/v1/buckets/a/grants/DKAAAAAAAAAAAAAAAAAA", b'{"role": "god"}'),
    ("PUT", "/v1/buckets/a/grants/not-a-key", b'{"role": "read"}'),
    ("PUT", "/v1/buckets/a/settings", b"{}"),
    ("GET", "/v1/admin/keys/x%2Fy", b""),
])
async def test_admin_bodies_and_names_are_validated_with_a_400(
        node: Node, method: str, path: str, body: bytes) -> None:
    status, doc = await node.root(method, path, data=body)
    assert status in (400, 413), doc
    assert doc["request_id"]


async def test_a_secret_is_returned_on_create_and_rotate_only(node: Node) -> None:
    access, secret = await new_key(node, name="ci")
    for path in (f"/v1/admin/keys/{access}", "/v1/admin/keys"):
        status, doc = await node.root("GET", path)
        assert status == 200 and secret not in str(doc) and "secret" not in str(doc)
    status, doc = await node.root("POST", f"/v1/admin/keys/{access}/rotate")
    assert status == 200 and doc["secret_key"] != secret and doc["rotation"] == 1


async def test_an_owner_manages_grants_on_their_bucket_only(node: Node) -> None:
    owner, owner_secret = await new_key(node)
    other, _ = await new_key(node)
    status, doc = await node.root("PUT", "/v1/buckets/mine", json={"owner": owner})
    assert status == 201 and doc["grants"] == {owner: "owner"}, doc
    as_owner = bearer(owner, owner_secret)
    status, _, _ = await node.call("PUT", f"/v1/buckets/mine/grants/{other}", as_owner,
                                   json={"role": "write"})
    assert status == 200
    status, doc, _ = await node.call("GET", "/v1/buckets/mine", as_owner)
    assert status == 200 and doc["grants"] == {owner: "owner", other: "write"}
    status, doc, _ = await node.call("PUT", f"/v1/buckets/theirs/grants/{other}", as_owner,
                                     json={"role": "write"})
    assert status == 403 and doc["missing_grant"] == "owner of bucket theirs"
    status, doc, _ = await node.call("PUT", "/v1/buckets/new", as_owner, json={})
    assert status == 403 and doc["missing_grant"] == "admin"
    assert (await node.root("PUT", "/v1/buckets/mine", json={}))[0] == 409


def test_metrics_need_admin_only_with_metrics_auth(cluster: InProcessCluster) -> None:
    cfg = cluster.nodes[0].cfg
    assert need_of(("GET", "/metrics"), cfg) is Need.PUBLIC
    assert need_of(("GET", "/metrics"), replace(cfg, metrics_auth=True)) is Need.ADMIN
    assert need_of(("GET", "/health"), replace(cfg, metrics_auth=True)) is Need.PUBLIC


def test_a_route_missing_from_the_table_is_refused(cluster: InProcessCluster) -> None:
    with pytest.raises(errors.Forbidden):
        need_of(("PATCH", "/v1/kv/{bucket}/{key}"), cluster.nodes[0].cfg)


def test_enforcement_is_off_only_when_insecure(cluster: InProcessCluster) -> None:
    cfg = cluster.nodes[0].cfg
    assert auth_enforced(cfg)
    assert not auth_enforced(replace(cfg, insecure=True))
    assert auth_enforced(replace(cfg, admin_access_key="", admin_secret_key=""))
    assert root_problem(replace(cfg, admin_secret_key="")) is not None
    assert root_problem(cfg) is None

