"""A flood of 20 000 idle TCP connections leaves a real node answering (issue 23, part 3).

The finding: 20 000 idle sockets filled the node's file-descriptor limit; `/health`, reads and
writes then failed until the sockets closed, and nothing was logged. The node now raises its
soft RLIMIT_NOFILE to the hard limit, keeps its connection cap below it with headroom, and at
the cap evicts the connection idle longest, so a new client is still answered.

The machine's hard RLIMIT_NOFILE may itself be 20 000, and the node keeps its cap at 3/4 of its
limit (dfsring.core.connbudget), so it could hold only 15 000 of the flood. As root the test
raises the hard limit the node inherits (`node_nofile`: the node then raises its soft limit to
it, as it always does), so the node holds all 20 000 idle sockets and still answers; without
the privilege the test says so and asserts what the node can hold (the flood past its cap
evicts the longest idle, and /health and a read still answer within 1 s).

The flood is held by two helper processes (tests/cluster/floodhelper.py), each within its own
descriptor limit, from 127.0.x.y source addresses (at most --max-connections-per-source each,
as a flood from many hosts would be). The node runs with a header timeout longer than the
test, so it cannot shed the flood by timing it out: only the caps protect it here.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfsring.cli.launcher import NodeProcess
from dfsring.testing.wait import wait_until

FLOOD = 20_000
HELPERS = 2
PER_SOURCE = 1000  # under --max-connections-per-source (1024)
ANSWER_S = 1.0
ROOT = Path(__file__).resolve().parents[2]
NODE_NOFILE = 32_768  # the node's cap is 3/4 of it (24 576): room for the whole flood


def _timed_get(url: str, headers: dict[str, str] | None = None) -> tuple[float, int, bytes]:
    start = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                timeout=5) as resp:
        body = resp.read()
        return time.monotonic() - start, resp.status, body


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _metric(node: NodeProcess, name: str) -> float:
    _, _, body = _timed_get(f"{node.url}/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _flood(port: int) -> list[subprocess.Popen[str]]:
    share = FLOOD // HELPERS
    return [subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.floodhelper", str(port),
         str(i * share // PER_SOURCE), str(share), str(PER_SOURCE)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for i in range(HELPERS)]


def _opened(helpers: list[subprocess.Popen[str]]) -> int:
    total = 0
    for proc in helpers:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the helper's connects time out at 10 s each at worst
        assert line.startswith("opened "), line
        total += int(line.split()[1])
    return total


def _stop(helpers: list[subprocess.Popen[str]]) -> None:
    for proc in helpers:
        if proc.stdin is not None:
            proc.stdin.close()
    for proc in helpers:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def node_nofile() -> Iterator[tuple[bool, str]]:
    """Raise this process's hard RLIMIT_NOFILE to NODE_NOFILE while the node is started, so
    the node inherits it; restored afterwards. Yields (raised, why not). Raising a hard
    limit needs CAP_SYS_RESOURCE (root); the kernel's fs.nr_open bounds it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    if before[1] == resource.RLIM_INFINITY or before[1] >= NODE_NOFILE:
        yield True, ""
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (before[0], NODE_NOFILE))
    except (ValueError, OSError) as exc:
        yield False, (f"cannot raise the hard open-file limit {before[1]} to {NODE_NOFILE}: it "
                      f"needs CAP_SYS_RESOURCE, which this process lacks ({exc})")
        return
    try:
        yield True, ""
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_flood_of_20000_idle_sockets_leaves_health_and_reads_answering_within_1s(
        cluster_factory, node_nofile: tuple[bool, str],
        record_property: pytest.RecordProperty) -> None:
    raised, why_not = node_nofile
    if not raised:
        print(f"NOTE: {why_not}; the node holds at most 3/4 of its limit, the rest of the "
              "flood evicts the longest idle")
    node = cluster_factory(1, n=1, r=1, w=1,
                           extra_args=("--header-timeout", "600", "--idle-timeout", "600"),
                           ).nodes[0]
    req = urllib.request.Request(f"{node.url}/v1/kv/b/canary", data=b"alive", method="PUT",
                                 headers=node.auth_headers)
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 204
    assert node.pid is not None
    rss_before = _rss_kib(node.pid)
    started = time.monotonic()
    helpers = _flood(node.spec.port)
    try:
        opened = _opened(helpers)
        opened_s = time.monotonic() - started
        cap = _metric(node, "dfsring_connections_max")
        wait_until(lambda: _metric(node, "dfsring_connections_open") >= min(opened, cap) - 5,
                   timeout=60, message="the node to accept the flood")
        held = _metric(node, "dfsring_connections_open")
        rss_after = _rss_kib(node.pid)
        worst = 0.0
        for _ in range(5):
            took, status, _ = _timed_get(f"{node.url}/health")
            assert status == 200
            worst = max(worst, took)
            took, status, body = _timed_get(f"{node.url}/v1/kv/b/canary", node.auth_headers)
            assert (status, body) == (200, b"alive")
            worst = max(worst, took)
    finally:
        _stop(helpers)
    per_conn_kib = (rss_after - rss_before) / max(1.0, held)
    note = (f"flood of {opened} idle sockets opened in {opened_s:.1f} s; node open-file limit "
            f"{_nofile(node.pid)}, cap {cap:.0f}, held {held:.0f}; worst /health or read "
            f"{worst * 1000:.0f} ms; node RSS {rss_before / 1024:.0f} MiB -> "
            f"{rss_after / 1024:.0f} MiB (~{per_conn_kib:.1f} KiB per idle connection)"
            + ("" if raised else f"; {why_not}"))
    print(note)
    record_property("flood", note)
    assert opened == FLOOD, note
    assert worst < ANSWER_S, note
    # raised: the whole flood is held, none of it evicted; else as much as the cap allows
    assert held >= (FLOOD if raised else min(FLOOD, cap)) - 5, note


def _nofile(pid: int) -> int:
    """The node's soft open-file limit, as its /proc says."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit")
