"""One chaos run, end to end: workload + faults, heal, converge, observe, check, summarise.

:func:`run_chaos` needs only the nodes' client URLs, a nemesis coroutine and a heal
coroutine, so it runs against any deployment; the nemeses below drive a local
:class:`~dfsring.testing.chaos.wiring.ChaosCluster`.

The fault calls go through the synchronous toxiproxy client, so they run in a worker thread
(never blocking the workload's event loop); starting a node process stays on this (the main)
thread, because a child is killed when the thread that forked it exits (see launcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dfsring.cli.launcher import NodeNotReady, NodeProcess
from dfsring.testing.chaos.checker import CheckOptions, Report, acknowledged, check
from dfsring.testing.chaos.collect import (
    Convergence,
    Observation,
    ReplicaCheck,
    observe,
    wait_converged,
)
from dfsring.testing.chaos.nemesis import PARTITION_KINDS, rotating_partitions
from dfsring.testing.chaos.summary import ScenarioSummary
from dfsring.testing.chaos.wiring import ChaosCluster
from dfsring.testing.chaos.workload import Workload, WorkloadConfig
from dfsring.testing.wait import async_wait_until

log = logging.getLogger("dfsring.chaos")

Nemesis = Callable[[Workload], Awaitable[None]]
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class ChaosResult:
    name: str
    summary: ScenarioSummary
    report: Report
    convergence: Convergence
    observation: Observation
    workload: Workload
    out_dir: Path

    def explain(self) -> str:
        """Everything a failed assertion should print: the line, the checks, the files."""
        conv = "" if self.convergence.converged else (
            "\nnot converged: " + "; ".join(self.convergence.problems[:5]))
        return (f"{self.summary.line()}{conv}\n{self.report.describe()}\n"
                f"history: {self.workload.history_path}; report: {self.out_dir / 'report.txt'}")


@dataclass(frozen=True)
class Checking:
    """How strict the end state must be (see collect.ReplicaCheck)."""

    replicas: ReplicaCheck = ReplicaCheck.AFTER_CONVERGENCE
    empty_queues: bool = True
    why_relaxed: str = ""
    converge_timeout: float = 60.0
    read_timeout: float = 90.0
    repair_timeout: float = 30.0
    expect_cluster: str | None = None  # every node must end in the cluster the run began in
    expect_members: frozenset[str] | None = None  # ...with exactly these ring members
    strict_statuses: bool = False  # a status outside the documented ones fails the run


async def run_chaos(name: str, seed: str, urls: Mapping[str, str], nemesis: Nemesis, *,
                    heal: Callable[[], Awaitable[None]], config: WorkloadConfig, out_dir: Path,
                    checking: Checking | None = None,
                    judged: Callable[[], Mapping[str, str]] | None = None,
                    headers: Mapping[str, str] | None = None) -> ChaosResult:
    """Run the workload while `nemesis` acts, heal, then judge the final state.

    The nemesis returns when its faults are over; the workload is then stopped (it would stop
    by itself at its time or op budget). Convergence and observation never raise: what is
    wrong ends up in the report. `judged` gives the nodes to judge at the end when the
    nemesis changed the membership (default: `urls`, the nodes the clients started with).
    `headers` authenticate the workload's and the judge's requests.
    """
    how = checking or Checking()
    started = time.monotonic()
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    workload = Workload(urls, config, out_dir / "history.jsonl", headers)
    running = asyncio.create_task(workload.run(), name=f"chaos workload {name}")
    try:
        await nemesis(workload)
    finally:
        workload.stop()
        await running
    await heal()
    urls = judged() if judged is not None else urls
    acked = acknowledged(workload.records)
    placed = acked if how.replicas is ReplicaCheck.AFTER_CONVERGENCE else set()
    conv = await wait_converged(urls, within_s=how.converge_timeout, placed=placed,
                                buckets=[config.bucket], headers=headers)
    obs = await observe(urls, workload.keys(), placed=acked, replicas=how.replicas,
                        read_timeout=how.read_timeout, repair_timeout=how.repair_timeout,
                        buckets=[config.bucket], files=[config.files_bucket],
                        headers=headers)
    options = CheckOptions(require_all_owners=how.replicas.enforced,
                           require_empty_queues=how.empty_queues, why_relaxed=how.why_relaxed,
                           expect_cluster=how.expect_cluster,
                           expect_members=how.expect_members,
                           strict_statuses=how.strict_statuses)
    report = check(workload.records, obs.observed, options)
    extra = [*_convergence_notes(conv), *_replica_notes(how, obs)]
    if report.stale_reads:
        extra.append(f"{report.stale_reads} read(s) got 404 for a key acknowledged before they "
                     "started (informational: sloppy quorums do not promise read-your-writes)")
    summary = ScenarioSummary.of(name, seed, time.monotonic() - started, report, conv, extra)
    result = ChaosResult(name, summary, report, conv, obs, workload, out_dir)
    await asyncio.to_thread((out_dir / "report.txt").write_text, result.explain() + "\n")
    log.info("chaos: %s", summary.line())
    return result


def _convergence_notes(conv: Convergence) -> list[str]:
    if not conv.initially:
        return []
    return [f"after healing: {'; '.join(conv.initially[:4])}"]


def _replica_notes(how: Checking, obs: Observation) -> list[str]:
    notes = [f"replicas checked {how.replicas}"
             + (f" ({how.why_relaxed})" if how.why_relaxed else "")]
    if obs.under_replicated_before_reads:
        notes.append(f"{obs.under_replicated_before_reads} (key, owner) replicas missing "
                     "before the final reads")
    if obs.repair_wait_s is not None and obs.under_replicated_before_reads:
        notes.append(f"read repair completed placement in {obs.repair_wait_s:.1f}s")
    return notes


# --- nemeses and recovery for a local ChaosCluster ----------------------------------------


async def recover(cluster: ChaosCluster) -> None:
    """Heal every link and bring every stopped node back; returns when all answer /health."""
    await asyncio.to_thread(cluster.heal)
    stopped = [node for node in cluster.member_nodes if not node.running]
    for node in stopped:
        node.start()  # on this thread: see the module docstring
    for node in stopped:
        await asyncio.to_thread(node.wait_ready, READY_TIMEOUT)


async def partitions(cluster: ChaosCluster, rng: random.Random, *, period_s: float,
                     count: int, kinds: Iterable[str] | None = None) -> None:
    """`count` partitions from a rotating schedule, each held for `period_s` (each replaces
    the previous one), then healed."""
    schedule = rotating_partitions(rng, cluster.size, tuple(kinds or PARTITION_KINDS))
    for _ in range(count):
        await asyncio.to_thread(cluster.partition, next(schedule))
        await asyncio.sleep(period_s)
    await asyncio.to_thread(cluster.heal)


async def kill_restart(cluster: ChaosCluster, rng: random.Random, *, period_s: float,
                       cycles: int, down_s: tuple[float, float] = (1.5, 3.0)) -> None:
    """Every `period_s`: kill -9 a random node, leave it down for a random time within
    `down_s`, restart it and wait until it is ready (its data dir is kept)."""
    for _ in range(cycles):
        began = time.monotonic()
        i = rng.randint(1, cluster.size)
        node = cluster.node(i)
        await asyncio.to_thread(node.kill)
        cluster.record(f"kill -9 n{i} ({node.node_id})")
        await asyncio.sleep(rng.uniform(*down_s))
        node.start()
        cluster.record(f"restart n{i}")
        await asyncio.to_thread(node.wait_ready, READY_TIMEOUT)
        cluster.record(f"n{i} ready")
        await asyncio.sleep(max(0.0, period_s - (time.monotonic() - began)))


async def leave_and_rejoin(cluster: ChaosCluster, i: int, workload: Workload | None = None, *,
                           away_s: float = 0.0, within_s: float = 90.0) -> None:
    """Node i leaves (POST /v1/cluster/leave), hands its data off and reports `left`; it is
    then stopped, its data dir wiped, and (after `away_s`, the others writing on a ring without
    it) started again under the same id and address, so it joins as a new empty member and
    takes its share back. Clients avoid it meanwhile."""
    node = cluster.node(i)
    others = [n.node_id for n in cluster.nodes if n is not node]
    url = workload.targets.pop(node.node_id, None) if workload is not None else None
    await asyncio.to_thread(_post, f"{node.url}/v1/cluster/leave",
                            node.auth_headers)
    cluster.record(f"n{i} ({node.node_id}) leaves")
    await async_wait_until(lambda: asyncio.to_thread(_reports_left, node), timeout=within_s,
                           interval=0.25, message=f"{node.node_id} to report itself left")
    cluster.record(f"n{i} left")
    await asyncio.to_thread(node.stop)
    await asyncio.to_thread(cluster.cluster.wait_converged, within_s, others)
    await asyncio.to_thread(node.wipe)
    await asyncio.sleep(away_s)
    node.start()  # on this thread: see the module docstring
    cluster.record(f"n{i} restarted empty, joining")
    await asyncio.to_thread(node.wait_ready, READY_TIMEOUT)
    await asyncio.to_thread(cluster.cluster.wait_converged, within_s)
    cluster.record(f"n{i} rejoined, ring settled")
    if workload is not None and url is not None:
        workload.targets[node.node_id] = url


async def black_hole(cluster: ChaosCluster, i: int, *, hold_s: float) -> None:
    """Node i's links swallow everything for `hold_s` (connections stay open), then heal."""
    await asyncio.to_thread(cluster.black_hole, i)
    await asyncio.sleep(hold_s)
    await asyncio.to_thread(cluster.heal)


async def kill_and_wipe(cluster: ChaosCluster, i: int, *, down_s: float,
                        parts: Iterable[str] = ("db", "chunks")) -> None:
    """kill -9 node i, delete `parts` of its data dir (its keys and chunks; by default not
    its cluster state, so it comes back as the same member believing it is in sync: only
    anti-entropy can tell it what it lost), and restart it after `down_s`."""
    node = cluster.node(i)
    await asyncio.to_thread(node.kill)
    for part in parts:
        await asyncio.to_thread(shutil.rmtree, node.spec.data_dir / part, True)
    cluster.record(f"kill -9 n{i}, its {' and '.join(parts)} deleted")
    await asyncio.sleep(down_s)
    node.start()  # on this thread: see the module docstring
    await asyncio.to_thread(node.wait_ready, READY_TIMEOUT)
    cluster.record(f"n{i} restarted with an empty disk")


def _reports_left(node: NodeProcess) -> bool:
    members = node.get_json("/v1/cluster/members")
    return any(m.get("self") and m["gossip_status"] == "left" for m in members)


def _post(url: str, headers: Mapping[str, str]) -> None:
    request = urllib.request.Request(url, method="POST", headers=dict(headers))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as resp:
        if resp.status != 202:
            raise RuntimeError(f"POST {url}: HTTP {resp.status}")


async def replace_disk(cluster: ChaosCluster, i: int, *, down_s: float,
                       within_s: float = READY_TIMEOUT) -> dict[str, object]:
    """A disk replaced: kill -9 node i, delete its WHOLE data dir (node id file, cluster state,
    Paxos promises, keys, chunks: everything), and after `down_s` start it again with the same
    flags and node id. Returns its first /health answer, whatever its status (a node that
    knows it must be refilled may say so there rather than "ok")."""
    node = cluster.node(i)
    await asyncio.to_thread(node.kill)
    await asyncio.to_thread(node.wipe)
    cluster.record(f"kill -9 n{i} ({node.node_id}), its whole data dir deleted")
    await asyncio.sleep(down_s)
    node.start()  # on this thread: see the module docstring
    health = await answering(node, within_s)
    cluster.record(f"n{i} restarted on an empty disk, same flags; /health: "
                   f"{health.get('status')}, ring epoch {health.get('ring_epoch')}, "
                   f"{health.get('members')} member(s)")
    return health


async def answering(node: NodeProcess, within_s: float) -> dict[str, object]:
    """Poll until the node answers /health with a JSON document, whatever its status."""

    async def probe() -> dict[str, object] | None:
        if not node.running:
            raise NodeNotReady(node.describe_failure(f"exited with {node.returncode}"))
        return await asyncio.to_thread(_health_any, node)

    return await async_wait_until(probe, timeout=within_s, interval=0.2, retry_on=(),
                                  message=f"{node.node_id} to answer /health")


def _health_any(node: NodeProcess) -> dict[str, object] | None:
    try:
        return node.health(1.0)
    except urllib.error.HTTPError as exc:  # a 503 "joining" / "stopping" is an answer too
        try:
            doc = json.loads(exc.read())
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


async def join_at_once(cluster: ChaosCluster, spares: Iterable[int], *,
                       within_s: float = 60.0) -> None:
    """Start the spare nodes together and wait until the ring (as their seeds see it) has
    every one of them as a member: the epoch is agreed; their transfers may still run."""
    chosen = list(spares)
    nodes = [cluster.join(i) for i in chosen]  # on this thread: see the module docstring
    for node in nodes:
        await answering(node, READY_TIMEOUT)
    ids = {node.node_id for node in nodes}
    seed = cluster.node(min(cluster.members))
    await async_wait_until(lambda: asyncio.to_thread(_ring_has, seed, ids), timeout=within_s,
                           interval=0.2, message=f"{sorted(ids)} in the ring")
    cluster.record(f"ring has {', '.join(sorted(ids))} (epoch agreed, transfers may run)")


async def leave(cluster: ChaosCluster, i: int, workload: Workload | None = None, *,
                within_s: float = 90.0) -> None:
    """Node i leaves (POST /v1/cluster/leave) while clients keep writing through it; once it
    reports `left` it stops being a target, is stopped and retired (not brought back)."""
    node = cluster.node(i)
    await asyncio.to_thread(_post, f"{node.url}/v1/cluster/leave",
                            node.auth_headers)
    cluster.record(f"n{i} ({node.node_id}) leaves (clients still write through it)")
    await async_wait_until(lambda: asyncio.to_thread(_reports_left, node), timeout=within_s,
                           interval=0.25, message=f"{node.node_id} to report itself left")
    if workload is not None:
        workload.targets.pop(node.node_id, None)
    cluster.record(f"n{i} left")
    await asyncio.to_thread(node.stop)
    cluster.retire(i)


def _ring_has(node: NodeProcess, ids: set[str]) -> bool:
    ring = node.get_json("/v1/cluster/ring")
    return ids <= {m["node_id"] for m in ring["members"]}


def lineage(node: NodeProcess) -> tuple[str, frozenset[str]]:
    """The cluster id and ring members one node reports (to compare the end against)."""
    ring = node.get_json("/v1/cluster/ring")
    return str(ring["cluster"]), frozenset(m["node_id"] for m in ring["members"])


async def watch_rejoin(cluster: ChaosCluster, i: int, want: tuple[str, frozenset[str]], *,
                       within_s: float) -> None:
    """Record in the timeline when node i is back in cluster `want` (id, members) and when
    its /health stops saying ``refilling`` (a node that knows it lost its data may say so);
    gives up quietly after `within_s` (the checker judges the end state)."""
    node, began = cluster.node(i), time.monotonic()
    rejoined = refilled = False
    while time.monotonic() - began < within_s and not (rejoined and refilled):
        health = await asyncio.to_thread(_health_any, node) or {}
        if not rejoined:
            with contextlib.suppress(OSError, ValueError, KeyError):
                rejoined = await asyncio.to_thread(lineage, node) == want
            if rejoined:
                cluster.record(f"n{i} back in cluster {want[0]} with all "
                               f"{len(want[1])} members, {time.monotonic() - began:.1f}s "
                               "after its first /health answer")
        if rejoined and not refilled and health and not health.get("refilling"):
            refilled = True
            cluster.record(f"n{i} not refilling (per /health), {time.monotonic() - began:.1f}s"
                           " after its first /health answer")
        await asyncio.sleep(0.5)
