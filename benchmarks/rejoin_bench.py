"""Time for a replaced founder to rejoin its cluster and be refilled (issue 15).

Three nodes with identical seed lists (each itself included); N keys preloaded into every
owner's engine while the nodes are stopped (benchmarks.preload); then node1, the first seed,
is killed (-9), its whole data dir deleted, and restarted with the same flags and id. Prints
seconds until it reports a ring of the original cluster (rejoined) and until /health says
``"refilling": false`` with all its keys back (refilled).

    python -m benchmarks.rejoin_bench --keys 100000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.preload import key_names, preload, records_by_owner
from dfsring.cli.launcher import LocalCluster, NodeProcess


def _health(node: NodeProcess) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{node.url}/health", timeout=5) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        doc = json.loads(exc.read())
    except (OSError, ValueError):
        return {}
    return doc


def _until(what: str, predicate: Any, timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"not within {timeout:g}s: {what}")
        time.sleep(0.2)
    return time.monotonic() - start


def run(keys: int, timeout: float) -> None:
    base = Path(tempfile.mkdtemp(prefix="rejoin-bench-"))
    cluster = LocalCluster(3, base, extra_args=("--request-timeout", "15"))
    try:
        cluster.start(60)
        ring = cluster.wait_converged(60)
        for node in cluster:
            node.stop()
        by_owner = records_by_owner(ring, "bench", key_names(keys, "k"), b"x" * 100)
        for node in cluster:
            preload(node.spec.data_dir / "db", node.node_id, 10, by_owner[node.node_id])
        cluster.start(120)
        founder = cluster.node("node1")
        founder.kill()
        founder.wipe()
        started = time.monotonic()
        founder.start()

        def rejoined() -> bool:
            health = _health(founder)
            if not health.get("ring_epoch"):
                return False
            mine = founder.get_json("/v1/cluster/ring", timeout=5)
            return bool(mine.get("cluster") == ring["cluster"])

        took_rejoin = _until("rejoin", rejoined, 60)
        want = len(by_owner["node1"])

        def refilled() -> bool:
            health = _health(founder)
            return (health.get("refilling") is False
                    and founder.get_json("/v1/node/stats", timeout=10)["keys"] >= want)

        _until("refill", refilled, timeout)
        total = time.monotonic() - started
        print(f"{keys} keys ({want} on node1): rejoined {took_rejoin:.1f}s, refilled "
              f"{total:.1f}s after its restart")
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args()
    run(args.keys, args.timeout)


if __name__ == "__main__":
    main()
