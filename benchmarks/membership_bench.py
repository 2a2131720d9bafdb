"""Membership figures on real local processes: ring convergence, failure detection, and
transfer throughput on join.

    python -m benchmarks.membership_bench --sizes 5,10 --keys 20000

- convergence: all nodes started at once with one seed; seconds from spawning the processes
  until every node reports the same ring epoch and hash with all members and no transfer;
- detection: kill -9 of one node; seconds until every other node reports it down, and until
  all report it up again after a restart;
- join transfer: a 3-node cluster loaded with --keys keys of --value-size bytes, then a fourth
  node joins; seconds until the ring settles, and the keys and bytes the new node received.

Prints one JSON document on stdout. Runs in a temp dir; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from dfsring.cli.launcher import LocalCluster


def convergence(size: int, base: Path) -> float:
    cluster = LocalCluster(size, base / f"conv{size}", seed_all=False)
    start = time.monotonic()
    try:
        for node in cluster:
            node.start()
        for node in cluster:
            node.wait_ready(60)
        cluster.wait_converged(60)
        return time.monotonic() - start
    finally:
        cluster.stop()


def _all_see(cluster: LocalCluster, target: str, status: str, timeout: float) -> float:
    start = time.monotonic()
    observers = [n for n in cluster if n.node_id != target]
    while time.monotonic() - start < timeout:
        seen = [{m["node_id"]: m["status"] for m in o.get_json("/v1/cluster/members")}[target]
                for o in observers]
        if all(s == status for s in seen):
            return time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError(f"{target} not {status} everywhere within {timeout}s")


def detection(base: Path) -> dict[str, float]:
    with LocalCluster(5, base / "detect") as cluster:
        victim = cluster.node("node3")
        time.sleep(5)  # a few seconds of heartbeat history, as in a running cluster
        victim.kill()
        down = _all_see(cluster, "node3", "down", 30)
        victim.start()
        victim.wait_ready(30)
        up = _all_see(cluster, "node3", "up", 30)
        return {"down_s": round(down, 2), "up_again_s": round(up, 2)}


async def _load(urls: list[str], count: int, size: int, auth: dict[str, str]) -> None:
    value = b"x" * size
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(headers=auth) as http:
        async def put(i: int) -> None:
            async with sem, http.put(f"{urls[i % len(urls)]}/v1/kv/bench/k{i}",
                                     data=value) as resp:
                if resp.status != 204:
                    raise RuntimeError(f"preload PUT answered {resp.status}")
        await asyncio.gather(*(put(i) for i in range(count)))


def join_transfer(base: Path, keys: int, value_size: int) -> dict[str, Any]:
    with LocalCluster(3, base / "join") as cluster:
        asyncio.run(_load(cluster.urls, keys, value_size, cluster.auth_headers))
        start = time.monotonic()
        node4 = cluster.add_node()
        node4.wait_ready(60)
        cluster.wait_converged(600)
        took = time.monotonic() - start
        stats = node4.get_json("/v1/node/stats")
        return {"keys": keys, "value_size": value_size, "seconds": round(took, 2),
                "keys_received": stats["keys"], "bytes_received": stats["bytes"],
                "keys_per_s": round(stats["keys"] / took),
                "mb_per_s": round(stats["bytes"] / took / 1e6, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,10", help="cluster sizes for convergence")
    parser.add_argument("--keys", type=int, default=20_000, help="keys preloaded for the join")
    parser.add_argument("--value-size", type=int, default=1024, help="bytes per value")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dfsring-bench-") as tmp:
        base = Path(tmp)
        out: dict[str, Any] = {
            "convergence_s": {size: round(convergence(int(size), base), 2)
                              for size in args.sizes.split(",")},
            "detection": detection(base),
            "join": join_transfer(base, args.keys, args.value_size),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
