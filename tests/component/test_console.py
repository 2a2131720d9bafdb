"""The console's routes on one real node's app (issue 20): the dashboard document, the
OpenAPI document against the app's router, Swagger UI and /ui served from the package,
and the session login with its cookies and CSRF rule, through the real auth middleware."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from dfsring.http.console.dashboard import MEMBER_TIMEOUT_S
from dfsring.http.console.openapi import document, documented_routes
from dfsring.node import build_app
from dfsring.testing.localcluster import InProcessCluster, start_cluster

pytestmark = pytest.mark.component
ROOT = ("ROOTKEY", "root-secret-value-0123456789")
ROOT_HEADERS = {"X-Api-Key": f"{ROOT[0]}:{ROOT[1]}"}


@dataclass
class Node:
    url: str
    http: aiohttp.ClientSession
    app: Any

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.http.request(method, self.url + path, headers=headers or {},
                                     **kwargs) as resp:
            body = await resp.read()
            doc = await resp.json() if "json" in resp.content_type else body
            return resp.status, doc, resp


async def _serve(cluster: InProcessCluster) -> AsyncIterator[Node]:
    local = cluster.nodes[0]
    app = build_app(local.cfg, local.svc)
    jar = aiohttp.DummyCookieJar()  # cookies are sent by hand: what a test sees is explicit
    async with TestServer(app, host="127.0.0.1") as server, \
            aiohttp.ClientSession(cookie_jar=jar) as http:
        yield Node(str(server.make_url("")).rstrip("/"), http, app)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    cluster = await start_cluster(tmp_path, 2, n=2, r=1, w=1, admin_access_key=ROOT[0],
                                  admin_secret_key=ROOT[1], cluster_secret="s" * 16)
    try:
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
async def node(cluster: InProcessCluster) -> AsyncIterator[Node]:
    async for served in _serve(cluster):
        yield served


def test_every_route_is_documented_and_every_documented_route_exists(node: Node) -> None:
    routes = {(r.method, r.resource.canonical) for r in node.app.router.routes()
              if r.resource is not None}
    assert routes - documented_routes() == set(), "a route missing from the OpenAPI document"
    assert documented_routes() - routes == set(), "a documented route the app does not serve"


def test_the_document_is_openapi_3_1_with_unique_operation_ids() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for path, item in doc["paths"].items():
        for op in item.values():
            named = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert named == set(path.replace("}", "{").split("{")[1::2]), path


async def test_openapi_docs_and_ui_are_public_and_served_from_the_package(node: Node) -> None:
    status, doc, _ = await node.call("GET", "/v1/openapi.json")
    assert status == 200 and doc["paths"]["/v1/cluster/dashboard"]["get"]
    status, body, resp = await node.call("GET", "/v1/docs")
    assert status == 200 and b"swagger-ui-bundle.js" in body
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js"):
        status, body, _ = await node.call("GET", f"/v1/docs/{asset}")
        assert status == 200 and len(body) > 100, asset
    status, body, resp = await node.call("GET", "/ui")
    assert status == 200 and b'src="/ui/app.js"' in body
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    for asset in ("app.js", "app.css"):
        assert (await node.call("GET", f"/ui/{asset}"))[0] == 200
    for bad in ("/ui/index.py", "/ui/..%2fassets.py", "/v1/docs/index.j2"):
        assert (await node.call("GET", bad))[0] == 404, bad


async def test_dashboard_needs_credentials(node: Node) -> None:
    assert (await node.call("GET", "/v1/cluster/dashboard"))[0] == 401


async def test_dashboard_shows_every_member_and_a_silent_one_as_such(node: Node) -> None:
    started = time.monotonic()
    status, doc, _ = await node.call("GET", "/v1/cluster/dashboard", ROOT_HEADERS)
    assert status == 200, doc
    assert time.monotonic() - started < MEMBER_TIMEOUT_S + 3
    assert doc["ring"]["epoch"] >= 1 and doc["ring"]["partitions"] > 0
    by_id = {m["node_id"]: m for m in doc["members"]}
    assert len(by_id) == 2
    me = next(m for m in doc["members"] if m["self"])
    assert me["figures"]["keys"] >= 0 and me["figures"]["disk"]["total"] > 0
    assert me["error"] is None and "incoming" in me["figures"]["transfers"]
    other = next(m for m in doc["members"] if not m["self"])
    # the other in-process node serves no client API: shown, with why, never a failure
    assert other["figures"] is None and other["error"]
    assert set(doc["totals"]) >= {"requests_per_s", "p99_ms", "bytes_in_per_s",
                                  "bytes_out_per_s", "repairs_per_s"}
    assert sum(doc["liveness"].values()) == 2


async def test_node_figures_series_grows_with_samples(node: Node) -> None:
    from dfsring.http.console.dashboard import SAMPLER

    sampler = node.app[SAMPLER]
    assert (await node.call("PUT", "/v1/kv/b/k", ROOT_HEADERS, data=b"x" * 1000))[0] == 204
    sampler.clock = lambda: time.monotonic() + 5.0
    sampler.run_once()
    status, doc, _ = await node.call("GET", "/v1/node/figures", ROOT_HEADERS)
    assert status == 200
    assert doc["latest"]["requests_per_s"] > 0 and doc["latest"]["bytes_in_per_s"] > 0
    assert doc["series"]


async def test_figures_are_sampled_when_asked_not_by_a_loop_of_their_own(node: Node) -> None:
    """A node with no console open did a registry walk every two seconds for nobody: now a
    sample is taken when figures are asked for, at most once per SAMPLE_EVERY_S."""
    from dfsring.http.console.dashboard import SAMPLER

    sampler = node.app[SAMPLER]
    now = [time.monotonic()]
    sampler.clock = lambda: now[0]
    sampler.run_once()
    before = len(sampler.series.points)
    for _ in range(3):  # asked again and again within the interval: no new sample
        assert (await node.call("GET", "/v1/node/figures", ROOT_HEADERS))[0] == 200
    assert len(sampler.series.points) == before
    now[0] += sampler.every_s
    assert (await node.call("GET", "/v1/node/figures", ROOT_HEADERS))[0] == 200
    assert len(sampler.series.points) == before + 1


def _cookies(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    jar: SimpleCookie = SimpleCookie()
    for raw in resp.headers.getall("Set-Cookie", []):
        jar.load(raw)
    return {name: morsel for name, morsel in jar.items()}


async def _login(node: Node, access: str = ROOT[0], secret: str = ROOT[1]
                 ) -> tuple[str, str, dict[str, Any]]:
    status, doc, resp = await node.call("POST", "/v1/console/login",
                                        json={"access_key": access, "secret_key": secret})
    assert status == 200, doc
    cookies = _cookies(resp)
    return cookies["dfs_session"].value, cookies["dfs_csrf"].value, cookies


async def test_login_sets_an_httponly_strict_session_cookie_and_a_csrf_cookie(node: Node) -> None:
    token, csrf, cookies = await _login(node)
    session = cookies["dfs_session"]
    assert session["httponly"] and session["samesite"] == "Strict" and session["path"] == "/"
    assert not cookies["dfs_csrf"]["httponly"] and cookies["dfs_csrf"]["samesite"] == "Strict"
    assert token != csrf and len(token) >= 40
    status, doc, _ = await node.call("GET", "/v1/console/session",
                                     {"Cookie": f"dfs_session={token}"})
    assert status == 200 and doc["access_key"] == ROOT[0] and doc["admin"] is True


async def test_session_changing_request_needs_the_csrf_header(node: Node) -> None:
    token, csrf, _ = await _login(node)
    cookie = {"Cookie": f"dfs_session={token}; dfs_csrf={csrf}"}
    status, doc, _ = await node.call("PUT", "/v1/kv/b/k", cookie, data=b"v")
    assert status == 403 and doc["missing_grant"] == "csrf"
    status, _, _ = await node.call("PUT", "/v1/kv/b/k", {**cookie, "X-Csrf-Token": "x" + csrf},
                                   data=b"v")
    assert status == 403
    status, _, _ = await node.call("PUT", "/v1/kv/b/k", {**cookie, "X-Csrf-Token": csrf},
                                   data=b"v")
    assert status == 204
    assert (await node.call("GET", "/v1/kv/b/k", cookie))[0] == 200  # reads need no header


async def test_logout_ends_the_session(node: Node) -> None:
    token, csrf, _ = await _login(node)
    cookie = {"Cookie": f"dfs_session={token}", "X-Csrf-Token": csrf}
    assert (await node.call("POST", "/v1/console/logout", cookie))[0] == 204
    assert (await node.call("GET", "/v1/console/session", cookie))[0] == 401


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"access_key": "A"}',
                                  b'{"access_key": 1, "secret_key": "s"}',
                                  b'{"access_key": "A", "secret_key": "s", "x": 1}',
                                  b'{"access_key": "", "secret_key": "s"}'])
async def test_malformed_login_is_a_400(node: Node, body: bytes) -> None:
    status, doc, _ = await node.call("POST", "/v1/console/login", data=body,
                                     headers={"Content-Type": "application/json"})
    assert status == 400, doc


async def test_login_from_a_form_is_refused(node: Node) -> None:
    """A cross-site form can post urlencoded or text/plain, never JSON without a preflight."""
    for kind in ("application/x-www-form-urlencoded", "text/plain"):
        status, _, _ = await node.call(
            "POST", "/v1/console/login", headers={"Content-Type": kind},
            data=f'{{"access_key": "{ROOT[0]}", "secret_key": "{ROOT[1]}"}}')
        assert status == 400, kind


async def test_wrong_login_is_a_401_and_repeated_ones_are_limited(node: Node) -> None:
    seen = []
    for _ in range(25):
        status, _, _ = await node.call("POST", "/v1/console/login",
                                       json={"access_key": ROOT[0], "secret_key": "wrong"})
        seen.append(status)
    assert seen[0] == 401 and seen[-1] == 429


async def test_read_only_key_session_is_refused_a_write(node: Node) -> None:
    status, doc, _ = await node.call("POST", "/v1/admin/keys", ROOT_HEADERS,
                                     json={"name": "reader"})
    assert status == 201, doc
    access, secret = doc["access_key"], doc["secret_key"]
    assert (await node.call("PUT", "/v1/buckets/photos", ROOT_HEADERS, json={}))[0] == 201
    status, _, _ = await node.call("PUT", f"/v1/buckets/photos/grants/{access}", ROOT_HEADERS,
                                   json={"role": "read"})
    assert status in (200, 204)
    token, csrf, _ = await _login(node, access, secret)
    cookie = {"Cookie": f"dfs_session={token}", "X-Csrf-Token": csrf}
    status, doc, _ = await node.call("GET", "/v1/console/buckets", cookie)
    assert status == 200 and doc["buckets"] == [{"name": "photos", "role": "read"}]
    status, doc, _ = await node.call("PUT", "/v1/files/photos/a.txt", cookie, data=b"x")
    assert status == 403, doc
    status, doc, _ = await node.call("GET", "/v1/console/buckets",
                                     {"Cookie": "x=1", **ROOT_HEADERS})
    assert status == 200 and "photos" in [b["name"] for b in doc["buckets"]]


async def test_chunk_map_lists_chunks_owners_and_health(node: Node) -> None:
    body = os.urandom(5_000_000)  # several content-defined chunks
    status, doc, _ = await node.call("PUT", "/v1/files/pics/big.bin", ROOT_HEADERS, data=body)
    assert status == 201, doc
    status, doc, _ = await node.call("GET", "/v1/console/chunks/pics/big.bin", ROOT_HEADERS)
    assert status == 200, doc
    assert doc["size"] == len(body) and doc["chunks_total"] == len(doc["chunks"]) > 1
    assert sum(c["size"] for c in doc["chunks"]) == len(body)
    assert all(len(c["owners"]) == doc["replicas"] and c["owners_up"] >= 1
               for c in doc["chunks"])
    status, page, _ = await node.call("GET", "/v1/console/chunks/pics/big.bin?offset=1&limit=1",
                                      ROOT_HEADERS)
    assert status == 200 and [c["index"] for c in page["chunks"]] == [1]
    assert page["chunks"][0]["offset"] == doc["chunks"][1]["offset"]
    for bad in ("?limit=5000", "?offset=-1", "?nope=1"):
        status, _, _ = await node.call("GET", "/v1/console/chunks/pics/big.bin" + bad,
                                       ROOT_HEADERS)
        assert status == 400, bad
    assert (await node.call("GET", "/v1/console/chunks/pics/none", ROOT_HEADERS))[0] == 404
    assert (await node.call("GET", "/v1/console/chunks/pics/big.bin"))[0] == 401
