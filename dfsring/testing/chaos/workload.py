"""The chaos workload: a few bounded asyncio clients that record every operation they make.

Each client loops until the op budget, the time budget or :meth:`Workload.stop`, at a low
paced rate (the whole suite runs on 2 cores), sending each request to a random node among
:attr:`Workload.targets` (node id -> client URL; a scenario may change it while running).
Every operation becomes an :class:`~dfsring.testing.chaos.history.OpRecord`, appended to
:attr:`Workload.records` and, when a file is given, written as a JSON line at once (so a
crashed run still leaves its history).

Kinds (the mix is configurable):

- ``put``: a new unique key, written once with a unique self-verifying value (a share
  ``w_all_share`` of them with ``?w=all``: every owner must ack);
- ``rmw``: read a shared key (a set of elements), add one unique element, write it back with
  the ``Dfs-Context`` of the read; on ``300`` the siblings' sets are merged first, so the write
  resolves them (Dynamo §4.4);
- ``get``: read a key written before (unique or shared) and record the hash of every sibling;
- ``file``: a new unique file path uploaded once through the files API, with a self-verifying
  body large enough to be cut into several chunks (run the nodes with a small --chunk-size).

Outcomes: 2xx is ok; an error status or a refused connection (nothing sent: each request has
its own connection) is failed; a client timeout or a connection lost mid-request is
indeterminate. Nothing is retried: a retry would blur which attempt did what.

The RNG of client ``c`` is seeded with ``f"{seed}/{c}"``: the same seed makes the same keys,
values and choices (timing, and so the interleaving, still varies).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import aiohttp

from dfsring.testing.chaos.history import (
    OpKind,
    OpRecord,
    Outcome,
    decode_set,
    encode_set,
    encode_value,
    sha256,
    write_jsonl,
)

CONTEXT = "Dfs-Context"
READ_OK = frozenset({200, 300, 404})
Key = tuple[str, str]


@dataclass(frozen=True)
class WorkloadConfig:
    seed: int | str = 0
    clients: int = 4
    duration_s: float = 60.0
    max_ops: int = 5_000
    ops_per_s: float = 16.0  # target total rate (all clients together)
    put_weight: float = 0.5
    rmw_weight: float = 0.3
    get_weight: float = 0.2
    file_weight: float = 0.0
    shared_keys: int = 4
    value_bytes: tuple[int, int] = (16, 2048)
    w_all_share: float = 0.0  # of the puts, sent with ?w=all
    request_timeout_s: float = 8.0  # above the nodes' 5 s, so a 503 arrives before we give up
    file_bytes: tuple[int, int] = (80_000, 400_000)  # above the 64 KiB inline limit
    bucket: str = "chaos"
    files_bucket: str = "chaosfiles"
    key_prefix: str = ""  # to tell runs apart against a long-lived deployment


@dataclass(frozen=True)
class _Reply:
    outcome: Outcome
    status: int | None = None
    context: str | None = None
    values: tuple[bytes, ...] = ()
    error: str | None = None


class Workload:
    def __init__(self, targets: Mapping[str, str], config: WorkloadConfig | None = None,
                 history: Path | None = None, headers: Mapping[str, str] | None = None) -> None:
        """`headers` go on every request: the credentials the cluster's clients use."""
        self.config = config or WorkloadConfig()
        self.headers = dict(headers or {})
        self.targets: dict[str, str] = dict(targets)
        self.records: list[OpRecord] = []
        self.history_path = history
        self._out: IO[str] | None = None
        self._stop = asyncio.Event()
        self._t0 = time.monotonic()
        self._next_id = 0
        self._written: list[Key] = []  # unique keys attempted, for reads

    # --- control -----------------------------------------------------------------------

    def now(self) -> float:
        """Seconds on the records' clock (0 = when run() started)."""
        return time.monotonic() - self._t0

    def stop(self) -> None:
        self._stop.set()

    @property
    def shared(self) -> list[Key]:
        c = self.config
        return [(c.bucket, f"{c.key_prefix}rmw-{i}") for i in range(c.shared_keys)]

    def keys(self) -> set[Key]:
        """Every key any operation touched (what the final reads must cover)."""
        return {(r.bucket, r.key) for r in self.records} | set(self.shared)

    async def run(self) -> list[OpRecord]:
        """Run the clients to the end of their budgets (or stop()); returns the records."""
        self._t0 = time.monotonic()
        connector = aiohttp.TCPConnector(force_close=True, limit=4 * self.config.clients)
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
        with self._history_file() as out:
            self._out = out
            async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                             headers=self.headers) as http:
                await asyncio.gather(*(self._client(http, c)
                                       for c in range(self.config.clients)))
        self._out = None
        return self.records

    def _history_file(self) -> contextlib.AbstractContextManager[IO[str] | None]:
        if self.history_path is None:
            return contextlib.nullcontext()
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        return self.history_path.open("w")

    # --- one client --------------------------------------------------------------------

    async def _client(self, http: aiohttp.ClientSession, client: int) -> None:
        c = self.config
        rng = random.Random(f"{c.seed}/{client}")
        pause = c.clients / c.ops_per_s
        weights = (c.put_weight, c.rmw_weight, c.get_weight, c.file_weight)
        seq = 0
        while self._budget_left():
            began = time.monotonic()
            seq += 1
            kind = rng.choices((OpKind.PUT, OpKind.RMW, OpKind.GET, OpKind.FILE), weights)[0]
            node = rng.choice(sorted(self.targets)) if self.targets else None
            if node is not None:
                await self._one(http, rng, client, seq, kind, node, self.targets[node])
            wait = pause * rng.uniform(0.5, 1.5) - (time.monotonic() - began)
            if wait > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), wait)
                except TimeoutError:
                    pass

    def _budget_left(self) -> bool:
        c = self.config
        return (not self._stop.is_set() and self._next_id < c.max_ops
                and self.now() < c.duration_s)

    async def _one(self, http: aiohttp.ClientSession, rng: random.Random, client: int,
                   seq: int, kind: OpKind, node: str, url: str) -> None:
        self._next_id += 1
        base = OpRecord(id=self._next_id, client=client, op=kind, bucket=self.config.bucket,
                        key="", node=node, start=self.now(), end=0.0, outcome=Outcome.FAILED)
        if kind is OpKind.PUT:
            rec = await self._put(http, rng, url, replace(base, key=self._unique(client, seq)))
        elif kind is OpKind.FILE:
            key = f"{self.config.key_prefix}f-{client}-{seq}"
            rec = await self._file(http, rng, url, replace(base, bucket=self.config.files_bucket,
                                                            key=key))
        elif kind is OpKind.RMW:
            key = rng.choice(self.shared)[1]
            rec = await self._rmw(http, url, replace(base, key=key,
                                                     element=f"c{client}-{seq}"))
        else:
            rec = await self._get(http, url, replace(base, key=self._readable(rng)))
        self._record(rec)

    def _unique(self, client: int, seq: int) -> str:
        key = f"{self.config.key_prefix}u-{client}-{seq}"
        self._written.append((self.config.bucket, key))
        return key

    def _readable(self, rng: random.Random) -> str:
        pool = self._written or self.shared
        return rng.choice(pool)[1] if rng.random() < 0.8 else rng.choice(self.shared)[1]

    def _record(self, rec: OpRecord) -> None:
        self.records.append(rec)
        if self._out is not None:
            write_jsonl(self._out, rec)
            self._out.flush()

    # --- the operations ----------------------------------------------------------------

    async def _put(self, http: aiohttp.ClientSession, rng: random.Random, url: str,
                   rec: OpRecord) -> OpRecord:
        low, high = self.config.value_bytes
        write_id = f"w{rec.id}"
        value = encode_value(write_id, rng.randbytes(rng.randint(low, high)))
        share = self.config.w_all_share  # drawn only when used: other runs keep their seeds
        query = "?w=all" if share and rng.random() < share else ""
        reply = await _send(http, "PUT", f"{url}/v1/kv/{rec.bucket}/{rec.key}{query}", value)
        return replace(rec, end=self.now(), outcome=reply.outcome, status=reply.status,
                       write_id=write_id, value_hash=sha256(value), context=reply.context,
                       error=reply.error)

    async def _file(self, http: aiohttp.ClientSession, rng: random.Random, url: str,
                    rec: OpRecord) -> OpRecord:
        low, high = self.config.file_bytes
        write_id = f"w{rec.id}"
        value = encode_value(write_id, rng.randbytes(rng.randint(low, high)))
        reply = await _send(http, "PUT", f"{url}/v1/files/{rec.bucket}/{rec.key}", value)
        return replace(rec, end=self.now(), outcome=reply.outcome, status=reply.status,
                       write_id=write_id, value_hash=sha256(value), error=reply.error)

    async def _get(self, http: aiohttp.ClientSession, url: str, rec: OpRecord) -> OpRecord:
        reply = await _send(http, "GET", f"{url}/v1/kv/{rec.bucket}/{rec.key}")
        return replace(rec, end=self.now(), outcome=reply.outcome, status=reply.status,
                       context=reply.context, siblings=len(reply.values),
                       read_hashes=tuple(sha256(v) for v in reply.values), error=reply.error)

    async def _rmw(self, http: aiohttp.ClientSession, url: str, rec: OpRecord) -> OpRecord:
        path = f"{url}/v1/kv/{rec.bucket}/{rec.key}"
        read = await _send(http, "GET", path)
        rec = replace(rec, read_status=read.status, siblings=len(read.values),
                      read_hashes=tuple(sha256(v) for v in read.values))
        if read.outcome is not Outcome.OK:
            # nothing was written: whatever happened to the read, the update failed cleanly
            return replace(rec, end=self.now(), outcome=Outcome.FAILED,
                           error=f"read: {read.error or read.status}")
        elements: set[str] = {rec.element or ""}
        for value in read.values:
            elements |= decode_set(value) or frozenset()
        write_id = f"w{rec.id}"
        value = encode_set(write_id, elements)
        headers = {CONTEXT: read.context} if read.context else {}
        reply = await _send(http, "PUT", path, value, headers)
        return replace(rec, end=self.now(), outcome=reply.outcome, status=reply.status,
                       write_id=write_id, value_hash=sha256(value), context=read.context,
                       error=reply.error)


# --- HTTP ----------------------------------------------------------------------------------


async def _send(http: aiohttp.ClientSession, method: str, url: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> _Reply:
    """One request, classified; never raises for network trouble."""
    try:
        async with http.request(method, url, data=body, headers=headers) as resp:
            payload = await resp.read()
            return _classify(method, resp.status, resp.headers.get(CONTEXT), payload)
    except aiohttp.ClientConnectorError as exc:
        return _Reply(Outcome.FAILED, error=f"connect: {exc}")
    except TimeoutError:
        return _Reply(Outcome.INDETERMINATE, error="timeout")
    except (aiohttp.ClientError, OSError) as exc:
        return _Reply(Outcome.INDETERMINATE, error=f"{type(exc).__name__}: {exc}")


def _classify(method: str, status: int, context: str | None, payload: bytes) -> _Reply:
    if method != "GET":
        outcome = Outcome.OK if 200 <= status < 300 else Outcome.FAILED
        error = None if outcome is Outcome.OK else payload[:300].decode("utf-8", "replace")
        return _Reply(outcome, status, context, error=error)
    if status not in READ_OK:
        return _Reply(Outcome.FAILED, status, context,
                      error=payload[:300].decode("utf-8", "replace"))
    try:
        values, context = parse_read(status, context, payload)
    except (ValueError, KeyError, TypeError) as exc:
        return _Reply(Outcome.FAILED, status, context, error=f"unreadable 300 body: {exc!r}")
    return _Reply(Outcome.OK, status, context, values)


def parse_read(status: int, context: str | None,
               payload: bytes) -> tuple[tuple[bytes, ...], str | None]:
    """The live values and the context of a GET answer (200, 300 or 404)."""
    if status == 200:
        return (payload,), context
    if status == 404:
        return (), context
    doc = json.loads(payload)
    values = tuple(base64.b64decode(s["value_b64"]) for s in doc["siblings"])
    return values, doc.get("context") or context
