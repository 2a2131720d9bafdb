"""Siblings and contexts bounded, through HTTP on real nodes (issue 15 part 6): a write past
the sibling limit is a 409 that says how to resolve, and resolving works; contexts this
cluster never issued are a 400 invalid-context; a corrupt local record does not block a
write to its key."""

from __future__ import annotations

import base64
import json

import aiohttp
import msgpack
import pytest

from dfsring.core import keys
from dfsring.testing.chaos.rot import flip_values
from tests.cluster import clusterops
from tests.conftest import ClusterFactory

BUCKET = "sibs"
DEFAULT_MAX_SIBLINGS = 20  # docs/API.md, --max-siblings


def _token(entries: list[list[object]]) -> str:
    raw = msgpack.packb([1, entries], use_bin_type=True)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.timeout(60)
async def test_too_many_siblings_is_a_409_that_says_how_to_resolve(
        cluster_factory: ClusterFactory) -> None:
    node = cluster_factory(1, n=1, r=1, w=1).nodes[0]
    url = node.url + f"/v1/kv/{BUCKET}/hot"
    async with aiohttp.ClientSession(headers=node.auth_headers) as http:
        for i in range(DEFAULT_MAX_SIBLINGS):  # blind writes: each one a sibling
            async with http.put(url, data=b"v%d" % i) as r:
                assert r.status == 204, await r.text()
        async with http.put(url, data=b"one too many") as r:
            assert r.status == 409, (r.status, await r.text())
            doc = await r.json(content_type=None)
        assert doc["type"].endswith("/too-many-siblings")
        assert doc["limit"] == DEFAULT_MAX_SIBLINGS and "Dfs-Context" in doc["detail"]
        async with http.get(url) as r:  # the key stays readable...
            assert r.status == 300
            siblings = json.loads(await r.read())
            context = r.headers["Dfs-Context"]
        assert len(siblings["siblings"]) == DEFAULT_MAX_SIBLINGS
        async with http.put(url, data=b"merged", headers={"Dfs-Context": context}) as r:
            assert r.status == 204  # ...and writable with its context, which resolves it
        async with http.get(url) as r:
            assert r.status == 200 and await r.read() == b"merged"


@pytest.mark.timeout(60)
async def test_invalid_context_naming_foreign_actors_or_absurd_counters_is_a_400(
        cluster_factory: ClusterFactory) -> None:
    node = cluster_factory(1, n=1, r=1, w=1).nodes[0]
    url = f"{node.url}/v1/kv/{BUCKET}/ctx"
    async with aiohttp.ClientSession(headers=node.auth_headers) as http:
        async with http.put(url, data=b"v") as r:
            assert r.status == 204
            issued = r.headers["Dfs-Context"]
        forged = {
            "actor not of this cluster's form": _token([["mallory", 3]]),
            "counter beyond any write count": _token([["node1.a1b2c3", 2**62]]),
            # thousands of actors do not fit a header (431); 100 fit, and are more than any
            # clock may name (vclock.MAX_CONTEXT_ENTRIES)
            "more actors than a clock may hold": _token([[f"n{i}.a1b2c3", 1]
                                                          for i in range(100)]),
        }
        for what, token in forged.items():
            async with http.put(url, data=b"x", headers={"Dfs-Context": token}) as r:
                body = await r.json(content_type=None)
                assert r.status == 400 and body["type"].endswith("/invalid-context"), what
        async with http.put(url, data=b"w", headers={"Dfs-Context": issued}) as r:
            assert r.status == 204  # what the cluster issued is still accepted
        async with http.get(url) as r:
            assert r.status == 200 and await r.read() == b"w"


@pytest.mark.timeout(120)
async def test_a_corrupt_local_record_does_not_block_a_write_to_its_key(
        cluster_factory: ClusterFactory) -> None:
    # no anti-entropy round and a scrubber far too slow to reach the key's partition (it
    # takes at least a second per partition): the write itself meets the corrupt record
    cluster = cluster_factory(3, extra_args=("--ae-interval", "3600", "--scrub-rate", "1"))
    cluster.wait_converged(timeout=20)
    node1 = cluster.node("node1")
    key = next(k for k in (f"rotting-{i}" for i in range(10_000))
               if keys.partition_of(BUCKET.encode(), k.encode(), 10) >= 600)
    url = f"{node1.url}/v1/kv/{BUCKET}/{key}"
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        async with http.put(url, data=b"CORRUPT-ME-please", params={"w": "all"}) as r:
            assert r.status == 204
        node1.stop()
        assert flip_values(node1.spec.data_dir / "db" / "data.mdb", [b"CORRUPT-ME-please"], 1)
        node1.start()
        node1.wait_ready(timeout=20)
        cluster.wait_converged(timeout=20)
        async with http.put(url, data=b"written anyway", params={"w": "all"}) as r:
            assert r.status == 204, (r.status, await r.text())
        for node in cluster:  # the blind write is concurrent with the value node1 lost
            async with http.get(f"{node.url}/v1/kv/{BUCKET}/{key}",
                                params={"r": "all"}) as r:
                assert r.status == 300, (node.node_id, r.status, await r.text())
                values = {base64.b64decode(s["value_b64"])
                          for s in json.loads(await r.read())["siblings"]}
            assert values == {b"CORRUPT-ME-please", b"written anyway"}


@pytest.mark.timeout(60)
async def test_too_many_siblings_is_a_409_through_a_node_that_forwards_the_write(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(2, n=1, r=1, w=1)
    cluster.wait_converged(timeout=20)
    node1 = cluster.node("node1")
    ring = clusterops.ring_of(node1)
    key = next(k for k in (f"far-{i}" for i in range(1000))
               if clusterops.owners(ring, k, BUCKET) == {"node2"})
    url = f"{node1.url}/v1/kv/{BUCKET}/{key}"  # node1 forwards to node2, which coordinates
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        for i in range(DEFAULT_MAX_SIBLINGS):
            async with http.put(url, data=b"v%d" % i) as r:
                assert r.status == 204, await r.text()
        async with http.put(url, data=b"one too many") as r:
            assert r.status == 409, (r.status, await r.text())
            doc = await r.json(content_type=None)
        assert doc["type"].endswith("/too-many-siblings") and doc["limit"] == DEFAULT_MAX_SIBLINGS
