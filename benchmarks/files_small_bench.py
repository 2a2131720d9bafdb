"""Small-file uploads/s through one node (issue 17 item 4: an upload must not list the
whole cluster).

    python -m benchmarks.files_small_bench --nodes 5 --count 400 --concurrency 8

Starts a local cluster of real nodes (N = min(3, nodes), R = W = 2 when N = 3), PUTs
``count`` files of ``size`` bytes through node 1 with ``concurrency`` in flight after a
warm-up of 50, and prints uploads/s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from dfsring.cli.launcher import LocalCluster


async def measure(cluster: LocalCluster, count: int, concurrency: int, size: int) -> float:
    limit = asyncio.Semaphore(concurrency)
    body = b"x" * size
    async with aiohttp.ClientSession(headers=cluster.auth_headers) as http:
        url = cluster.nodes[0].url

        async def one(i: int) -> None:
            async with limit, http.put(f"{url}/v1/files/bench/dir/f{i:06d}", data=body) as r:
                if r.status != 201:
                    raise RuntimeError(f"upload {i}: {r.status} {await r.text()}")

        await asyncio.gather(*(one(i) for i in range(50)))
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(50, 50 + count)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--durability", default="none", choices=("fsync", "none"))
    args = parser.parse_args()
    n = min(3, args.nodes)
    quorum = 2 if n == 3 else 1
    with tempfile.TemporaryDirectory() as root, LocalCluster(
            args.nodes, Path(root), n=n, r=quorum, w=quorum,
            extra_args=("--durability", args.durability)) as cluster:
        rate = asyncio.run(measure(cluster, args.count, args.concurrency, args.size))
    print(f"{rate:.1f} uploads/s ({args.size} B files, {args.concurrency} in flight, "
          f"{args.nodes} nodes)")


if __name__ == "__main__":
    main()
