"""etcd x3 as a peer in the suite: the same generator, the same machine, the same run.

Issue 17 states its key/value goals as ratios to etcd (Raft, fsync on every commit, Debian's
``etcd-server``), measured by one neutral generator. etcd's native API is gRPC; its JSON
gateway (``POST /v3/kv/put``, ``POST /v3/kv/range``) speaks HTTP/1.1, so the suite's lean
generator (benchmarks.loadgen) drives it with pre-built requests exactly as it drives dfsring,
and neither side pays for a different client. The gateway costs etcd some CPU per request
(JSON and base64 over the gRPC handler); that is the price of one generator for both, and the
figures say "etcd over its HTTP gateway".

Reads are etcd's default, linearizable ranges (a ReadIndex round through the leader), the
closest to dfsring's R=2 quorum reads; writes are puts of fresh keys, as dfsring's writes.
"""

from __future__ import annotations

import base64
import random
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from benchmarks.loadgen import Endpoint
from dfsring.cli.launcher import LauncherError, NodeProcess, free_port_block, spawn

ETCD = "etcd"
START_S = 60.0


def etcd_binary() -> str | None:
    """The etcd server on PATH (Debian's ``etcd-server`` puts it in /usr/bin), or None."""
    return shutil.which(ETCD)


class EtcdCluster:
    """``size`` etcd members on loopback, each a child process that dies with us.

    Stopped (every process, whatever happens) on the way out; data dirs under ``workdir``.
    """

    def __init__(self, workdir: Path, size: int = 3) -> None:
        binary = etcd_binary()
        if binary is None:
            raise LauncherError("etcd is not installed (Debian: apt-get install etcd-server)")
        self.binary = binary
        self.workdir = workdir
        base = free_port_block(2 * size)
        self.client_ports = [base + i for i in range(size)]
        self.peer_ports = [base + size + i for i in range(size)]
        self.names = [f"etcd{i + 1}" for i in range(size)]
        self.token = f"bench-{random.getrandbits(32):08x}"  # one per cluster: members check it
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("127.0.0.1", port) for port in self.client_ports]

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in zip(self.names, self.procs, strict=True)}

    def _argv(self, i: int) -> list[str]:
        cluster = ",".join(f"{n}=http://127.0.0.1:{p}"
                           for n, p in zip(self.names, self.peer_ports, strict=True))
        client = f"http://127.0.0.1:{self.client_ports[i]}"
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        return [self.binary, "--name", self.names[i],
                "--data-dir", str(self.workdir / self.names[i]),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.token,
                "--log-level", "warn"]

    def __enter__(self) -> EtcdCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for i, name in enumerate(self.names):
                with (self.workdir / f"{name}.log").open("ab") as log:
                    self.procs.append(spawn(self._argv(i), output=log))
            deadline = time.monotonic() + START_S
            while not self._healthy():
                if time.monotonic() > deadline:
                    raise LauncherError(f"etcd not healthy after {START_S:.0f}s; see "
                                        f"{self.workdir}/etcd*.log")
                time.sleep(0.2)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _healthy(self) -> bool:
        for name, proc in zip(self.names, self.procs, strict=True):
            if proc.poll() is not None:
                raise LauncherError(f"{name} exited {proc.returncode}; see "
                                    f"{self.workdir}/{name}.log")
        try:
            return all(NodeProcess.fetch_json(f"{e.url}/health", 1.0).get("health") == "true"
                       for e in self.endpoints)
        except (OSError, ValueError):
            return False

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


def _post(endpoint: Endpoint, path: bytes, body: bytes) -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\n" + endpoint.host_header
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body)


def put_request(endpoint: Endpoint, key: bytes, value: bytes) -> bytes:
    body = orjson.dumps({"key": _b64(key).decode(), "value": _b64(value).decode()})
    return _post(endpoint, b"/v3/kv/put", body)


def range_request(endpoint: Endpoint, key: bytes) -> bytes:
    return _post(endpoint, b"/v3/kv/range", orjson.dumps({"key": _b64(key).decode()}))


class EtcdPlan:
    """benchmarks.loadgen.KvPlan's workload for etcd: reads of random keys of the preloaded
    set, writes of random keys of this run's own key space, one request each.

    The value's base64 is computed once; each request only splices in its key (a JSON body
    with the key's base64 before the value's), so the generator's cost per request stays
    what it is for dfsring."""

    def __init__(self, endpoints: Sequence[Endpoint], *, read_fraction: float, keys: int,
                 value: bytes, read_prefix: bytes, write_prefix: bytes,
                 seed: int | None = None) -> None:
        self._endpoints = list(endpoints)
        self._value = b'","value":"' + _b64(value) + b'"}'
        self._read_prefix = read_prefix
        self._write_prefix = write_prefix
        self._read_fraction = read_fraction
        self._keys = keys
        self._random = random.Random(seed).random

    def __call__(self, index: int) -> tuple[str, bytes]:
        rnd = self._random
        number = b"%08d" % int(rnd() * self._keys)
        ep = self._endpoints[index]
        if rnd() < self._read_fraction:
            return "get", range_request(ep, self._read_prefix + number)
        body = b'{"key":"' + _b64(self._write_prefix + number) + self._value
        return "put", _post(ep, b"/v3/kv/put", body)
