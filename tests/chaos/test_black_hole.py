"""A long black hole: every link to and from one node swallows all bytes for 30 s (x
CHAOS_SCALE) with its connections left open, so peers learn of it only by timeouts. Writes
for the keys it owns go to fallbacks with hints; once the hole closes the hints must be
delivered (queues empty) and every acknowledged key be on all its owners before any final
read could repair it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dfsring.testing.chaos.collect import ReplicaCheck
from dfsring.testing.chaos.scenario import Checking, black_hole, recover, run_chaos
from dfsring.testing.chaos.settings import replicas_from_env, rng_for, scale_from_env
from dfsring.testing.chaos.summary import ScenarioSummary
from dfsring.testing.chaos.workload import Workload, WorkloadConfig
from tests.chaos.conftest import ChaosFactory

SCALE = scale_from_env()
HOLD_S = 30.0 * SCALE
CHECKING = Checking(replicas=replicas_from_env(ReplicaCheck.AFTER_CONVERGENCE))

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(int(HOLD_S + 300))]


def _hints_delivered(cluster) -> int:
    return sum(int(n.get_json("/v1/node/stats").get("hints_delivered", 0))
               for n in cluster.nodes)


async def test_a_black_holed_owner_is_filled_by_hinted_handoff(
        chaos_cluster: ChaosFactory, chaos_seed: str,
        chaos_summary: Callable[[ScenarioSummary], None], tmp_path) -> None:
    cluster = chaos_cluster(5)
    victim = rng_for(chaos_seed, "black-hole").randint(1, cluster.size)

    async def nemesis(workload: Workload) -> None:
        await asyncio.sleep(3.0)
        # clients still reach it directly; a coordinator that cannot reach anyone only
        # answers 503, which tells us nothing about the others: send clients elsewhere
        workload.targets.pop(cluster.node(victim).node_id, None)
        await black_hole(cluster, victim, hold_s=HOLD_S)
        workload.targets[cluster.node(victim).node_id] = cluster.node(victim).url
        await asyncio.sleep(5.0)

    result = await run_chaos(
        "black-hole", chaos_seed, cluster.client_urls, nemesis,
        heal=lambda: recover(cluster),
        config=WorkloadConfig(seed=f"{chaos_seed}/black-hole", duration_s=HOLD_S + 60),
        out_dir=tmp_path / "run",
        checking=CHECKING, headers=cluster.auth_headers)
    delivered = await asyncio.to_thread(_hints_delivered, cluster)
    chaos_summary(result.summary)
    print(f"\n{cluster.timeline()}\n{result.explain()}\nhints delivered: {delivered}")
    assert result.report.ok, result.explain()
    assert delivered > 0, "the black-holed owner missed writes, yet no hint was delivered"
