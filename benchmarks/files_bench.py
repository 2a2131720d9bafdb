"""Upload and download throughput of the files API, and the nodes' peak memory.

    python -m benchmarks.files_bench --nodes 3 --size-mib 256
    python -m benchmarks.files_bench --nodes 1 --size-mib 1024

Starts a local cluster of real nodes (fsync on, N = min(3, nodes)), streams a generated
random file through node 1 (PUT) and back through the last node (GET), checks the SHA-256 and
prints MiB/s for both and every node's peak RSS (VmHWM). The data is generated on the fly
(never held whole in memory, dfsring.testing.files.random_blocks), so no chunk repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from dfsring.cli.launcher import LocalCluster
from dfsring.testing.files import cpu_seconds, peak_rss_mib, random_blocks

MIB = 1 << 20


async def upload(url: str, path: str, size: int, auth: dict[str, str],
                 tls: ssl.SSLContext | None = None) -> tuple[float, str, dict[str, object]]:
    """(seconds, SHA-256 sent, the node's answer) of one PUT of `size` random bytes; `tls`
    verifies an https:// node (benchmarks/tls_bench.py)."""
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for block in random_blocks(size):
            digest.update(block)
            yield block

    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout, headers=auth,
                                     connector=aiohttp.TCPConnector(ssl=tls or True)) as http:
        started = time.perf_counter()
        async with http.put(f"{url}/v1/files/bench/{path}", data=body(),
                            headers={"Content-Length": str(size)}) as resp:
            doc = await resp.json()
            assert resp.status == 201, doc
        elapsed = time.perf_counter() - started
    return elapsed, digest.hexdigest(), doc


async def download(url: str, path: str, auth: dict[str, str],
                   tls: ssl.SSLContext | None = None) -> tuple[float, str, int]:
    digest = hashlib.sha256()
    got = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout, headers=auth,
                                     connector=aiohttp.TCPConnector(ssl=tls or True)) as http:
        started = time.perf_counter()
        async with http.get(f"{url}/v1/files/bench/{path}") as resp:
            assert resp.status == 200, await resp.text()
            async for piece in resp.content.iter_chunked(4 * MIB):
                digest.update(piece)
                got += len(piece)
        elapsed = time.perf_counter() - started
    return elapsed, digest.hexdigest(), got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--durability", default="fsync", choices=("fsync", "none"))
    args = parser.parse_args()
    size = args.size_mib * MIB
    n = min(3, args.nodes)
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="files-bench-"))
    extra = ("--durability", args.durability)
    env = dict(v.split("=", 1) for v in os.environ.get("BENCH_NODE_ENV", "").split() if v)
    with LocalCluster(args.nodes, base, n=n, r=min(2, n), w=min(2, n), extra_args=extra,
                      node_env=env) as c:
        first, last = c.nodes[0], c.nodes[-1]
        pids = [node.pid for node in c.nodes if node.pid is not None]
        cpu0 = [cpu_seconds(p) for p in pids]
        up_s, sent, doc = asyncio.run(upload(first.url, "big", size, c.auth_headers))
        cpu1 = [cpu_seconds(p) for p in pids]
        print(f"PUT  {args.size_mib} MiB via {first.node_id}: {up_s:6.2f} s "
              f"{args.size_mib / up_s:7.1f} MiB/s  chunks={doc['chunks']}  node CPU s "
              f"{' '.join(f'{b - a:.2f}' for a, b in zip(cpu0, cpu1, strict=True))}")
        down_s, got_sha, got = asyncio.run(download(last.url, "big", c.auth_headers))
        cpu2 = [cpu_seconds(p) for p in pids]
        assert got == size and got_sha == sent == doc["sha256"], "content differs"
        print(f"GET  {args.size_mib} MiB via {last.node_id}: {down_s:6.2f} s "
              f"{args.size_mib / down_s:7.1f} MiB/s  sha256 ok  node CPU s "
              f"{' '.join(f'{b - a:.2f}' for a, b in zip(cpu1, cpu2, strict=True))}")
        for node in c.nodes:
            assert node.pid is not None
            print(f"{node.node_id} peak RSS {peak_rss_mib(node.pid):6.1f} MiB")
    print(f"data under {base} (remove it when done)" if args.data_dir else "")
    if args.data_dir is None:
        import shutil
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
