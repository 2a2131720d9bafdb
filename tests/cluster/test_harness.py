"""The process harness itself, against real nodes: start, crash, restart, stop, wipe, the
data-dir lock, and ``dfsring cluster`` run as a user would run it.

Every wait is a deadline poll or a bounded process wait; nothing sleeps a fixed time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dfsring.cli.launcher import (
    LOG_MARKER,
    LocalCluster,
    NodeNotReady,
    NodeProcess,
    NodeRunning,
    free_port,
    free_port_block,
    port_in_use,
    spawn,
)
from dfsring.cli.main import main
from dfsring.client.credentials import ENV_ACCESS, ENV_SECRET, auth_headers, load_file
from dfsring.testing import wait_until

GRACEFUL_STOP_S = 5.0  # CONTRACT.md: SIGTERM stops a node within 5 s
READY_S = 30.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _health(url: str) -> dict[str, object]:
    with _NO_PROXY.open(f"{url}/health", timeout=2) as resp:
        doc: dict[str, object] = json.loads(resp.read())
    return doc


def _node_alive(pid: int) -> bool:
    """Whether ``pid`` is still a live (not zombie) dfsring node, read from /proc.

    Checking the command line guards against the PID having been reused by something else.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and b"dfsring.node" in cmdline


def _output_lines(node: NodeProcess) -> list[str]:
    """What the node itself wrote to its log, without the launcher's marker lines."""
    text = node.log_path.read_text()
    return [line for line in text.splitlines() if line and not line.startswith(LOG_MARKER)]


# --- the launcher ------------------------------------------------------------------------------


def test_three_nodes_start_healthy(cluster3: LocalCluster) -> None:
    for node in cluster3:
        health = node.health()
        assert health["status"] == "ok"
        assert health["node_id"] == node.node_id
        assert health["pid"] == node.pid
        assert node.spec.data_dir.is_dir()
    assert len(set(cluster3.urls)) == 3


def test_kill9_then_restart_comes_back_as_the_same_node(cluster3: LocalCluster) -> None:
    node = cluster3.nodes[1]
    old_pid = node.pid
    assert node.kill() == -signal.SIGKILL
    assert not node.running
    node.start()
    health = node.wait_ready(READY_S)
    assert health["node_id"] == node.node_id == "node2"
    assert health["pid"] == node.pid != old_pid
    assert all(other.health()["status"] == "ok" for other in cluster3)


def test_graceful_stop_exits_0_within_5s(node1: NodeProcess) -> None:
    start = time.monotonic()
    code = node1.stop(timeout=GRACEFUL_STOP_S)
    assert code == 0, node1.log_tail()
    assert time.monotonic() - start < GRACEFUL_STOP_S
    assert not node1.running


def test_restart_is_a_graceful_stop_then_a_fresh_process(node1: NodeProcess) -> None:
    old_pid = node1.pid
    node1.restart()
    assert node1.wait_ready(READY_S)["pid"] == node1.pid != old_pid
    assert f"{LOG_MARKER} node1 pid {old_pid} exited 0" in node1.log_path.read_text()


def test_cluster_stop_is_graceful_for_every_node(cluster3: LocalCluster) -> None:
    pids = [node.pid for node in cluster3]
    assert cluster3.stop() == {"node1": 0, "node2": 0, "node3": 0}
    assert not any(_node_alive(pid) for pid in pids if pid is not None)


def test_wipe_refuses_a_live_node_then_removes_the_data(node1: NodeProcess) -> None:
    data_dir = node1.spec.data_dir
    assert any(data_dir.iterdir())
    with pytest.raises(NodeRunning):
        node1.wipe()
    assert any(data_dir.iterdir())
    node1.stop()
    node1.wipe()
    assert not data_dir.exists()
    node1.start()
    assert node1.wait_ready(READY_S)["node_id"] == "node1"


def test_second_node_on_a_live_data_dir_exits_with_one_clear_line(
    node1: NodeProcess, tmp_path: Path
) -> None:
    spec = dataclasses.replace(node1.spec, port=free_port(), log_path=tmp_path / "intruder.log")
    intruder = NodeProcess(spec)
    intruder.start()
    try:
        code = intruder.wait(timeout=READY_S)
    finally:
        intruder.kill()
    assert code != 0
    lines = _output_lines(intruder)
    assert len(lines) == 1, lines
    assert str(spec.data_dir) in lines[0] and "in use" in lines[0]
    assert node1.health()["status"] == "ok"


def test_a_node_that_cannot_start_is_reported_with_exit_code_and_log(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    with pytest.raises(NodeNotReady, match=r"(?s)exited with code 2 .*--partitions"):
        cluster_factory(1, n=1, r=1, w=1, extra_args=("--partitions", "3"))


def test_cluster_start_again_brings_back_only_the_dead_nodes(cluster3: LocalCluster) -> None:
    pids = {node.node_id: node.pid for node in cluster3}
    cluster3.node("node3").kill()
    cluster3.start(READY_S)
    assert [node.pid == pids[node.node_id] for node in cluster3] == [True, True, False]
    assert all(node.health()["status"] == "ok" for node in cluster3)


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(20)] + [free_port_block(3) + i for i in range(3)]
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert len(set(ports)) == len(ports)
    assert not any(port_in_use(p) for p in ports)
    if low > 11000:  # else the launcher falls back to kernel-chosen ports
        assert max(ports) < low


# --- dfsring cluster ---------------------------------------------------------------------------


@pytest.fixture
def cli_cluster(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    """``dfsring cluster --nodes 2`` on free ports, run as a user would; killed if left over
    (its nodes then die with it, by their parent-death signal)."""
    base, peer_base = free_port_block(2), free_port_block(2)
    out = tmp_path / "cli.out"
    argv = [sys.executable, "-m", "dfsring.cli.main", "cluster", "--nodes", "2"]
    argv += ["--base-port", str(base), "--peer-base-port", str(peer_base),
             "--s3-base-port", str(free_port_block(2)), "--data-dir", str(tmp_path / "data")]
    with out.open("wb") as fh:
        proc = spawn(argv, output=fh)
    try:
        yield proc, out, base
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _wait_cli_ready(proc: subprocess.Popen[bytes], out: Path) -> str:
    wait_until(
        lambda: "nodes ready" in out.read_text() or proc.poll() is not None,
        timeout=READY_S * 2,
        message="dfsring cluster reports its nodes ready",
    )
    text = out.read_text()
    assert proc.poll() is None, text
    return text


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_cli_cluster_serves_then_stops_everything_on_a_signal(
    cli_cluster: tuple[subprocess.Popen[bytes], Path, int], stop_signal: signal.Signals
) -> None:
    proc, out, base = cli_cluster
    text = _wait_cli_ready(proc, out)
    urls = [f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"]
    assert set(re.findall(r"^node\d+ +(http://127\.0\.0\.1:\d+)", text, re.M)) == set(urls)
    assert re.search(r"^S3 endpoints \(region us-east-1, path style\): http://127", text, re.M)
    assert "aws --region us-east-1 --endpoint-url http://127.0.0.1:" in text
    pids = [int(str(_health(url)["pid"])) for url in urls]
    assert all(_node_alive(pid) for pid in pids)
    proc.send_signal(stop_signal)
    assert proc.wait(timeout=30) == 0, out.read_text()
    assert not any(_node_alive(pid) for pid in pids)


def test_cli_cluster_exits_1_naming_a_node_that_died(
    cli_cluster: tuple[subprocess.Popen[bytes], Path, int],
) -> None:
    proc, out, base = cli_cluster
    _wait_cli_ready(proc, out)
    pids = [int(str(_health(f"http://127.0.0.1:{base + i}")["pid"])) for i in range(2)]
    # The CLI we started started this node; we signal it by the PID it reported itself.
    os.kill(pids[1], signal.SIGKILL)
    assert proc.wait(timeout=30) == 1
    text = out.read_text()
    assert re.search(r"node node2 .* exited unexpectedly \(-9\)", text), text
    assert "last 30 lines of" in text
    assert not any(_node_alive(pid) for pid in pids)


def test_cli_cluster_refuses_a_port_in_use(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        code = main(
            ["cluster", "--nodes", "1", "--base-port", str(port), "--data-dir", str(tmp_path)]
        )
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"dfsring cluster: port {port} on 127.0.0.1 is already in use"


@pytest.mark.parametrize(
    "argv",
    [
        ["cluster", "--nodes", "0"],
        ["cluster", "--nodes", "many"],
        ["cluster", "--base-port", "70000"],
        ["cluster", "--base-port", "65535", "--nodes", "2"],
        ["cluster", "--r", "4"],
        ["cluster", "--host", "0.0.0.0"],
        ["cluster", "--no-such-flag"],
        [],
    ],
)
def test_cli_bad_arguments_are_one_line_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_cluster_grows_with_seeds_and_status_shows_the_joined_ring(
    cli_cluster: tuple[subprocess.Popen[bytes], Path, int], tmp_path: Path
) -> None:
    """`dfsring cluster --nodes 2` is one joined cluster; a second `dfsring cluster --nodes 1
    --seeds ...` raises it to three, and `dfsring status` lists all three, up, in the ring."""
    proc, out, base = cli_cluster
    _wait_cli_ready(proc, out)
    more_port = free_port()
    more_out = tmp_path / "more.out"
    argv = [sys.executable, "-m", "dfsring.cli.main", "cluster", "--nodes", "1",
            "--base-port", str(more_port), "--peer-base-port", str(free_port()),
            "--s3-base-port", str(free_port()),
            "--data-dir", str(tmp_path / "more"), "--seeds", f"127.0.0.1:{base}"]
    secret = (tmp_path / "data" / "cluster-secret").read_text().strip()
    root = load_file(tmp_path / "data" / "credentials")
    as_root = {**os.environ, ENV_ACCESS: root.access_key, ENV_SECRET: root.secret_key}
    with more_out.open("wb") as fh:
        more = spawn(argv, output=fh, env={**as_root, "DFSRING_CLUSTER_SECRET": secret})
    try:
        _wait_cli_ready(more, more_out)
        status = [sys.executable, "-m", "dfsring.cli.main", "status", "--url",
                  f"http://127.0.0.1:{base}", "--json"]

        def three_up() -> bool:
            run = subprocess.run(status, capture_output=True, timeout=30, check=False,
                                 env=as_root)
            if run.returncode != 0:
                return False
            doc = json.loads(run.stdout)
            rows = doc["members"]
            return (len(rows) == 3 and all(m["status"] == "up" and m["in_ring"] for m in rows)
                    and not doc["ring"]["in_transition"])

        wait_until(three_up, timeout=30, message="three members up in one ring")
        ids = {m["node_id"] for m in _members(f"http://127.0.0.1:{base}", auth_headers(root))}
        assert ids == {"node1", "node2", "node3"}  # the joining node got a fresh id
        more.send_signal(signal.SIGINT)
        assert more.wait(timeout=30) == 0
    finally:
        if more.poll() is None:
            more.kill()
        more.wait(timeout=10)


def _members(url: str, headers: dict[str, str]) -> list[dict[str, object]]:
    request = urllib.request.Request(f"{url}/v1/cluster/members", headers=headers)
    with _NO_PROXY.open(request, timeout=5) as resp:
        return json.loads(resp.read())


def test_cli_cluster_keeps_its_credentials_0600_and_status_finds_them(tmp_path: Path) -> None:
    """`dfsring cluster` (the README's first command, default data dir) writes the root
    credentials once, 0600, and reuses them on the next run; `dfsring status` run from the
    same directory authenticates with no credential flag or variable, and reads every
    member through the client address the members list gives (api_address)."""
    base, peer_base = free_port_block(2), free_port_block(2)
    argv = [sys.executable, "-m", "dfsring.cli.main", "cluster", "--nodes", "2",
            "--base-port", str(base), "--peer-base-port", str(peer_base),
            "--s3-base-port", str(free_port_block(2))]
    env = {k: v for k, v in os.environ.items()
           if k not in (ENV_ACCESS, ENV_SECRET, "DFSRING_CLUSTER_SECRET",
                        "DFSRING_ADMIN_ACCESS_KEY", "DFSRING_ADMIN_SECRET_KEY")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")  # only ./dfsring-data may match
    creds_file = tmp_path / "dfsring-data" / "credentials"
    seen = []
    for run in (1, 2):
        out = tmp_path / f"run{run}.out"
        with out.open("wb") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path,
                                    env=_with_source(env))
        try:
            text = _wait_cli_ready(proc, out)
            assert f"root credentials in {creds_file}" in text, text
            assert f"peer 127.0.0.1:{peer_base}" in text, text
            assert creds_file.stat().st_mode & 0o777 == 0o600
            assert (tmp_path / "dfsring-data" / "cluster-secret").stat().st_mode & 0o077 == 0
            seen.append(load_file(creds_file))
            status = subprocess.run(
                [sys.executable, "-m", "dfsring.cli.main", "status", "--json"],
                capture_output=True, timeout=60, check=False, cwd=tmp_path,
                env=_with_source({**env, "DFSRING_URL": f"http://127.0.0.1:{base}"}))
            assert status.returncode == 0, status.stderr.decode()
            doc = json.loads(status.stdout)
            rows = {m["node_id"]: m for m in doc["members"]}
            assert set(rows) == {"node1", "node2"}
            assert all(m["status"] == "up" for m in rows.values()), rows
            # every member was asked for its stats at its own client address
            assert all(n["error"] is None and n["stats"]["node_id"] == node
                       for node, n in doc["nodes"].items()), doc["nodes"]
            members = _members(f"http://127.0.0.1:{base}", auth_headers(seen[-1]))
            assert {m["node_id"]: (m["address"], m["api_address"]) for m in members} == {
                "node1": (f"127.0.0.1:{peer_base}", f"127.0.0.1:{base}"),
                "node2": (f"127.0.0.1:{peer_base + 1}", f"127.0.0.1:{base + 1}")}
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                assert proc.wait(timeout=30) == 0, out.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
    assert seen[0] == seen[1], "the second run made new root credentials"
    assert seen[0].secret_key not in (tmp_path / "run1.out").read_text()


def _with_source(env: dict[str, str]) -> dict[str, str]:
    """`env` able to import dfsring from this checkout when run from another directory."""
    root = str(Path(__file__).resolve().parents[2])
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))}
