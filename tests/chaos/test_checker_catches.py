"""The checker, end to end, fails a deliberately broken run: after a short fault-free run, a
saboteur deletes one acknowledged key (a dropped write), adds a value nobody wrote to another,
and writes one shared set back without an acknowledged element (a lost update). The same
collector and checker the scenarios use must report each, and nothing else."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from dfsring.testing.chaos.history import OpKind, Outcome, decode_set, encode_set, encode_value
from dfsring.testing.chaos.scenario import Checking, recover, run_chaos
from dfsring.testing.chaos.workload import CONTEXT, Workload, WorkloadConfig, parse_read
from tests.chaos.conftest import ChaosFactory

RUN_S = 6.0

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]


async def _sabotage(url: str, workload: Workload, headers: dict[str, str]) -> dict[str, str]:
    acked = [r for r in workload.records if r.outcome is Outcome.OK]
    puts = sorted({r.key for r in acked if r.op is OpKind.PUT})
    shared = sorted({r.key for r in acked if r.op is OpKind.RMW})
    assert len(puts) >= 2 and shared, "the run acknowledged too little to sabotage"
    dropped, haunted, victim = puts[0], puts[1], shared[0]
    bucket = workload.config.bucket
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.delete(f"{url}/v1/kv/{bucket}/{dropped}") as resp:
            assert resp.status == 204
        phantom = encode_value("w-never", b"nobody wrote this")
        async with http.put(f"{url}/v1/kv/{bucket}/{haunted}", data=phantom) as resp:
            assert resp.status == 204
        async with http.get(f"{url}/v1/kv/{bucket}/{victim}") as resp:
            values, context = parse_read(resp.status, resp.headers.get(CONTEXT),
                                         await resp.read())
        elements = set().union(*(decode_set(v) or set() for v in values))
        gone = min(elements & {r.element for r in acked if r.key == victim})
        headers = {CONTEXT: context} if context else {}
        # the saboteur's value is itself unrecorded, so it is a phantom as well
        value = encode_set("w-sabotage", elements - {gone})
        async with http.put(f"{url}/v1/kv/{bucket}/{victim}", data=value,
                            headers=headers) as resp:
            assert resp.status == 204
    return {"dropped": dropped, "haunted": haunted, "victim": victim, "gone": gone}


async def test_checker_fails_a_sabotaged_run(chaos_cluster: ChaosFactory, chaos_seed: str,
                                             tmp_path) -> None:
    cluster = chaos_cluster(5)
    done: dict[str, str] = {}
    seen: list[Workload] = []

    async def nemesis(workload: Workload) -> None:
        seen.append(workload)
        await asyncio.sleep(RUN_S)

    async def heal() -> None:
        await recover(cluster)
        done.update(await _sabotage(cluster.node(1).url, seen[0], cluster.auth_headers))

    result = await run_chaos(
        "sabotage", chaos_seed, cluster.client_urls, nemesis, heal=heal,
        config=WorkloadConfig(seed=f"{chaos_seed}/sabotage", duration_s=RUN_S),
        # the dropped key never reaches its owners again: do not wait for it
        out_dir=tmp_path / "run", checking=Checking(converge_timeout=3.0),
        headers=cluster.auth_headers)
    report, why = result.report, f"sabotage {done}\n{result.explain()}"
    print("\n" + why)
    assert set(report.failed_checks()) == {"lost", "phantom", "lost_updates", "replicas"}, why
    assert report.lost == 1 and report.lost_updates == 1, why
    assert all(done["dropped"] in f for f in report.result("lost").findings)
    assert any(done["haunted"] in f and "w-never" in f
               for f in report.result("phantom").findings)
    assert all(done["victim"] in f and done["gone"] in f
               for f in report.result("lost_updates").findings)
    assert all(done["dropped"] in f for f in report.result("replicas").findings)
