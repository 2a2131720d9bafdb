"""Shared pieces of the fuzz suite (issue 23, part 7): a bounded raw-socket exchange, the
cluster invariants checked after every batch, the seed, and the list of known findings.

Why raw sockets and blocking I/O: a polite client library normalises exactly what we want to
send wrong (percent-encoding, header bytes, framing), and hypothesis drives plain functions;
one short-lived socket per case, each with a timeout, keeps every case bounded.

The invariants (``ClusterGuard.check``) are what a hostile sender must never change:
no node exits, ``/health`` stays "ok", no traceback reaches a log, canary values written
before the fuzzing read back byte for byte with their content type, and every node keeps the
ring (epoch and hash) it had when the fuzzing began.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed

from dfsring.cli.launcher import LocalCluster, NodeProcess

# --- reproducibility ------------------------------------------------------------------------

#: One seed for the whole run, printed with every failure: ``DFSRING_FUZZ_SEED=<n> pytest -m
#: fuzz`` replays the same cases (the node's own timing aside).
SEED = int(os.environ.get("DFSRING_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
#: Scales every example budget (CI uses 1; a longer local hunt, e.g. 10).
SCALE = float(os.environ.get("DFSRING_FUZZ_SCALE") or 1)

CASE_TIMEOUT = 5.0  # one exchange, connect to last byte: a hang is a finding, not a wait
MAX_REPLY = 1 << 20  # bytes read from one answer before we stop reading
CHECK_EVERY = 200  # cases between two full invariant checks within one batch


def fuzz_settings(examples: int) -> settings:
    """No database (CI is stateless; the seed reproduces), no deadline (two shared cores), no
    shrinking (a case that hangs costs CASE_TIMEOUT per try; the failing case is printed),
    and no health checks: slow, filtered and large examples are the point here."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True,
                    phases=(Phase.explicit, Phase.generate))


def seeded() -> Any:
    return hypothesis_seed(SEED)


# --- known findings -------------------------------------------------------------------------

#: Findings of issue 23 that other branches fix. The main fuzz tests steer around each of
#: these, and each has a named test of its own marked xfail here. After the merge, delete an
#: entry: its named test then must pass, and the main strategies stop steering around it
#: (each strategy consults ``known(...)``).
KNOWN: dict[str, str] = {}  # every finding of issue 23 is fixed; list a new one here


# The two 5xx a node sends on purpose, as RFC 9112 asks, to a request in a protocol it does not
# speak (dfsring.http.protocol): 501 for a transfer coding other than chunked (§6.1) and 505
# for an HTTP version other than 1.x. Neither is a failure of the node; every other 5xx is.
PROTOCOL_REFUSALS = frozenset({501, 505})


def known(name: str) -> bool:
    """Whether the main strategies still steer around finding `name`."""
    return name in KNOWN


def xfail_known(name: str) -> pytest.MarkDecorator:
    """The mark of a finding's named test: xfail while the finding is listed in KNOWN."""
    if name not in KNOWN:
        return pytest.mark.fuzz
    return pytest.mark.xfail(strict=False, reason=f"known finding, fixed elsewhere: {KNOWN[name]}")


# --- one exchange ---------------------------------------------------------------------------

_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})[ \r]")


@dataclass(frozen=True)
class Reply:
    """What came back for one case: the status of the first answer, or None when the node
    closed without one (a refusal aiohttp may choose for an unparsable request)."""

    status: int | None
    head: bytes


def host_port(node: NodeProcess, *, peer: bool = False) -> tuple[str, int]:
    """The node's client listener, or (peer) its peer listener."""
    host, _, port = (node.peer_address if peer else node.address).rpartition(":")
    return host.strip("[]"), int(port)


def exchange(node: NodeProcess, payload: bytes, *, complete: bool = True,
             timeout: float = CASE_TIMEOUT, peer: bool = False) -> Reply:
    """Send `payload` and read until the node closes (bounded in time and size).

    A `complete` request must be answered within `timeout`. An incomplete one (its framing
    promises bytes that never come) is followed by a half-close, as a client that vanished:
    aiohttp then drops the connection, and only the invariants tell whether it coped.
    AssertionError for what no sender may ever get: a hang past `timeout` on a complete
    request, or bytes that do not start with an HTTP/1.x status line (an HTTP/0.9 answer)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(host_port(node, peer=peer), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            if not complete:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the node refused mid-request; what it answered is still readable
        data = _read_all(sock, deadline)
    if not data:
        return Reply(None, b"")
    match = _STATUS.match(data)
    assert match is not None, (f"answer without an HTTP/1.x status line: {data[:200]!r}; "
                               f"seed {SEED}")
    return Reply(int(match.group(1)), data[:data.find(b"\r\n\r\n") + 4 or 200])


def _read_all(sock: socket.socket, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_REPLY:
        left = deadline - time.monotonic()
        assert left > 0, (f"no end of answer in {CASE_TIMEOUT}s: {b''.join(chunks)[:200]!r}; "
                          f"seed {SEED}")
        sock.settimeout(left)
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError as exc:
            raise AssertionError(f"no end of answer in {CASE_TIMEOUT}s: "
                                 f"{b''.join(chunks)[:200]!r}; seed {SEED}") from exc
        if not piece:
            break
        chunks.append(piece)
        size += len(piece)
    return b"".join(chunks)


class PeerLink:
    """A keep-alive connection to one node's peer listener, as a peer holds one."""

    def __init__(self, node: NodeProcess, secret: str) -> None:
        self._node = node
        self._secret = secret
        self._conn: http.client.HTTPConnection | None = None

    def post(self, kind: str, body: bytes, content_type: str = "application/msgpack"
             ) -> tuple[int, bytes]:
        for attempt in (1, 2):  # one retry: a keep-alive connection the node closed idle
            conn = self._connect()
            try:
                conn.request("POST", f"/internal/v1/{kind}", body=body, headers={
                    "Dfs-Cluster-Secret": self._secret, "Content-Type": content_type})
                resp = conn.getresponse()
                data = resp.read()  # whole, or the connection cannot carry the next call
                if resp.will_close:
                    self.close()
                return resp.status, data
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = host_port(self._node, peer=True)
            self._conn = http.client.HTTPConnection(host, port, timeout=CASE_TIMEOUT)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --- the invariants -------------------------------------------------------------------------

CANARY_BUCKET = "canary-k7q"
CANARY_TYPE = "application/x-canary"


def canary_value(i: int) -> bytes:
    return f"canary {i} ".encode() * (i + 1) + bytes(range(256))


def request(node: NodeProcess, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = host_port(node)
    conn = http.client.HTTPConnection(host, port, timeout=CASE_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers={**node.auth_headers, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@dataclass
class ClusterGuard:
    """The invariants of one fuzzed cluster, and the counts a report needs."""

    cluster: LocalCluster
    canaries: int = 4
    rings: dict[str, tuple[int, str]] = field(default_factory=dict)
    log_offsets: dict[str, int] = field(default_factory=dict)
    cases: int = 0
    statuses: dict[int | None, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def arm(self) -> ClusterGuard:
        """Write the canaries, then take the ring and log positions everything is checked
        against."""
        first = self.cluster.nodes[0]
        for i in range(self.canaries):
            status, _, body = request(first, "PUT", f"/v1/kv/{CANARY_BUCKET}/c{i}",
                                       canary_value(i), {"Content-Type": CANARY_TYPE})
            assert status == 204, f"canary write {i}: {status} {body[:200]!r}"
        for node in self.cluster:
            ring = node.get_json("/v1/cluster/ring")
            self.rings[node.node_id] = (ring["epoch"], ring["hash"])
            self.log_offsets[node.node_id] = node.log_path.stat().st_size
        assert len(set(self.rings.values())) == 1, f"rings differ before fuzzing: {self.rings}"
        self.started = time.monotonic()
        return self

    def count(self, status: int | None) -> None:
        """One case's answer: a 5xx fails at once; every CHECK_EVERY cases, all invariants."""
        self.cases += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status is None or status < 500 or status in PROTOCOL_REFUSALS, (
            f"a 5xx answer ({status}); seed {SEED}")
        if self.cases % CHECK_EVERY == 0:
            self.check()

    def check(self) -> None:
        exited = self.cluster.exited()
        assert not exited, f"nodes exited: {exited}; seed {SEED}"
        for node in self.cluster:
            self._check_node(node)
        for node in self.cluster:
            for i in range(self.canaries):
                status, headers, body = request(node, "GET", f"/v1/kv/{CANARY_BUCKET}/c{i}")
                assert (status, body) == (200, canary_value(i)), (
                    f"canary c{i} via {node.node_id}: {status} {body[:100]!r}; seed {SEED}")
                assert headers.get("content-type") == CANARY_TYPE, headers

    def _check_node(self, node: NodeProcess) -> None:
        health = node.health(CASE_TIMEOUT)
        assert health.get("status") == "ok", f"{node.node_id} /health: {health}; seed {SEED}"
        self.check_ring(node)
        tracebacks = list(self.new_tracebacks(node))
        assert not tracebacks, f"{node.node_id} logged tracebacks; seed {SEED}:\n" + "\n".join(
            tracebacks[:3])

    def check_ring(self, node: NodeProcess, after: str = "") -> None:
        """The node's ring is the one it had before the fuzzing (epoch and hash)."""
        ring = node.get_json("/v1/cluster/ring", CASE_TIMEOUT)
        assert (ring["epoch"], ring["hash"]) == self.rings[node.node_id], (
            f"{node.node_id} ring moved{after}: {ring['epoch']} {ring['hash'][:12]} "
            f"(was {self.rings[node.node_id]}); seed {SEED}")

    def new_tracebacks(self, node: NodeProcess) -> Iterator[str]:
        with node.log_path.open("rb") as log:
            log.seek(self.log_offsets[node.node_id])
            text = log.read().decode("utf-8", "replace")
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if "Traceback (most recent call last)" in line:
                yield "\n".join(lines[max(0, i - 2):i + 12])

    def report(self, what: str) -> str:
        spent = max(time.monotonic() - self.started, 1e-9)
        return (f"{what}: {self.cases} cases in {spent:.1f}s = {self.cases / spent:.0f}/s; "
                f"answers {dict(sorted(self.statuses.items(), key=str))}; seed {SEED}")
