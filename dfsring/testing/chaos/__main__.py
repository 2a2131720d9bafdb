"""``python -m dfsring.testing.chaos --url http://host:7070 --url ...``: the chaos workload and
checker against a deployment of your own.

Runs the recording clients for ``--duration`` seconds (inject whatever faults you like
meanwhile: kill nodes, cut links, fill disks), then waits for convergence, reads every key it
touched through every node, checks, prints the summary and the checks, and exits 1 if an
enforced check failed. Give every node's client URL: the final reads go through each of them.
Keys are written under ``--key-prefix`` (default: one per seed and start time) in ``--bucket``,
so runs do not see each other's data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path

from dfsring.client.credentials import auth_headers, discover
from dfsring.testing.chaos.collect import ReplicaCheck
from dfsring.testing.chaos.scenario import Checking, run_chaos
from dfsring.testing.chaos.settings import seed_from_env
from dfsring.testing.chaos.workload import Workload, WorkloadConfig


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dfsring.testing.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", action="append", required=True, help="a node's client URL (repeat)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of workload")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rate", type=float, default=16.0, help="operations/s, all clients")
    p.add_argument("--seed", default=None, help="default: DFSRING_CHAOS_SEED or random")
    p.add_argument("--bucket", default="chaos")
    p.add_argument("--files-bucket", default="chaosfiles")
    p.add_argument("--file-weight", type=float, default=0.1,
                   help="share of operations that upload a file (80-400 KB; 0: no files)")
    p.add_argument("--key-prefix", default=None, help="default: run<seed>-<unix time>-")
    p.add_argument("--replicas", choices=[str(r) for r in ReplicaCheck],
                   default=str(ReplicaCheck.AFTER_CONVERGENCE),
                   help="when to check that every acknowledged key is on all its owners")
    p.add_argument("--converge-timeout", type=float, default=120.0)
    p.add_argument("--out", type=Path, default=Path("chaos-run"),
                   help="directory for history.jsonl and report.txt")
    return p.parse_args(argv)


def _node_ids(urls: list[str]) -> dict[str, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    out = {}
    for url in urls:
        with opener.open(f"{url.rstrip('/')}/health", timeout=5) as resp:
            out[json.loads(resp.read())["node_id"]] = url.rstrip("/")
    return out


async def _main(args: argparse.Namespace) -> int:
    seed = args.seed or seed_from_env()
    urls = await asyncio.to_thread(_node_ids, args.url)
    config = WorkloadConfig(seed=seed, clients=args.clients, duration_s=args.duration,
                            ops_per_s=args.rate, bucket=args.bucket,
                            files_bucket=args.files_bucket, file_weight=args.file_weight,
                            key_prefix=args.key_prefix if args.key_prefix is not None
                            else f"run{seed}-{int(time.time())}-")

    async def until_done(workload: Workload) -> None:
        await asyncio.sleep(args.duration)

    async def nothing() -> None:
        return None

    result = await run_chaos("workload", seed, urls, until_done, heal=nothing, config=config,
                             out_dir=args.out, headers=auth_headers(discover()),
                             checking=Checking(replicas=ReplicaCheck(args.replicas),
                                               converge_timeout=args.converge_timeout))
    print(result.explain())
    return 0 if result.report.ok else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(_parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
