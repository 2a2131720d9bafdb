"""The benchmark suite's load generator: a lean, closed-loop HTTP/1.1 client.

On a 2-core machine the generator shares the CPU with the servers it measures, so every
microsecond it spends per request is taken from them and a slow generator makes a fast server
look slow. It is therefore built to cost as little as possible per request:

- one ``asyncio.Protocol`` per connection, no streams and no HTTP library: the closed loop
  runs inside ``data_received`` (answer complete -> record its latency -> write the next
  request), so a request costs one callback, one ``write`` and no task switch;
- requests are pre-built bytes (a per-endpoint head prefix + key + suffix-with-body), so a
  request is two concatenations;
- parsing is the status line and ``Content-Length`` (chunked only if a server sends it), on a
  lower-cased copy of the head only;
- latencies go into an HDR-style histogram (benchmarks.hdr), O(1) per value.

Its own CPU time (``time.process_time``) over the measured window is reported per operation,
next to the servers' (``/proc/PID/stat``), so a reader can tell whether the generator was the
bottleneck. Run it under uvloop (``run``) for the lowest cost per request.

A plan decides what each request is: time-bound plans (``KvPlan``) run until the window
ends, finite plans (``FinitePlan``) until they run out; both are closed loops of
``concurrency`` connections, spread round-robin over the endpoints.

Large files are streamed with asyncio streams instead (``put_stream``/``get_stream``): one
request moving hundreds of MiB has no per-request cost to save.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit

from benchmarks.hdr import Histogram
from benchmarks.procstat import cpu_seconds

OK_STATUSES = frozenset({"200", "201", "204"})
CONN_ERROR = "conn-error"  # the connection failed or closed with a request in flight
HUNG = "no-answer"  # still in flight when the run ended, after a grace period
_CHUNKED = -2
_NO_HEAD = -1
_RECONNECT_S = 0.05
_MAX_CONNECT_FAILURES = 100  # per connection in a row: the server is gone, stop trying
T = TypeVar("T")


@dataclass(frozen=True)
class Endpoint:
    """A server to send to, and the headers every request to it carries (credentials)."""

    host: str
    port: int
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, url: str, headers: Mapping[str, str] | None = None) -> Endpoint:
        """``http://HOST:PORT`` (or ``HOST:PORT``); ValueError for anything else (no TLS)."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url!r}: need http://HOST[:PORT] (no TLS)")
        return cls(parts.hostname, parts.port or 80, tuple((headers or {}).items()))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def host_header(self) -> bytes:
        """The Host line and the endpoint's own header lines (its credentials)."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers)
        return f"Host: {self.url[7:]}\r\n{extra}".encode()


class Plan(Protocol):
    """What the next request on a connection to endpoint ``index`` is: ``(op, bytes)``, or
    None when a finite plan has nothing left. ``op`` names the latency histogram."""

    def __call__(self, index: int) -> tuple[str, bytes] | None: ...


class KvPlan:
    """KV requests: reads of uniformly random keys of a preloaded set, and writes of uniformly
    random keys of this run's own key space (``write_prefix``), both over ``keys`` keys.

    Writes do not go to the keys that are read: a PUT without context on a stored key is
    concurrent with it and makes a sibling (Dynamo semantics), so blind overwrites of the read
    set would turn later reads into 300s and measure sibling growth. Each run gets a fresh
    ``write_prefix``; the few keys a run writes twice become siblings, as with any blind writer.
    """

    def __init__(self, endpoints: Sequence[Endpoint], *, read_fraction: float, keys: int,
                 value: bytes, bucket: str, read_prefix: bytes, write_prefix: bytes,
                 put_query: str = "", get_query: str = "", seed: int | None = None) -> None:
        length = f"Content-Length: {len(value)}\r\n".encode()
        self._put = [(f"PUT /v1/kv/{bucket}/".encode() + write_prefix,
                      f"{put_query} HTTP/1.1\r\n".encode() + ep.host_header + length + b"\r\n"
                      + value) for ep in endpoints]
        self._get = [(f"GET /v1/kv/{bucket}/".encode() + read_prefix,
                      f"{get_query} HTTP/1.1\r\n".encode() + ep.host_header + b"\r\n")
                     for ep in endpoints]
        self._read_fraction = read_fraction
        self._keys = keys
        self._random = random.Random(seed).random

    def __call__(self, index: int) -> tuple[str, bytes]:
        rnd = self._random
        key = b"%08d" % int(rnd() * self._keys)
        if rnd() < self._read_fraction:
            prefix, suffix = self._get[index]
            return "get", prefix + key + suffix
        prefix, suffix = self._put[index]
        return "put", prefix + key + suffix


class FinitePlan:
    """``count`` requests made by ``build(item, endpoint_index) -> (op, bytes)``, each once."""

    def __init__(self, count: int, build: Callable[[int, int], tuple[str, bytes]]) -> None:
        self._next = 0
        self._count = count
        self._build = build

    def __call__(self, index: int) -> tuple[str, bytes] | None:
        if self._next >= self._count:
            return None
        item = self._next
        self._next += 1
        return self._build(item, index)


def put_request(endpoint: Endpoint, path: str, body: bytes) -> bytes:
    """One whole PUT with a Content-Length body, as bytes."""
    return (f"PUT {path} HTTP/1.1\r\n".encode() + endpoint.host_header
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def get_request(endpoint: Endpoint, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\n".encode() + endpoint.host_header + b"\r\n"


# --- the measured run --------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What the measured window saw: per-op latencies, statuses, and the CPU it cost."""

    seconds: float
    hist: dict[str, Histogram] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    generator_cpu_s: float = 0.0
    server_cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def ops(self) -> int:
        """Answered requests (any status) in the window."""
        return sum(h.count for h in self.hist.values())

    @property
    def errors(self) -> dict[str, int]:
        return {s: n for s, n in sorted(self.statuses.items()) if s not in OK_STATUSES}

    def combined(self) -> Histogram:
        total = Histogram()
        for hist in self.hist.values():
            total.merge(hist)
        return total

    def to_json(self) -> dict[str, Any]:
        ops = self.ops
        server = sum(self.server_cpu_s.values()) if self.server_cpu_s else None
        return {
            "ops": ops,
            "seconds": round(self.seconds, 3),
            "ops_per_s": round(ops / self.seconds, 1) if self.seconds > 0 else 0.0,
            "latency_ms": self.combined().summary(),
            "by_op": {op: {"ops": h.count, "latency_ms": h.summary()}
                      for op, h in sorted(self.hist.items())},
            "statuses": dict(sorted(self.statuses.items())),
            "errors": self.errors,
            "error_count": sum(self.errors.values()),
            "generator_cpu_s": round(self.generator_cpu_s, 3),
            "generator_cpu_share": _share(self.generator_cpu_s, self.seconds),
            "generator_cpu_us_per_op": _per_op_us(self.generator_cpu_s, ops),
            "server_cpu_s": {k: round(v, 3) for k, v in sorted(self.server_cpu_s.items())},
            "server_cpu_share": _share(server, self.seconds),
            "server_cpu_us_per_op": _per_op_us(server, ops),
        }


def _share(cpu: float | None, wall: float) -> float | None:
    """CPU seconds per wall second: 1.0 is one core busy throughout."""
    return round(cpu / wall, 3) if cpu is not None and wall > 0 else None


def _per_op_us(cpu_s: float | None, ops: int) -> float | None:
    """CPU microseconds per answered request: what one operation costs, whatever the rate."""
    return round(cpu_s * 1e6 / ops, 1) if cpu_s is not None and ops else None


class _Client(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight (see the module doc)."""

    def __init__(self, run: _Run, slot: int, endpoint_index: int) -> None:
        self.run = run
        self.slot = slot
        self.endpoint_index = endpoint_index
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = _NO_HEAD  # end of the whole answer in buf, once the head is parsed
        self.body_from = 0
        self.status = ""
        self.close_after = False
        self.op = ""
        self.sent_at = 0
        self.in_flight = False
        self.retired = False
        self.measured = 0  # answers to requests sent inside the window

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.run.send_next(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.need == _NO_HEAD:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[: end + 2]).lower()
            self.status = head[9:12].decode("latin-1")
            self.body_from = end + 4
            self.close_after = b"\r\nconnection: close" in head
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                self.need = self.body_from + int(head[at + 17 : head.index(b"\r\n", at + 17)])
            elif b"\r\ntransfer-encoding: chunked" in head:
                self.need = _CHUNKED
            else:  # 204, 304, or a body we cannot frame: the answer ends with the head
                self.need = self.body_from
        if self.need == _CHUNKED:
            total = chunked_end(buf, self.body_from)
            if total is None:
                return
        else:
            total = self.need
            if len(buf) < total:
                return
        del buf[:total]
        self.need = _NO_HEAD
        self.run.complete(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.buf.clear()
        self.need = _NO_HEAD
        self.run.lost(self)


def chunked_end(buf: bytearray | bytes, pos: int) -> int | None:
    """Where a chunked body starting at ``pos`` ends (after its last CRLF), or None if ``buf``
    does not hold all of it yet. Trailers are not supported (no server here sends them)."""
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
        pos = line_end + 2 + size + 2
        if len(buf) < pos:
            return None
        if size == 0:
            return pos


class _Run:
    """Connections, the window, the tallies; ``go`` runs it to the end."""

    def __init__(self, endpoints: Sequence[Endpoint], plan: Plan, concurrency: int,
                 warmup_s: float, duration_s: float | None, server_pids: Mapping[str, int],
                 grace_s: float, timeout_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.endpoints = endpoints
        self.plan = plan
        self.concurrency = concurrency
        self.warmup_s = warmup_s
        self.duration_s = duration_s
        self.server_pids = dict(server_pids)
        self.grace_s = grace_s
        self.timeout_s = timeout_s
        self.hist: dict[str, Histogram] = {}
        self.statuses: Counter[str] = Counter()
        self.clients: list[_Client] = []
        self.active = 0
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.measure_from = 0
        self.until = 0
        self.last_done = 0
        self.cpu0 = 0.0
        self.server0: dict[str, float] = {}
        self.failures: Counter[int] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    async def go(self) -> LoadResult:
        start = time.perf_counter_ns()
        self.measure_from = start + int(self.warmup_s * 1e9)
        finite = self.duration_s is None
        self.until = (1 << 62) if self.duration_s is None else (
            self.measure_from + int(self.duration_s * 1e9))
        if self.warmup_s > 0:
            self.loop.call_later(self.warmup_s, self._window_start)
        else:
            self._window_start()
        self.active = self.concurrency
        for slot in range(self.concurrency):
            client = _Client(self, slot, slot % len(self.endpoints))
            self.clients.append(client)
            self._spawn(self._connect(client))
        wait = self.timeout_s if finite else self.warmup_s + (self.duration_s or 0) + self.grace_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.done), wait)
        end = time.perf_counter_ns()
        cpu = time.process_time() - self.cpu0
        server = {name: cpu_seconds(pid) for name, pid in self.server_pids.items()}
        self._abandon_hung()
        window_end = (max(self.last_done, self.measure_from + 1) if finite
                      else max(min(end, self.until), self.last_done))
        return LoadResult(
            seconds=(window_end - self.measure_from) / 1e9, hist=self.hist,
            statuses=self.statuses, generator_cpu_s=cpu,
            server_cpu_s={k: v - self.server0[k] for k, v in server.items()
                          if v is not None and self.server0.get(k) is not None})

    def _window_start(self) -> None:
        self.cpu0 = time.process_time()
        self.server0 = {name: s for name, pid in self.server_pids.items()
                        if (s := cpu_seconds(pid)) is not None}

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, client: _Client) -> None:
        endpoint = self.endpoints[client.endpoint_index]
        while not client.retired:
            try:
                await self.loop.create_connection(lambda: client, endpoint.host, endpoint.port)
                self.failures[client.slot] = 0
                return
            except OSError:
                self.failures[client.slot] += 1
                if (self.failures[client.slot] >= _MAX_CONNECT_FAILURES
                        or time.perf_counter_ns() >= self.until):
                    self.retire(client)
                    return
                await asyncio.sleep(_RECONNECT_S)

    def send_next(self, client: _Client) -> None:
        """A client whose every request so far started before the window (one slow answer
        spanned all of it, as on a loaded machine in a --quick run) sends one more, so that
        no window is empty; the window then ends at that answer."""
        now = time.perf_counter_ns()
        open_ = now < self.until or (client.measured == 0 and now >= self.measure_from)
        request = self.plan(client.endpoint_index) if open_ else None
        if request is None or client.transport is None:
            self.retire(client)
            return
        client.op, data = request
        client.sent_at = now
        client.in_flight = True
        client.transport.write(data)

    def complete(self, client: _Client) -> None:
        now = time.perf_counter_ns()
        client.in_flight = False
        if client.sent_at >= self.measure_from:
            hist = self.hist.get(client.op)
            if hist is None:
                hist = self.hist[client.op] = Histogram()
            hist.record(now - client.sent_at)
            self.statuses[client.status] += 1
            self.last_done = now
            client.measured += 1
        if client.close_after and client.transport is not None:
            client.transport.close()  # connection_lost reconnects
            return
        self.send_next(client)

    def lost(self, client: _Client) -> None:
        if client.in_flight:
            client.in_flight = False
            if client.sent_at >= self.measure_from:
                self.statuses[CONN_ERROR] += 1
                self.last_done = time.perf_counter_ns()
        if client.retired:
            return
        if time.perf_counter_ns() >= self.until:
            self.retire(client)
            return
        self._spawn(self._reconnect(client))

    async def _reconnect(self, client: _Client) -> None:
        await asyncio.sleep(_RECONNECT_S)
        await self._connect(client)

    def retire(self, client: _Client) -> None:
        if client.retired:
            return
        client.retired = True
        if client.transport is not None:
            client.transport.close()
        self.active -= 1
        if self.active == 0 and not self.done.done():
            self.done.set_result(None)

    def _abandon_hung(self) -> None:
        for client in self.clients:
            if client.in_flight:
                client.in_flight = False
                self.statuses[HUNG] += 1
            self.retire(client)
        for task in self._tasks:
            task.cancel()


async def drive(endpoints: Sequence[Endpoint], plan: Plan, *, concurrency: int,
                warmup_s: float = 0.0, duration_s: float | None = None,
                server_pids: Mapping[str, int] | None = None,
                grace_s: float = 10.0, timeout_s: float = 600.0) -> LoadResult:
    """Run ``plan`` as a closed loop of ``concurrency`` connections spread over ``endpoints``.

    With ``duration_s``: requests started during the first ``warmup_s`` are discarded, then
    the window lasts ``duration_s``; answers still missing ``grace_s`` after it are counted
    as HUNG. Without: the plan runs until it is exhausted and the window is from the start to
    the last answer, or ``timeout_s`` at most. ``server_pids`` name processes whose CPU time
    over the window is reported.
    """
    if concurrency < 1 or not endpoints:
        raise ValueError("need at least one connection and one endpoint")
    run = _Run(endpoints, plan, concurrency, warmup_s, duration_s, server_pids or {}, grace_s,
               timeout_s)
    return await run.go()


def run(coro: Awaitable[T], loop: str = "uvloop") -> T:
    """Run a coroutine on a fresh event loop, uvloop unless ``loop == "asyncio"`` (or uvloop is
    missing): the generator's cost per request is what matters here."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(coro)  # type: ignore[arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


# --- large streamed bodies -------------------------------------------------------------------


@dataclass
class StreamResult:
    """One streamed request: status, seconds from the first byte sent to the last received,
    bytes moved in the body, and the answer's body (a PUT's JSON; empty for a GET)."""

    status: int
    seconds: float
    body_bytes: int
    answer: bytes


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    return int(head[9:12]), head.lower()


async def _read_body(reader: asyncio.StreamReader, head: bytes,
                     sink: Callable[[bytes], None]) -> int:
    """Feed the body to ``sink`` piece by piece; return its length."""
    at = head.find(b"\r\ncontent-length:")
    got = 0
    if at >= 0:
        left = int(head[at + 17 : head.index(b"\r\n", at + 17)])
        while left:
            piece = await reader.read(min(left, 1 << 20))
            if not piece:
                raise ConnectionError("the body ended early")
            sink(piece)
            got += len(piece)
            left -= len(piece)
        return got
    if b"\r\ntransfer-encoding: chunked" in head:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return got
            piece = await reader.readexactly(size)
            sink(piece)
            got += size
            await reader.readexactly(2)
    return got


async def put_stream(endpoint: Endpoint, path: str, blocks: Iterable[bytes | memoryview],
                     size: int, limit_s: float = 600.0) -> StreamResult:
    """PUT ``size`` bytes from ``blocks`` to ``path``, streamed with flow control."""
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    try:
        async with asyncio.timeout(limit_s):
            started = time.perf_counter()
            writer.write(f"PUT {path} HTTP/1.1\r\n".encode() + endpoint.host_header
                         + f"Content-Length: {size}\r\n".encode()
                         + b"Content-Type: application/octet-stream\r\n\r\n")
            for block in blocks:
                writer.write(block)
                await writer.drain()
            status, head = await _read_head(reader)
            answer = bytearray()
            await _read_body(reader, head, answer.extend)
            return StreamResult(status, time.perf_counter() - started, size, bytes(answer))
    finally:
        writer.close()


async def get_stream(endpoint: Endpoint, path: str, sink: Callable[[bytes], None],
                     limit_s: float = 600.0) -> StreamResult:
    """GET ``path``, feeding the body to ``sink`` as it arrives (never held whole)."""
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port,
                                                   limit=4 << 20)
    try:
        async with asyncio.timeout(limit_s):
            started = time.perf_counter()
            writer.write(get_request(endpoint, path))
            status, head = await _read_head(reader)
            got = await _read_body(reader, head, sink)
            return StreamResult(status, time.perf_counter() - started, got, b"")
    finally:
        writer.close()
