"""One node's disk lost: kill -9 mid-workload, its keys and chunks deleted (its cluster state
kept, so it rejoins as the same member believing itself in sync), restarted while clients keep
writing keys, sets and files. Hinted handoff knows nothing of what the disk held; anti-entropy
alone must put every acknowledged key back on all its owners before the final reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dfsring.testing.chaos.collect import ReplicaCheck
from dfsring.testing.chaos.scenario import Checking, kill_and_wipe, recover, run_chaos
from dfsring.testing.chaos.settings import replicas_from_env, rng_for, scale_from_env
from dfsring.testing.chaos.summary import ScenarioSummary
from dfsring.testing.chaos.workload import Workload, WorkloadConfig
from tests.chaos.conftest import ChaosFactory

SCALE = scale_from_env()
BEFORE_S = 15.0 * SCALE  # writes the victim holds before its disk goes
AFTER_S = 20.0 * SCALE  # writes while and after it comes back
NODE_ARGS = ("--chunk-size", "65536")
CHECKING = Checking(replicas=replicas_from_env(ReplicaCheck.AFTER_CONVERGENCE),
                    converge_timeout=90.0)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(int(BEFORE_S + AFTER_S + 300))]


async def test_a_wiped_disk_is_refilled_by_anti_entropy(
        chaos_cluster: ChaosFactory, chaos_seed: str,
        chaos_summary: Callable[[ScenarioSummary], None], tmp_path) -> None:
    cluster = chaos_cluster(5, extra_args=NODE_ARGS)
    victim = rng_for(chaos_seed, "wipe").randint(1, cluster.size)

    async def nemesis(_: Workload) -> None:
        await asyncio.sleep(BEFORE_S)
        await kill_and_wipe(cluster, victim, down_s=2.0)
        await asyncio.sleep(AFTER_S)

    result = await run_chaos(
        "wiped-disk", chaos_seed, cluster.client_urls, nemesis,
        heal=lambda: recover(cluster),
        config=WorkloadConfig(seed=f"{chaos_seed}/wipe", duration_s=BEFORE_S + AFTER_S + 30,
                              file_weight=0.1),
        out_dir=tmp_path / "run",
        checking=CHECKING, headers=cluster.auth_headers)
    chaos_summary(result.summary)
    print("\n" + cluster.timeline() + "\n" + result.explain())
    assert result.report.ok, result.explain()
    stats = cluster.node(victim).get_json("/v1/node/stats")
    assert stats["antientropy"]["repaired_in"] > 0 or any(
        n.get_json("/v1/node/stats")["antientropy"]["repaired_out"] > 0
        for n in cluster.nodes if n is not cluster.node(victim)), "anti-entropy repaired nothing"
