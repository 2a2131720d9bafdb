"""Ownership moves under load (issue 15): on a network slowed everywhere (the leaving node's
links most), two nodes join at once and, as soon as the ring has them (their transfers still
running), an old owner leaves, while clients keep writing through the old owners, the leaving
one included until it reports `left`. Every write acknowledged by W replicas that were about
to lose ownership must still end up on all its final owners: 0 acknowledged writes lost,
replicas on all final owners, empty hint and transfer queues, one ring of the final members
in the cluster the run began in, and no status outside the documented ones (a 500, a 400)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dfsring.testing.chaos import nemesis as links
from dfsring.testing.chaos.collect import ReplicaCheck
from dfsring.testing.chaos.scenario import (
    Checking,
    join_at_once,
    leave,
    lineage,
    recover,
    run_chaos,
)
from dfsring.testing.chaos.settings import replicas_from_env, rng_for, scale_from_env
from dfsring.testing.chaos.summary import ScenarioSummary
from dfsring.testing.chaos.workload import Workload, WorkloadConfig
from tests.chaos.conftest import ChaosFactory

SCALE = scale_from_env()
START, JOINERS = 5, (6, 7)
WARM_S = 6.0 * SCALE  # keys on the old owners before anything moves
SLOW_MS = (250, 200)  # every link, once the move starts: latency +- jitter
LEAVER_MS = (600, 300)  # added on the leaving node's links: its gossip lags, its peers look slow
NODE_ARGS = ("--chunk-size", "65536")
W_ALL = 0.3  # of the unique-key puts, sent with w=all: acks from every owner, old or new
AFTER_S = 4.0  # writes on the final ring before the faults end
MOVE_S = 90.0  # joins agreed and the leave done within this (slowed links)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(int(WARM_S + 2 * MOVE_S + 300))]


async def test_ownership_moves_under_load(chaos_cluster: ChaosFactory, chaos_seed: str,
                                          chaos_summary: Callable[[ScenarioSummary], None],
                                          tmp_path) -> None:
    cluster = chaos_cluster(START, spares=len(JOINERS), extra_args=NODE_ARGS)
    leaver = rng_for(chaos_seed, "ownership").randint(2, START)  # an old owner, not the founder
    cluster_id, _ = await asyncio.to_thread(lineage, cluster.node(1))
    final = frozenset(cluster.node(i).node_id
                      for i in (*range(1, START + 1), *JOINERS) if i != leaver)
    checking = Checking(replicas=replicas_from_env(ReplicaCheck.AFTER_CONVERGENCE),
                        expect_cluster=cluster_id, expect_members=final,
                        strict_statuses=True)

    async def nemesis(workload: Workload) -> None:
        await asyncio.sleep(WARM_S)
        await asyncio.to_thread(cluster.slow_links, links.all_links(cluster.total), *SLOW_MS,
                                label="every link")
        await asyncio.to_thread(cluster.slow_links, links.touching(cluster.total, [leaver]),
                                *LEAVER_MS, label=f"n{leaver}")
        await join_at_once(cluster, JOINERS, within_s=MOVE_S)
        await leave(cluster, leaver, workload, within_s=MOVE_S)
        await asyncio.sleep(AFTER_S)

    result = await run_chaos(
        "ownership-moves", chaos_seed, cluster.client_urls, nemesis,
        heal=lambda: recover(cluster),
        config=WorkloadConfig(seed=f"{chaos_seed}/ownership", duration_s=WARM_S + 2 * MOVE_S,
                              clients=6, ops_per_s=30.0, file_weight=0.1,
                              w_all_share=W_ALL),
        out_dir=tmp_path / "run",
        checking=checking,
        judged=lambda: cluster.client_urls, headers=cluster.auth_headers)
    chaos_summary(result.summary)
    print("\n" + cluster.timeline() + "\n" + result.explain())
    assert result.report.ok, result.explain()
