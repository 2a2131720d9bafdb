"""loadtest/locustfile.py runs headless for 30 s against a local three-node cluster with no
failed request (issue 22 item 8). The S3 user is abstract without DFSRING_S3_URL, so the
native half runs alone here; the same file drives S3 when an endpoint is given."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from dfsring.cli.launcher import LocalCluster
from tests import deploykit as kit

RUN_SECONDS = 30
NATIVE_TASKS = {"kv put", "kv put: read context", "kv get", "kv list", "file put (large)",
                "file get (large)", "file list"}


def test_locust_runs_headless_30s_against_a_cluster(cluster3: LocalCluster,
                                                    tmp_path: Path) -> None:
    creds = cluster3.credentials
    env = {**os.environ, "DFSRING_ACCESS_KEY": creds.access_key,
           "DFSRING_SECRET_KEY": creds.secret_key, "DFSRING_LOCUST_LARGE": str(256 * 1024),
           "DFSRING_LOCUST_KEYS": "200"}
    env.pop("DFSRING_S3_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(kit.LOCUSTFILE), "--headless",
         "-u", "4", "-r", "4", "-t", f"{RUN_SECONDS}s", "--stop-timeout", "10",
         "--host", cluster3.nodes[0].url, "--csv", str(tmp_path / "run"), "--only-summary"],
        env=env, capture_output=True, text=True, timeout=RUN_SECONDS + 60, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "S3 user does not run" in out.stdout + out.stderr
    with (tmp_path / "run_stats.csv").open() as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0, total
    assert NATIVE_TASKS <= set(rows), set(rows)
