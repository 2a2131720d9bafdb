"""What TLS costs a large file: PUT and GET over HTTPS against plain HTTP, in one run.

    python -m benchmarks.tls_bench                      # 256 MiB, one node, HTTPS for clients
    python -m benchmarks.tls_bench --nodes 3            # 3 nodes: mutual TLS between peers too
    python -m benchmarks.tls_bench --rounds 3 --size-mib 64

Each round starts a plain cluster and a TLS one (certificates from a fresh dev CA, made by
dfsring certs' functions) one after the other, in alternating order so neither always runs
on a warm page cache, streams the same amount of generated random data (never held whole in
memory) through the first node and reads it back through the last, checks the SHA-256, and
stops the cluster. With one node only the client connection is encrypted; with more, peers
talk mutual TLS too (every chunk replica crosses a TLS connection) and the client presents a
certificate, as the one listener of this version asks every caller for one.

Prints MiB/s per direction and mode, and TLS / plain. Everything is bounded: --timeout per
transfer, cluster start within 60 s, every node stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.files_bench import download, upload
from dfsring.cli.certs import make_ca, make_node_cert
from dfsring.cli.launcher import LocalCluster, TlsFiles
from dfsring.transport.tls import client_context_for

MIB = 1 << 20
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Run:
    mode: str  # "http" or "https"
    put_mibs: float
    get_mibs: float


async def _transfer(put_url: str, get_url: str, size: int, tls: ssl.SSLContext | None,
                    timeout_s: float, auth: dict[str, str]) -> tuple[float, float]:
    """(PUT seconds, GET seconds) of one file of `size` random bytes, content checked."""
    async with asyncio.timeout(timeout_s):
        put_s, sent, doc = await upload(put_url, "big", size, auth, tls)
        get_s, got_sha, got = await download(get_url, "big", auth, tls)
    assert got == size and got_sha == sent == doc["sha256"], "content differs"
    return put_s, get_s


def _pki(base: Path, nodes: int) -> tuple[TlsFiles, dict[int, tuple[str, ...]]]:
    """A dev CA, a certificate per node and one for the client/probes."""
    make_ca(base / "ca")
    client = make_node_cert(base / "ca", "client", ["127.0.0.1"], [], base / "certs")
    per_node = {}
    for i in range(1, nodes + 1):
        paths = make_node_cert(base / "ca", f"node{i}", ["127.0.0.1"], ["localhost"],
                               base / "certs")
        per_node[i] = TlsFiles(paths.cert, paths.key, paths.ca, mutual=nodes > 1).args()
    return TlsFiles(client.cert, client.key, client.ca, mutual=nodes > 1), per_node


def _one(mode: str, base: Path, args: argparse.Namespace) -> Run:
    n = min(3, args.nodes)
    tls: TlsFiles | None = None
    node_args: dict[int, tuple[str, ...]] = {}
    client_tls: ssl.SSLContext | None = None
    if mode == "https":
        tls, node_args = _pki(base / "pki", args.nodes)
        client_tls = (tls.context() if args.nodes > 1
                      else client_context_for(tls.ca))
    cluster = LocalCluster(args.nodes, base / mode, n=n, r=min(2, n), w=min(2, n),
                           extra_args=("--durability", args.durability), tls=tls,
                           node_args=node_args)
    with cluster:
        cluster.wait_converged(START_TIMEOUT_S)
        put_s, get_s = asyncio.run(_transfer(cluster.urls[0], cluster.urls[-1], args.size,
                                             client_tls, args.timeout, cluster.auth_headers))
    size_mib = args.size / MIB
    run = Run(mode, size_mib / put_s, size_mib / get_s)
    print(f"{mode:5}  PUT {run.put_mibs:7.1f} MiB/s  GET {run.get_mibs:7.1f} MiB/s", flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--durability", default="none", choices=("fsync", "none"),
                        help="none (default) so the disk does not hide what TLS costs")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one transfer may take")
    args = parser.parse_args()
    if not 1 <= args.nodes <= 5 or not 1 <= args.size_mib <= 4096 or not 1 <= args.rounds <= 10:
        parser.error("--nodes 1..5, --size-mib 1..4096, --rounds 1..10")
    args.size = args.size_mib * MIB
    base = Path(tempfile.mkdtemp(prefix="tls-bench-"))
    runs: list[Run] = []
    try:
        for round_no in range(args.rounds):
            order = ("http", "https") if round_no % 2 == 0 else ("https", "http")
            for mode in order:
                where = base / f"round{round_no}"
                runs.append(_one(mode, where, args))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    _summary(runs, args)


def _summary(runs: list[Run], args: argparse.Namespace) -> None:
    def median(mode: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs if r.mode == mode)

    what = "HTTPS to the node" if args.nodes == 1 else "HTTPS + mutual TLS between peers"
    print(f"\n{args.size_mib} MiB file, {args.nodes} node(s), {what}, durability "
          f"{args.durability}, median of {args.rounds} round(s):")
    for attr, name in (("put_mibs", "PUT"), ("get_mibs", "GET")):
        plain, tls = median("http", attr), median("https", attr)
        print(f"  {name}: http {plain:7.1f} MiB/s   https {tls:7.1f} MiB/s   "
              f"https/http {tls / plain:5.2f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
