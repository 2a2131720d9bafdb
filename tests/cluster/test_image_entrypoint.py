"""The container image's command, run as plain processes (issue 22: "a test starts the image's
entrypoint command as a process and sees it healthy"). Docker is not needed: the command, the
environment and the health check are read from the Dockerfile and docker-compose.yml
themselves (tests/deploykit.py), so they cannot drift from what the image runs.

What differs from a container, and only that: ``python`` is this interpreter; the data dir is
under tmp_path; the node listens on 127.0.0.1 at free ports instead of 0.0.0.0:7070/7170/9000
(a test host is shared), and Compose's service names (node1:7170...) are rewritten to those
loopback addresses, as Docker's DNS would resolve them to the containers.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from subprocess import DEVNULL, Popen

import pytest

from dfsring.cli.launcher import free_port_block, spawn
from dfsring.testing.wait import wait_until
from tests import deploykit as kit

START_TIMEOUT = 60.0
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _container_argv(argv: list[str]) -> list[str]:
    """The image's `python` is this interpreter (the venv with dfsring installed)."""
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


class Processes:
    """Processes this test started, stopped by PID in teardown (never by name)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[tuple[Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> Popen[bytes]:
        log = self.base / f"{name}.log"
        with log.open("ab") as out:
            proc = spawn(argv, output=out, env=env)
        self.procs.append((proc, log))
        return proc

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(15)
            except Exception:
                proc.kill()
                proc.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                         for _, log in self.procs)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop()


def _health(port: int) -> dict[str, object]:
    with _HTTP.open(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
        doc = json.loads(resp.read())
    assert isinstance(doc, dict)
    return doc


def _wait_healthy(ports: list[int], procs: Processes, members: int) -> None:
    def ready() -> bool:
        for proc, _ in procs.procs:
            assert proc.poll() is None, f"a node exited ({proc.returncode}):\n{procs.logs()}"
        return all(_health(p).get("status") == "ok" and _health(p).get("members") == members
                   for p in ports)

    wait_until(ready, timeout=START_TIMEOUT, interval=0.2, retry_on=(OSError, ValueError),
               message=f"nodes on {ports} healthy with {members} members")


def _healthcheck(env: Mapping[str, str]) -> int:
    """The Dockerfile's HEALTHCHECK command, run with the container's environment."""
    argv = _container_argv(kit.healthcheck_command(kit.runtime()))
    proc = spawn(argv, output=DEVNULL, env=env)
    return proc.wait(30)


def test_image_entrypoint_runs_a_healthy_node(tmp_path: Path, processes: Processes) -> None:
    """`docker run` of the image with the variables docs/DEPLOY.md gives for one node."""
    stage = kit.runtime()
    entry = kit.exec_form(stage.last("ENTRYPOINT") or "")
    secrets = kit.read_env_file(kit.COMPOSE_ENV_EXAMPLE)
    port = free_port_block(3)
    env = {**kit.env_of(stage),
           "DFSRING_DATA_DIR": str(tmp_path / "data"), "DFSRING_HOST": "127.0.0.1",
           "DFSRING_PORT": str(port), "DFSRING_PEER_PORT": str(port + 1),
           "DFSRING_S3_PORT": str(port + 2),
           "DFSRING_ADVERTISE": f"127.0.0.1:{port + 1}",
           "DFSRING_ADVERTISE_API": f"127.0.0.1:{port}",
           **{k: v for k, v in secrets.items() if k.startswith("DFSRING_")}}
    (tmp_path / "data").mkdir()
    assert _healthcheck(env) == 1, "no node yet: the health check must fail"
    processes.start("image", _container_argv(entry), env)
    _wait_healthy([port], processes, members=1)
    assert _healthcheck(env) == 0
    assert any(_is_json_object(line) for line in
               (tmp_path / "image.log").read_text().splitlines()), "DFSRING_LOG_JSON: JSON logs"


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_compose_services_found_a_three_zone_cluster(tmp_path: Path,
                                                     processes: Processes) -> None:
    """docker-compose.yml's three node services, each as the image's entrypoint with the
    image's environment plus the service's: they found one cluster (bootstrap-expect 3)."""
    stage = kit.runtime()
    entry = _container_argv(kit.exec_form(stage.last("ENTRYPOINT") or ""))
    dotenv = kit.read_env_file(kit.COMPOSE_ENV_EXAMPLE)
    nodes = kit.node_services(kit.compose())
    base = free_port_block(2 * len(nodes))
    api = {svc["hostname"]: base + i for i, svc in enumerate(nodes.values())}
    peer = {host: p + len(nodes) for host, p in api.items()}

    def loopback(value: str) -> str:
        for host in api:
            value = value.replace(f"{host}:7170", f"127.0.0.1:{peer[host]}")
            value = value.replace(f"{host}:7070", f"127.0.0.1:{api[host]}")
        return value

    for name, svc in nodes.items():
        host = svc["hostname"]
        data = tmp_path / name
        data.mkdir()
        env = {**kit.env_of(stage),
               **{k: loopback(v) for k, v in kit.service_env(svc, dotenv).items()},
               "DFSRING_DATA_DIR": str(data), "DFSRING_HOST": "127.0.0.1",
               "DFSRING_PORT": str(api[host]), "DFSRING_PEER_PORT": str(peer[host]),
               "DFSRING_S3_PORT": "0"}
        processes.start(name, entry, env)
    _wait_healthy(list(api.values()), processes, members=len(nodes))
    request = urllib.request.Request(
        f"http://127.0.0.1:{api['node1']}/v1/cluster/members",
        headers={"Authorization": f"Bearer {dotenv['DFSRING_ADMIN_ACCESS_KEY']}:"
                                  f"{dotenv['DFSRING_ADMIN_SECRET_KEY']}"})
    with _HTTP.open(request, timeout=5) as resp:
        members = json.loads(resp.read())
    rows = members["members"] if isinstance(members, dict) else members
    assert sorted(m["node_id"] for m in rows) == sorted(nodes)
    assert sorted(m["zone"] for m in rows) == ["zone-a", "zone-b", "zone-c"]
