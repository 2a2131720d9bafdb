"""Rotating partitions: isolate one node, a 2|3 split, a one-way cut, a bridge — a new one
every 10 s for 60 s (x CHAOS_SCALE) while clients write unique keys and update shared sets;
after healing, nothing acknowledged may be lost and nothing unwritten may appear, and every
acknowledged key must be back on all its owners (hinted handoff) before the final reads."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dfsring.testing.chaos.collect import ReplicaCheck
from dfsring.testing.chaos.scenario import Checking, partitions, recover, run_chaos
from dfsring.testing.chaos.settings import replicas_from_env, rng_for, scale_from_env
from dfsring.testing.chaos.summary import ScenarioSummary
from dfsring.testing.chaos.workload import Workload, WorkloadConfig
from tests.chaos.conftest import ChaosFactory

PERIOD_S = 10.0
COUNT = max(1, round(6 * scale_from_env()))  # 60 s at scale 1
# Strict: every acknowledged key on all its owners once healed, before any final read (so not
# by read repair): sloppy quorum + hinted handoff must have put back what a cut-off owner missed.
CHECKING = Checking(replicas=replicas_from_env(ReplicaCheck.AFTER_CONVERGENCE))

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(int(COUNT * PERIOD_S + 240))]


async def test_rotating_partitions(chaos_cluster: ChaosFactory, chaos_seed: str,
                                   chaos_summary: Callable[[ScenarioSummary], None],
                                   tmp_path) -> None:
    cluster = chaos_cluster(5)
    rng = rng_for(chaos_seed, "partitions")

    async def nemesis(_: Workload) -> None:
        await partitions(cluster, rng, period_s=PERIOD_S, count=COUNT)

    result = await run_chaos(
        "rotating-partitions", chaos_seed, cluster.client_urls, nemesis,
        heal=lambda: recover(cluster),
        config=WorkloadConfig(seed=f"{chaos_seed}/partitions", duration_s=COUNT * PERIOD_S),
        out_dir=tmp_path / "run",
        checking=CHECKING, headers=cluster.auth_headers)
    chaos_summary(result.summary)
    print("\n" + cluster.timeline() + "\n" + result.explain())
    assert result.report.ok, result.explain()
