"""Closed-loop load generator for the dfsring key/value API.

    python -m benchmarks.kv_load --url http://127.0.0.1:7070 --mix put --seconds 10
    python benchmarks/kv_load.py --url http://a:7070 --url http://b:7070 --mix mixed

``--concurrency`` workers each keep one request in flight (closed loop: the next request leaves
when the previous answer is in) over keep-alive HTTP/1.1 connections, one per worker and URL,
rotating over the URLs request by request. Every latency goes into a log-bucketed histogram;
requests started during ``--warmup`` are discarded. Prints one JSON line on stdout and a human
summary on stderr.

Workloads (``--mix``):
- ``put``: every PUT writes a fresh key of this run (an insert). Blind overwrites of existing
  keys would pile up siblings (a PUT without context is concurrent with what is stored) and
  measure sibling growth rather than writes.
- ``get``: first writes ``--keys`` keys (not measured), then GETs uniformly random ones.
- ``mixed``: as ``get``, with a share of PUTs (``--read-fraction`` reads, the rest inserts).

To stay out of the way of the node it measures (often on the same machine), the generator is
lean: stdlib asyncio streams (uvloop when installed) instead of an HTTP client library, request
heads assembled from pre-built bytes, and just enough HTTP/1.1 parsing for the API's answers
(Content-Length or chunked). Its own CPU seconds are reported: a generator near one core is
itself the bottleneck and the figures understate the node.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a script (python benchmarks/kv_load.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hdr import Histogram
from dfsring.client.credentials import CredentialsError, auth_headers, discover

BUCKET = b"bench"
CONN_ERROR = "conn-error"
HUNG = "no-answer"  # still waiting when the run ended (after a grace period)
GRACE_S = 10.0


# --- a minimal HTTP/1.1 connection -------------------------------------------------------------


class Connection:
    """One keep-alive connection to ``host:port`` with one request in flight at a time.

    Speaks only what the KV API answers with: a status line, headers, and a body framed by
    Content-Length or chunked encoding. Reconnects lazily after an error or ``Connection:
    close``; the caller counts the error.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, head: bytes, body: bytes = b"") -> int:
        """Send one request; return the status after reading the whole answer."""
        if self._writer is None:
            host, port = self.target.host, self.target.port
            self._reader, self._writer = await asyncio.open_connection(host, port)
        assert self._reader is not None
        self._writer.write(head + body)  # one send; copying a value is cheap next to a syscall
        raw = await self._reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        headers = raw.lower()
        await self._skip_body(headers, status)
        if b"\r\nconnection: close" in headers:
            self.close()
        return status

    async def _skip_body(self, headers: bytes, status: int) -> None:
        assert self._reader is not None
        at = headers.find(b"\r\ncontent-length:")
        if at >= 0:
            end = headers.index(b"\r\n", at + 17)
            await self._reader.readexactly(int(headers[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in headers:
            await self._skip_chunks()
        elif status not in (204, 304) and status >= 200:
            raise ConnectionError("answer without a length; cannot keep the connection")

    async def _skip_chunks(self) -> None:
        assert self._reader is not None
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self._reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:  # no trailers from aiohttp: the CRLF read was the end
                return

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


# --- the workload ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A node to send to, and the request heads for it (they name it in ``Host:``)."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise argparse.ArgumentTypeError(f"{url!r}: need http://HOST[:PORT] (no TLS)")
        return cls(parts.hostname, parts.port or 80)


@dataclass(frozen=True)
class Heads:
    """Pre-built request heads for one node: a head is ``prefix + key + suffix``, two
    concatenations per request."""

    put: tuple[bytes, bytes]
    get: tuple[bytes, bytes]

    @classmethod
    def build(cls, target: Target, args: argparse.Namespace) -> Heads:
        host = f"Host: {target.host}:{target.port}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in args.auth.items())
        put = f"?w={args.w}" if args.w else ""
        get = f"?r={args.r}" if args.r else ""
        length = f"Content-Length: {args.value_size}\r\n"
        return cls(
            (b"PUT /v1/kv/" + BUCKET + b"/", f"{put} HTTP/1.1\r\n{host}{length}\r\n".encode()),
            (b"GET /v1/kv/" + BUCKET + b"/", f"{get} HTTP/1.1\r\n{host}\r\n".encode()),
        )


@dataclass
class Tally:
    """What the measured window saw, per operation."""

    hist: dict[str, Histogram] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)

    def record(self, op: str, status: str, nanos: int) -> None:
        self.statuses[status] += 1
        self.hist.setdefault(op, Histogram()).record(nanos)

    def combined(self) -> Histogram:
        total = Histogram()
        for hist in self.hist.values():
            total.merge(hist)
        return total


@dataclass
class Plan:
    """Which request a worker sends next."""

    mix: str
    read_fraction: float
    keys: list[bytes]
    run_id: bytes
    value: bytes
    heads: dict[Target, Heads]
    rng: random.Random = field(default_factory=random.Random)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def next(self, target: Target) -> tuple[str, bytes, bytes]:
        heads = self.heads[target]
        if self.mix == "put" or (self.mix == "mixed" and self.rng.random() >= self.read_fraction):
            key = b"%s-p%010d" % (self.run_id, next(self._seq))
            return "put", heads.put[0] + key + heads.put[1], self.value
        key = self.keys[self.rng.randrange(len(self.keys))]
        return "get", heads.get[0] + key + heads.get[1], b""

    def put(self, target: Target, key: bytes) -> bytes:
        prefix, suffix = self.heads[target].put
        return prefix + key + suffix


async def _timed(conn: Connection, head: bytes, body: bytes) -> tuple[str, int]:
    started = time.perf_counter_ns()
    try:
        status = str(await conn.request(head, body))
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        conn.close()
        status = CONN_ERROR
    return status, time.perf_counter_ns() - started


async def worker(
    conns: Sequence[Connection], plan: Plan, tally: Tally, measure_from: int, until: int
) -> None:
    """Closed loop until ``until`` (perf_counter_ns); record requests started after
    ``measure_from``. Rotates over the URLs' connections request by request."""
    turn = 0
    try:
        while (now := time.perf_counter_ns()) < until:
            conn = conns[turn % len(conns)]
            op, head, body = plan.next(conn.target)
            status, nanos = await _timed(conn, head, body)
            turn += 1
            if now >= measure_from:
                tally.record(op, status, nanos)
    finally:
        for conn in conns:
            conn.close()


async def populate(targets: list[Target], plan: Plan, concurrency: int) -> tuple[float, Counter]:
    """PUT every key the reads will ask for (before the clock starts), so GETs hit."""
    started = time.perf_counter()
    pending = iter(plan.keys)
    failures: Counter[str] = Counter()

    async def loader(number: int) -> None:
        conn = Connection(targets[number % len(targets)])
        for key in pending:
            status, _ = await _timed(conn, plan.put(conn.target, key), plan.value)
            if status != "204":
                failures[status] += 1
        conn.close()

    await asyncio.gather(*(loader(n) for n in range(concurrency)))
    return time.perf_counter() - started, failures


async def run(args: argparse.Namespace) -> dict[str, object]:
    targets: list[Target] = args.url
    run_id = secrets.token_hex(4).encode()  # fresh keys per run: no siblings from old runs
    plan = Plan(
        args.mix,
        args.read_fraction,
        [b"%s-k%09d" % (run_id, i) for i in range(args.keys)],
        run_id,
        os.urandom(args.value_size),
        {target: Heads.build(target, args) for target in targets},
    )
    populate_s, populate_failures = 0.0, Counter[str]()
    if args.mix != "put":
        _say(f"populating {args.keys} keys of {args.value_size} bytes...")
        populate_s, populate_failures = await populate(targets, plan, max(args.concurrency, 32))
    tally = Tally()
    window = await _measure(args, targets, plan, tally)
    return report(args, tally, window, populate_s, populate_failures)


@dataclass
class Window:
    """The measured window: wall seconds, and CPU seconds of the generator and the node."""

    wall: float = 0.0
    cpu: float = 0.0
    node_cpu: float | None = None


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of another process so far (Linux /proc), None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    args: argparse.Namespace, targets: list[Target], plan: Plan, tally: Tally
) -> Window:
    """Run the workers; return what the measured window cost."""
    start = time.perf_counter_ns()
    measure_from = start + int(args.warmup * 1e9)
    until = measure_from + int(args.seconds * 1e9)
    tasks = [
        asyncio.create_task(
            worker(
                [Connection(t) for t in _rotated(targets, n)],
                plan,
                tally,
                measure_from,
                until,
            )
        )
        for n in range(args.concurrency)
    ]
    await asyncio.sleep(max(0.0, (measure_from - time.perf_counter_ns()) / 1e9))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    node0 = process_cpu(args.node_pid)
    done, hung = await asyncio.wait(tasks, timeout=args.warmup + args.seconds + GRACE_S)
    window = Window(time.perf_counter() - wall0, time.process_time() - cpu0)
    node1 = process_cpu(args.node_pid)
    if node0 is not None and node1 is not None:
        window.node_cpu = node1 - node0
    for task in hung:
        task.cancel()
        tally.statuses[HUNG] += 1
    await asyncio.gather(*hung, return_exceptions=True)
    for task in done:
        task.result()  # a worker's own bug surfaces instead of quietly lowering the figures
    return window


def _rotated(targets: list[Target], n: int) -> list[Target]:
    """Worker n starts at URL n, so the first requests are spread too."""
    k = n % len(targets)
    return targets[k:] + targets[:k]


# --- report ------------------------------------------------------------------------------------


def _latency_ms(hist: Histogram) -> dict[str, float]:
    if not hist.count:
        return {}
    points = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
    out = {name: round(hist.percentile(q) / 1e6, 3) for name, q in points.items()}
    out["mean"] = round(hist.mean / 1e6, 3)
    out["max"] = round((hist.max or 0) / 1e6, 3)
    return out


def report(
    args: argparse.Namespace,
    tally: Tally,
    window: Window,
    populate_s: float,
    populate_failures: Counter[str],
) -> dict[str, object]:
    total = tally.combined()
    errors = {s: n for s, n in tally.statuses.items() if not s.isdigit() or int(s) >= 400}
    return {
        "mix": args.mix,
        "urls": [f"http://{t.host}:{t.port}" for t in args.url],
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "value_size": args.value_size,
        "keys": args.keys if args.mix != "put" else None,
        "r": args.r,
        "w": args.w,
        "loop": args.loop,
        "ops": total.count,
        "ops_per_s": round(total.count / args.seconds, 1),
        "latency_ms": _latency_ms(total),
        "by_op": {
            op: {
                "ops": h.count,
                "ops_per_s": round(h.count / args.seconds, 1),
                "latency_ms": _latency_ms(h),
            }
            for op, h in sorted(tally.hist.items())
        },
        "statuses": dict(sorted(tally.statuses.items())),
        "errors": dict(sorted(errors.items())),
        "generator_cpu_s": round(window.cpu, 3),
        "generator_cpu_share": _share(window.cpu, window.wall),
        "node_cpu_share": _share(window.node_cpu, window.wall),
        "populate_s": round(populate_s, 3),
        "populate_errors": dict(populate_failures),
    }


def _share(cpu: float | None, wall: float) -> float | None:
    """CPU seconds per wall second: 1.0 is one core busy throughout."""
    return round(cpu / wall, 3) if cpu is not None and wall > 0 else None


def summary(result: dict[str, object]) -> str:
    lat = result["latency_ms"]
    assert isinstance(lat, dict)
    lines = [
        f"{result['mix']}: {result['ops']} ops in {result['seconds']} s = "
        f"{result['ops_per_s']} ops/s (concurrency {result['concurrency']}, "
        f"{result['value_size']} B values, loop {result['loop']})",
        "latency ms: " + "  ".join(f"{k} {v}" for k, v in lat.items()),
        f"statuses: {result['statuses']}  errors: {result['errors'] or 'none'}",
        f"generator CPU: {result['generator_cpu_s']} s "
        f"({result['generator_cpu_share']} of one core); node: "
        f"{result['node_cpu_share'] if result['node_cpu_share'] is not None else '?'} of one core",
    ]
    share = result["generator_cpu_share"]
    if isinstance(share, float) and share > 0.8:
        lines.append("warning: the generator is near one core; it may be the bottleneck")
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = kind(raw)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, not {raw}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="kv_load",
        description=(__doc__ or "").splitlines()[0],
        epilog="See the module docstring for what each --mix measures.",
    )
    p.add_argument("--url", type=Target.parse, action="append", help="node URL (repeatable)")
    p.add_argument("--concurrency", type=_positive(int), default=16, help="workers (16)")
    p.add_argument("--seconds", type=_positive(float), default=10.0, help="measured time (10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured lead-in seconds (2)")
    p.add_argument("--value-size", type=int, default=1024, help="bytes per value (1024)")
    p.add_argument("--keys", type=_positive(int), default=100_000, help="keys read (100000)")
    p.add_argument("--mix", choices=("put", "get", "mixed"), default="mixed", help="(mixed)")
    p.add_argument("--read-fraction", type=float, default=0.5, help="reads in mixed (0.5)")
    p.add_argument("--r", help="read quorum per request (?r=), default: the node's")
    p.add_argument("--w", help="write quorum per request (?w=), default: the node's")
    p.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    p.add_argument("--node-pid", type=int, help="also report this node process's CPU (Linux)")
    args = p.parse_args(argv)
    args.url = args.url or [Target.parse("http://127.0.0.1:7070")]
    try:
        args.auth = auth_headers(discover())  # found as the CLI finds them
    except CredentialsError as exc:
        p.error(str(exc))
    if args.warmup < 0 or args.value_size < 0 or not 0 <= args.read_fraction <= 1:
        p.error("--warmup and --value-size must be >= 0, --read-fraction within 0..1")
    return args


def _runner(choice: str) -> tuple[str, Callable[..., object]]:
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit("kv_load: uvloop is not installed") from None
        else:
            return "uvloop", uvloop.run
    return "asyncio", asyncio.run


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.loop, run_with = _runner(args.loop)
    try:
        result = run_with(run(args))
    except KeyboardInterrupt:
        _say("kv_load: interrupted")
        return 130
    assert isinstance(result, dict)
    print(json.dumps(result), flush=True)
    _say(summary(result))
    return 0 if not result["errors"] and not result["populate_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
