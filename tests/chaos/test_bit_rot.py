"""Bit rot: one node is stopped mid-workload and one byte is flipped in 20 of its stored values
and 20 of its chunk files, then it is restarted while clients keep writing keys, sets and files.
No corrupt byte may ever reach a client (every read during and after the run matches its
write-time hash), the scrubber must find every rotten copy and replace it from another owner,
and nothing acknowledged may be lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dfsring.testing.chaos.collect import ReplicaCheck
from dfsring.testing.chaos.history import MAGIC, OpKind, Outcome
from dfsring.testing.chaos.rot import chunk_intact, flip_chunks, flip_values
from dfsring.testing.chaos.scenario import READY_TIMEOUT, Checking, recover, run_chaos
from dfsring.testing.chaos.settings import replicas_from_env, rng_for, scale_from_env
from dfsring.testing.chaos.summary import ScenarioSummary
from dfsring.testing.chaos.workload import Workload, WorkloadConfig
from dfsring.testing.wait import async_wait_until
from tests.chaos.conftest import ChaosFactory

SCALE = scale_from_env()
BEFORE_S = 20.0 * SCALE
AFTER_S = 10.0 * SCALE
ROTTEN = 20
NODE_ARGS = ("--chunk-size", "65536", "--scrub-interval", "2")
CHECKING = Checking(replicas=replicas_from_env(ReplicaCheck.AFTER_CONVERGENCE))

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(int(BEFORE_S + AFTER_S + 300))]


def _markers(workload: Workload) -> list[bytes]:
    """The headers of acknowledged unique-key values, oldest first (each names one write)."""
    return [MAGIC + b" " + rec.write_id.encode() + b" " for rec in workload.records
            if rec.op is OpKind.PUT and rec.outcome is Outcome.OK and rec.write_id]


async def test_flipped_values_and_chunks_are_never_served_and_are_repaired(
        chaos_cluster: ChaosFactory, chaos_seed: str,
        chaos_summary: Callable[[ScenarioSummary], None], tmp_path) -> None:
    cluster = chaos_cluster(5, extra_args=NODE_ARGS)
    rng = rng_for(chaos_seed, "bit-rot")
    victim = rng.randint(1, cluster.size)
    node = cluster.node(victim)
    rotten_values: list[bytes] = []
    rotten_chunks: list[Path] = []

    async def nemesis(workload: Workload) -> None:
        await asyncio.sleep(BEFORE_S)
        await asyncio.to_thread(node.stop)
        rotten_values.extend(await asyncio.to_thread(
            flip_values, node.spec.data_dir / "db" / "data.mdb", _markers(workload), ROTTEN))
        rotten_chunks.extend(await asyncio.to_thread(
            flip_chunks, node.spec.data_dir / "chunks", ROTTEN, rng))
        cluster.record(f"n{victim} stopped; {len(rotten_values)} values and "
                       f"{len(rotten_chunks)} chunks flipped on disk")
        node.start()  # on this thread (see dfsring.testing.chaos.scenario)
        await asyncio.to_thread(node.wait_ready, READY_TIMEOUT)
        cluster.record(f"n{victim} restarted")
        await asyncio.sleep(AFTER_S)

    result = await run_chaos(
        "bit-rot", chaos_seed, cluster.client_urls, nemesis,
        heal=lambda: recover(cluster),
        config=WorkloadConfig(seed=f"{chaos_seed}/bit-rot", duration_s=BEFORE_S + AFTER_S + 30,
                              file_weight=0.15),
        out_dir=tmp_path / "run",
        checking=CHECKING, headers=cluster.auth_headers)
    chaos_summary(result.summary)
    print("\n" + cluster.timeline() + "\n" + result.explain())
    assert result.report.ok, result.explain()
    assert len(rotten_values) == ROTTEN and len(rotten_chunks) == ROTTEN, \
        f"only {len(rotten_values)} values and {len(rotten_chunks)} chunks to flip"

    began = time.monotonic()
    await async_wait_until(
        lambda: asyncio.to_thread(lambda: all(chunk_intact(p) for p in rotten_chunks)),
        timeout=60, interval=0.5, message=f"the {ROTTEN} rotten chunks on n{victim} replaced")
    stats = await asyncio.to_thread(node.get_json, "/v1/node/stats")
    assert stats["corrupt_found"] >= ROTTEN, stats
    print(f"rotten chunks all replaced {time.monotonic() - began:.1f}s after the checks; "
          f"n{victim} found {stats['corrupt_found']} corrupt copies")
