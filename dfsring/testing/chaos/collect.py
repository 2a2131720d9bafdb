"""Gathering the observed final state from the nodes' public API, with deadlines.

The I/O half of the checker: everything here is HTTP against the nodes (no shortcut into
their data dirs, so it works against any deployment), every call has a timeout, every wait
polls against a deadline. What the state *means* is decided by the pure
:func:`dfsring.testing.chaos.checker.check` and the pure helpers below
(:func:`owners`, :func:`convergence_problems`).

Typical use after the faults are healed::

    conv = await wait_converged(urls, placed=acked, within_s=60)
    result = await observe(urls, workload.keys(), placed=acked,
                           replicas=ReplicaCheck.AFTER_READ_REPAIR)
    report = check(workload.records, result.observed, options)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp

from dfsring.core import keys as keyspace
from dfsring.testing.chaos.checker import Key, KeyRead, NodeView, Observed
from dfsring.testing.chaos.workload import READ_OK, parse_read

HTTP_TIMEOUT = 10.0
POLL_INTERVAL = 0.5
READ_CONCURRENCY = 16
LIST_LIMIT = 10_000


class ReplicaCheck(StrEnum):
    """When "stored locally on all owners" is looked at."""

    AFTER_CONVERGENCE = "after-convergence"  # before any final read: replication alone
    AFTER_READ_REPAIR = "after-read-repair"  # after the final reads through every node
    OFF = "off"  # collected (after convergence) and reported, not enforced

    @property
    def enforced(self) -> bool:
        return self is not ReplicaCheck.OFF


@dataclass(frozen=True)
class Snapshot:
    """Each node's ring, stats and local keys at one moment; `ring` is one node's full
    ring document (for owners), None if no node answered."""

    views: Mapping[str, NodeView]
    ring: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Convergence:
    converged: bool
    seconds: float
    problems: tuple[str, ...] = ()  # what was still wrong at the deadline
    initially: tuple[str, ...] = ()  # what was wrong at the first poll (what took the time)


@dataclass(frozen=True)
class Observation:
    observed: Observed
    under_replicated_before_reads: int  # (key, owner) pairs missing before any final read
    repair_wait_s: float | None = None  # AFTER_READ_REPAIR: time until placed (None: never)
    problems_before_reads: tuple[str, ...] = field(default=())


# --- pure helpers --------------------------------------------------------------------------


def owners(ring: Mapping[str, Any], wanted: Collection[Key]) -> dict[Key, tuple[str, ...]]:
    """Each key's preference list under a GET /v1/cluster/ring document."""
    bits = int(ring["partitions"]).bit_length() - 1
    table = ring["owners"]
    return {(b, k): tuple(table[str(keyspace.partition_of(b.encode(), k.encode(), bits))])
            for b, k in wanted}


def placement_gaps(snap: Snapshot, placed: Collection[Key]) -> list[str]:
    """(key, owner) pairs where an acknowledged key is not stored locally."""
    if not placed:
        return []
    if snap.ring is None:
        return ["no ring to compute owners from"]
    gaps = []
    for key, nodes in sorted(owners(snap.ring, placed).items()):
        for node in nodes:
            local = snap.views.get(node, NodeView()).local_keys
            if local is None or key not in local:
                gaps.append(f"{key[0]}/{key[1]} not on owner {node}")
    return gaps


def convergence_problems(snap: Snapshot, placed: Collection[Key] = ()) -> list[str]:
    """Why the cluster is not converged yet: empty when every node answers with one ring,
    none is in transition, every hint and transfer queue is empty and (if `placed` is given)
    every one of those keys is stored on all its owners."""
    problems = []
    rings = {v.ring for v in snap.views.values()}
    for node, view in sorted(snap.views.items()):
        if view.error:
            problems.append(f"{node}: {view.error}")
        if view.in_transition:
            problems.append(f"{node}: in transition")
        if view.hints_pending or view.transfers_pending:
            problems.append(f"{node}: hints {view.hints_pending}, transfers "
                            f"{view.transfers_pending}")
    if len(rings) > 1:
        problems.append(f"{len(rings)} different rings")
    gaps = placement_gaps(snap, placed)
    if gaps:
        problems.append(f"{len(gaps)} replicas missing, e.g. {gaps[0]}")
    return problems


# --- HTTP ----------------------------------------------------------------------------------


async def _get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as resp:
        if resp.status != 200:
            raise OSError(f"GET {url}: HTTP {resp.status}")
        return await resp.json(content_type=None)


async def _local_keys(http: aiohttp.ClientSession, url: str, bucket: str) -> set[Key]:
    out: set[Key] = set()
    cursor: str | None = None
    while True:
        path = f"{url}/v1/node/local/kv/{bucket}?limit={LIST_LIMIT}"
        page = await _get_json(http, path + (f"&cursor={cursor}" if cursor else ""))
        out.update((bucket, k) for k in page["keys"])
        cursor = page["cursor"]
        if not cursor:
            return out


async def _node_view(http: aiohttp.ClientSession, url: str,
                     buckets: Sequence[str]) -> tuple[NodeView, Any]:
    try:
        ring = await _get_json(http, f"{url}/v1/cluster/ring")
        stats = await _get_json(http, f"{url}/v1/node/stats")
        local: set[Key] = set()
        for bucket in buckets:
            local |= await _local_keys(http, url, bucket)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
        return NodeView(error=f"{type(exc).__name__}: {exc}"), None
    return NodeView(ring=(int(ring["epoch"]), str(ring["hash"])),
                    in_transition=bool(ring.get("in_transition")),
                    hints_pending=_count(stats.get("hints_pending")),
                    transfers_pending=_count(stats.get("transfers_pending")),
                    local_keys=frozenset(local), cluster=_text(ring.get("cluster")),
                    members=_members(ring)), ring


def _text(raw: Any) -> str | None:
    return None if raw is None else str(raw)


def _members(ring: Mapping[str, Any]) -> frozenset[str] | None:
    members = ring.get("members")
    if not isinstance(members, list):
        return None
    return frozenset(str(m["node_id"]) if isinstance(m, dict) else str(m) for m in members)


def _count(raw: Any) -> int | None:
    return None if raw is None else int(raw)


async def snapshot(http: aiohttp.ClientSession, urls: Mapping[str, str],
                   buckets: Sequence[str]) -> Snapshot:
    """Every node's view, fetched concurrently (each call bounded by HTTP_TIMEOUT)."""
    names = sorted(urls)
    got = await asyncio.gather(*(_node_view(http, urls[n], buckets) for n in names))
    rings = [ring for _, ring in got if ring is not None]
    return Snapshot({n: view for n, (view, _) in zip(names, got, strict=True)},
                    rings[0] if rings else None)


async def read_all(http: aiohttp.ClientSession, urls: Mapping[str, str], wanted: Collection[Key],
                   deadline: float,
                   files: Collection[str] = ()) -> dict[str, dict[Key, KeyRead]]:
    """Every key read through every node (default R), READ_CONCURRENCY at a time; keys of a
    bucket in `files` are files, read whole through the files API. Reads not answered by
    `deadline` (time.monotonic()) are recorded as unanswered."""
    sem = asyncio.Semaphore(READ_CONCURRENCY)
    out: dict[str, dict[Key, KeyRead]] = {n: {} for n in urls}

    async def one(node: str, key: Key) -> None:
        api = "files" if key[0] in files else "kv"
        async with sem:
            out[node][key] = await _read(http, f"{urls[node]}/v1/{api}/{key[0]}/{key[1]}",
                                         deadline)

    await asyncio.gather(*(one(n, k) for n in sorted(urls) for k in sorted(wanted)))
    return out


async def _read(http: aiohttp.ClientSession, url: str, deadline: float) -> KeyRead:
    budget = min(HTTP_TIMEOUT, deadline - time.monotonic())
    if budget <= 0:
        return KeyRead(None, error="collector deadline passed before this read")
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=budget)) as resp:
            payload = await resp.read()
            if resp.status not in READ_OK:
                return KeyRead(None, error=f"HTTP {resp.status}: {payload[:200]!r}")
            if "/v1/files/" in url:  # a file: its bytes, or nothing (no siblings)
                return KeyRead(resp.status, (payload,) if resp.status == 200 else ())
            values, _ = parse_read(resp.status, resp.headers.get("Dfs-Context"), payload)
            return KeyRead(resp.status, values)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
        return KeyRead(None, error=f"{type(exc).__name__}: {exc}")


def _session(headers: Mapping[str, str] | None) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=READ_CONCURRENCY * 2),
                                 headers=dict(headers or {}))


# --- waits and the whole observation -----------------------------------------------------


async def wait_converged(urls: Mapping[str, str], *, within_s: float,
                         placed: Collection[Key] = (),
                         buckets: Sequence[str] = ("chaos",),
                         headers: Mapping[str, str] | None = None) -> Convergence:
    """Poll until :func:`convergence_problems` is empty or `within_s` passes; never raises for
    a cluster that does not converge (the checker reports what is still wrong). `headers`
    authenticate every call (the cluster's credentials)."""
    start = time.monotonic()
    first: tuple[str, ...] | None = None
    async with _session(headers) as http:
        while True:
            problems = convergence_problems(await snapshot(http, urls, buckets), placed)
            first = tuple(problems) if first is None else first
            elapsed = time.monotonic() - start
            if not problems:
                return Convergence(True, elapsed, (), first)
            if elapsed >= within_s:
                return Convergence(False, elapsed, tuple(problems), first)
            await asyncio.sleep(min(POLL_INTERVAL, within_s - elapsed))


async def observe(urls: Mapping[str, str], wanted: Collection[Key], *,
                  placed: Collection[Key] = (), replicas: ReplicaCheck = ReplicaCheck.OFF,
                  read_timeout: float = 60.0, repair_timeout: float = 30.0,
                  buckets: Sequence[str] = ("chaos",),
                  files: Collection[str] = (),
                  headers: Mapping[str, str] | None = None) -> Observation:
    """Snapshot every node, read every key through every node, and (AFTER_READ_REPAIR) poll
    the local listings until the `placed` keys are on all their owners or `repair_timeout`
    passes; returns the Observed state for the checker."""
    async with _session(headers) as http:
        before = await snapshot(http, urls, buckets)
        gaps = placement_gaps(before, placed)
        reads = await read_all(http, urls, wanted, time.monotonic() + read_timeout, files)
        after, repair_s = before, None
        if replicas is ReplicaCheck.AFTER_READ_REPAIR:
            after, repair_s = await _until_placed(http, urls, buckets, placed, repair_timeout)
    ring = after.ring or before.ring
    return Observation(Observed(reads, after.views, owners(ring, wanted) if ring else {}),
                       len(gaps), repair_s, tuple(convergence_problems(before, placed)))


async def _until_placed(http: aiohttp.ClientSession, urls: Mapping[str, str],
                        buckets: Sequence[str], placed: Collection[Key],
                        within_s: float) -> tuple[Snapshot, float | None]:
    start = time.monotonic()
    while True:
        snap = await snapshot(http, urls, buckets)
        elapsed = time.monotonic() - start
        if not placement_gaps(snap, placed):
            return snap, elapsed
        if elapsed >= within_s:
            return snap, None
        await asyncio.sleep(min(POLL_INTERVAL, within_s - elapsed))
