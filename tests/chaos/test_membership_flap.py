"""Flapping membership: a random node (not the founding seed) leaves through
POST /v1/cluster/leave, is stopped once it reports `left`, and rejoins empty under the same id
and address — three times (x CHAOS_SCALE) while clients keep writing. Ownership moves both ways;
nothing acknowledged may be lost, and every acknowledged key must be on all its owners once the
ring has settled (ownership transfers alone, before any final read)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dfsring.testing.chaos.collect import ReplicaCheck
from dfsring.testing.chaos.scenario import Checking, leave_and_rejoin, recover, run_chaos
from dfsring.testing.chaos.settings import replicas_from_env, rng_for, scale_from_env
from dfsring.testing.chaos.summary import ScenarioSummary
from dfsring.testing.chaos.workload import Workload, WorkloadConfig
from tests.chaos.conftest import ChaosFactory

CYCLES = max(1, round(3 * scale_from_env()))
AWAY_S = 4.0  # writes land on the ring without the node
BETWEEN_S = 4.0  # and on the ring with it back

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(int(CYCLES * 120 + 240))]


async def test_a_node_leaves_and_rejoins(chaos_cluster: ChaosFactory, chaos_seed: str,
                                         chaos_summary: Callable[[ScenarioSummary], None],
                                         tmp_path) -> None:
    cluster = chaos_cluster(5)
    rng = rng_for(chaos_seed, "flap")

    async def nemesis(workload: Workload) -> None:
        for _ in range(CYCLES):
            await leave_and_rejoin(cluster, rng.randint(2, cluster.size), workload,
                                   away_s=AWAY_S)
            await asyncio.sleep(BETWEEN_S)

    result = await run_chaos(
        "membership-flap", chaos_seed, cluster.client_urls, nemesis,
        heal=lambda: recover(cluster),
        config=WorkloadConfig(seed=f"{chaos_seed}/flap", duration_s=CYCLES * 120),
        out_dir=tmp_path / "run",
        checking=Checking(replicas=replicas_from_env(ReplicaCheck.AFTER_CONVERGENCE)),
        headers=cluster.auth_headers)
    chaos_summary(result.summary)
    print("\n" + cluster.timeline() + "\n" + result.explain())
    assert result.report.ok, result.explain()
