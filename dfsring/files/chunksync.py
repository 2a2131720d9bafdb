"""Anti-entropy and scrubbing for chunks: keep every chunk on its owners, and sound.

File manifests are keys and the key/value anti-entropy (dfsring.antientropy) repairs them; chunks
are files under ``<data-dir>/chunks`` that it never sees. An upload leaves a chunk on W owners
at least; an owner that was down, lost its disk or holds a rotten copy must get it back with no
client read, and a fallback that stood in for a down owner (sloppy quorum) or an old owner after
a ring change must hand its copy over and then let it go. Two loops on every node do it, each a
bounded, rate-limited pass over this node's own chunks (Swift's object replicator and auditor;
Garage's block resync and scrub workers):

Sync pass (``sync_once``, every --chunk-sync-interval, jittered; the first one interval after
start, when the failure detector knows the peers). In batches of HAVE_BATCH local chunks:

1. group the ids by owner under the current ring (dfsring.files.placement.sync_plan) and ask
   every other owner that is alive which it holds (ChunkHave without touch: looking must not
   keep garbage alive);
2. copy each chunk some owner lacks to it, if this node is the holder that does
   (placement.pushes: the first owner in preference order that has it, else a stray holder;
   so a wiped owner receives each chunk once, not N-1 times): read once, verified (a rotten
   local copy is never spread; it is replaced like a scrub finding), at most PUSHES_IN_FLIGHT
   chunks at once and --ae-rate bytes/s, so memory is a few chunks whatever the store holds;
3. strays (chunks held here that this node does not own) are deleted once every owner has
   confirmed it holds them, if the ring is settled (no previous ring: reads may still look
   here during a transition) and unchanged since the pass began, and only if the local copy
   was not written or touched for --gc-grace: an upload in flight that relies on this copy
   touches it every grace/3 (dfsring.files.gc), and ``delete_if_older`` checks the mtime
   under the store's lock, atomically with respect to that touch.

Why old chunks are copied only if referenced. Each node's collector deletes its own copy of a
garbage chunk (unreferenced, untouched for the grace period) in its own round, and the rounds
of the owners are not aligned. If this pass copied every chunk an owner lacks, the owner that
collected first would get the garbage back from one that had not yet, and so on around the
owners forever. So a chunk younger than the grace period (it may belong to an upload in flight)
is always copied, and an older one only if a kept version references it
(``FileGC.referenced_among``: one listing of the version keys, plus the manifests with chunks;
paid only in a pass that found old chunks missing somewhere, for at most MAX_OLD of them).

Scrub pass (``scrub_once``, every --scrub-interval, jittered, the first one interval after
start): re-read every local chunk against its id at --scrub-rate bytes/s. A bad copy is deleted
by the chunk store and replaced at once by a good one from another holder
(ChunkReplicator.get, which tries every node that may have it and returns verified bytes).

A pass that fails is logged and its loop goes on: the loops never die. Cost of a sync
pass with nothing to do: one directory walk plus one ChunkHave of the node's ids per other
owner (34 bytes an id).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dfsring.core.clusterview import ViewSource
from dfsring.files import chunkstore, placement
from dfsring.files.chunks import HAVE_BATCH
from dfsring.files.chunkstore import Buffer, ChunkInfo, ChunkStore
from dfsring.files.metrics import SYNC, FileMetrics
from dfsring.foundation import errors
from dfsring.replication.transfers import TokenBucket
from dfsring.ring import Ring
from dfsring.transport import RpcError

log = logging.getLogger("dfsring.files.chunksync")
PUSHES_IN_FLIGHT = 4  # chunks read and being sent at once: memory is this many chunks
MAX_OLD = 100_000  # old chunks missing somewhere whose references one pass checks
_FAILURES = (RpcError, errors.DfsError, OSError)


class Replicas(Protocol):
    """What the passes need of dfsring.files.chunks.ChunkReplicator."""

    async def present_on(self, node: str, ids: Sequence[bytes], *,
                         touch: bool) -> list[bytes]: ...

    async def send(self, node: str, cid: bytes, data: Buffer, *,
                   repair: bool = False) -> bool: ...

    async def get(self, cid: bytes) -> Buffer: ...


Referenced = Callable[[set[bytes]], Awaitable[set[bytes]]]


@dataclass(frozen=True)
class SyncSettings:
    interval_s: float
    rate: int  # bytes/s pushed (--ae-rate)
    grace_s: float  # --gc-grace
    scrub_interval_s: float
    scrub_rate: int  # bytes/s read by a scrub pass


@dataclass
class PassReport:
    """One sync pass (``skipped``: why it did nothing)."""

    checked: int = 0
    pushed: int = 0
    bytes_pushed: int = 0
    failed: int = 0
    dropped: int = 0
    old_unreferenced: int = 0
    skipped: str = ""
    silent: set[str] = field(default_factory=set)  # failed once: left alone until next pass


@dataclass
class _Batch:
    """One batch's state: who confirmed holding what, and what each chunk still lacks."""

    plan: placement.SyncPlan
    mtime: dict[bytes, float]
    held: dict[str, set[bytes]] = field(default_factory=dict)
    lacking: dict[bytes, list[str]] = field(default_factory=dict)


class ChunkSync:
    def __init__(self, *, node_id: str, store: ChunkStore, replicas: Replicas,
                 views: ViewSource, settings: SyncSettings, metrics: FileMetrics,
                 referenced: Referenced, ready: Callable[[], bool] = lambda: True,
                 now: Callable[[], float] = chunkstore.now) -> None:
        self.node_id = node_id
        self.store = store
        self.replicas = replicas
        self.views = views
        self.settings = settings
        self.metrics = metrics
        self.referenced = referenced
        self.ready = ready
        self.now = now
        self.push_bucket = TokenBucket(settings.rate)
        self.scrub_bucket = TokenBucket(settings.scrub_rate)
        self.counts: dict[str, int] = dict.fromkeys((name for name, _ in SYNC), 0)
        self.last: PassReport | None = None
        self._last_pass: float | None = None  # time.monotonic() at the end of a pass
        self._last_scrub: float | None = None
        self._sync_lock = asyncio.Lock()
        self._scrub_lock = asyncio.Lock()

    def _count(self, name: str, amount: int = 1) -> None:
        if amount:
            self.counts[name] += amount
            self.metrics.count_sync(name, amount)

    def stats_json(self) -> dict[str, Any]:
        """The counters since start, and how long ago the last passes ended (None: never)."""
        clock = time.monotonic()
        return {**self.counts,
                "last_pass_age_s": _age(clock, self._last_pass),
                "last_scrub_age_s": _age(clock, self._last_scrub)}

    # --- the sync pass ---------------------------------------------------------------------

    async def sync_once(self) -> PassReport:
        """One pass over this node's chunks (module docstring); passes never overlap."""
        async with self._sync_lock:
            report = PassReport()
            if not self.ready():
                report.skipped = "this node has not joined a cluster yet"
                return report
            ring = self.views.cluster_view().ring
            cutoff = self.now() - self.settings.grace_s
            old: dict[bytes, list[str]] = {}  # lacking somewhere, older than the grace
            async for infos in self._batches(HAVE_BATCH):
                await self._sync_batch(infos, ring, cutoff, old, report)
            if old:
                await self._push_referenced(old, report)
            self._count("chunk_sync_passes")
            self._last_pass = time.monotonic()
            self.last = report
            if report.pushed or report.dropped or report.failed:
                log.info("chunk anti-entropy pass", extra={"fields": {
                    "checked": report.checked, "pushed": report.pushed,
                    "bytes": report.bytes_pushed, "failed": report.failed,
                    "dropped": report.dropped}})
            return report

    async def _sync_batch(self, infos: list[ChunkInfo], ring: Ring, cutoff: float,
                          old: dict[bytes, list[str]], report: PassReport) -> None:
        """Steps 1-3 for one batch; old chunks are only noted, for the end of the pass."""
        report.checked += len(infos)
        batch = await self._survey(infos, ring, report.silent)
        young = {c: n for c, n in batch.lacking.items() if batch.mtime[c] >= cutoff}
        for cid in batch.lacking.keys() - young.keys():
            if len(old) < MAX_OLD:
                old[cid] = batch.lacking[cid]
        await self._push_all(young, batch.held, report)
        report.dropped += await self._drop_strays(batch, ring, cutoff)

    async def _batches(self, size: int) -> AsyncIterator[list[ChunkInfo]]:
        """This node's chunks, ``size`` at a time, the directory walk in a worker thread."""
        found = self.store.iter_chunks()
        while infos := await asyncio.to_thread(_take, found, size):
            yield infos

    async def _survey(self, infos: list[ChunkInfo], ring: Ring, silent: set[str]) -> _Batch:
        """Ask every other live owner which of the batch's chunks it holds. One that fails
        is not asked again in this pass (each call could cost a whole request timeout)."""
        batch = _Batch(placement.sync_plan((i.cid for i in infos), ring, self.node_id),
                       {i.cid: i.mtime for i in infos})
        for node, ids in batch.plan.peers.items():
            if node in silent or not self.views.cluster_view().is_alive(node):
                continue
            try:
                present = set(await self.replicas.present_on(node, ids, touch=False))
            except _FAILURES as exc:
                silent.add(node)
                log.info("an owner did not say which chunks it holds", extra={"fields": {
                    "owner": node, "error": errors.describe(exc)}})
                continue
            batch.held[node] = present
            for cid in ids:
                if cid not in present:
                    batch.lacking.setdefault(cid, []).append(node)
        for cid in [c for c in batch.lacking
                    if not placement.pushes(c, ring, self.node_id, batch.held)]:
            del batch.lacking[cid]  # another holder sends it
        return batch

    async def _push_referenced(self, old: dict[bytes, list[str]], report: PassReport) -> None:
        try:
            live = await self.referenced(set(old))
        except Exception as exc:  # a listing or a manifest read failed: next pass
            log.info("old chunks not copied: their references are unknown", extra={"fields": {
                "chunks": len(old), "error": errors.describe(exc)}})
            return
        report.old_unreferenced += len(old) - len(live)
        await self._push_all({c: n for c, n in old.items() if c in live}, {}, report)

    async def _push_all(self, lacking: dict[bytes, list[str]], held: dict[str, set[bytes]],
                        report: PassReport) -> None:
        """Copy each chunk to the owners that lack it, PUSHES_IN_FLIGHT chunks at once; what
        arrived is added to ``held``."""
        work = iter(lacking.items())

        async def worker() -> None:
            for cid, nodes in work:  # one iterator shared by the workers
                for node in await self._push(cid, nodes, report):
                    held.setdefault(node, set()).add(cid)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(PUSHES_IN_FLIGHT, len(lacking))):
                group.create_task(worker())

    async def _push(self, cid: bytes, nodes: list[str], report: PassReport) -> list[str]:
        nodes = [n for n in nodes if n not in report.silent]
        if not nodes:
            return []
        try:
            data = await asyncio.to_thread(self.store.get, cid)  # verified
        except errors.CorruptValue:  # deleted by the store: fetch a good copy, push next pass
            await self._restore(cid)
            return []
        if data is None:
            return []  # collected since the walk
        await self.push_bucket.take(len(data) * len(nodes))
        arrived = []
        for node in nodes:
            try:
                await self.replicas.send(node, cid, data)
            except _FAILURES as exc:
                report.failed += 1
                report.silent.add(node)
                log.info("a chunk could not be copied to its owner", extra={"fields": {
                    "owner": node, "chunk": cid.hex(), "error": errors.describe(exc)}})
                continue
            arrived.append(node)
            report.pushed += 1
            report.bytes_pushed += len(data)
            self._count("chunks_pushed")
            self._count("chunk_bytes_pushed", len(data))
        return arrived

    async def _drop_strays(self, batch: _Batch, ring: Ring, cutoff: float) -> int:
        now = self.views.cluster_view()
        if not batch.plan.stray or now.previous or now.ring.hash != ring.hash:
            return 0  # a transition, or the ring changed during the pass: owners may differ
        doomed = placement.droppable(batch.plan.stray, ring, batch.held)
        if not doomed:
            return 0
        dropped = await asyncio.to_thread(self.store.delete_if_older, doomed, cutoff)
        self._count("stray_chunks_dropped", dropped)
        return dropped

    # --- the scrub pass --------------------------------------------------------------------

    async def scrub_once(self) -> int:
        """Re-read every local chunk at --scrub-rate; returns how many were found corrupt."""
        async with self._scrub_lock:
            corrupt = 0
            async for infos in self._batches(1_000):
                for info in infos:
                    await self.scrub_bucket.take(info.size)
                    if await asyncio.to_thread(self.store.verify, info.cid) is False:
                        corrupt += 1
                        await self._restore(info.cid)
            self._count("chunk_scrub_passes")
            self._last_scrub = time.monotonic()
            return corrupt

    async def _restore(self, cid: bytes) -> bool:
        """Replace a copy found corrupt (already deleted) by a good one from another holder."""
        try:
            data = await self.replicas.get(cid)
        except _FAILURES as exc:
            log.warning("a corrupt chunk has no good copy elsewhere (yet)", extra={"fields": {
                "chunk": cid.hex(), "error": errors.describe(exc)}})
            return False
        await asyncio.to_thread(self.store.put, cid, data, verify=False)
        self._count("corrupt_chunks_repaired")
        log.info("corrupt chunk replaced by a good copy", extra={"fields": {
            "chunk": cid.hex()}})
        return True



def _take(found: Iterator[ChunkInfo], size: int) -> list[ChunkInfo]:
    return list(itertools.islice(found, size))


def _age(clock: float, at: float | None) -> float | None:
    return None if at is None else round(clock - at, 1)

