"""Secure by default (issue 18 part 4, CONTRACT v2): a node that could not protect itself does
not start, and one told to run unprotected (--insecure) says so, loudly and on /health.

Each refusal is exit status 2 with one line on stderr that says what is missing and why;
the nodes here are real `python -m dfsring.node` processes with a clean environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dfsring.cli.launcher import NodeProcess, NodeSpec, free_port_block

ROOT = Path(__file__).resolve().parents[2]
EXIT_S = 30.0
READY_S = 30.0


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any DFSRING_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFSRING_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def _run_node(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    port = free_port_block(2)
    argv = [sys.executable, "-m", "dfsring.node", "--data-dir", str(tmp_path / "node"),
            "--port", str(port), "--peer-port", str(port + 1), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=EXIT_S,
                          check=False)


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_node_without_cluster_secret_exits_with_one_clear_line(tmp_path: Path) -> None:
    run = _run_node(tmp_path, _clean_env(DFSRING_ADMIN_ACCESS_KEY="root",
                                         DFSRING_ADMIN_SECRET_KEY="s3cret"))
    assert run.returncode == 2, run
    line = _one_line(run.stderr)
    assert "no cluster secret" in line and "--cluster-secret" in line and "--insecure" in line


@pytest.mark.parametrize("missing", ["both", "secret key"])
def test_node_without_root_credentials_exits_with_one_clear_line(tmp_path: Path,
                                                                 missing: str) -> None:
    env = _clean_env(DFSRING_CLUSTER_SECRET="cluster")
    if missing == "secret key":
        env["DFSRING_ADMIN_ACCESS_KEY"] = "root"
    run = _run_node(tmp_path, env)
    assert run.returncode == 2, run
    line = _one_line(run.stderr)
    assert "no root credentials" in line and "nobody could ever authenticate" in line, line
    assert "--admin-access-key" in line and "--insecure" in line


def test_insecure_node_starts_and_says_so_at_start_and_on_health(tmp_path: Path) -> None:
    port = free_port_block(2)
    spec = NodeSpec(index=1, node_id="node1", host="127.0.0.1", port=port, peer_port=port + 1,
                    data_dir=tmp_path / "node1", log_path=tmp_path / "node1.log",
                    args=("--insecure", "--n", "1", "--r", "1", "--w", "1"))
    node = NodeProcess(spec)
    # no secret and no root key in its environment: only --insecure lets it start
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DFSRING_")}
    try:
        node.start()
    finally:
        os.environ.update(saved)
    try:
        health = node.wait_ready(READY_S)
        assert health["insecure"] is True
        assert health["api_address"] == f"127.0.0.1:{port}"
        assert health["address"] == f"127.0.0.1:{port + 1}"
        assert "INSECURE" in node.log_path.read_text()
    finally:
        assert node.stop() == 0


def test_node_that_cannot_bind_its_peer_port_exits_with_one_clear_line(tmp_path: Path) -> None:
    port = free_port_block(2)
    env = _clean_env(DFSRING_CLUSTER_SECRET="cluster", DFSRING_ADMIN_ACCESS_KEY="root",
                     DFSRING_ADMIN_SECRET_KEY="s3cret")
    argv = [sys.executable, "-m", "dfsring.node", "--data-dir", str(tmp_path / "node"),
            "--port", str(port), "--peer-port", str(port + 1)]
    with socket.create_server(("127.0.0.1", port + 1)):
        run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=EXIT_S,
                             check=False)
    assert run.returncode == 2, run
    line = _one_line(_without_logs(run.stderr))
    assert f"cannot listen on 127.0.0.1:{port + 1} (peer port)" in line, line


def _without_logs(stderr: str) -> str:
    """The node's own stderr line, without the log records it wrote before it (text logs
    go to stderr too, each starting with a timestamp)."""
    return "\n".join(line for line in stderr.splitlines() if line.startswith("dfsring:"))
