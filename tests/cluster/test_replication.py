"""Replication across real node processes (replication issue, "Must show")."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from dfsring.cli.launcher import LocalCluster
from dfsring.core import keys
from dfsring.testing.wait import async_wait_until

TIMEOUT = 5.0  # --request-timeout: how long a quorum may take before 503 (CI runs tests two
# at a time, beside CPU-bound ones such as the 1 GiB upload: 2 s was met only on a quiet machine)


def _cluster(tmp_path: Path, size: int = 3, *extra: str) -> LocalCluster:
    return LocalCluster(size, tmp_path, extra_args=("--request-timeout", str(TIMEOUT), *extra))


async def _local_status(http: aiohttp.ClientSession, url: str, path: str) -> int:
    async with http.get(f"{url}/v1/node/local/kv/{path}") as r:
        return r.status


async def test_put_on_a_get_on_c_and_stored_on_exactly_the_preference_list(
        tmp_path: Path) -> None:
    with _cluster(tmp_path, 5) as cluster:
        a, c = cluster.nodes[0], cluster.nodes[2]
        async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
            for i in range(20):
                async with http.put(f"{a.url}/v1/kv/rep/key{i}", data=f"v{i}".encode()) as r:
                    assert r.status == 204
                    assert r.headers["Dfs-Acks"] in ("2/3", "3/3")
            for i in range(20):
                async with http.get(f"{c.url}/v1/kv/rep/key{i}") as r:
                    assert r.status == 200 and await r.read() == f"v{i}".encode()
            async with http.get(f"{a.url}/v1/cluster/ring") as r:
                ring = await r.json()

            def owners_of(i: int) -> set[str]:
                part = keys.partition_of(b"rep", f"key{i}".encode(), ring["partitions"]
                                         .bit_length() - 1)
                return set(ring["owners"][str(part)])

            async def holders_of(i: int) -> set[str]:
                return {n.node_id for n in cluster.nodes
                        if await _local_status(http, n.url, f"rep/key{i}") == 200}

            async def misplaced() -> dict[int, tuple[set[str], set[str]]]:
                wrong = {}
                for i in range(20):
                    owners, holders = owners_of(i), await holders_of(i)
                    if holders != owners or len(owners) != 3:
                        wrong[i] = (owners, holders)
                return wrong

            # The third replica's copy follows the W=2 answer. On a loaded machine it may have
            # gone to a fallback as a hint (the owner slow past half the deadline, or held
            # suspect by the failure detector), which handoff delivers once the owner is judged
            # up again, with backoff after failed attempts: one deadline for all keys that
            # covers a few such retries, not 10 s per key.
            deadline = time.monotonic() + 60.0
            wrong = await misplaced()
            while wrong and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                wrong = await misplaced()
            if wrong:
                queues = {}
                for n in cluster.nodes:
                    async with http.get(f"{n.url}/v1/cluster/transfers") as r:
                        queues[n.node_id] = (await r.json()).get("hints")
                raise AssertionError(f"keys not on exactly their preference list after 60 s "
                                     f"(key: (owners, holders)): {wrong}; hint queues: {queues}")


async def test_concurrent_writes_become_siblings_and_resolve(tmp_path: Path) -> None:
    with _cluster(tmp_path) as cluster:
        a, b, c = (n.url for n in cluster.nodes)
        async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
            async with http.put(f"{a}/v1/kv/sib/k", data=b"base") as r:
                ctx = r.headers["Dfs-Context"]
            for url, value in ((a, b"from-a"), (b, b"from-b")):
                async with http.put(f"{url}/v1/kv/sib/k", data=value,
                                    headers={"Dfs-Context": ctx}) as r:
                    assert r.status == 204
            async with http.get(f"{c}/v1/kv/sib/k", params={"r": "all"}) as r:
                assert r.status == 300
                doc = await r.json()
            values = sorted(s["value_b64"] for s in doc["siblings"])
            assert values == sorted(["ZnJvbS1h", "ZnJvbS1i"])  # from-a, from-b
            async with http.put(f"{c}/v1/kv/sib/k", data=b"merged",
                                headers={"Dfs-Context": doc["context"]}) as r:
                assert r.status == 204, await r.text()
            async with http.get(f"{b}/v1/kv/sib/k", params={"r": "all"}) as r:
                assert r.status == 200 and await r.read() == b"merged"


CLIENTS, KEYS, ROUNDS = 20, 5, 8


async def _rmw_client(http: aiohttp.ClientSession, urls: list[str], client: int,
                      acked: set[str], rng: random.Random) -> None:
    """Read-modify-write: add a unique token to a key's set, merging siblings as a set union."""
    for round_ in range(ROUNDS):
        key, token = f"k{rng.randrange(KEYS)}", f"c{client}-r{round_}"
        url = rng.choice(urls)
        async with http.get(f"{url}/v1/kv/rmw/{key}") as r:
            ctx = r.headers.get("Dfs-Context")
            current = await _as_set(r)
        headers = {"Dfs-Context": ctx} if ctx else {}
        body = orjson.dumps(sorted(current | {token}))
        async with http.put(f"{rng.choice(urls)}/v1/kv/rmw/{key}", data=body,
                            headers=headers) as r:
            if r.status == 204:
                acked.add(f"{key}:{token}")


async def _as_set(r: aiohttp.ClientResponse) -> set[str]:
    if r.status == 404:
        return set()
    if r.status == 200:
        return set(orjson.loads(await r.read()))
    assert r.status == 300, await r.text()
    doc = await r.json()
    out: set[str] = set()
    for sib in doc["siblings"]:
        out |= set(orjson.loads(base64.b64decode(sib["value_b64"])))
    return out


async def test_concurrent_read_modify_write_loses_no_acknowledged_update(
        tmp_path: Path) -> None:
    with _cluster(tmp_path) as cluster:
        urls = cluster.urls
        acked: set[str] = set()
        async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
            await asyncio.wait_for(asyncio.gather(*(
                _rmw_client(http, urls, c, acked, random.Random(c)) for c in range(CLIENTS))),
                timeout=120)
            assert len(acked) == CLIENTS * ROUNDS
            final: set[str] = set()
            for k in range(KEYS):
                async with http.get(f"{urls[0]}/v1/kv/rmw/k{k}", params={"r": "all"}) as r:
                    final |= {f"k{k}:{t}" for t in await _as_set(r)}
        lost = acked - final
        assert not lost, f"{len(lost)} acknowledged updates lost: {sorted(lost)[:5]}"


async def test_quorum_with_one_node_down_and_503_with_two_down(tmp_path: Path) -> None:
    with _cluster(tmp_path) as cluster:
        a = cluster.nodes[0].url
        cluster.nodes[2].stop()
        async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
            async with http.put(f"{a}/v1/kv/q/k", data=b"v1") as r:
                assert r.status == 204 and r.headers["Dfs-Acks"] == "2/3"
            async with http.get(f"{a}/v1/kv/q/k") as r:
                assert r.status == 200 and await r.read() == b"v1"
            cluster.nodes[1].stop()
            started = time.monotonic()
            async with http.put(f"{a}/v1/kv/q/k2", data=b"v2") as r:
                elapsed = time.monotonic() - started
                assert r.status == 503
                doc = await r.json()
            assert doc["type"].endswith("/quorum-not-met")
            assert (doc["needed"], doc["acked"]) == (2, 1)
            assert elapsed < TIMEOUT + 1.0
            async with http.get(f"{a}/v1/kv/q/k") as r:
                assert r.status == 503  # R=2 cannot be met either


@pytest.mark.parametrize("reader", [0, 2])
async def test_read_repair_fills_a_replica_that_missed_the_write(tmp_path: Path,
                                                                 reader: int) -> None:
    # anti-entropy would repair the lagging replica too, racing the read under test: off here
    with _cluster(tmp_path, 3, "--ae-interval", "3600") as cluster:
        a, lagging = cluster.nodes[0], cluster.nodes[2]
        lagging.stop()
        async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
            async with http.put(f"{a.url}/v1/kv/rr/k", data=b"value") as r:
                assert r.status == 204
            lagging.start()
            lagging.wait_ready(30)
            assert await _local_status(http, lagging.url, "rr/k") == 404
            async with http.get(f"{cluster.nodes[reader].url}/v1/kv/rr/k",
                                params={"r": "all"}) as r:
                assert r.status == 200 and await r.read() == b"value"

            async def repaired() -> bool:
                return await _local_status(http, lagging.url, "rr/k") == 200

            await async_wait_until(repaired, timeout=10, message="read repair of node3")


async def test_delete_without_context_removes_the_current_value(tmp_path: Path) -> None:
    with _cluster(tmp_path) as cluster:
        a, c = cluster.nodes[0].url, cluster.nodes[2].url
        async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
            async with http.put(f"{a}/v1/kv/del/k", data=b"v") as r:
                assert r.status == 204
            async with http.delete(f"{c}/v1/kv/del/k") as r:
                assert r.status == 204
            async with http.get(f"{a}/v1/kv/del/k", params={"r": "all"}) as r:
                assert r.status == 404
                assert r.headers["Dfs-Context"]  # the tombstone's context
