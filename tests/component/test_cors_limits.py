"""CORS and per-key limits in one real node's app (dfsring.http.cors, dfsring.http.keylimits),
served on loopback from an in-process cluster with root credentials.

Preflights answered before authentication (allowed: 204; refused: 403 problem), allow
headers on error answers too, a bucket's own rules replacing the node's, and 429 with
Retry-After past a key's request burst or bandwidth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from dfsring.node import build_app
from dfsring.testing.localcluster import InProcessCluster, start_cluster
from dfsring.testing.wait import async_wait_until

pytestmark = pytest.mark.component
ROOT = ("ROOTKEY", "root-secret-value-0123456789")
APP = "https://app.example"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "PUT",
             "Access-Control-Request-Headers": "authorization, content-type"}


def bearer(access: str, secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}:{secret}"}


@dataclass
class Node:
    url: str
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        async with self.http.request(method, self.url + path, headers=headers or {},
                                     **kwargs) as resp:
            body = await resp.read()
            doc = await resp.json() if "json" in resp.content_type else body
            return resp.status, doc, dict(resp.headers)

    async def root(self, method: str, path: str, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        return await self.call(method, path, {**bearer(*ROOT), **(headers or {})}, **kwargs)


@pytest.fixture
async def node_factory(tmp_path: Path) -> AsyncIterator[Any]:
    clusters: list[InProcessCluster] = []

    async def start(**settings: object) -> Node:
        cluster = await start_cluster(tmp_path / str(len(clusters)), 1, n=1, r=1, w=1,
                                      admin_access_key=ROOT[0], admin_secret_key=ROOT[1],
                                      cluster_secret="s" * 16, **settings)
        clusters.append(cluster)
        local = cluster.nodes[0]
        server = TestServer(build_app(local.cfg, local.svc), host="127.0.0.1")
        await server.start_server()
        http = aiohttp.ClientSession()
        cleanups.append((server, http))
        return Node(str(server.make_url("")).rstrip("/"), http)

    cleanups: list[tuple[TestServer, aiohttp.ClientSession]] = []
    try:
        yield start
    finally:
        for server, http in cleanups:
            await http.close()
            await server.close()
        for cluster in clusters:
            await cluster.stop()


async def test_without_cors_options_there_are_no_headers_and_preflights_are_refused(
        node_factory: Any) -> None:
    node = await node_factory()
    status, doc, headers = await node.call("OPTIONS", "/v1/kv/b/k", PREFLIGHT)
    assert status == 403 and doc["type"].endswith("forbidden"), doc
    assert "Access-Control-Allow-Origin" not in headers
    status, _, headers = await node.root("GET", "/v1/kv/b/k", {"Origin": APP})
    assert status == 404
    assert not any(h.startswith("Access-Control") for h in headers)


async def test_a_preflight_is_answered_before_authentication(node_factory: Any) -> None:
    node = await node_factory(cors_origins=APP, cors_max_age=120)
    status, _, headers = await node.call("OPTIONS", "/v1/kv/b/k", PREFLIGHT)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == APP
    assert "PUT" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert headers["Access-Control-Max-Age"] == "120"
    assert "Origin" in headers["Vary"]
    for refused in ({**PREFLIGHT, "Origin": "https://evil.example"},
                    {**PREFLIGHT, "Access-Control-Request-Method": "POST"},
                    {**PREFLIGHT, "Access-Control-Request-Headers": "x-unlisted"}):
        status, doc, headers = await node.call("OPTIONS", "/v1/kv/b/k", refused)
        assert status == 403, refused
        assert "Access-Control-Allow-Origin" not in headers
        assert "CORS" in doc["detail"]
    # a preflight for a route that does not exist is refused like a disallowed one
    status, _, _ = await node.call("OPTIONS", "/v1/nowhere", PREFLIGHT)
    assert status == 403


async def test_options_without_preflight_headers_opens_no_route(node_factory: Any) -> None:
    node = await node_factory(cors_origins="*")
    for headers in ({}, {"Origin": APP}):
        status, _, _ = await node.call("OPTIONS", "/v1/kv/b/k", headers)
        assert status == 405
        status, _, _ = await node.call("OPTIONS", "/v1/admin/keys", headers)
        assert status == 405


async def test_error_answers_carry_the_allow_headers(node_factory: Any) -> None:
    node = await node_factory(cors_origins=APP)
    status, doc, headers = await node.call("GET", "/v1/kv/b/k", {"Origin": APP})
    assert status == 401, doc
    assert headers["Access-Control-Allow-Origin"] == APP
    assert "Dfs-Request-Id" in headers["Access-Control-Expose-Headers"]
    assert headers["Vary"] == "Origin"
    status, _, headers = await node.call("GET", "/v1/kv/b/k", {"Origin": "https://evil.example"})
    assert status == 401
    assert "Access-Control-Allow-Origin" not in headers and headers["Vary"] == "Origin"
    status, _, headers = await node.root("PUT", "/v1/kv/b/k", {"Origin": APP}, data=b"v")
    assert status in (200, 201, 204)
    assert headers["Access-Control-Allow-Origin"] == APP


async def test_a_bucket_s_own_rules_replace_the_node_s(node_factory: Any) -> None:
    node = await node_factory(cors_origins=APP)
    status, doc, _ = await node.root("PUT", "/v1/buckets/pics")
    assert status == 201, doc
    rules = [{"origins": ["https://*.pics.example"], "methods": ["GET"], "max_age_s": 30}]
    status, doc, _ = await node.root("PUT", "/v1/buckets/pics/cors", json=rules)
    assert status == 200, doc
    assert doc["rules"] == [{**rules[0], "headers": []}]
    status, doc, _ = await node.root("GET", "/v1/buckets/pics/cors")
    assert status == 200 and doc["rules"][0]["origins"] == ["https://*.pics.example"]
    status, _, headers = await node.call("GET", "/v1/kv/pics/k", {"Origin": "https://a.pics.example"})
    assert headers.get("Access-Control-Allow-Origin") == "https://a.pics.example"
    status, _, headers = await node.call("GET", "/v1/kv/pics/k", {"Origin": APP})
    assert "Access-Control-Allow-Origin" not in headers  # the node's rule does not apply
    status, _, headers = await node.call("GET", "/v1/kv/other/k", {"Origin": APP})
    assert headers.get("Access-Control-Allow-Origin") == APP  # other buckets: the node's
    status, _, _ = await node.root("DELETE", "/v1/buckets/pics/cors")
    assert status == 204
    status, doc, _ = await node.root("GET", "/v1/buckets/pics/cors")
    assert doc["rules"] is None
    status, _, headers = await node.call("GET", "/v1/kv/pics/k", {"Origin": APP})
    assert headers.get("Access-Control-Allow-Origin") == APP


@pytest.mark.parametrize(("body", "words"), [
    (b"not json", "not JSON"),
    (b'{"origins": ["*"]}', "a JSON list"),
    (b'[{"origins": ["ftp://x"], "methods": ["GET"]}]', "rule 0: origin"),
    (b'[{"origins": ["*"], "methods": ["GET"]}]' * 1, ""),
])
async def test_bad_cors_rules_get_a_clear_400(node_factory: Any, body: bytes,
                                              words: str) -> None:
    node = await node_factory()
    status, doc, _ = await node.root("PUT", "/v1/buckets/b/cors", data=body)
    if not words:
        assert status == 200, doc
        return
    assert status == 400, doc
    assert words in doc["detail"]


async def test_bucket_cors_is_the_owner_s(node_factory: Any) -> None:
    node = await node_factory()
    _, key, _ = await node.root("POST", "/v1/admin/keys", json={"name": "w"})
    auth = bearer(key["access_key"], key["secret_key"])
    status, _, _ = await node.root("PUT", f"/v1/buckets/b/grants/{key['access_key']}",
                                   json={"role": "write"})
    assert status == 200
    status, doc, _ = await node.call("PUT", "/v1/buckets/b/cors", auth, json=[])
    assert status == 403, doc
    status, _, _ = await node.call("GET", "/v1/buckets/b/cors")
    assert status == 401


async def test_a_key_past_its_burst_gets_429_with_retry_after(node_factory: Any) -> None:
    node = await node_factory(key_rate=0.5, key_burst=3.0)
    statuses = [(await node.root("GET", "/v1/kv/b/k"))[0] for _ in range(3)]
    assert statuses == [404] * 3
    status, doc, headers = await node.root("GET", "/v1/kv/b/k")
    assert status == 429 and doc["type"].endswith("too-many-requests"), doc
    assert int(headers["Retry-After"]) >= 1
    status, _, _ = await node.call("GET", "/health")
    assert status == 200  # anonymous traffic is not per-key limited
    status, body, _ = await node.call("GET", "/metrics")
    assert b'dfsring_rate_limited_total{reason="requests"} 1.0' in body


async def test_bandwidth_counts_request_bodies_and_read_answers(node_factory: Any) -> None:
    node = await node_factory(key_bandwidth=1_000, key_rate=0)
    status, _, _ = await node.root("PUT", "/v1/kv/b/k", data=b"x" * 1_000)  # the whole burst
    assert status in (200, 201, 204)
    status, doc, headers = await node.root("PUT", "/v1/kv/b/k2", data=b"x" * 900)
    assert status == 429 and "bandwidth" in doc["detail"], doc
    assert "Retry-After" in headers

    async def served() -> bool:
        return (await node.root("HEAD", "/v1/kv/b/k"))[0] == 200

    await async_wait_until(served, timeout=5.0, message="the key has bandwidth again")
    status, body, _ = await node.root("GET", "/v1/kv/b/k")  # 1000 bytes sent: a second of debt
    assert status == 200 and len(body) == 1_000
    status, doc, _ = await node.root("HEAD", "/v1/kv/b/k")
    assert status == 429, doc
    status, body, _ = await node.call("GET", "/metrics")
    assert b'dfsring_rate_limited_total{reason="bandwidth"} 2.0' in body


async def test_an_admin_sets_a_key_s_own_rate(node_factory: Any) -> None:
    node = await node_factory()
    _, key, _ = await node.root("POST", "/v1/admin/keys", json={"name": "slow"})
    path = f"/v1/admin/keys/{key['access_key']}/limits"
    for bad, words in (({"rate": -1}, "rate must be"), ({"bandwidth": 1.5}, "bandwidth must"),
                       ({}, "give rate"), ({"burst": 1}, "unknown field")):
        status, doc, _ = await node.root("POST", path, json=bad)
        assert status == 400 and words in doc["detail"], doc
    status, doc, _ = await node.root("POST", path, json={"rate": 1})
    assert status == 200 and doc["rate"] == 1.0 and doc["bandwidth"] is None, doc
    auth = bearer(key["access_key"], key["secret_key"])
    statuses = [(await node.call("GET", "/v1/node/stats", auth))[0] for _ in range(2)]
    assert statuses == [200, 200]  # a burst of twice the rate
    status, _, headers = await node.call("GET", "/v1/node/stats", auth)
    assert status == 429 and headers["Retry-After"] == "1"
    status, doc, _ = await node.root("POST", path, json={"rate": None})
    assert status == 200 and doc["rate"] is None
    assert (await node.call("GET", "/v1/node/stats", auth))[0] == 200


async def test_a_streamed_file_answer_is_charged_what_was_written(node_factory: Any) -> None:
    node = await node_factory(key_bandwidth=1_000, key_rate=0)
    status, doc, _ = await node.root("PUT", "/v1/files/b/f.bin", data=b"y" * 1_500)
    assert status in (200, 201), doc

    async def served() -> bool:
        return (await node.root("HEAD", "/v1/files/b/f.bin"))[0] == 200

    await async_wait_until(served, timeout=5.0, message="the key has bandwidth again")
    status, body, _ = await node.root("GET", "/v1/files/b/f.bin")
    assert status == 200 and len(body) == 1_500
    status, _, _ = await node.root("GET", "/v1/files/b/f.bin", headers={"Range": "bytes=0-0"})
    assert status == 429  # 1500 bytes streamed left the key in debt
