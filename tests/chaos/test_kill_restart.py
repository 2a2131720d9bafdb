"""kill -9 of a random node every 6 s, 5 cycles (x CHAOS_SCALE), each restarted with its data
dir after a short down time, while clients keep writing keys, sets and files (cut into 64 KiB
chunks, so an upload spans nodes that die under it); nothing acknowledged may be lost, and
every acknowledged key must be on all its owners once the cluster has settled."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dfsring.testing.chaos.collect import ReplicaCheck
from dfsring.testing.chaos.scenario import Checking, kill_restart, recover, run_chaos
from dfsring.testing.chaos.settings import replicas_from_env, rng_for, scale_from_env
from dfsring.testing.chaos.summary import ScenarioSummary
from dfsring.testing.chaos.workload import Workload, WorkloadConfig
from tests.chaos.conftest import ChaosFactory

PERIOD_S = 6.0
CYCLES = max(1, round(5 * scale_from_env()))
# Strict: what a killed owner missed while down comes back by hinted handoff, before any final
# read could repair it.
CHECKING = Checking(replicas=replicas_from_env(ReplicaCheck.AFTER_CONVERGENCE))

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(int(CYCLES * (PERIOD_S + 30) + 240))]


async def test_kill_and_restart_random_nodes(chaos_cluster: ChaosFactory, chaos_seed: str,
                                             chaos_summary: Callable[[ScenarioSummary], None],
                                             tmp_path) -> None:
    cluster = chaos_cluster(5, extra_args=("--chunk-size", "65536"))
    rng = rng_for(chaos_seed, "kill")

    async def nemesis(_: Workload) -> None:
        await kill_restart(cluster, rng, period_s=PERIOD_S, cycles=CYCLES)

    result = await run_chaos(
        "kill-restart", chaos_seed, cluster.client_urls, nemesis,
        heal=lambda: recover(cluster),
        config=WorkloadConfig(seed=f"{chaos_seed}/kill", duration_s=CYCLES * PERIOD_S + 60,
                              file_weight=0.1),
        out_dir=tmp_path / "run",
        checking=CHECKING, headers=cluster.auth_headers)
    chaos_summary(result.summary)
    print("\n" + cluster.timeline() + "\n" + result.explain())
    assert result.report.ok, result.explain()
