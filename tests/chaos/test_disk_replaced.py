"""Disk replaced (issue 15): the founder loses its WHOLE data dir mid-workload — node id file,
cluster state, Paxos promises, keys and chunks — and comes back with the same flags and node
id. Every node has the same seed list with itself in it (as a Kubernetes StatefulSet or a
config tool hands it out), and the victim is the first seed, the node that founded the
cluster. It must rejoin the cluster it founded as itself (same cluster id, every member in
one ring), be refilled by its peers, and no acknowledged write may be lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dfsring.testing.chaos.collect import ReplicaCheck
from dfsring.testing.chaos.scenario import (
    Checking,
    lineage,
    recover,
    replace_disk,
    run_chaos,
    watch_rejoin,
)
from dfsring.testing.chaos.settings import replicas_from_env, scale_from_env
from dfsring.testing.chaos.summary import ScenarioSummary
from dfsring.testing.chaos.workload import Workload, WorkloadConfig
from tests.chaos.conftest import ChaosFactory

SCALE = scale_from_env()
BEFORE_S = 12.0 * SCALE  # writes the founder holds before its disk goes
AFTER_S = 18.0 * SCALE  # writes while it is away and after it comes back
DOWN_S = 2.0  # the disk swap
FOUNDER = 1  # the first seed: on its first start it founded the cluster
NODE_ARGS = ("--chunk-size", "65536")

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(int(BEFORE_S + AFTER_S + 300))]


async def test_a_founder_whose_disk_is_replaced_rejoins_its_cluster(
        chaos_cluster: ChaosFactory, chaos_seed: str,
        chaos_summary: Callable[[ScenarioSummary], None], tmp_path) -> None:
    cluster = chaos_cluster(5, extra_args=NODE_ARGS)
    founder = cluster.node(FOUNDER)
    seeds = {n.node_id: n.spec.args[n.spec.args.index("--seeds") + 1] for n in cluster.nodes}
    assert len(set(seeds.values())) == 1 and founder.peer_address == seeds[founder.node_id].split(
        ",")[0], f"every node must have the same seed list, the founder first: {seeds}"
    cluster_id, members = await asyncio.to_thread(lineage, founder)
    cluster.record(f"cluster {cluster_id}, members {', '.join(sorted(members))}")
    checking = Checking(replicas=replicas_from_env(ReplicaCheck.AFTER_CONVERGENCE),
                        converge_timeout=60.0, expect_cluster=cluster_id,
                        expect_members=members, strict_statuses=True)

    async def nemesis(_: Workload) -> None:
        await asyncio.sleep(BEFORE_S)
        await replace_disk(cluster, FOUNDER, down_s=DOWN_S)
        await asyncio.gather(asyncio.sleep(AFTER_S), watch_rejoin(
            cluster, FOUNDER, (cluster_id, members), within_s=AFTER_S))

    result = await run_chaos(
        "disk-replaced", chaos_seed, cluster.client_urls, nemesis,
        heal=lambda: recover(cluster),
        config=WorkloadConfig(seed=f"{chaos_seed}/disk-replaced",
                              duration_s=BEFORE_S + AFTER_S + 30, file_weight=0.1),
        out_dir=tmp_path / "run",
        checking=checking, headers=cluster.auth_headers)
    chaos_summary(result.summary)
    print("\n" + cluster.timeline() + "\n" + result.explain())
    assert result.report.ok, result.explain()
