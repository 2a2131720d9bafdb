"""Garbage collection of chunks, and retention of file versions, in the background.

One round on one node (``run_once``; the files-gc worker repeats it every ``interval_s``, jittered):

1. ``started`` = now; ``cutoff`` = started - grace.
2. List every version key of every file from *every* member (current and previous rings). Any
   member that does not answer ends the round: a version it alone listed would look
   unreferenced. (The ordinary listing tolerates N-1 silent members; deleting data must not.)
3. Retention: for the files this node stewards (the primary of the partition their version
   prefix hashes to, so one node per file does it), remove the versions the rule prunes and
   delete markers with nothing left to hide.
4. Candidates: this node's chunks not written or touched since ``cutoff``. None: done.
5. References: the chunk lists of every listed version with chunks (manifests read with R; any
   failure ends the round). Versions removed in step 3 still count; their chunks go next round.
6. Delete each candidate that is not referenced and, checked again under the chunk store's
   lock, still untouched since ``cutoff`` (dfsring.files.versions.collectable).

Why a chunk an upload relies on is never deleted. An upload touches every chunk it finds
already stored (ChunkHave with touch) and writes new ones (mtime = now); while it runs it
touches all its chunks again every grace/3, and once more before it writes its manifest if
the last time was longer ago than that (dfsring.files.upload.ChunkPipeline). Touching and
writing the manifest take at most a few request timeouts, so run with a grace well above
that (default 1 h; at least 3 x --request-timeout). Take an upload whose manifest M is
written at time t_m relying on chunk c last touched at t_c > t_m - grace. If the round's listing
(which starts after ``started``) missed M, then t_m > started, so t_c > started - grace = cutoff
and step 6 keeps c. If the listing saw M, c is referenced. Either way c survives. Only
comparisons of c's mtime with this node's clock are involved, so clock skew between nodes
does not matter.

Cost, and why a scan rather than reference counts. A round reads every version key of the
cluster (one listing per member) and, only when this node has old unreferenced-looking chunks,
every manifest with chunks (one quorum read each). That is O(versions) per node per round: fine
for up to ~10^5 versions at the default interval; beyond, per-chunk reference records written
with each manifest (Garage's block_ref table) would make it O(changes), at the price of a
second write per chunk per upload and their own garbage collection. The scan cannot drift:
there is no counter to get wrong after a crash. Memory: the listing, plus at most
``max_candidates`` chunk ids.

Other references (``extra_references``): chunks a layer above holds without a version yet (the
S3 layer's multipart parts) are asked for at the start of a round, *before* the version
listing: a reference that moves from such a record to a version (a multipart completion
writes the manifest, then removes the part records) is then seen in one or the other. Any
failure of that call ends the round like a silent member.

Retention and S3 (``retention_exempt``): the --keep-versions/--keep-days rule is not applied
to the files of a bucket the hook names (S3 buckets whose versioning is Enabled or
Suspended: a versioned bucket's user expects no silent pruning); superseded null versions
(dfsring.files.versions.visible) are removed everywhere.

Anti-entropy of chunks (re-replicating a chunk to an owner that lacks it) is
dfsring.files.chunksync; it asks ``referenced_among`` before it copies a chunk older than the
grace period, so that it never brings back garbage another owner has just collected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from dfsring.core import keys, manifest
from dfsring.core.clusterview import ViewSource
from dfsring.files import chunkstore
from dfsring.files import versions as fv
from dfsring.files.chunkstore import ChunkStore
from dfsring.files.service import FileService, system_name
from dfsring.files.versions import Kind, Retention, VersionRef
from dfsring.foundation import errors
from dfsring.transport import RpcError, Transport
from dfsring.transport.messages import ListKeys, ListKeysReply

log = logging.getLogger("dfsring.files.gc")
PAGE = 10_000
MAX_PAGES = 1_000
MANIFEST_READS = 16  # in parallel
LocalList = Callable[[bytes, bytes, bytes | None, int], list[tuple[bytes, bytes]]]
_SYSTEM = fv.SYSTEM_BUCKET.encode()


@dataclass(frozen=True)
class GcSettings:
    grace_s: float
    interval_s: float
    retention: Retention
    max_candidates: int = 100_000
    batch: int = 1_000  # chunk deletions per thread hop


@dataclass
class GcReport:
    versions_listed: int = 0
    versions_pruned: int = 0
    candidates: int = 0
    referenced: int = 0
    deleted: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    skipped: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class IncompleteScan(Exception):
    """A member or a manifest did not answer: this round deletes nothing. Internal control
    flow (run_once turns it into the report's ``skipped``), so not in dfsring.foundation.errors."""


class FileGC:
    def __init__(self, *, node_id: str, store: ChunkStore, files: FileService,
                 views: ViewSource, rpc: Transport, local_list: LocalList,
                 settings: GcSettings, deadline_s: float,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.node_id = node_id
        self.store = store
        self.files = files
        self.views = views
        self.rpc = rpc
        self.local_list = local_list
        self.settings = settings
        self.deadline_s = deadline_s
        self.ready = ready
        self.last: GcReport | None = None
        self._lock = asyncio.Lock()
        self.extra_references: Callable[[], Awaitable[set[bytes]]] | None = None
        self.retention_exempt: Callable[[str], Awaitable[bool]] | None = None

    async def run_once(self) -> GcReport:
        """One round (module docstring); rounds never overlap."""
        async with self._lock:
            report = GcReport(bytes_before=self.store.stats.bytes)
            try:
                await self._round(report)
            except IncompleteScan as exc:
                report.skipped = str(exc)
            report.bytes_after = self.store.stats.bytes
            self.last = report
            return report

    async def _round(self, report: GcReport) -> None:
        if not self.ready():
            raise IncompleteScan("this node has not joined a cluster yet")
        started = chunkstore.now()
        cutoff = started - self.settings.grace_s
        extra = await self._extra_references()
        refs = await self._list_all()
        report.versions_listed = len(refs)
        report.versions_pruned = await self._retention(refs)
        candidates = await asyncio.to_thread(self.store.older_than, cutoff,
                                             self.settings.max_candidates)
        report.candidates = len(candidates)
        if not candidates:
            return
        referenced = await self._referenced(refs, set(candidates))
        referenced |= extra & set(candidates)
        report.referenced = len(referenced)
        garbage = fv.collectable(candidates, referenced, cutoff)
        for start in range(0, len(garbage), self.settings.batch):
            report.deleted += await asyncio.to_thread(
                self.store.delete_if_older, garbage[start:start + self.settings.batch], cutoff)
        self.files.metrics.collected.inc(report.deleted)
        if report.deleted:
            log.info("unreferenced chunks deleted", extra={"fields": {
                "deleted": report.deleted, "candidates": report.candidates,
                "freed": report.bytes_before - self.store.stats.bytes}})

    async def _extra_references(self) -> set[bytes]:
        if self.extra_references is None:
            return set()
        try:
            return await self.extra_references()
        except (errors.DfsError, RpcError, ValueError) as exc:
            raise IncompleteScan(f"other chunk references unreadable: "
                                 f"{errors.describe(exc)}") from exc

    # --- the strict listing ----------------------------------------------------------------

    async def _list_all(self, *, strict: bool = True) -> list[VersionRef]:
        """Every version key of every member; ``strict``: IncompleteScan if one is silent."""
        rings = self.views.cluster_view().rings
        members = dict.fromkeys(n for ring in rings for n in ring.node_ids())
        lists = await asyncio.gather(*(self._list_member(m) for m in members),
                                     return_exceptions=True)
        found: set[bytes] = set()
        for member, listed in zip(members, lists, strict=True):
            if isinstance(listed, BaseException):
                if not strict:
                    continue
                raise IncompleteScan(f"member {member} did not list its file versions: "
                                     f"{errors.describe(listed)}")
            found.update(listed)
        return fv.parse_keys(k.decode("utf-8", "replace") for k in sorted(found))

    async def _list_member(self, member: str) -> list[bytes]:
        out: list[bytes] = []
        after: bytes | None = None
        for _ in range(MAX_PAGES):
            if member == self.node_id:
                page = self.local_list(_SYSTEM, b"", after, PAGE)
            else:
                reply = await self.rpc.call(self.views.cluster_view().address_of(member),
                                            ListKeys(_SYSTEM, b"", after, PAGE), ListKeysReply,
                                            self.deadline_s)
                page = list(reply.items)
            out += [full for _, full in page]
            if len(page) < PAGE:
                return out
            after = page[-1][0]
        raise IncompleteScan(f"member {member} lists more than {PAGE * MAX_PAGES} versions")

    # --- retention -------------------------------------------------------------------------

    async def _retention(self, refs: list[VersionRef]) -> int:
        ring = self.views.cluster_view().ring
        removed = 0
        for (bucket, path), group in fv.by_path(refs).items():
            part = keys.partition_of(_SYSTEM, fv.path_prefix(bucket, path).encode(),
                                     ring.partition_bits)
            steward = ring.preference_list(part)[:1]
            if steward != (self.node_id,):
                continue
            doomed = fv.superseded_nulls(group)
            if not doomed and not await self._exempt(bucket):
                doomed = fv.lone_markers(group)
                if not doomed and not self.settings.retention.keeps_all:
                    doomed = fv.retention(group, self.settings.retention,
                                          int(chunkstore.now() * 1000))[1]
            removed += await self._remove_all(doomed)
        return removed

    async def _exempt(self, bucket: str) -> bool:
        """Whether the bucket's versions are kept whatever the retention rule (an S3
        versioned bucket); when its settings cannot be read, kept this round."""
        if self.retention_exempt is None:
            return False
        try:
            return await self.retention_exempt(bucket)
        except (errors.DfsError, RpcError) as exc:
            log.info("retention skipped: bucket settings unreadable", extra={"fields": {
                "bucket": bucket, "error": errors.describe(exc)}})
            return True

    async def _remove_all(self, doomed: Iterable[VersionRef]) -> int:
        removed = 0
        for ref in doomed:
            try:
                await self.files.remove_version(ref)
                self.files.metrics.versions_pruned.inc()
                removed += 1
            except (errors.DfsError, RpcError) as exc:
                log.info("a version could not be pruned (next round)", extra={"fields": {
                    "key": ref.key, "error": errors.describe(exc)}})
        return removed

    # --- references ------------------------------------------------------------------------

    async def referenced_among(self, ids: set[bytes]) -> set[bytes]:
        """Which of ``ids`` some kept version references (dfsring.files.chunksync asks before
        it re-replicates a chunk older than the grace period: garbage must not be spread
        again). Silent members are skipped: a version missed here only delays a copy, while
        for a deletion (``_round``) it would lose data. IncompleteScan if a manifest is
        unreadable."""
        extra = await self._extra_references()
        return extra & ids | await self._referenced(await self._list_all(strict=False), ids)

    async def _referenced(self, refs: list[VersionRef], candidates: set[bytes]) -> set[bytes]:
        chunked = [r for r in refs if r.kind is Kind.CHUNKED]
        limit = asyncio.Semaphore(MANIFEST_READS)

        async def chunks_of(ref: VersionRef) -> set[bytes]:
            async with limit:
                return await self._chunks_of(ref)

        found = await asyncio.gather(*(chunks_of(r) for r in chunked), return_exceptions=True)
        referenced: set[bytes] = set()
        for ref, ids in zip(chunked, found, strict=True):
            if isinstance(ids, BaseException):
                raise IncompleteScan(f"manifest {ref.key!r} unreadable: {errors.describe(ids)}")
            referenced |= ids & candidates
        return referenced

    async def _chunks_of(self, ref: VersionRef) -> set[bytes]:
        versions = await self.files.coordinator.get(system_name(ref.key),
                                                    r=self.files.settings.r)
        ids: set[bytes] = set()
        for sibling in versions.live():  # (normally one: a version key is written once)
            ids.update(c.digest for c in manifest.decode(sibling.value or b"").chunks)
        return ids

