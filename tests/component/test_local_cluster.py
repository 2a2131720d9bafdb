"""A 5-node cluster in one process over LocalTransport (dfsring.testing.localcluster).

Real coordinators, hint stores, handoff, anti-entropy, gossip and storage (the memory engine,
and LMDB in the temp dir); only the socket is replaced. Each scenario must finish in under a
second, cluster start and stop included: the budget is asserted, not just hoped for.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dfsring.core.keys import ObjectName, object_name
from dfsring.core.vclock import VersionVector
from dfsring.testing.localcluster import InProcessCluster, LocalNode, start_cluster
from dfsring.testing.wait import async_wait_until

pytestmark = pytest.mark.component
BUDGET_S = 1.0
POLL_S = 0.8
SHM = "/dev/shm"
CHUNK_SIZE = 65_536  # the smallest allowed


@pytest.fixture
def ram_dir(tmp_path: Path) -> Iterator[Path]:
    """The nodes' data dirs in RAM where there is a tmpfs: a node fsyncs cluster.json and
    acceptor.json on start and on every membership change, which costs more on a busy disk
    than the whole scenario. The files are real, only the medium differs."""
    if not os.access(SHM, os.W_OK):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="dfsring-localcluster-", dir=SHM))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["memory", "lmdb"])
async def cluster(request: pytest.FixtureRequest, ram_dir: Path
                  ) -> AsyncIterator[InProcessCluster]:
    started = time.monotonic()
    cluster = await start_cluster(ram_dir, 5, lmdb=request.param == "lmdb",
                                  chunk_size=CHUNK_SIZE)
    try:
        yield cluster
    finally:
        await cluster.stop()
    elapsed = time.monotonic() - started
    print(f"\n{request.node.name}: {elapsed * 1000:.0f} ms with start and stop")
    assert elapsed < BUDGET_S, f"took {elapsed:.2f}s, the budget is {BUDGET_S}s"


def values(node: LocalNode, name: ObjectName) -> list[bytes | None]:
    return [s.value for s in node.svc.store.get(name).siblings]


def roles(cluster: InProcessCluster, name: ObjectName) -> tuple[LocalNode, LocalNode, LocalNode]:
    """(coordinator, the other reachable owner, the owner to partition away)."""
    a, b, c = (cluster.node(i) for i in cluster.owners(name))
    return a, b, c


async def test_a_write_with_one_replica_partitioned_away_is_hinted_then_handed_off(
        cluster: InProcessCluster) -> None:
    name = object_name("b", "k1")
    coordinator, _, victim = roles(cluster, name)
    cluster.network.isolate(victim.address)

    result = await coordinator.svc.coordinator.put(name, VersionVector(), b"v1", "text/plain",
                                                   w=3)

    assert (result.acks, result.hinted) == (3, 1)  # the victim's slot went to a fallback
    holders = [n for n in cluster.nodes if victim.node_id in n.svc.hints.targets()]
    assert [h.node_id for h in holders] == [cluster.fallbacks(name)[0]]
    assert values(victim, name) == []

    cluster.network.heal()

    async def handed_off() -> bool:
        for node in holders:
            await node.svc.handoff.run_once()
        return values(victim, name) == [b"v1"] and not holders[0].svc.hints.targets()

    await async_wait_until(handed_off, timeout=POLL_S, interval=0.01,
                           message="the fallback handed the hint to the healed owner")


async def test_anti_entropy_repairs_a_replica_that_missed_a_write_and_has_no_hint(
        cluster: InProcessCluster) -> None:
    name = object_name("b", "k1")
    coordinator, _, victim = roles(cluster, name)
    cluster.network.isolate(victim.address)

    result = await coordinator.svc.coordinator.put(name, VersionVector(), b"v1", "text/plain",
                                                   w=2, sloppy=False)

    assert (result.acks, result.hinted) == (2, 0)
    assert not any(n.svc.hints.targets() for n in cluster.nodes)  # strict quorum: no hint
    assert values(victim, name) == []
    cluster.network.heal()

    async def repaired() -> bool:
        await victim.svc.exchange.run_once()  # one peer per round, in turn
        return values(victim, name) == [b"v1"]

    await async_wait_until(repaired, timeout=POLL_S, interval=0.01,
                           message="anti-entropy brought the missed write to the replica")


async def test_a_file_uploaded_through_one_node_is_read_back_through_another(
        cluster: InProcessCluster) -> None:
    """Chunks travel as raw payload both ways (ChunkPut, ChunkGet), the manifest through
    the coordinators, so the files counterpart of the replica core runs over it too."""
    data = os.urandom(CHUNK_SIZE * 4)

    async def body() -> AsyncIterator[bytes]:
        yield data

    writer, reader = cluster.nodes[0].svc.files, cluster.nodes[4].svc.files
    await writer.service.upload("f", "dir/file", body(), content_type="application/x",
                                metadata={})

    built = await reader.service.manifest("f", "dir/file")
    assert len(built.chunks) > 1 and built.size == len(data)
    pieces = [bytes(await reader.chunks.get(ref.digest)) for ref in built.chunks]
    assert b"".join(pieces) == data
