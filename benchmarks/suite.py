"""The reproducible benchmark suite: ``python -m benchmarks`` or ``dfsring bench``.

One command starts everything it measures from nothing (fresh node processes in a temp dir,
the baseline server), runs bounded workloads, stops it all and writes the figures as JSON and
a Markdown table under ``--out`` (default ``bench-results/``). Phases (``--only``):

- ``baseline``: a minimal aiohttp + uvloop dict server (benchmarks/baseline_server.py) under
  the same KV workloads; every KV figure is also given as a ratio to it, so results read the
  same on a fast or a slow machine;
- ``single``: one node with N=1 R=1 W=1, the per-node ceiling;
- ``kv``: the cluster (--nodes, N/R/W), 100 % writes, 100 % reads and 50/50, at each
  --concurrency: ops/s, p50/p99/p99.9, errors, server CPU µs/op, peak RSS per node;
- ``files``: one large file (--file-mib, 256) PUT through the first node and GET through the
  last (MiB/s), and --small-files (1 000) files of 64 KiB PUT and GET (files/s);
- ``repair``: (a) a node's LMDB wiped (cluster state kept) and restarted: seconds until
  anti-entropy restored every key it held, and meanwhile every node's view of its peers
  (max phi, any suspect/down) and its slowest /health (dfsring.testing.liveness);
  (b) hinted handoff: one node stopped while --handoff-keys keys are written, restarted:
  seconds until no node has a hint pending.

Reads need stored keys: the cluster's nodes get --keys keys written straight into their
engines while stopped (benchmarks.preload), the baseline server fills its dict at start.
With --target the KV and files phases run against a running cluster instead (the read keys
are written through the API first); phases that must start or stop nodes are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dfsring
from benchmarks import etcd_peer, loadgen, preload, report
from benchmarks.loadgen import Endpoint, FinitePlan, KvPlan
from benchmarks.procstat import RssSampler, cpu_seconds, rss_mib
from dfsring.cli.launcher import LauncherError, LocalCluster, NodeProcess, free_port, spawn
from dfsring.client.credentials import auth_headers, discover
from dfsring.testing.liveness import LivenessWatch

PHASES = ("baseline", "etcd", "single", "kv", "files", "repair")
NEEDS_NODES = ("single", "repair")  # phases that start and stop nodes themselves
PlanFactory = Callable[[float, bytes], loadgen.Plan]  # (read fraction, write prefix) -> plan
MIXES = {"put": 0.0, "get": 1.0, "mixed": 0.5}  # share of reads
BUCKET = "bench"
READ_PREFIX = "r"
MIB = 1 << 20
SETTLE_SHARE = 0.15  # servers' CPU, cores, below which they count as idle between runs
SETTLE_MAX_S = 60.0
BASELINE_SCRIPT = Path(__file__).resolve().parent / "baseline_server.py"
SOURCE_ROOT = Path(__file__).resolve().parent.parent
QUICK = {"duration": 0.5, "warmup": 0.2, "concurrency": [1, 16], "keys": 2_000,
         "file_mib": 16, "small_files": 50, "handoff_keys": 300}
FULL = {"duration": 10.0, "warmup": 2.0, "concurrency": [1, 16, 64], "keys": 100_000,
        "file_mib": 256, "small_files": 1_000, "handoff_keys": 10_000}


# --- options -----------------------------------------------------------------------------------


def _positive_list(raw: str) -> list[int]:
    try:
        values = [int(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{raw!r}: need integers >= 1")
    return values


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(raw: str) -> list[str]:
        names = [v.strip() for v in raw.split(",") if v.strip()]
        unknown = sorted(set(names) - set(allowed))
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"{raw!r}: choose from {', '.join(allowed)} (unknown: {', '.join(unknown)})")
        return [n for n in allowed if n in names]

    return parse


def _urls(raw: str) -> list[Endpoint]:
    try:
        auth = auth_headers(discover())  # --target: the credentials the CLI would use
        return [Endpoint.parse(u.strip(), auth) for u in raw.split(",") if u.strip()]
    except ValueError as exc:  # CredentialsError included
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Run dfsring's benchmark suite against fresh local node "
        "processes and a baseline server; write JSON and Markdown results.",
        epilog="Phases: " + ", ".join(PHASES) + ". See docs/PERFORMANCE.md.")
    p.add_argument("--nodes", type=int, default=3, help="cluster size (3)")
    p.add_argument("--n", type=int, default=3, help="replicas per key (3)")
    p.add_argument("--r", type=int, default=2, help="read quorum (2)")
    p.add_argument("--w", type=int, default=2, help="write quorum (2)")
    p.add_argument("--duration", type=float, help="measured seconds per KV run (10; quick 0.5)")
    p.add_argument("--warmup", type=float, help="discarded seconds before each (2; quick 0.2)")
    p.add_argument("--concurrency", type=_positive_list,
                   help="closed-loop clients, comma-separated (1,16,64; quick 1,16)")
    p.add_argument("--mixes", type=_names(tuple(MIXES)), default=list(MIXES),
                   help="KV workloads: put (100%% writes), get (100%% reads), mixed (50/50)")
    p.add_argument("--value-size", type=int, default=1024, help="bytes per KV value (1024)")
    p.add_argument("--keys", type=int, help="keys read, and written uniformly (100000)")
    p.add_argument("--file-mib", type=int, help="size of the large file, MiB (256)")
    p.add_argument("--small-files", type=int, help="number of 64 KiB files (1000)")
    p.add_argument("--file-concurrency", type=int, default=16, help="for small files (16)")
    p.add_argument("--handoff-keys", type=int, help="keys written with a node down (10000)")
    p.add_argument("--durability", choices=("fsync", "none"), default="fsync",
                   help="nodes' --durability (fsync: fsync before every ack)")
    p.add_argument("--node-args", type=shlex.split, default=[], metavar="'FLAGS'",
                   help="extra flags for every node, e.g. '--ae-interval 3600' (an experiment: "
                   "what a subsystem costs)")
    p.add_argument("--target", type=_urls, metavar="URL[,URL...]",
                   help="run KV and files against this running cluster instead")
    p.add_argument("--only", type=_names(PHASES), default=list(PHASES), metavar="PHASES",
                   help="comma-separated phases to run (" + ",".join(PHASES) + ")")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: tiny durations and sizes (any explicit option wins)")
    p.add_argument("--out", type=Path, default=Path("bench-results"),
                   help="directory for the JSON and Markdown results (bench-results/)")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="event loop of the load generator (uvloop)")
    p.add_argument("--keep-data", action="store_true", help="keep node data dirs and logs")
    return p


def parse_args(argv: Sequence[str] | None, prog: str) -> argparse.Namespace:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    for name, default in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if not 1 <= args.r <= args.n or not 1 <= args.w <= args.n or args.nodes < 1:
        parser.error("need 1 <= R, W <= N and --nodes >= 1")
    if args.duration <= 0 or args.warmup < 0 or args.keys < 1 or args.value_size < 0:
        parser.error("need --duration > 0, --warmup >= 0, --keys >= 1, --value-size >= 0")
    return args


# --- helpers -----------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _git_commit() -> str | None:
    """The checkout's commit (with "+dirty" if it has changes), so a result names its code."""
    if not (SOURCE_ROOT / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(SOURCE_ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(SOURCE_ROOT), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head.strip() + ("+dirty" if dirty.strip() else "")


def unique_blocks(size: int, seed: bytes, block: int = MIB) -> Iterator[bytes]:
    """``size`` pseudo-random bytes; block ``i`` is SHAKE-128(seed, i).

    Every block is different from every other (and from every other run's, with a fresh
    seed), so content-defined chunking never finds a repeated chunk and deduplication cannot
    flatter the upload figure, unlike one random block repeated or XORed with a counter.
    ~500 MiB/s; the suite generates before the clock starts.
    """
    left, i = size, 0
    while left > 0:
        n = min(block, left)
        yield hashlib.shake_128(seed + i.to_bytes(8, "big")).digest(n)
        left -= n
        i += 1


def _node_pids(cluster: LocalCluster) -> dict[str, int]:
    """Current PID of every node started so far. No liveness check: it is called from the
    sampler thread, and a stopped node's /proc entry is simply gone (readings are None)."""
    return {n.node_id: n.pid for n in cluster if n.pid is not None}


def _cpu(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: s for name, pid in pids.items() if (s := cpu_seconds(pid)) is not None}


def _cpu_delta(before: Mapping[str, float], pids: Mapping[str, int]) -> dict[str, float]:
    after = _cpu(pids)
    return {k: round(v - before.get(k, 0.0), 3) for k, v in after.items()}


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def _stats(node: NodeProcess) -> dict[str, Any]:
    stats: dict[str, Any] = node.get_json("/v1/node/stats", timeout=10)
    return stats


class BaselineServer:
    """benchmarks/baseline_server.py as a child process (it dies with us, like a node)."""

    def __init__(self, workdir: Path, prefill: int, value_size: int) -> None:
        self.port = free_port()
        self.endpoint = Endpoint("127.0.0.1", self.port)
        self.log_path = workdir / "baseline.log"
        self.argv = [sys.executable, str(BASELINE_SCRIPT), "--port", str(self.port),
                     "--prefill", str(prefill), "--value-size", str(value_size),
                     "--bucket", BUCKET, "--read-prefix", READ_PREFIX]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BaselineServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = spawn(self.argv, output=log)
        probe = NodeProcess.fetch_json
        if not _wait(lambda: self._ready(probe), 60.0, 0.05):
            self.__exit__()
            raise LauncherError(f"baseline server not ready; see {self.log_path}")
        return self

    def _ready(self, probe: Callable[..., Any]) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise LauncherError(f"baseline server exited {self.proc.returncode}; "
                                f"see {self.log_path}")
        try:
            return bool(probe(f"{self.endpoint.url}/health", 1.0).get("status") == "ok")
        except (OSError, ValueError):
            return False

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid


# --- the suite ---------------------------------------------------------------------------------


class Suite:
    """Runs the selected phases in order and collects one results document."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.value = os.urandom(args.value_size)
        self.runs = 0
        self.results: dict[str, Any] = {
            "schema": 1,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "loadavg_start": _loadavg(),
                        "python": platform.python_version(), "platform": platform.platform(),
                        "dfsring": dfsring.__version__, "commit": _git_commit()},
            "config": self._config(),
            "kv": [], "idle_rss_mib": {}, "idle_anon_mib": {}, "preload": {}, "files": {},
            "repair": {}, "skipped": {},
        }

    def _config(self) -> dict[str, Any]:
        a = self.args
        return {"nodes": a.nodes, "n": a.n, "r": a.r, "w": a.w, "durability": a.durability,
                "duration_s": a.duration, "warmup_s": a.warmup, "concurrency": a.concurrency,
                "mixes": a.mixes, "value_size": a.value_size, "keys": a.keys,
                "file_mib": a.file_mib, "small_files": a.small_files,
                "small_file_kib": 64, "file_concurrency": a.file_concurrency,
                "handoff_keys": a.handoff_keys, "phases": a.only, "quick": a.quick,
                "node_args": a.node_args,
                "loop": a.loop, "target": [e.url for e in a.target] if a.target else None}

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        phases = list(self.args.only)
        if self.args.target:
            for phase in NEEDS_NODES:
                if phase in phases:
                    phases.remove(phase)
                    self.results["skipped"][phase] = "--target: it must start and stop nodes"
        if "baseline" in phases:
            self.baseline()
        if "etcd" in phases:
            self.etcd()
        if "single" in phases:
            self.single()
        if {"kv", "files", "repair"} & set(phases):
            self.cluster(phases)
        if "repair" in phases:
            self.handoff()
        self.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.results["wall_s"] = round(time.monotonic() - started, 1)
        self.results["machine"]["loadavg_end"] = _loadavg()
        report.add_ratios(self.results)
        self.results["targets"] = report.evaluate_targets(self.results)
        return self.results

    # --- KV ------------------------------------------------------------------------------------

    def kv_matrix(self, setup: str, endpoints: Sequence[Endpoint],
                  pids: Callable[[], dict[str, int]], read_prefix: str = READ_PREFIX,
                  make_plan: PlanFactory | None = None) -> None:
        """Every mix at every concurrency against ``endpoints``; one row per run. The plan
        is dfsring's KV API unless ``make_plan`` builds another system's requests."""
        a = self.args

        def kv_plan(read_fraction: float, tag: bytes) -> loadgen.Plan:
            return KvPlan(endpoints, read_fraction=read_fraction, keys=a.keys,
                          value=self.value, bucket=BUCKET,
                          read_prefix=read_prefix.encode(), write_prefix=tag)

        for mix in a.mixes:
            for clients in a.concurrency:
                settle_s = self._settle(pids())
                self.runs += 1
                tag = f"w{self.runs:02d}{secrets.token_hex(2)}-".encode()
                plan = (make_plan or kv_plan)(MIXES[mix], tag)
                with RssSampler(pids) as sampler:
                    result = loadgen.run(loadgen.drive(
                        endpoints, plan, concurrency=clients, warmup_s=a.warmup,
                        duration_s=a.duration, server_pids=pids()), a.loop)
                row = {"setup": setup, "mix": mix, "concurrency": clients,
                       **result.to_json(), "peak_rss_mib": sampler.stop(),
                       "peak_anon_mib": sampler.anon_peaks(), "settle_s": settle_s}
                self.results["kv"].append(row)
                lat = row["latency_ms"]
                _say(f"  {setup:8} {mix:5} c={clients:<3} {row['ops_per_s']:>9.1f} ops/s  "
                     f"p50 {lat.get('p50', '-')} p99 {lat.get('p99', '-')} ms  "
                     f"errors {row['error_count']}  server {row['server_cpu_us_per_op']} us/op"
                     f"  gen {row['generator_cpu_us_per_op']} us/op")

    def _settle(self, pids: Mapping[str, int]) -> float | None:
        """Wait until the servers are near idle (under SETTLE_SHARE of a core together over
        half a second), at most SETTLE_MAX_S; return how long that took.

        A run leaves work behind (anti-entropy comparing what the writes changed, hints,
        group commits): without this, the next run would pay for the previous one and the
        figures would depend on the order the runs are made in. The time is reported: a
        long settle is a finding in itself."""
        if not pids:
            return None
        started = time.monotonic()
        limit = SETTLE_MAX_S / 6 if self.args.quick else SETTLE_MAX_S
        before = _cpu(pids)
        while time.monotonic() - started < limit:
            time.sleep(0.5)
            after = _cpu(pids)
            if sum(after.values()) - sum(before.values()) < SETTLE_SHARE * 0.5:
                break
            before = after
        return round(time.monotonic() - started, 1)

    def baseline(self) -> None:
        _say("baseline: aiohttp + uvloop dict server")
        with BaselineServer(self.workdir, self.args.keys, self.args.value_size) as server:
            pid = server.pid
            assert pid is not None
            time.sleep(0.5)
            self.results["idle_rss_mib"]["baseline"] = {"baseline": rss_mib(pid)}
            self.results["idle_anon_mib"]["baseline"] = {"baseline": rss_mib(pid, "RssAnon")}
            self.kv_matrix("baseline", [server.endpoint], lambda: {"baseline": pid})

    def etcd(self) -> None:
        """etcd x3 driven by the same generator (benchmarks.etcd_peer), for issue 17's
        ratios; skipped, with the reason in the results, where etcd is not installed."""
        if etcd_peer.etcd_binary() is None:
            reason = "etcd not installed (Debian: apt-get install etcd-server)"
            self.results["skipped"]["etcd"] = reason
            _say(f"etcd: skipped, {reason}")
            return
        _say("etcd: 3 members (Raft, fsync per commit), over its HTTP/JSON gateway")
        a = self.args
        with etcd_peer.EtcdCluster(self.workdir / "etcd") as etcd:
            endpoints = etcd.endpoints
            time.sleep(0.5)
            for key, field in (("idle_rss_mib", "VmRSS"), ("idle_anon_mib", "RssAnon")):
                self.results[key]["etcd"] = {n: rss_mib(pid, field)
                                             for n, pid in etcd.pids.items()}
            if {"get", "mixed"} & set(a.mixes):
                prefix = READ_PREFIX.encode()

                def build(item: int, index: int) -> tuple[str, bytes]:
                    key = prefix + b"%08d" % item
                    return "put", etcd_peer.put_request(endpoints[index], key, self.value)

                result = loadgen.run(loadgen.drive(endpoints, FinitePlan(a.keys, build),
                                                   concurrency=64), a.loop)
                self.results["preload"]["etcd"] = {"keys": a.keys,
                                                   "seconds": round(result.seconds, 1),
                                                   "errors": result.errors}
                _say(f"  etcd: {a.keys} keys written in {result.seconds:.1f}s (errors "
                     f"{result.errors or 'none'})")

            def plan(read_fraction: float, tag: bytes) -> loadgen.Plan:
                return etcd_peer.EtcdPlan(endpoints, read_fraction=read_fraction, keys=a.keys,
                                          value=self.value, read_prefix=READ_PREFIX.encode(),
                                          write_prefix=tag)

            self.kv_matrix("etcd", endpoints, lambda: etcd.pids, make_plan=plan)

    @contextlib.contextmanager
    def started(self, name: str, size: int, n: int, r: int, w: int,
                preload_keys: bool) -> Iterator[LocalCluster]:
        """A fresh cluster in the work dir, preloaded with the read keys if asked; stopped
        (every process, whatever happens) on the way out."""
        cluster = LocalCluster(size, self.workdir / name, n=n, r=r, w=w,
                               extra_args=("--durability", self.args.durability,
                                           *self.args.node_args))
        try:
            cluster.start(60)
            if preload_keys:
                self._preload(name, cluster)
            time.sleep(0.5 if self.args.quick else 2.0)  # let start-up work settle: idle
            for key, field in (("idle_rss_mib", "VmRSS"), ("idle_anon_mib", "RssAnon")):
                self.results[key][name] = {node.node_id: rss_mib(node.pid, field)
                                           for node in cluster if node.pid is not None}
            yield cluster
        finally:
            cluster.stop()

    def _preload(self, name: str, cluster: LocalCluster) -> None:
        started = time.monotonic()
        ring = cluster.nodes[0].get_json("/v1/cluster/ring", timeout=10)
        bits = int(ring["partitions"]).bit_length() - 1
        names = preload.key_names(self.args.keys, READ_PREFIX)
        by_owner = preload.records_by_owner(ring, BUCKET, names, self.value)
        cluster.stop()
        for node in cluster:
            preload.preload(node.spec.data_dir / "db", node.node_id, bits,
                            by_owner.get(node.node_id, []), self.args.durability == "fsync")
        cluster.start(60)
        took = time.monotonic() - started
        self.results["preload"][name] = {"keys": self.args.keys, "seconds": round(took, 1)}
        _say(f"  {name}: {self.args.keys} keys preloaded into the stopped nodes in {took:.1f}s")

    def single(self) -> None:
        _say("single: one node, N=1 R=1 W=1 (the per-node ceiling)")
        with self.started("single", 1, 1, 1, 1, preload_keys=True) as cluster:
            endpoints = [Endpoint.parse(u, cluster.auth_headers) for u in cluster.urls]
            self.kv_matrix("single", endpoints, lambda: _node_pids(cluster))

    def cluster(self, phases: list[str]) -> None:
        a = self.args
        if a.target:
            _say(f"target: {', '.join(e.url for e in a.target)}")
            read_prefix = f"{READ_PREFIX}{secrets.token_hex(3)}-"
            if "kv" in phases:
                self._populate(a.target, read_prefix)
                self.kv_matrix("cluster", a.target, dict, read_prefix)
            if "files" in phases:
                self.files(a.target, dict)
            return
        _say(f"cluster: {a.nodes} nodes, N={a.n} R={a.r} W={a.w}, durability {a.durability}")
        with self.started("cluster", a.nodes, a.n, a.r, a.w,
                          preload_keys="kv" in phases or "repair" in phases) as cluster:
            endpoints = [Endpoint.parse(u, cluster.auth_headers) for u in cluster.urls]
            if "repair" in phases:  # first, while the nodes hold exactly the preloaded keys
                self.antientropy(cluster)
            if "kv" in phases:
                self.kv_matrix("cluster", endpoints, lambda: _node_pids(cluster))
            if "files" in phases:
                self.files(endpoints, lambda: _node_pids(cluster))

    def _populate(self, endpoints: Sequence[Endpoint], read_prefix: str) -> None:
        """--target: write the read keys through the API (fresh names: no siblings)."""
        if not {"get", "mixed"} & set(self.args.mixes):
            return
        value = self.value

        def build(item: int, index: int) -> tuple[str, bytes]:
            path = f"/v1/kv/{BUCKET}/{read_prefix}{item:08d}"
            return "put", loadgen.put_request(endpoints[index], path, value)

        result = loadgen.run(loadgen.drive(endpoints, FinitePlan(self.args.keys, build),
                                           concurrency=64), self.args.loop)
        self.results["preload"]["cluster"] = {"keys": self.args.keys,
                                              "seconds": round(result.seconds, 1),
                                              "errors": result.errors}
        _say(f"  {self.args.keys} keys written in {result.seconds:.1f}s (errors "
             f"{result.errors or 'none'})")

    # --- files ---------------------------------------------------------------------------------

    def files(self, endpoints: Sequence[Endpoint], pids: Callable[[], dict[str, int]]) -> None:
        _say(f"files: one {self.args.file_mib} MiB file, {self.args.small_files} files of 64 KiB")
        tag = secrets.token_hex(3)
        self._big_file(endpoints, pids, tag)  # its data is freed before the small files
        self._small_files(endpoints, pids, tag)

    def _big_file(self, endpoints: Sequence[Endpoint], pids: Callable[[], dict[str, int]],
                  tag: str) -> None:
        """One large file of unique data, generated before the clock starts: PUT through the
        first node, GET through the last (so it is not served from the uploader's memory),
        byte-compared with what was sent."""
        a = self.args
        out = self.results["files"]
        settle_s = self._settle(pids())
        size = a.file_mib * MIB
        data = b"".join(unique_blocks(size, secrets.token_bytes(16)))
        expected = hashlib.sha256(data).hexdigest()
        path = f"/v1/files/{BUCKET}/big-{tag}.bin"

        def blocks() -> Iterator[memoryview]:
            view = memoryview(data)
            for at in range(0, size, MIB):
                yield view[at:at + MIB]

        with RssSampler(pids) as sampler:
            cpu0, gen0 = _cpu(pids()), time.process_time()
            put = loadgen.run(loadgen.put_stream(endpoints[0], path, blocks(), size), a.loop)
            out["big_put"] = self._stream_row(put, size, cpu0, gen0, pids(), endpoints[0])
            out["big_put"]["settle_s"] = settle_s
            answer = json.loads(put.answer or b"{}") if put.status == 201 else {}
            out["big_put"]["sha256_ok"] = answer.get("sha256") == expected
            out["big_put"]["chunks"] = answer.get("chunks")
            out["big_put"]["peak_rss_mib"] = sampler.stop()
            out["big_put"]["peak_anon_mib"] = sampler.anon_peaks()
        _say(f"  PUT {a.file_mib} MiB: {out['big_put']['mib_per_s']} MiB/s "
             f"(status {put.status}, sha256 ok {out['big_put']['sha256_ok']})")

        received = {"at": 0, "same": True}

        def check(piece: bytes) -> None:
            at = received["at"]
            if data[at:at + len(piece)] != piece:
                received["same"] = False
            received["at"] = at + len(piece)

        with RssSampler(pids) as sampler:
            cpu0, gen0 = _cpu(pids()), time.process_time()
            got = loadgen.run(loadgen.get_stream(endpoints[-1], path, check), a.loop)
            out["big_get"] = self._stream_row(got, size, cpu0, gen0, pids(), endpoints[-1])
            out["big_get"]["content_ok"] = bool(received["same"]) and got.body_bytes == size
            out["big_get"]["peak_rss_mib"] = sampler.stop()
            out["big_get"]["peak_anon_mib"] = sampler.anon_peaks()
        _say(f"  GET {a.file_mib} MiB: {out['big_get']['mib_per_s']} MiB/s "
             f"(status {got.status}, content ok {out['big_get']['content_ok']})")

    def _stream_row(self, result: loadgen.StreamResult, size: int, cpu0: dict[str, float],
                    gen0: float, pids: dict[str, int], via: Endpoint) -> dict[str, Any]:
        return {"bytes": size, "status": result.status, "seconds": round(result.seconds, 3),
                "mib_per_s": round(result.body_bytes / MIB / result.seconds, 1)
                if result.seconds > 0 else 0.0, "via": via.url,
                "server_cpu_s": _cpu_delta(cpu0, pids),
                "generator_cpu_s": round(time.process_time() - gen0, 3)}

    def _small_files(self, endpoints: Sequence[Endpoint], pids: Callable[[], dict[str, int]],
                     tag: str) -> None:
        a = self.args
        seed = secrets.token_bytes(16)
        bodies = [hashlib.shake_128(seed + i.to_bytes(8, "big")).digest(64 << 10)
                  for i in range(a.small_files)]

        def path(item: int) -> str:
            return f"/v1/files/{BUCKET}/small-{tag}/f{item:05d}"

        def put(item: int, index: int) -> tuple[str, bytes]:
            return "put", loadgen.put_request(endpoints[index], path(item), bodies[item])

        def get(item: int, index: int) -> tuple[str, bytes]:
            return "get", loadgen.get_request(endpoints[index], path(item))

        for name, build in (("small_put", put), ("small_get", get)):
            with RssSampler(pids) as sampler:
                result = loadgen.run(loadgen.drive(
                    endpoints, FinitePlan(a.small_files, build), concurrency=a.file_concurrency,
                    server_pids=pids()), a.loop)
            row = result.to_json()
            row["files_per_s"] = row.pop("ops_per_s")
            row["mib_per_s"] = round(row["files_per_s"] * 64 / 1024, 1)
            row["peak_rss_mib"] = sampler.stop()
            row["peak_anon_mib"] = sampler.anon_peaks()
            self.results["files"][name] = row
            _say(f"  {name}: {row['files_per_s']} files/s, p99 "
                 f"{row['latency_ms'].get('p99')} ms, errors {row['error_count']}")

    # --- repair --------------------------------------------------------------------------------

    def antientropy(self, cluster: LocalCluster) -> None:
        """Wipe the last node's LMDB (its cluster state kept, as after a disk replacement:
        it believes it is in sync) and time anti-entropy restoring every key it held."""
        victim = cluster.nodes[-1]
        others = [n for n in cluster if n is not victim]
        expected = _stats(victim)["keys"]
        _say(f"repair: {victim.node_id} loses its LMDB ({expected} keys); anti-entropy refills")
        out_before = {n.node_id: _stats(n)["antientropy"]["repaired_out"] for n in others}
        cpu0 = _cpu(_node_pids(cluster))
        victim.stop()
        shutil.rmtree(victim.spec.data_dir / "db")
        with RssSampler(lambda: _node_pids(cluster)) as sampler:
            started = time.monotonic()
            victim.start()
            victim.wait_ready(60)
            ready = time.monotonic() - started
            have = {"keys": 0}

            def restored() -> bool:
                have["keys"] = _stats(victim)["keys"]
                return bool(have["keys"] >= expected)

            # issue 15 part 7: heartbeats must not starve while the replica is refilled
            with LivenessWatch(cluster.urls, cluster.auth_headers, every_s=0.2) as watch:
                done = _wait(restored, 30.0 + expected / 500, 0.1)  # 200 s for 100 000 keys
            took = time.monotonic() - started
        mine = _stats(victim)["antientropy"]
        pushed = sum(_stats(n)["antientropy"]["repaired_out"] - out_before[n.node_id]
                     for n in others)
        self.results["repair"]["antientropy"] = {
            "node": victim.node_id, "keys_expected": expected, "keys_restored": have["keys"],
            "restored": done, "seconds": round(took, 2), "boot_s": round(ready, 2),
            "keys_per_s": round(have["keys"] / took, 1) if took > 0 else None,
            "repaired_in": mine.get("repaired_in"), "pushed_by_others": pushed,
            "server_cpu_s": _cpu_delta(cpu0, _node_pids(cluster)),
            "peak_rss_mib": sampler.stop(), "peak_anon_mib": sampler.anon_peaks(),
            "liveness": watch.report.summary()}
        live = watch.report
        _say(f"  {have['keys']}/{expected} keys back in {took:.1f}s (boot {ready:.1f}s); "
             f"max phi {live.worst_phi:.2f}, slowest /health {live.worst_health_s * 1000:.0f} ms, "
             f"{len(live.accusations)} suspect/down sightings")

    def handoff(self) -> None:
        """One node stopped while keys are written, then restarted: seconds until every hint
        is delivered. Needs a node beyond N (a fallback), so the cluster has max(nodes, N+1)."""
        a = self.args
        size = max(a.nodes, a.n + 1)
        _say(f"repair: hinted handoff, {size} nodes, {a.handoff_keys} keys written with one down")
        with self.started("handoff", size, a.n, a.r, a.w, preload_keys=False) as cluster:
            victim = cluster.nodes[-1]
            live = [n for n in cluster if n is not victim]
            victim.stop()

            def seen_down() -> bool:
                return all(m["status"] == "down" for n in live
                           for m in n.get_json("/v1/cluster/members")
                           if m["node_id"] == victim.node_id)

            if not _wait(seen_down, 60.0, 0.2):
                raise LauncherError(f"{victim.node_id} not seen down within 60s")
            endpoints = [Endpoint.parse(n.url, n.auth_headers) for n in live]
            prefix = f"h{secrets.token_hex(3)}-"

            def build(item: int, index: int) -> tuple[str, bytes]:
                path = f"/v1/kv/{BUCKET}/{prefix}{item:08d}"
                return "put", loadgen.put_request(endpoints[index], path, self.value)

            writes = loadgen.run(loadgen.drive(endpoints, FinitePlan(a.handoff_keys, build),
                                               concurrency=32), a.loop)
            hints = sum(int(_stats(n)["hints_pending"]) for n in live)
            delivered0 = sum(_stats(n)["hints_delivered"] for n in live)
            with RssSampler(lambda: _node_pids(cluster)) as sampler:
                started = time.monotonic()
                victim.start()
                victim.wait_ready(60)
                ready = time.monotonic() - started
                pending: dict[str, int] = {"n": hints}

                def drained() -> bool:
                    pending["n"] = sum(int(_stats(n)["hints_pending"]) for n in cluster)
                    return pending["n"] == 0

                done = _wait(drained, 30.0 + hints / 200, 0.1)
                took = time.monotonic() - started
            delivered = sum(_stats(n)["hints_delivered"] for n in live) - delivered0
            self.results["repair"]["handoff"] = {
                "nodes": size, "node": victim.node_id, "keys_written": a.handoff_keys,
                "write_errors": writes.errors, "writes_per_s": writes.to_json()["ops_per_s"],
                "hints": hints, "hints_delivered": delivered, "drained": done,
                "hints_left": pending["n"], "seconds": round(took, 2), "boot_s": round(ready, 2),
                "hints_per_s": round(delivered / took, 1) if took > 0 else None,
                "peak_rss_mib": sampler.stop(), "peak_anon_mib": sampler.anon_peaks()}
            _say(f"  {hints} hints, all delivered {took:.1f}s after the restart "
                 f"(boot {ready:.1f}s)" if done else f"  {pending['n']} hints still pending")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def write_results(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``bench-<UTC time>.json`` and ``.md`` under ``out``, plus ``latest.json``/``latest.md``
    copies so a script or a reader finds the newest run without globbing."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    json_path, md_path = out / f"bench-{stamp}.json", out / f"bench-{stamp}.md"
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    markdown = report.markdown(results)
    for path, content in ((json_path, text), (md_path, markdown),
                          (out / "latest.json", text), (out / "latest.md", markdown)):
        path.write_text(content)
    return json_path, md_path


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """Run the suite; 0 if every run finished without errors, 1 otherwise (the results are
    written either way), 2 on bad usage."""
    try:
        args = parse_args(argv, prog)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    workdir = Path(tempfile.mkdtemp(prefix="dfsring-bench-"))
    _say(f"work dir {workdir}")
    finished = False
    try:
        results = Suite(args, workdir).run()
        finished = True
    except LauncherError as exc:
        _say(f"{prog}: {exc}")
        return 1
    except KeyboardInterrupt:
        _say(f"{prog}: interrupted")
        return 130
    finally:
        if args.keep_data or not finished:  # a failed run keeps its node logs to explain it
            _say(f"data and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    json_path, md_path = write_results(results, args.out)
    print(report.markdown(results))
    print(f"results: {json_path} {md_path}", flush=True)
    return 0 if report.clean(results) else 1
