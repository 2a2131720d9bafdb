"""Sloppy quorum and hinted handoff with real node processes (issue 5): writes for down owners
land on fallbacks as durable hints, are readable meanwhile, and go back to the owners when
they return; sloppy=false refuses fallbacks; the hint store stays within its bound."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import Any

import aiohttp
import pytest

from dfsring.cli.launcher import LocalCluster, NodeProcess
from dfsring.testing.wait import async_wait_until, wait_until
from tests.cluster import clusterops
from tests.cluster.clusterops import BUCKET, local_keys, members_seen_by, owners, ring_of
from tests.conftest import ClusterFactory

HANDBACK_S = 30.0


def _keys_owned_by(ring: dict[str, Any], wanted: set[str], count: int, prefix: str) -> list[str]:
    """`count` keys whose preference list holds every node in `wanted`."""
    out: list[str] = []
    i = 0
    while len(out) < count:
        key = f"{prefix}-{i}"
        if wanted <= owners(ring, key):
            out.append(key)
        i += 1
    return out


def _wait_down(target: str, observers: list[NodeProcess], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        views = {o.node_id: members_seen_by(o)[target]["status"] for o in observers}
        if all(v == "down" for v in views.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{target} not seen down by all: {views}")
        time.sleep(0.1)


async def _take_down(down: list[NodeProcess], live: list[NodeProcess]) -> None:
    """Stop these nodes and wait until every live node's failure detector holds them down."""
    for node in down:
        node.stop()
    for node in down:
        await asyncio.to_thread(_wait_down, node.node_id, live)


def _stats(nodes: list[NodeProcess]) -> dict[str, dict[str, Any]]:
    return {n.node_id: n.get_json("/v1/node/stats") for n in nodes}


def _pending(nodes: list[NodeProcess]) -> int:
    return sum(s["hints_pending"] for s in _stats(nodes).values())


async def _put_all(nodes: list[NodeProcess], keys_: list[str],
                   **params: str) -> list[tuple[int, dict]]:
    """PUT each key (value = the key) through the given nodes in turn; (status, headers)."""
    sem = asyncio.Semaphore(16)
    urls = [n.url for n in nodes]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15),
                                     headers=nodes[0].auth_headers) as http:
        async def one(i: int, key: str) -> tuple[int, dict]:
            async with sem, http.put(f"{urls[i % len(urls)]}/v1/kv/{BUCKET}/{key}",
                                     data=key.encode(), params=params) as resp:
                await resp.read()
                return resp.status, dict(resp.headers)
        return await asyncio.gather(*(one(i, k) for i, k in enumerate(keys_)))


def _missing_on_owners(cluster: LocalCluster, keys_: list[str]) -> list[str]:
    ring = ring_of(cluster.nodes[0])
    held = {n.node_id: local_keys(n) for n in cluster}
    return [f"{k} on {o}" for k in keys_ for o in owners(ring, k) if k not in held[o]]


def _strays(cluster: LocalCluster, keys_: list[str]) -> list[str]:
    """Copies of these keys on nodes that do not own them."""
    ring = ring_of(cluster.nodes[0])
    wanted = set(keys_)
    return [f"{k} on {n.node_id}" for n in cluster for k in local_keys(n) & wanted
            if n.node_id not in owners(ring, k)]


def _wait_handed_back(cluster: LocalCluster, keys_: list[str], timeout: float) -> float:
    start = time.monotonic()
    while True:
        missing = _missing_on_owners(cluster, keys_)
        pending = _pending(list(cluster))
        if not missing and pending == 0:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"after {timeout}s: {len(missing)} owner copies missing "
                                 f"(e.g. {missing[:3]}), {pending} hints pending")
        time.sleep(0.25)


@pytest.mark.timeout(240)
async def test_writes_for_two_down_owners_are_hinted_readable_and_handed_back(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(5)
    ring = cluster.wait_converged(timeout=20)
    down = [cluster.node("node4"), cluster.node("node5")]
    live = [n for n in cluster if n not in down]
    keys_ = _keys_owned_by(ring, {"node4", "node5"}, 1_000, "h")
    await _take_down(down, live)

    started = time.monotonic()
    results = await _put_all(live, keys_, w="2")
    took = time.monotonic() - started
    statuses = {status for status, _ in results}
    assert statuses == {204}, f"write statuses {statuses}"
    hinted = sum(int(h["Dfs-Hinted"]) for _, h in results)
    assert all(int(h["Dfs-Hinted"]) >= 1 for _, h in results)
    pending = _pending(live)
    assert pending >= len(keys_), f"only {pending} hints pending for {len(keys_)} keys"
    # a value acknowledged with the help of fallbacks is readable with R=2 meanwhile
    assert await clusterops.read_back([n.url for n in live], keys_[:200],
                                      headers=cluster.auth_headers) == []

    for node in down:
        node.start()
    for node in down:
        node.wait_ready(timeout=15)
    back = await asyncio.to_thread(_wait_handed_back, cluster, keys_, HANDBACK_S)
    assert await asyncio.to_thread(_strays, cluster, keys_) == []
    delivered = sum(s["hints_delivered"] for s in _stats(list(cluster)).values())
    print(f"\n{len(keys_)} writes with 2 owners down in {took:.1f}s ({hinted} hinted acks); "
          f"owners complete, 0 hints pending {back:.1f}s after the restart "
          f"({delivered} hints delivered, {delivered / max(back, 0.001):.0f} keys/s)")


@pytest.mark.timeout(180)
async def test_hints_survive_a_kill_of_their_fallback(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(5)
    ring = cluster.wait_converged(timeout=20)
    owner = cluster.node("node5")
    live = [n for n in cluster if n is not owner]
    keys_ = _keys_owned_by(ring, {"node5"}, 300, "k9")
    await _take_down([owner], live)
    results = await _put_all(live, keys_)
    assert {s for s, _ in results} == {204}
    holders = [n for n, s in _stats(live).items() if s["hints_pending"] > 0]
    assert holders, "no fallback holds hints"
    fallback = cluster.node(holders[0])
    held = fallback.get_json("/v1/node/stats")["hints_pending"]
    fallback.kill()
    fallback.start()
    fallback.wait_ready(timeout=15)
    assert fallback.get_json("/v1/node/stats")["hints_pending"] == held  # durable
    owner.start()
    owner.wait_ready(timeout=15)
    await asyncio.to_thread(_wait_handed_back, cluster, keys_, HANDBACK_S)
    assert len(local_keys(owner) & set(keys_)) == len(keys_)


@pytest.mark.timeout(120)
async def test_strict_write_with_two_owners_down_is_refused_without_hints(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(5)
    ring = cluster.wait_converged(timeout=20)
    down = [cluster.node("node4"), cluster.node("node5")]
    live = [n for n in cluster if n not in down]
    keys_ = _keys_owned_by(ring, {"node4", "node5"}, 5, "strict")
    await _take_down(down, live)
    results = await _put_all(live, keys_, sloppy="false")
    assert {s for s, _ in results} == {503}
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http, http.put(
            f"{live[0].url}/v1/kv/{BUCKET}/{keys_[0]}", data=b"x",
            params={"sloppy": "false"}) as resp:
        problem = await resp.json(content_type=None)
    assert problem["type"].endswith("quorum-not-met")
    assert (problem["needed"], problem["acked"]) == (2, 1)
    assert _pending(live) == 0
    # the same writes with fallbacks allowed succeed, hinted
    results = await _put_all(live, keys_)
    assert {s for s, _ in results} == {204}
    assert _pending(live) > 0


HINT_BOUND = 64 << 10


@pytest.mark.timeout(180)
async def test_hint_store_stays_within_its_bound_during_a_long_burst(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(5, extra_args=("--hint-max-bytes", str(HINT_BOUND)))
    ring = cluster.wait_converged(timeout=20)
    owner = cluster.node("node5")
    live = [n for n in cluster if n is not owner]
    keys_ = _keys_owned_by(ring, {"node5"}, 1_500, "burst")
    await _take_down([owner], live)
    value = b"v" * 1024
    peak = 0
    async with aiohttp.ClientSession(headers=cluster.auth_headers,
                                     timeout=aiohttp.ClientTimeout(total=15)) as http:
        sem = asyncio.Semaphore(16)

        async def one(i: int, key: str) -> int:
            async with sem, http.put(f"{live[i % 4].url}/v1/kv/{BUCKET}/{key}",
                                     data=value) as resp:
                await resp.read()
                return resp.status

        for start in range(0, len(keys_), 300):
            statuses = await asyncio.gather(*(one(i, k) for i, k in
                                              enumerate(keys_[start:start + 300], start)))
            assert set(statuses) == {204}  # the two live owners still make W=2
            for stats in _stats(live).values():
                used = stats["hints_by_target"].get("node5", {}).get("bytes", 0)
                peak = max(peak, used)
    stats = _stats(live)
    for node_id, s in stats.items():
        used = s["hints_by_target"].get("node5", {}).get("bytes", 0)
        assert used <= HINT_BOUND, f"{node_id} holds {used} bytes of hints (bound {HINT_BOUND})"
    dropped = sum(s["hints_dropped"] for s in stats.values())
    assert dropped > 0, "a burst of 1.5 MiB for one target never reached a 64 KiB bound"
    print(f"\npeak hint bytes for node5 on one fallback: {peak} (bound {HINT_BOUND}); "
          f"{dropped} hints refused over the bound")


def _same_ring(nodes: list[NodeProcess], member: str) -> dict[str, Any] | None:
    """The ring every node reports, once they agree and it names `member`; else None."""
    views = [ring_of(n) for n in nodes]
    if len({(v["epoch"], v["hash"]) for v in views}) != 1:
        return None
    return views[0] if member in {m["node_id"] for m in views[0]["members"]} else None


def _redirected(nodes: list[NodeProcess], ring: dict[str, Any], moved: list[str],
                still_owned: int) -> bool:
    """Every moved key is on each of its new owners, and only hints for keys the down node
    still owns are left."""
    held = {n.node_id: local_keys(n) for n in nodes}
    placed = all(k in held[o] for k in moved for o in owners(ring, k))
    return placed and _pending(nodes) == still_owned


@pytest.mark.timeout(240)
async def test_hints_for_a_down_node_that_lost_the_key_go_to_its_new_owners(
        cluster_factory: ClusterFactory) -> None:
    """Issue 15 part 5: hints held for node4, which is down; a new ring (node5 joins) moves
    some of node4's partitions to other owners. Hints for those keys must go to the new
    owners, not wait for node4 (which may never come back, and no longer owns them).
    Then node4 is removed: every hint left goes to the new owners and the queues empty."""
    cluster = cluster_factory(4)
    ring = cluster.wait_converged(timeout=30)
    x = cluster.node("node4")
    live = [n for n in cluster if n is not x]
    keys_ = _keys_owned_by(ring, {"node4"}, 300, "m")
    x.stop()
    await asyncio.to_thread(wait_until, lambda: all(
        members_seen_by(n)["node4"]["status"] == "down" for n in live),
        timeout=20, interval=0.1, message="node4 seen down by every live node")
    results = await _put_all(live, keys_, w="2")
    assert {status for status, _ in results} == {204}
    await async_wait_until(lambda: asyncio.to_thread(lambda: _pending(live) == len(keys_)),
                           timeout=20, message="one hint per key for node4")

    node5 = cluster.add_node()
    node5.wait_ready(timeout=30)
    live.append(node5)
    new_ring = await async_wait_until(lambda: asyncio.to_thread(_same_ring, live, "node5"),
                                      timeout=60, message="a ring with node5, on every node")
    moved = [k for k in keys_ if "node4" not in owners(new_ring, k)]
    assert moved, "node5 took none of node4's partitions holding these keys"
    started = time.monotonic()
    await async_wait_until(
        lambda: asyncio.to_thread(_redirected, live, new_ring, moved, len(keys_) - len(moved)),
        timeout=30, interval=0.25,
        message=f"hints for the {len(moved)} keys node4 lost, delivered to their new owners")
    took = time.monotonic() - started

    await asyncio.to_thread(_post_remove, live[0], "node4")
    final = await async_wait_until(
        lambda: asyncio.to_thread(lambda: (r := _same_ring(live, "node5")) and
                                  "node4" not in {m["node_id"] for m in r["members"]} and r),
        timeout=60, message="a ring without node4, on every node")
    await async_wait_until(
        lambda: asyncio.to_thread(_redirected, live, final, keys_, 0),
        timeout=60, interval=0.25, message="every hint delivered after node4 was removed")
    print(f"\n{len(moved)} of {len(keys_)} hints redirected to new owners in {took:.1f}s; "
          f"the rest after node4 was removed")


def _post_remove(node: NodeProcess, target: str) -> None:
    req = urllib.request.Request(f"{node.url}/v1/cluster/remove/{target}", method="POST",
                                 headers=node.auth_headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as resp:
        assert resp.status == 202, resp.status
