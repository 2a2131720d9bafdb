"""`dfsring status|ring|join|leave|remove`: the pure renderers, then the commands end to end
against canned HTTP documents.

The fake nodes here are doubles of the HTTP API only (the shapes of docs/API.md), served by
aiohttp on loopback in a thread of their own, because the CLI runs its own event loop. They
test the CLI's logic: tables, error mapping, exit statuses, unreachable members and --wait
polling a document that changes from one request to the next. Real-cluster tests of the same
commands live with the cluster tier.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from dfsring.cli import admin as cli_admin
from dfsring.cli.launcher import free_port
from dfsring.cli.main import main
from dfsring.cli.render import (
    Progress,
    ProgressLine,
    human_bytes,
    human_eta,
    in_transition,
    join_state,
    leave_state,
    ownership,
    progress_of,
    remove_state,
    render_bar,
    render_ring,
    render_status,
    render_table,
    transfers_cell,
)

pytestmark = pytest.mark.component

Reply = tuple[int, Any]


# --- documents in the API's shapes ---------------------------------------------------------------


def member(
    node_id: str, address: str, *, status: str = "up", me: bool = False, partitions: int = 32
) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "address": address,
        "zone": "z1",
        "status": status,
        "liveness": "up" if status in ("up", "joining", "leaving") else status,
        "incarnation": 1,
        "in_ring": status != "joining",
        "partitions": partitions,
        "synced_epoch": 3,
        "self": me,
    }


def ring_doc(*ids: str, epoch: int = 3, in_transition: bool = False) -> dict[str, Any]:
    owners = {str(p): [ids[(p + i) % len(ids)] for i in range(min(2, len(ids)))] for p in range(8)}
    return {
        "cluster": "demo",
        "epoch": epoch,
        "hash": "ab12cd34",
        "partitions": 8,
        "replicas": 2,
        "members": [{"node_id": node, "zone": "z1"} for node in ids],
        "owners": owners,
        "in_transition": in_transition,
        "previous": [],
    }


def transfers_doc(
    node_id: str,
    *,
    done: int = 0,
    total: int = 0,
    moving: bool | None = None,
    size: int = 0,
    rate: float = 0.0,
    eta: float | None = None,
) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "epoch": 3,
        "in_transition": done < total if moving is None else moving,
        "incoming": {
            "partitions_total": total,
            "partitions_done": done,
            "bytes_done": size,
            "keys_done": 0,
            "bytes_per_s": rate,
            "eta_s": eta,
            "active": [],
        },
        "unsynced_members": [],
        "hints_pending": 0,
    }


def stats_doc(
    node_id: str, keys: int = 1200, size: int = 2_500_000, hints: int = 0
) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "keys": keys,
        "bytes": size,
        "hints_pending": hints,
        "transfers_pending": 0,
        "repaired_keys": 7,
        "corrupt_found": 1,
        "antientropy": {"oldest_unexchanged_s": 42.4},
    }


def ok(doc: Any, status: int = 200) -> Reply:
    return status, doc


def problem(status: int, title: str, detail: str) -> Reply:
    doc = {"type": "https://dfsring.dev/problems/x", "title": title, "status": status}
    return status, doc | {"detail": detail, "request_id": "req-1"}


# --- the fake nodes ------------------------------------------------------------------------------


class FakeNode:
    """One node's HTTP API as canned replies. A route has a list of replies answered one per
    request, the last one repeating, so a test scripts how a document changes while --wait
    polls. Every request is recorded."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.delays: dict[str, float] = {}  # path -> seconds before answering
        self.address = ""

    def on(self, method: str, path: str, *replies: Reply) -> FakeNode:
        self.routes[(method, path)] = list(replies)
        return self

    def calls(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.requests if (m, p) == (method, path))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path  # as sent: a %2F in a node id stays one
        self.requests.append((request.method, path, dict(request.query)))
        await asyncio.sleep(self.delays.get(path, 0.0))
        script = self.routes.get((request.method, path))
        if script is None:
            status, doc = problem(404, "No such route", request.path)
        else:
            status, doc = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(doc, bytes):
            return web.Response(status=status, body=doc, content_type="text/plain")
        kind = "application/problem+json" if status >= 400 else "application/json"
        return web.Response(status=status, text=json.dumps(doc), content_type=kind)


class FakeServers:
    """aiohttp servers on loopback ports, on an event loop in a thread of their own (the CLI
    under test calls asyncio.run, which cannot share the test's loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def start(self, node: FakeNode) -> FakeNode:
        node.address = asyncio.run_coroutine_threadsafe(self._start(node), self.loop).result(10)
        return node

    async def _start(self, node: FakeNode) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", node.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"{host}:{port}"

    async def _cleanup(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def servers() -> Iterator[FakeServers]:
    fake = FakeServers()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll every 10 ms instead of 0.5 s, and ignore a DFSRING_URL of the environment."""
    monkeypatch.setattr(cli_admin, "POLL_INTERVAL", 0.01)
    monkeypatch.delenv("DFSRING_URL", raising=False)


def dfsring(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err.strip()


def url(node: FakeNode) -> str:
    return f"http://{node.address}"


def dead_address() -> str:
    return f"127.0.0.1:{free_port()}"


# --- units -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1_234_567, "1.2 MB"),
        (999_999, "1.0 MB"),
        (2.5e9, "2.5 GB"),
        (7e18, "7000.0 PB"),
        (None, "-"),
        (-1, "-"),
    ],
)
def test_human_bytes(count: float | None, shown: str) -> None:
    assert human_bytes(count) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 s"),
        (14, "14 s"),
        (14.2, "15 s"),
        (59.5, "1 min 00 s"),
        (125, "2 min 05 s"),
        (3600, "1 h 00 min"),
        (3 * 3600 + 61, "3 h 01 min"),
        (None, "unknown"),
        (-3, "unknown"),
        (float("nan"), "unknown"),
        (float("inf"), "never"),
    ],
)
def test_human_eta_rounds_up(seconds: float | None, shown: str) -> None:
    assert human_eta(seconds) == shown


# --- tables and bars -----------------------------------------------------------------------------


def test_bar_as_documented() -> None:
    bar = render_bar(18, 40, 20, "partitions", 3.2e6, 14)
    assert bar == "[#########...........]  45%  18/40 partitions  3.2 MB/s  ETA 14 s"


@pytest.mark.parametrize(
    ("done", "total", "start"),
    [
        (0, 40, "[..........]   0%  0/40 "),
        (39, 40, "[#########.]  97%  39/40 "),  # rounds down: full only when done
        (40, 40, "[##########] 100%  40/40 "),
        (50, 40, "[##########] 100%  50/40 "),  # more than planned: clamped, still honest
        (0, 0, "[..........]   0%  0/0 "),  # nothing to do yet
        (2.5, 10, "[##........]  25%  2.5/10 "),
    ],
)
def test_bar_fill_and_percent(done: float, total: float, start: str) -> None:
    assert render_bar(done, total, 10, "parts", None, None).startswith(start)


def test_bar_leaves_out_unknown_rate_and_eta_and_survives_zero_width() -> None:
    assert render_bar(1, 4, 4, "partitions", None, None) == "[#...]  25%  1/4 partitions"
    assert render_bar(1, 4, 0, "x", None, 90) == "[]  25%  1/4 x  ETA 1 min 30 s"
    assert render_bar(1, 4, -5, "x", 0.0, None) == "[]  25%  1/4 x  0 B/s"


def test_table_aligns_columns_and_strips_trailing_blanks() -> None:
    table = render_table(("NAME", "N", "NOTE"), [("a", "1", ""), ("bbbb", "100", "x")], "lrl")
    assert table.splitlines() == ["NAME    N  NOTE", "a       1", "bbbb  100  x"]


# --- transfers -----------------------------------------------------------------------------------


def test_progress_sums_nodes_in_transition_with_the_slowest_eta() -> None:
    docs = [
        transfers_doc("a", done=3, total=10, size=1000, rate=100.0, eta=20.0),
        transfers_doc("b", done=1, total=4, size=500, rate=50.0, eta=60.0),
        transfers_doc("c", done=5, total=5, moving=False, size=99, rate=7.0, eta=1.0),  # done
        None,  # a member that did not answer
    ]
    assert progress_of(docs) == Progress(4, 14, 1500, 150.0, 60.0)
    assert progress_of([]) == Progress()


def test_progress_of_a_node_in_transition_that_receives_nothing() -> None:
    flagged = transfers_doc("a", moving=True, eta=None)
    assert in_transition(flagged)
    assert progress_of([flagged]) == Progress(0, 0, 0, 0.0, None)


def test_transfers_cell() -> None:
    assert transfers_cell(transfers_doc("a", done=12, total=40)) == "12/40 parts"
    assert transfers_cell(transfers_doc("a", done=40, total=40)) == "-"
    assert transfers_cell(transfers_doc("a", moving=True)) == "-"  # nothing incoming
    assert transfers_cell(None) == "-"
    unflagged = transfers_doc("a", done=2, total=5, moving=False)  # pending work counts
    assert in_transition(unflagged) and transfers_cell(unflagged) == "2/5 parts"


# --- status and ring -----------------------------------------------------------------------------


def test_status_table_with_an_unreachable_member() -> None:
    members = [
        member("n1", "10.0.0.1:7070", me=True, partitions=24),
        member("n2", "10.0.0.2:7070", status="down", partitions=24),
    ]
    stats = {"n1": stats_doc("n1", keys=1200, size=2_500_000, hints=3), "n2": None}
    transfers = {"n1": transfers_doc("n1", done=12, total=40, size=5_000_000, eta=14), "n2": None}
    lines = render_status(members, ring_doc("n1", "n2"), stats, transfers).splitlines()
    assert lines[0].split() == [
        "NODE",
        "ADDRESS",
        "ZONE",
        "STATUS",
        "PARTITIONS",
        "KEYS",
        "DISK",
        "HINTS",
        "REPAIRED",
        "CORRUPT",
        "AE-AGE",
        "TRANSFERS",
    ]
    assert lines[1].split() == [
        "n1", "10.0.0.1:7070", "z1", "up", "24", "1200", "2.5", "MB", "3", "7", "1", "42s",
        "12/40", "parts",
    ]  # fmt: skip
    assert lines[2].split() == ["n2", "10.0.0.2:7070", "z1", "down", "24", "-", "-", "-", "-",
                                "-", "-", "-"]
    assert lines[3] == "ring epoch 3 hash ab12cd34 (2 members)"
    assert lines[4] == "transfers in progress: 12/40 partitions, 5.0 MB, ETA 14 s"
    assert len(lines) == 5


def test_status_without_transfers_has_no_transfers_line() -> None:
    members = [member("n1", "a:1", me=True)]
    text = render_status(members, ring_doc("n1"), {"n1": stats_doc("n1")}, {"n1": None})
    assert text.splitlines()[-1] == "ring epoch 3 hash ab12cd34 (1 members)"


def test_status_lists_busy_and_failed_workers_one_line_per_node() -> None:
    def worker(state: str, error: str | None = None) -> dict[str, object]:
        return {"state": state, "iterations": 9, "last_error": error, "last_error_at": None,
                "last_run_at": 1.0}

    members = [member("n1", "a:1", me=True), member("n2", "b:1"), member("n3", "c:1")]
    stats = {
        "n1": {**stats_doc("n1"), "workers": {"gossip": worker("idle"),
                                              "scrub": worker("failed", "OSError: disk"),
                                              "exchange": worker("busy")}},
        "n2": {**stats_doc("n2"), "workers": {"gossip": worker("idle"),
                                              "discovery": worker("done")}},
        "n3": None,
    }
    lines = render_status(members, ring_doc("n1", "n2", "n3"), stats,
                          dict.fromkeys(stats)).splitlines()
    assert lines[-1] == "n1 workers: exchange busy, scrub failed (OSError: disk)"
    assert not any(line.startswith(("n2 workers", "n3 workers")) for line in lines)


def test_ownership_counts_each_node_once_per_partition_and_primaries() -> None:
    owners = {"0": ["a", "b"], "1": ["b", "a"], "2": ["a", "c"], "3": ["a", "a"], "4": []}
    assert ownership(owners) == {"a": (4, 3), "b": (2, 1), "c": (1, 0)}


def test_render_ring_summary_and_shares() -> None:
    ring = ring_doc("n1", "n2", "n3", epoch=7, in_transition=True)
    ring["owners"]["0"] = ["old", "n1"]  # a node still owning after it left the members
    ring["previous"] = [["n1", "n2", "old"]]
    lines = render_ring(ring).splitlines()
    assert lines[:7] == [
        "cluster        demo",
        "epoch          7",
        "hash           ab12cd34",
        "partitions     8",
        "replicas       2",
        "members        3",
        "in transition  yes (1 earlier rings still consulted)",
    ]
    assert lines[7] == ""
    table = {line.split()[0]: line.split()[1:] for line in lines[9:]}
    assert lines[8].split() == ["NODE", "ZONE", "PARTITIONS", "PRIMARIES", "SHARE"]
    assert table == {
        "n1": ["z1", "5", "2", "25.0%"],
        "n2": ["z1", "5", "3", "37.5%"],
        "n3": ["z1", "5", "2", "25.0%"],
        "old": ["-", "1", "1", "12.5%"],
    }


def test_render_ring_of_an_empty_document_shows_dashes() -> None:
    assert "epoch          -" in render_ring({})
    no_zone = render_ring(ring_doc("n1") | {"members": [{"node_id": "n1", "zone": ""}]})
    assert no_zone.splitlines()[-1].split() == ["n1", "-", "8", "8", "100.0%"]


# --- wait conditions -----------------------------------------------------------------------------


def test_join_is_done_only_when_up_in_ring_and_not_in_transition() -> None:
    joining = [member("n1", "a:1"), member("n4", "d:1", status="joining", me=True)]
    up = [member("n1", "a:1"), member("n4", "d:1", me=True)]
    moving = transfers_doc("n4", done=2, total=8)
    still = transfers_doc("n4")
    first = join_state(joining, ring_doc("n1"), moving)
    assert not first.done and first.pending == (
        "status joining, not in the ring yet, transfers in progress"
    )
    assert first.progress.total == 8
    assert join_state(up, ring_doc("n1", "n4"), moving).pending == "transfers in progress"
    assert join_state(up, ring_doc("n1", "n4"), still).done
    assert join_state([member("n1", "a:1")], ring_doc("n1"), still).pending == (
        "the node does not list itself"
    )


def test_leave_is_done_when_the_node_says_left() -> None:
    leaving = [member("n1", "a:1"), member("n3", "c:1", status="leaving", me=True)]
    left = [member("n1", "a:1"), member("n3", "c:1", status="left", me=True)]
    transfers = {"n1": transfers_doc("n1", done=1, total=3)}
    assert leave_state(leaving, transfers).pending == "status leaving"
    assert leave_state(leaving, transfers).progress.total == 3
    assert leave_state(left, transfers).done


def test_remove_waits_for_the_ring_and_every_remaining_member() -> None:
    moving = {"n1": transfers_doc("n1", done=1, total=4), "n2": None}
    state = remove_state("n3", ring_doc("n1", "n2", "n3"), moving)
    assert state.pending == "n3 still in the ring, transfers in progress on n1, no answer from n2"
    settled = {"n1": transfers_doc("n1"), "n2": transfers_doc("n2")}
    assert remove_state("n3", ring_doc("n1", "n2"), settled).done


def test_progress_line_redraws_in_place_on_a_terminal() -> None:
    line = ProgressLine(tty=True, every=5.0)
    assert line.show("long line", 0.0) == "\rlong line"
    assert line.show("short", 0.1) == "\rshort    "  # blanks over the longer line
    assert line.end() == "\n"
    assert line.end() == ""


def test_progress_line_elsewhere_writes_a_line_every_few_seconds() -> None:
    line = ProgressLine(tty=False, every=5.0)
    assert line.show("a", 100.0) == "a\n"
    assert line.show("b", 104.9) == ""
    assert line.show("c", 105.0) == "c\n"
    assert line.end() == ""


# --- usage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed",
    [
        "nohost",
        ":7070",
        "host:",
        "host:0",
        "host:70000",
        "host:port",
        "http://h:1",
        "a b:1",
        "::1:1",
    ],
)
def test_malformed_seed_is_a_usage_error(capsys: pytest.CaptureFixture[str], seed: str) -> None:
    status, out, err = dfsring(capsys, "join", seed, "--url", dead_address())
    assert status == 2 and out == ""
    assert "is not HOST:PORT" in one_line(err)


@pytest.mark.parametrize("seed", ["10.0.0.1:7070", "node-1.example:1", "[::1]:7070"])
def test_good_seeds_reach_the_node(
    capsys: pytest.CaptureFixture[str], servers: FakeServers, seed: str
) -> None:
    node = servers.start(FakeNode().on("POST", "/v1/cluster/join", ok({"node_id": "n4"}, 202)))
    status, out, _ = dfsring(capsys, "join", seed, "--url", url(node))
    assert status == 0 and out == f"n4: joining the cluster of {seed}\n"
    assert node.requests == [("POST", "/v1/cluster/join", {"seed": seed})]


def test_join_and_leave_act_on_one_node(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["join", "h:1"], ["leave"]):
        status, _, err = dfsring(capsys, *argv, "--url", "127.0.0.1:1,127.0.0.1:2")
        assert status == 2 and "give one --url, not 2" in one_line(err)


def test_bad_url_and_bad_timeout_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = dfsring(capsys, "ring", "--url", "ftp://x")
    assert status == 2 and "bad URL 'ftp://x'" in one_line(err)
    status, _, err = dfsring(capsys, "status", "--timeout", "0")
    assert status == 2 and "must be > 0" in one_line(err)


# --- status and ring end to end ------------------------------------------------------------------


@pytest.fixture
def cluster(servers: FakeServers) -> tuple[FakeNode, FakeNode, str]:
    """n1 (asked) and n2 answer; n3 is a member whose address nobody listens on."""
    n1, n2 = servers.start(FakeNode()), servers.start(FakeNode())
    n3 = dead_address()
    members = [member("n1", n1.address, me=True), member("n2", n2.address), member("n3", n3)]
    n1.on("GET", "/v1/cluster/members", ok(members))
    n1.on("GET", "/v1/cluster/ring", ok(ring_doc("n1", "n2", "n3", in_transition=True)))
    n1.on("GET", "/v1/node/stats", ok(stats_doc("n1", keys=10, size=1500)))
    n1.on("GET", "/v1/cluster/transfers", ok(transfers_doc("n1")))
    n2.on("GET", "/v1/node/stats", ok(stats_doc("n2", keys=20, size=2_000_000, hints=4)))
    n2.on("GET", "/v1/cluster/transfers", ok(transfers_doc("n2", done=3, total=8, eta=30)))
    return n1, n2, n3


def test_status_table_with_a_dead_member(
    capsys: pytest.CaptureFixture[str], cluster: tuple[FakeNode, FakeNode, str]
) -> None:
    n1, n2, n3 = cluster
    status, out, err = dfsring(capsys, "status", "--url", url(n1), "--timeout", "2")
    assert status == 0
    rows = [line.split() for line in out.splitlines()]
    ae = ["7", "1", "42s"]
    assert rows[1] == ["n1", n1.address, "z1", "up", "32", "10", "1.5", "kB", "0", *ae, "-"]
    assert rows[2] == ["n2", n2.address, "z1", "up", "32", "20", "2.0", "MB", "4", *ae, "3/8",
                       "parts"]
    assert rows[3] == ["n3", n3, "z1", "up", "32", "-", "-", "-", "-", "-", "-", "-"]
    assert out.splitlines()[4:] == [
        "ring epoch 3 hash ab12cd34 (3 members)",
        "transfers in progress: 3/8 partitions, 0 B, ETA 30 s",
    ]
    assert one_line(err).startswith(f"dfsring status: n3 at {n3}: cannot connect")


def test_status_asks_each_member_at_its_api_address_not_its_peer_address(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    """Issue 18: a member's `address` is its peer listener, which serves no client route;
    `dfsring status` reads each member's stats at the `api_address` gossiped beside it."""
    n1, n2 = servers.start(FakeNode()), servers.start(FakeNode())
    members = [{**member("n1", dead_address(), me=True), "api_address": n1.address},
               {**member("n2", dead_address()), "api_address": n2.address}]
    n1.on("GET", "/v1/cluster/members", ok(members))
    n1.on("GET", "/v1/cluster/ring", ok(ring_doc("n1", "n2")))
    for node, name in ((n1, "n1"), (n2, "n2")):
        node.on("GET", "/v1/node/stats", ok(stats_doc(name, keys=5, size=100)))
        node.on("GET", "/v1/cluster/transfers", ok(transfers_doc(name)))
    status, out, err = dfsring(capsys, "status", "--json", "--url", url(n1), "--timeout", "2")
    assert status == 0, err
    nodes = json.loads(out)["nodes"]
    assert {k: (v["error"], v["stats"]["keys"]) for k, v in nodes.items()} == {
        "n1": (None, 5), "n2": (None, 5)}


def test_status_json_keeps_the_raw_documents(
    capsys: pytest.CaptureFixture[str], cluster: tuple[FakeNode, FakeNode, str]
) -> None:
    n1, _, _ = cluster
    status, out, err = dfsring(capsys, "status", "--json", "--url", url(n1))
    assert status == 0 and "n3" in err
    doc = json.loads(out)
    assert [m["node_id"] for m in doc["members"]] == ["n1", "n2", "n3"]
    assert doc["ring"]["epoch"] == 3
    assert doc["nodes"]["n2"]["stats"]["keys"] == 20
    dead = doc["nodes"]["n3"]
    assert dead["stats"] is None and dead["transfers"] is None
    assert dead["error"].startswith("cannot connect")


def test_status_fails_over_to_the_next_url(
    capsys: pytest.CaptureFixture[str], cluster: tuple[FakeNode, FakeNode, str]
) -> None:
    n1, _, _ = cluster
    status, out, _ = dfsring(capsys, "status", "--url", dead_address(), "--url", url(n1))
    assert status == 0 and "ring epoch 3" in out


def test_status_member_without_transfers_route_still_shows_stats(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    n1 = servers.start(FakeNode())
    n1.on("GET", "/v1/cluster/members", ok([member("n1", n1.address, me=True)]))
    n1.on("GET", "/v1/cluster/ring", ok(ring_doc("n1")))
    n1.on("GET", "/v1/node/stats", ok(stats_doc("n1", keys=7)))
    status, out, err = dfsring(capsys, "status", "--url", url(n1))
    assert status == 0 and out.splitlines()[1].split()[5] == "7"
    assert "No such route" in one_line(err)


def test_ring_table_and_json(capsys: pytest.CaptureFixture[str], servers: FakeServers) -> None:
    node = servers.start(FakeNode().on("GET", "/v1/cluster/ring", ok(ring_doc("n1", "n2"))))
    status, out, _ = dfsring(capsys, "ring", "--url", node.address)
    assert status == 0 and "epoch          3" in out
    assert out.splitlines()[-2].split() == ["n1", "z1", "8", "4", "50.0%"]
    status, out, _ = dfsring(capsys, "ring", "--json", "--url", node.address)
    assert status == 0 and json.loads(out) == ring_doc("n1", "n2")


# --- errors --------------------------------------------------------------------------------------


def test_problem_is_one_line_with_title_detail_and_request_id(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    refusal = problem(409, "Conflict", "the last member cannot leave")
    node = servers.start(FakeNode().on("POST", "/v1/cluster/leave", refusal))
    status, out, err = dfsring(capsys, "leave", "--url", url(node))
    assert status == 1 and out == ""
    assert one_line(err) == (
        "dfsring leave: Conflict: the last member cannot leave (status 409, request_id req-1)"
    )


def test_remove_of_an_unknown_node_is_exit_4(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    node = servers.start(FakeNode())
    node.on("POST", "/v1/cluster/remove/n%2F9", problem(404, "Not found", "no member n/9"))
    status, _, err = dfsring(capsys, "remove", "n/9", "--url", url(node))
    assert status == 4 and "Not found: no member n/9" in one_line(err)


def test_unreachable_node_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = dfsring(capsys, "ring", "--url", dead_address())
    assert status == 1 and "no dfsring node answered" in one_line(err)


def test_slow_node_times_out_in_one_line(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    node = servers.start(FakeNode().on("GET", "/v1/cluster/ring", ok(ring_doc("n1"))))
    node.delays["/v1/cluster/ring"] = 2.0
    status, _, err = dfsring(capsys, "ring", "--url", url(node), "--timeout", "0.2")
    assert status == 1 and "no answer within 0.2 s" in one_line(err)


def test_lost_answer_to_a_post_is_not_sent_elsewhere(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    slow = servers.start(FakeNode().on("POST", "/v1/cluster/remove/n3", ok({"removed": "n3"})))
    slow.delays["/v1/cluster/remove/n3"] = 2.0
    other = servers.start(FakeNode().on("POST", "/v1/cluster/remove/n3", ok({"removed": "n3"})))
    argv = ["remove", "n3", "--timeout", "0.2", "--url", url(slow), "--url", url(other)]
    status, _, err = dfsring(capsys, *argv)
    assert status == 1 and "it may have been applied" in one_line(err)
    assert other.requests == []


def test_answers_not_in_the_documented_shape(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    node = servers.start(FakeNode())
    node.on("GET", "/v1/cluster/ring", ok(b"<html>", 200))
    node.on("GET", "/v1/cluster/members", ok({"not": "a list"}))
    status, _, err = dfsring(capsys, "ring", "--url", url(node))
    assert status == 1 and "expected JSON" in one_line(err)
    status, _, err = dfsring(capsys, "status", "--url", url(node))
    assert status == 1 and "expected a JSON list" in one_line(err)


# --- waiting -------------------------------------------------------------------------------------


def test_join_wait_polls_until_up_in_ring_and_settled(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    node = servers.start(FakeNode())
    joining, up = member("n4", "x:1", status="joining", me=True), member("n4", "x:1", me=True)
    node.on("POST", "/v1/cluster/join", ok({"node_id": "n4", "status": "joining"}, 202))
    node.on("GET", "/v1/cluster/members", ok([joining]), ok([joining]), ok([up]))
    node.on("GET", "/v1/cluster/ring", ok(ring_doc("n1")), ok(ring_doc("n1", "n4")))
    node.on(
        "GET",
        "/v1/cluster/transfers",
        ok(transfers_doc("n4", done=1, total=4, rate=1e6, eta=3)),
        problem(503, "Unavailable", "busy"),  # a poll without an answer is polled again
        ok(transfers_doc("n4", done=3, total=4)),
        ok(transfers_doc("n4", done=4, total=4)),
    )
    status, out, err = dfsring(capsys, "join", "h:1", "--wait", "--url", url(node))
    assert status == 0, err
    assert out.splitlines() == [
        "n4: joining the cluster of h:1",
        "n4 is up, in the ring and done receiving its data",
    ]
    # stderr is no terminal here: the first progress line at once, then one per 5 s at most
    assert err == (
        "[#####...............]  25%  1/4 partitions  1.0 MB/s  ETA 3 s  "
        "status joining, not in the ring yet, transfers in progress\n"
    )
    assert node.calls("GET", "/v1/cluster/transfers") == 4


def test_join_wait_timeout_says_what_was_awaited(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    node = servers.start(FakeNode())
    node.on("POST", "/v1/cluster/join", ok({"node_id": "n4"}, 202))
    node.on("GET", "/v1/cluster/members", ok([member("n4", "x:1", status="joining", me=True)]))
    node.on("GET", "/v1/cluster/ring", ok(ring_doc("n1")))
    node.on("GET", "/v1/cluster/transfers", ok(transfers_doc("n4")))
    argv = ["join", "h:1", "--wait", "--wait-timeout", "0.3", "--url", url(node), "--json"]
    status, out, err = dfsring(capsys, *argv)
    assert status == 1 and json.loads(out) == {"node_id": "n4"}
    assert err.splitlines()[-1] == (
        "dfsring join: gave up after 0.3 s waiting until n4 is up, in the ring and done "
        "receiving its data: status joining, not in the ring yet"
    )


def test_wait_timeout_bounds_a_poll_stuck_on_a_slow_node(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    node = servers.start(FakeNode().on("POST", "/v1/cluster/leave", ok({"node_id": "n3"}, 202)))
    node.on("GET", "/v1/cluster/members", ok([member("n3", "x:1", status="leaving", me=True)]))
    node.delays["/v1/cluster/members"] = 5.0
    argv = ["leave", "--wait", "--wait-timeout", "0.3", "--timeout", "10", "--url", url(node)]
    started = time.monotonic()
    status, _, err = dfsring(capsys, *argv)
    assert time.monotonic() - started < 3.0
    assert status == 1 and one_line(err) == (
        "dfsring leave: gave up after 0.3 s waiting until n3 has left the cluster: no answer yet"
    )


def test_wait_ends_at_once_on_a_4xx(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    node = servers.start(FakeNode().on("POST", "/v1/cluster/join", ok({"node_id": "n4"}, 202)))
    status, out, err = dfsring(capsys, "join", "h:1", "--wait", "--url", url(node))
    assert status == 4 and out == "n4: joining the cluster of h:1\n"
    assert "No such route" in err.splitlines()[-1]


def test_leave_wait_shows_what_the_others_receive(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    n3, n1 = servers.start(FakeNode()), servers.start(FakeNode())
    leaving = [member("n1", n1.address), member("n3", n3.address, status="leaving", me=True)]
    left = [member("n1", n1.address), member("n3", n3.address, status="left", me=True)]
    n3.on("POST", "/v1/cluster/leave", ok({"node_id": "n3", "status": "leaving"}, 202))
    n3.on("GET", "/v1/cluster/members", ok(leaving), ok(left))
    n1.on("GET", "/v1/cluster/transfers", ok(transfers_doc("n1", done=5, total=10)))
    status, out, err = dfsring(capsys, "leave", "--wait", "--url", url(n3))
    assert status == 0 and out.splitlines()[-1] == "n3 has left the cluster"
    assert err.startswith("[##########..........]  50%  5/10 partitions")
    assert n3.calls("GET", "/v1/cluster/transfers") == 0  # the leaving node is not asked


def test_remove_wait_until_out_of_ring_and_every_member_settled(
    capsys: pytest.CaptureFixture[str], servers: FakeServers
) -> None:
    n1, n2 = servers.start(FakeNode()), servers.start(FakeNode())
    members = [member("n1", n1.address, me=True), member("n2", n2.address)]
    members.append(member("n3", dead_address(), status="down"))
    n1.on("POST", "/v1/cluster/remove/n3", ok({"removed": "n3"}, 202))
    n1.on("GET", "/v1/cluster/members", ok(members))
    n1.on("GET", "/v1/cluster/ring", ok(ring_doc("n1", "n2", "n3")), ok(ring_doc("n1", "n2")))
    n1.on("GET", "/v1/cluster/transfers", ok(transfers_doc("n1")))
    n2.on(
        "GET",
        "/v1/cluster/transfers",
        ok(transfers_doc("n2", done=1, total=2)),
        ok(transfers_doc("n2", done=1, total=2)),
        ok(transfers_doc("n2", done=2, total=2)),
    )
    status, out, err = dfsring(capsys, "remove", "n3", "--wait", "--url", url(n1))
    assert status == 0, err
    assert out.splitlines() == [
        "n3: removed; its partitions move to the remaining members",
        "n3 is out of the ring and the transfers are done",
    ]
    assert "n3 still in the ring, transfers in progress on n2" in err
    assert n2.calls("GET", "/v1/cluster/transfers") == 3
