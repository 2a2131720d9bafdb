"""Every background loop of a real node runs as a worker and reports itself in /v1/node/stats.

Intervals are shortened so that each worker has run at least once within the deadline; the
check is that every expected worker is present, has run, and none is failed or stopped.
"""

from __future__ import annotations

from typing import Any

from dfsring.cli.launcher import LocalCluster
from dfsring.testing import wait_until
from tests.conftest import ClusterFactory

EXPECTED = {"gossip", "discovery", "ringchange", "transfers", "handoff", "exchange", "scrub",
            "files-gc", "chunk-sync", "chunk-scrub", "s3-multipart-abort"}
RUNNING = {"busy", "idle"}
FAST = ("--scrub-interval", "1", "--gc-interval", "1", "--chunk-sync-interval", "1",
        "--s3-multipart-max-age", "4")  # the abort worker runs every max(10 s, age/4)


def _all_ran(cluster: LocalCluster) -> dict[str, dict[str, Any]] | None:
    seen = {}
    for node in cluster.nodes:
        workers: dict[str, dict[str, Any]] = node.get_json("/v1/node/stats")["workers"]
        ran = all(w["iterations"] >= 1 and w["last_run_at"] is not None
                  for w in workers.values())
        if set(workers) != EXPECTED or not ran:
            return None
        seen[node.node_id] = workers
    return seen


def test_stats_show_every_worker_running(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(3, extra_args=FAST)
    seen = wait_until(lambda: _all_ran(cluster), timeout=30.0,
                      message="every worker of every node has run")
    for node, workers in seen.items():
        for name, status in workers.items():
            expected = {"done"} if name == "discovery" else RUNNING
            assert status["state"] in expected, (node, name, status)
            assert set(status) == {"state", "iterations", "last_error", "last_error_at",
                                   "last_run_at"}
