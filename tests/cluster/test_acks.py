"""Which acks count toward W, with real node processes (issue 15 part 4).

A write reaches a node outside the key's preference list when rings briefly differ: a peer
on an older or newer ring forwards it there (``CoordinateWrite`` with forward=False), and
that node coordinates it. Its own copy is not one of the key's N replicas, so it must not
count toward W; only the owners' acks do (Dynamo §4.5). These tests send that forwarded
write directly, over the peer protocol, to a node that does not own the key.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import aiohttp
import pytest

from dfsring.cli.launcher import LocalCluster, NodeProcess
from dfsring.core import vclock
from dfsring.testing.wait import wait_until
from dfsring.transport import messages
from dfsring.transport.messages import (
    CoordinateWrite,
    ErrorReply,
    Message,
    ReplicaWrite,
    WriteReply,
)
from dfsring.transport.rpc import SECRET_HEADER
from tests.cluster.clusterops import BUCKET, members_seen_by, owners
from tests.conftest import ClusterFactory


def _keys_not_owned_by(ring: dict[str, Any], node: str, count: int) -> list[str]:
    out: list[str] = []
    for i in range(10_000):
        if node not in owners(ring, f"a-{i}"):
            out.append(f"a-{i}")
            if len(out) == count:
                return out
    raise AssertionError("not enough keys")


async def _rpc(cluster: LocalCluster, node: NodeProcess, msg: Message) -> tuple[int, Message]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http, \
            http.post(f"http://{node.peer_address}/internal/v1/{msg.KIND}", data=msg.encode(),
                      headers={SECRET_HEADER: cluster.secret}) as r:
        return r.status, messages.decode(await r.read())


def _forwarded_put(key: str, epoch: int, *, w: int, sloppy: bool) -> CoordinateWrite:
    return CoordinateWrite(BUCKET.encode(), key.encode(), "", f"value of {key}".encode(),
                           "text/plain", w, sloppy, epoch)


@pytest.mark.timeout(120)
async def test_write_coordinated_by_a_non_owner_does_not_count_its_own_copy(
        cluster_factory: ClusterFactory) -> None:
    """4 nodes, N=3: node4 coordinates a write for a key it does not own, W=3 strict, while
    one owner hangs (SIGSTOP: still held up, never answers). Only two owners can ack, so
    the answer must be quorum-not-met with 2 acks; counting node4's own copy made it a 2xx
    claiming "3/3" for a value on two replicas."""
    cluster = cluster_factory(4)
    ring = cluster.wait_converged(timeout=30)
    coordinator = cluster.node("node4")
    key = _keys_not_owned_by(ring, "node4", 1)[0]
    victim = cluster.node(sorted(owners(ring, key))[0])
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        status, reply = await _rpc(cluster, coordinator,
                                   _forwarded_put(key, ring["epoch"], w=3, sloppy=False))
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    assert isinstance(reply, ErrorReply), (
        f"a write acked by 2 of 3 owners was answered {status} {reply} (W=3)")
    assert (status, reply.code, reply.acked) == (503, "quorum-not-met", 2)


@pytest.mark.timeout(120)
async def test_write_through_a_non_owner_with_every_owner_up_never_fails_for_extra_acks(
        cluster_factory: ClusterFactory) -> None:
    """4 nodes, N=3, every owner up: a forwarded write coordinated by a non-owner with W=3
    is committed on all three owners, and must be answered 2xx with 3 acks. The coordinator's
    own copy plus three owner acks were four replies to a tracker sized for three, which
    raised (answered as an error for a committed write)."""
    cluster = cluster_factory(4)
    ring = cluster.wait_converged(timeout=30)
    coordinator = cluster.node("node4")
    await asyncio.to_thread(wait_until, lambda: all(
        m["status"] == "up" for m in members_seen_by(coordinator).values()),
        timeout=15, interval=0.1, message="node4 to see every owner up")
    bad: list[str] = []
    for key in _keys_not_owned_by(ring, "node4", 60):
        status, reply = await _rpc(cluster, coordinator,
                                   _forwarded_put(key, ring["epoch"], w=3, sloppy=True))
        if not (isinstance(reply, WriteReply) and reply.acks == 3):
            bad.append(f"{key}: {status} {reply}")
    assert bad == [], f"{len(bad)} of 60 committed writes not answered 2xx: {bad[:3]}"


def _keys_owned_by_all(ring: dict[str, Any], wanted: set[str], count: int) -> list[str]:
    out = [f"m-{i}" for i in range(20_000) if wanted <= owners(ring, f"m-{i}")]
    assert len(out) >= count, "not enough keys"
    return out[:count]


def _same_ring(nodes: list[NodeProcess], member: str) -> dict[str, Any] | None:
    views = [n.get_json("/v1/cluster/ring") for n in nodes]
    if len({(v["epoch"], v["hash"]) for v in views}) != 1:
        return None
    return views[0] if member in {m["node_id"] for m in views[0]["members"]} else None


async def _put(http: aiohttp.ClientSession, url: str, key: str) -> tuple[int, str]:
    async with http.put(f"{url}/v1/kv/{BUCKET}/{key}", data=key.encode(),
                        params={"w": "all", "sloppy": "false"}) as r:
        await r.read()
        return r.status, r.headers.get("Dfs-Acks", "")


@pytest.mark.timeout(180)
async def test_write_waiting_on_an_owner_that_lost_the_key_mid_write_completes_on_the_new_owner(
        cluster_factory: ClusterFactory) -> None:
    """Ownership moves under load: node1 coordinates W=all strict writes for keys that node3
    owns; node3 hangs (SIGSTOP), so each write waits for it; meanwhile node5 joins and, in
    the new ring, takes node3's place for some of those keys. node1 adopts that ring
    mid-write: it must recount against the new owners and send the write to node5, and the
    writes whose new owners are all up must be answered 2xx "3/3", as they are on all three
    owners of the ring they completed under. (Landed: node1 kept waiting for node3, which
    no longer owns those keys, and answered 503 at the deadline.)"""
    cluster = cluster_factory(4, extra_args=("--request-timeout", "12"))
    ring = cluster.wait_converged(timeout=30)
    node1, node3 = cluster.node("node1"), cluster.node("node3")
    keys_ = _keys_owned_by_all(ring, {"node1", "node3"}, 120)
    assert node3.pid is not None
    os.kill(node3.pid, signal.SIGSTOP)
    try:
        async with aiohttp.ClientSession(headers=cluster.auth_headers,
                                         timeout=aiohttp.ClientTimeout(total=40)) as http:
            writes = asyncio.gather(*(_put(http, node1.url, k) for k in keys_))
            node5 = cluster.add_node(("--request-timeout", "12"))
            results = dict(zip(keys_, await writes, strict=True))
        others = [n for n in cluster if n is not node3]
        new_ring = await asyncio.to_thread(
            wait_until, lambda: _same_ring(others, node5.node_id), timeout=60, interval=0.2,
            message="a ring with node5 on every node but the hung node3")
    finally:
        os.kill(node3.pid, signal.SIGCONT)
    moved = [k for k in keys_ if "node3" not in owners(new_ring, k)]
    assert moved, "node5 took none of node3's places for these keys"
    wrong = {k: results[k] for k in moved if results[k] != (204, "3/3")}
    assert not wrong, (f"{len(wrong)} of {len(moved)} writes whose new owners were all up "
                       f"not answered 204 3/3: {list(wrong.items())[:4]}")
    answered = [k for k, (status, _) in results.items() if status == 204]
    held = {n.node_id: await asyncio.to_thread(_local, n, answered) for n in others}
    missing = [f"{k} on {o}" for k in answered for o in owners(new_ring, k)
               if o != "node3" and k not in held[o]]
    assert not missing, f"acknowledged writes missing on new owners: {missing[:4]}"


def _local(node: NodeProcess, keys_: list[str]) -> set[str]:
    found: set[str] = set()
    for key in keys_:
        try:
            node.get_json(f"/v1/node/local/kv/{BUCKET}/{key}")
            found.add(key)
        except OSError:
            pass
    return found


@pytest.mark.timeout(60)
async def test_replica_ack_names_its_ring_epoch_and_a_negative_epoch_is_refused(
        cluster_factory: ClusterFactory) -> None:
    """A replica says which ring epoch it applied a write under (what the coordinator counts
    it by); a replica-write naming an impossible epoch is refused with 400, stores nothing."""
    cluster = cluster_factory(1)
    node = cluster.nodes[0]
    epoch = cluster.wait_converged(timeout=30)["epoch"]
    versions = vclock.encode_versions(vclock.update(
        vclock.Versions(), vclock.VersionVector(), "peer", b"v", "text/plain", 1_000))
    status, reply = await _rpc(cluster, node, ReplicaWrite(BUCKET.encode(), b"neg", versions, -1))
    assert (status, getattr(reply, "code", None)) == (400, "bad-request"), reply
    with pytest.raises(OSError):
        node.get_json(f"/v1/node/local/kv/{BUCKET}/neg")
    status, reply = await _rpc(cluster, node, ReplicaWrite(BUCKET.encode(), b"ok", versions, epoch))
    assert status == 200 and getattr(reply, "epoch", None) == epoch, reply
