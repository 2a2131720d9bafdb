"""Actors that cannot be shadowed (issue 15 part 3; Riak KV679, riak_test ``kv679_dataloss``).

Each test makes one node forget a key (a tombstone purged there only, a value quarantined
after bit rot, its partition dropped, its data dir restored from a backup), then writes the
key through that node without a context (a "blind" write, concurrent with whatever is there)
and checks that the acknowledged write is still readable through every node. On the landed
code the forgetting node minted a dot another replica's clock already covered, so the write
was answered 204 and silently vanished in the first read's join.

The forgetting is done to a stopped node's LMDB through the store's own code paths (the
same functions the scrubber, the tombstone purge and the transfer service call), as the
chaos bit-rot scenario edits a stopped node's files: no mocks.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from dfsring.cli.launcher import LocalCluster, NodeProcess
from dfsring.core import keys
from dfsring.core import merkle as antientropy
from dfsring.storage import LmdbEngine
from dfsring.storage.hintstore import TABLES as HINT_TABLES
from dfsring.storage.localstore import KV, TABLES, LocalStore
from dfsring.testing.chaos.rot import flip_values
from tests.conftest import ClusterFactory

BUCKET = "kv679"
PARTITION_BITS = 10  # the default --partitions 1024
QUIET = ("--ae-interval", "3600")  # no anti-entropy refill racing the blind write
StoreEdit = Callable[[LocalStore], Awaitable[None]]


async def _offline(node: NodeProcess, edit: StoreEdit) -> None:
    """Run `edit` on a stopped node's local store, through the store's own functions."""
    assert not node.running
    engine = LmdbEngine(node.spec.data_dir / "db", (*TABLES, *HINT_TABLES), durable=True)
    try:
        store = LocalStore(engine, node.node_id, PARTITION_BITS)
        await store.open()
        await edit(store)
    finally:
        await engine.close()


async def _put(http: aiohttp.ClientSession, node: NodeProcess, key: str, value: bytes,
               context: str | None = None) -> str:
    headers = {"Dfs-Context": context} if context is not None else {}
    async with http.put(f"{node.url}/v1/kv/{BUCKET}/{key}", data=value, headers=headers,
                        params={"w": "all"}) as r:
        assert r.status == 204, (r.status, await r.text())
        return r.headers["Dfs-Context"]


async def _values(http: aiohttp.ClientSession, node: NodeProcess, key: str) -> set[bytes]:
    """The live values of a key read through `node` from every replica (r=all)."""
    async with http.get(f"{node.url}/v1/kv/{BUCKET}/{key}", params={"r": "all"}) as r:
        if r.status == 404:
            return set()
        if r.status == 300:
            doc = json.loads(await r.read())
            return {base64.b64decode(s["value_b64"]) for s in doc["siblings"]}
        assert r.status == 200, (r.status, await r.text())
        return {await r.read()}


async def _assert_kept(cluster: LocalCluster, key: str, *values: bytes) -> None:
    """Every node reads every one of `values` (read repair and anti-entropy included)."""
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        for _ in range(2):  # the second round reads the states the first one repaired
            for node in cluster:
                seen = await _values(http, node, key)
                missing = [v for v in values if v not in seen]
                assert not missing, f"{node.node_id} reads {sorted(seen)}, lost {missing}"


def _start(node: NodeProcess, cluster: LocalCluster) -> None:
    node.start()
    node.wait_ready(timeout=20)
    cluster.wait_converged(timeout=20)


@pytest.mark.timeout(120)
async def test_kv679_tombstone_purged_on_one_owner_then_blind_write_is_lost(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(3, extra_args=QUIET)
    cluster.wait_converged(timeout=20)
    node1 = cluster.node("node1")
    name = keys.object_name(BUCKET, "doomed")
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        ctx = await _put(http, node1, "doomed", b"old")
        async with http.delete(f"{node1.url}/v1/kv/{BUCKET}/doomed",
                               headers={"Dfs-Context": ctx}, params={"w": "all"}) as r:
            assert r.status == 204
    node1.stop()

    async def purge(store: LocalStore) -> None:  # the scrubber's compare-and-delete, here only
        skey = store.storage_key(name)
        raw = store.engine.get(KV, skey)
        assert raw is not None
        assert await store.purge_tombstone(skey, antientropy.version_digest(raw))

    await _offline(node1, purge)
    _start(node1, cluster)
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        await _put(http, node1, "doomed", b"reborn")  # blind: node1 holds nothing of it
    await _assert_kept(cluster, "doomed", b"reborn")


@pytest.mark.timeout(120)
async def test_kv679_quarantined_value_then_blind_write_is_lost(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(3, extra_args=QUIET)
    cluster.wait_converged(timeout=20)
    node1 = cluster.node("node1")
    name = keys.object_name(BUCKET, "rotten")
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        ctx = await _put(http, node1, "rotten", b"ROT-MARKER-first")
        await _put(http, node1, "rotten", b"ROT-MARKER-second", ctx)
    node1.stop()
    db = node1.spec.data_dir / "db" / "data.mdb"
    assert flip_values(db, [b"ROT-MARKER-second"], 1)

    async def quarantine(store: LocalStore) -> None:  # what the scrubber does on a bad checksum
        assert await store.quarantine(store.storage_key(name), int(time.time() * 1000))

    await _offline(node1, quarantine)
    _start(node1, cluster)
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        await _put(http, node1, "rotten", b"after-quarantine")
    await _assert_kept(cluster, "rotten", b"ROT-MARKER-second", b"after-quarantine")


@pytest.mark.timeout(120)
async def test_kv679_partition_dropped_and_regained_then_blind_write_is_lost(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(3, extra_args=QUIET)
    cluster.wait_converged(timeout=20)
    node1 = cluster.node("node1")
    name = keys.object_name(BUCKET, "moved")
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        ctx = await _put(http, node1, "moved", b"first")
        await _put(http, node1, "moved", b"second", ctx)
    node1.stop()

    async def drop(store: LocalStore) -> None:  # what the transfer service does once it moved
        while await store.drop_partition(store.partition(name)):
            pass

    await _offline(node1, drop)
    _start(node1, cluster)  # owner again (N=3 of 3), before any transfer brought it back
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        await _put(http, node1, "moved", b"after-regain")
    await _assert_kept(cluster, "moved", b"second", b"after-regain")


@pytest.mark.timeout(150)
async def test_kv679_restored_backup_then_blind_write_is_lost(
        cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    cluster = cluster_factory(3, extra_args=QUIET)
    cluster.wait_converged(timeout=20)
    node1 = cluster.node("node1")
    db = node1.spec.data_dir / "db"
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        ctx = await _put(http, node1, "restored", b"first")
        node1.stop()
        shutil.copytree(db, tmp_path / "backup")  # a cold backup of the stopped node
        _start(node1, cluster)
        await _put(http, node1, "restored", b"after-backup", ctx)
        node1.stop()
        db.rename(tmp_path / "lost-db")  # the disk that failed
        shutil.copytree(tmp_path / "backup", db)  # restored, same node id and actor
        _start(node1, cluster)
        await _put(http, node1, "restored", b"after-restore")
    await _assert_kept(cluster, "restored", b"after-backup", b"after-restore")
