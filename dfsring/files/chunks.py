"""Replicating chunks across their owners, and reading them back verified.

Chunks are immutable and named by their hash, so replication needs none of the causal machinery
of keys: any copy is correct, a write is idempotent and a read needs one good copy.

Write (``put``): the chunk goes to the N owners of its partition (dfsring.files.placement) in
parallel and the call returns once W of them hold it (Dynamo §4.5, as for keys; the quorum is
tracked by dfsring.core.quorum and the replies gathered by the same wait loop,
dfsring.replication.fanout).
Before sending the bytes to a peer, the writer asks it whether it already holds the chunk
(ChunkHave, which also touches it for the collector): a chunk already present is never sent
again, which is what makes storing the same content twice cost nothing.
An owner that is down or fails is replaced by the next live fallback in the ring's order
(sloppy quorum, Dynamo §4.6, picked by dfsring.core.clusterview.FallbackPicker from the view the
write started with); the fallback keeps the chunk as an ordinary chunk (it is immutable,
so no hint is needed) and reads find it there. The remaining owners receive the chunk in the
background, bounded by the request deadline; the caller keeps the chunk's memory until then
(``PutOutcome.tail``), so a slow replica slows uploads down instead of growing memory.

Read (``get``): the holders are tried one at a time in dfsring.files.placement.read_order
(local copy first); each copy is verified against its id where it is consumed, a copy that
fails is skipped, counted, and replaced in the background with the good copy found next
(read repair for chunks); peers serve their bytes unverified to save a hash pass.

Chunk bytes travel as raw payload after a typed message (framed calls, dfsring.transport.rpc), never
inside msgpack: on a 3-node upload that saved six copies of every byte on the coordinator and
two on each replica, and lets a replica write the chunk in the pieces it arrived in.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from dfsring.core.clusterview import ClusterView, FallbackPicker, ViewSource
from dfsring.core.quorum import Outcome, QuorumTracker
from dfsring.files import placement
from dfsring.files.chunkstore import Buffer, ChunkStore
from dfsring.foundation import errors
from dfsring.replication import fanout
from dfsring.replication.background import BackgroundTasks
from dfsring.transport import RpcError, Transport
from dfsring.transport.messages import Ack, ChunkData, ChunkGet, ChunkHave, ChunkHaveReply, ChunkPut

log = logging.getLogger("dfsring.chunks")
MAX_BACKGROUND = 256  # chunk repairs in flight; beyond it a repair is left to anti-entropy
HAVE_BATCH = 10_000  # ids per ChunkHave: 340 KB of message, well under the peer's limit


@dataclass
class PutOutcome:
    """A chunk write that reached W copies: ``holders`` acked so far (each either stored it
    anew or had it), ``new`` whether any of them had to store it (False: deduplicated);
    ``tail`` finishes the other owners."""

    holders: list[str]
    new: bool
    tail: asyncio.Future[None]


class ChunkReplicator:
    def __init__(self, *, node_id: str, store: ChunkStore, views: ViewSource, rpc: Transport,
                 deadline_s: float, count_corrupt: Callable[[], None]) -> None:
        self.node_id = node_id
        self.store = store
        self.views = views
        self.rpc = rpc
        self.deadline_s = deadline_s
        self.count_corrupt = count_corrupt
        self._background = BackgroundTasks(MAX_BACKGROUND, self._background_failed)

    # --- writes ----------------------------------------------------------------------------

    async def put(self, cid: bytes, data: Buffer, w: int) -> PutOutcome:
        """Store the chunk on its owners; returns once ``w`` hold it, else QuorumNotMet."""
        view = self.views.cluster_view()
        owners = placement.owners(view.ring, cid)
        stand_ins = FallbackPicker(placement.fallbacks(view.ring, cid), view.is_alive, owners)
        tracker = QuorumTracker.over(owners, w)
        running = fanout.start({owner: self._slot(view, owner, cid, data, stand_ins)
                                for owner in owners})
        every = list(running)
        deadline = asyncio.get_running_loop().time() + self.deadline_s
        holders: list[str] = []
        new = 0

        def record(owner: str, task: asyncio.Future[tuple[str, bool]]) -> None:
            nonlocal new
            new += self._record(tracker, owner, task, holders)

        try:
            pending = await fanout.collect(running, decided=lambda: tracker.done, record=record,
                                           deadline=deadline)
        except asyncio.CancelledError:  # the upload was abandoned: so are its copies
            for task in every:
                task.cancel()
            raise
        if tracker.outcome is not Outcome.OK:
            for task in pending:
                task.cancel()
            fanout.fail_unfinished(pending, tracker.fail)
            raise errors.QuorumNotMet(tracker.needed, tracker.acked, tracker.outcomes())
        tail = asyncio.ensure_future(self._finish(pending, holders, deadline))
        return PutOutcome(holders, new > 0, tail)

    def _record(self, tracker: QuorumTracker, owner: str, task: asyncio.Future[tuple[str, bool]],
                holders: list[str]) -> int:
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            tracker.fail(owner, errors.describe(exc))
            return 0
        holder, stored_new = task.result()
        tracker.ok(owner)
        holders.append(holder)
        return int(stored_new)

    async def _finish(self, pending: dict[asyncio.Future[tuple[str, bool]], str],
                      holders: list[str], deadline: float) -> None:
        """The owners beyond W: waited for until the deadline, then left to anti-entropy."""
        if not pending:
            return
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            done, _ = await asyncio.wait(pending, timeout=remaining)
        finally:
            for task in pending:
                task.cancel()  # a no-op for the finished ones
        for task in done:
            if not task.cancelled() and task.exception() is None:
                holders.append(task.result()[0])
            else:
                error = None if task.cancelled() else task.exception()
                log.info("a chunk replica write failed after the quorum", extra={"fields": {
                    "owner": pending[task], "error": errors.describe(error)}})

    async def _slot(self, view: ClusterView, owner: str, cid: bytes, data: Buffer,
                    stand_ins: FallbackPicker) -> tuple[str, bool]:
        """One owner's copy: (the node that holds it now, whether it stored it anew). An owner
        that is down or fails is replaced by the next live fallback."""
        failure: BaseException | None = None
        node: str | None = owner
        while node is not None:
            if node == self.node_id or view.is_alive(node):
                try:
                    return node, await self._store_on(view, node, cid, data)
                except (RpcError, errors.DfsError, OSError) as exc:  # OSError: a local disk
                    failure = exc
            node = stand_ins.next()
        raise failure or RpcError(owner, "down, and no live fallback is left")

    async def _store_on(self, view: ClusterView, node: str, cid: bytes, data: Buffer) -> bool:
        if node == self.node_id:
            return await asyncio.to_thread(self.store.put, cid, data, verify=False)
        address = view.address_of(node)
        reply = await self.rpc.call(address, ChunkHave((cid,), True), ChunkHaveReply,
                                    self.deadline_s)
        if cid in reply.present:
            return False
        return await self.send(node, cid, data)

    async def send(self, node: str, cid: bytes, data: Buffer, *, repair: bool = False) -> bool:
        """Put the chunk on a peer as it is (raw payload after a ChunkPut; the peer verifies it
        before storing); True if the peer wrote it, False if it held it already. ``repair``
        replaces the peer's copy (found corrupt). Shared by uploads, read repair and
        dfsring.files.chunksync."""
        ack = await self.rpc.call_with_payload(self.views.cluster_view().address_of(node),
                                               ChunkPut(cid, len(data), repair), data, Ack,
                                               self.deadline_s)
        return ack.changed

    async def confirm(self, holders: dict[bytes, list[str]], w: int) -> None:
        """Before a manifest is written: every chunk must still be on ``w`` of the nodes that
        took it, and is touched there (the collector's grace starts again). QuorumNotMet
        otherwise: an upload never commits a manifest whose chunks it cannot vouch for."""
        by_node: dict[str, list[bytes]] = {}
        for cid, nodes in holders.items():
            for node in dict.fromkeys(nodes):
                by_node.setdefault(node, []).append(cid)
        replies = await asyncio.gather(*(self.present_on(node, ids, touch=True)
                                         for node, ids in by_node.items()),
                                       return_exceptions=True)
        count: dict[bytes, int] = dict.fromkeys(holders, 0)
        outcomes: dict[str, str] = {}
        for node, reply in zip(by_node, replies, strict=True):
            if isinstance(reply, BaseException):
                outcomes[node] = errors.describe(reply)
                continue
            for cid in reply:
                count[cid] = count.get(cid, 0) + 1
        short = [cid for cid, n in count.items() if n < w]
        if short:
            raise errors.QuorumNotMet(w, min(count[c] for c in short), {
                **outcomes, "chunks": f"{len(short)} chunk(s) on fewer than {w} nodes, e.g. "
                                      f"{short[0].hex()}"})

    async def present_on(self, node: str, ids: Sequence[bytes], *, touch: bool) -> list[bytes]:
        """Which of ``ids`` the node holds (asked in messages of at most HAVE_BATCH ids),
        touched there if ``touch`` (an upload about to rely on them; anti-entropy only looks)."""
        if node == self.node_id:
            return await asyncio.to_thread(self.store.have, ids, touch=touch)
        present: list[bytes] = []
        for start in range(0, len(ids), HAVE_BATCH):
            reply = await self.rpc.call(self.views.cluster_view().address_of(node),
                                        ChunkHave(tuple(ids[start:start + HAVE_BATCH]), touch),
                                        ChunkHaveReply, self.deadline_s)
            present += reply.present
        return present

    # --- reads -----------------------------------------------------------------------------

    async def get(self, cid: bytes) -> Buffer:
        """The chunk's bytes, verified; QuorumNotMet (needed 1) if no holder has a good copy."""
        view = self.views.cluster_view()
        order = placement.read_order(cid, view.rings, self.node_id, self.store.has(cid),
                                     view.is_alive)
        outcomes: dict[str, str] = {}
        bad: list[str] = []
        for node in order:
            try:
                data = await self._get_from(view, node, cid)
            except errors.CorruptValue:
                self.count_corrupt()
                bad.append(node)
                outcomes[node] = "corrupt"
                continue
            except (RpcError, errors.DfsError, OSError) as exc:
                outcomes[node] = errors.describe(exc)
                continue
            if data is None:
                outcomes[node] = "absent"
                continue
            for node_ in bad:
                self._spawn(self._repair(node_, cid, data))
            return data
        raise errors.QuorumNotMet(1, 0, outcomes or {"(none)": "no node may hold this chunk"})

    async def _get_from(self, view: ClusterView, node: str, cid: bytes) -> Buffer | None:
        if node == self.node_id:
            return await asyncio.to_thread(self.store.get, cid)
        reply, data = await self.rpc.call_for_payload(view.address_of(node),
                                                      ChunkGet(cid), ChunkData, self.deadline_s)
        if reply.size is None:
            return None
        if len(data) != reply.size or not await asyncio.to_thread(_matches, data, cid):
            log.warning("a peer served a corrupt chunk", extra={"fields": {
                "peer": node, "chunk": cid.hex()}})
            raise errors.CorruptValue("chunks", cid)
        return data

    async def _repair(self, node: str, cid: bytes, data: Buffer) -> None:
        """Replace a copy found corrupt with the good one (read repair, for chunks)."""
        if node == self.node_id:
            await asyncio.to_thread(self.store.put, cid, data, verify=False, replace=True)
        else:
            await self.send(node, cid, data, repair=True)
        log.info("corrupt chunk replaced", extra={"fields": {"node": node, "chunk": cid.hex()}})

    # --- background ------------------------------------------------------------------------

    def adopt(self, task: asyncio.Future[None]) -> None:
        """Track a task that outlives its request (replicas beyond W); cancelled on close."""
        self._background.track(task)

    def _spawn(self, coro: Awaitable[None]) -> None:
        self._background.spawn(coro)  # refused past the bound: left to anti-entropy

    @staticmethod
    def _background_failed(exc: BaseException) -> None:
        log.warning("chunk repair failed", extra={"fields": {"error": errors.describe(exc)}})

    async def close(self) -> None:
        await self._background.close()


def _matches(data: Buffer, cid: bytes) -> bool:
    return hashlib.sha256(data).digest() == cid

