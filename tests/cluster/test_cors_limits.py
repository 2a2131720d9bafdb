"""CORS and per-key limits across real node processes (issue 18 part 6).

A bucket's CORS rules set through node 1 are applied by node 3 (bucket settings are cached
for at most AccessSettings.ttl_s, and a change is announced to every member); a key past its
request rate gets 429 with Retry-After and is served again once it has waited."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest

from dfsring.replication.access.service import AccessSettings
from dfsring.testing.wait import wait_until
from tests.cluster.accesskit import AuthCluster, Resp, bearer, call

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]
KEY_RATE = 5.0
KEY_BURST = 20
APP = "https://app.example"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthCluster]:
    with AuthCluster(3, tmp_path_factory.mktemp("cors"),
                     extra_args=("--key-rate", str(KEY_RATE), "--key-burst", str(KEY_BURST),
                                 "--cors-origins", APP)) as cluster:
        yield cluster


def test_a_bucket_s_cors_rule_set_on_node_1_is_applied_by_node_3(cluster: AuthCluster) -> None:
    first, third = cluster.nodes[0], cluster.nodes[2]
    bucket = f"c-{secrets.token_hex(4)}"
    assert cluster.as_root(first, "PUT", f"/v1/buckets/{bucket}").status == 201
    origin = "https://web.photos.example"
    before = call(third.url, "GET", f"/v1/kv/{bucket}/k", headers={"Origin": origin})
    assert "access-control-allow-origin" not in before.headers  # node 3 has it cached now
    rules = {"rules": [{"origins": ["https://*.photos.example"], "methods": ["GET", "PUT"],
                        "headers": ["authorization"], "max_age_s": 60}]}
    got = cluster.as_root(first, "PUT", f"/v1/buckets/{bucket}/cors", body=rules)
    assert got.status == 200, got.doc
    preflight = {"Origin": origin, "Access-Control-Request-Method": "PUT",
                 "Access-Control-Request-Headers": "authorization"}

    def applied() -> Resp | None:
        resp = call(third.url, "OPTIONS", f"/v1/kv/{bucket}/k", headers=preflight, timeout=3)
        return resp if resp.status == 204 else None

    resp = wait_until(applied, timeout=AccessSettings().ttl_s + 5.0,
                      message="node 3 applies the bucket's CORS rule")
    assert resp.headers["access-control-allow-origin"] == origin
    assert resp.headers["access-control-max-age"] == "60"
    # the node's own rule no longer applies to this bucket, and still does to others
    refused = call(third.url, "OPTIONS", f"/v1/kv/{bucket}/k",
                   headers={**preflight, "Origin": APP})
    assert refused.status == 403
    other = call(third.url, "GET", "/v1/kv/elsewhere/k", headers={"Origin": APP})
    assert other.headers.get("access-control-allow-origin") == APP
    # an actual (refused, unauthenticated) request: the browser can read the 401
    denied = call(third.url, "GET", f"/v1/kv/{bucket}/k", headers={"Origin": origin})
    assert denied.status == 401
    assert denied.headers["access-control-allow-origin"] == origin


def test_a_key_past_its_rate_gets_429_and_recovers_after_retry_after(
        cluster: AuthCluster) -> None:
    node = cluster.nodes[1]
    made = cluster.as_root(node, "POST", "/v1/admin/keys", body={"name": "busy"})
    assert made.status == 201, made.doc
    auth = bearer(made.doc["access_key"], made.doc["secret_key"])
    bucket = f"r-{secrets.token_hex(4)}"
    granted = cluster.as_root(node, "PUT",
                              f"/v1/buckets/{bucket}/grants/{made.doc['access_key']}",
                              body={"role": "read"})
    assert granted.status == 200, granted.doc
    path = f"/v1/kv/{bucket}/k"
    statuses = []
    limited: Resp | None = None
    for _ in range(KEY_BURST * 3):  # the burst, then what the refill adds meanwhile
        resp = call(node.url, "GET", path, headers=auth)
        statuses.append(resp.status)
        if resp.status == 429:
            limited = resp
            break
    assert limited is not None, statuses
    assert statuses.count(404) >= KEY_BURST - 1, statuses  # no such key until limited
    assert limited.doc["type"].endswith("too-many-requests")
    wait = int(limited.headers["retry-after"])
    assert 1 <= wait <= 2
    started = time.monotonic()
    # another node has its own buckets (per node limits): served at once
    assert call(cluster.nodes[0].url, "GET", path, headers=auth).status == 404
    time.sleep(wait)  # what the answer asked for, then the key is served again
    resp = wait_until(lambda: (r := call(node.url, "GET", path, headers=auth))
                      .status != 429 and r, timeout=5.0,
                      message="the key is served again after Retry-After")
    assert resp.status == 404
    assert time.monotonic() - started >= wait
