"""Coordinating reads and writes of keys across their replicas (Dynamo §4.5; riak_kv put/get
FSMs). The quorum rules are pure (dfsring.quorum); this module does the sending and timing.

Write: coordinated by a replica of the key, so the dots it mints belong to an actor that holds
the key (a node outside the preference list forwards the request). The coordinator makes the
new version durable locally, sends it to the other replicas in parallel and answers after W
durable acks. Replication to the remaining replicas carries on in the background after the
answer, bounded by the request deadline.

Read: any node coordinates. It asks every replica, answers once R replied with the causal join
of their versions, then keeps listening until the deadline and repairs every replica that
turned out stale, empty or corrupt (read repair, Dynamo §4.7), in a tracked background task.

While ownership moves (dfsring.transition), writes go to the owners under the new ring and
the old ones, W counted over the new owners (the copies that survive); reads need R replies
from the owners under each ring still holding data. Which acks count is dfsring.writequorum's
rule: owners under the ring current when the write is decided, each ack naming the epoch it
was applied under; a ring adopted mid-write means a recount and the new owners asked.
Replicas the failure detector holds down are not waited for: they count as failed at once.

Sloppy quorum (Dynamo §4.6): an owner that is down or silent for half the deadline is
replaced, for this write, by the next live node in the ring's fallback order, which keeps
the data as a hint for that owner (dfsring.hintstore) and hands it over later
(dfsring.handoff). Fallback acks count towards W unless the request says sloppy=false; the
answer reports them as `hinted`. A read asks the same stand-ins in place of down owners.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from dfsring import errors, hints, transition, vclock
from dfsring.background import BackgroundTasks
from dfsring.hints import FallbackPicker
from dfsring.hintstore import HintStore, local_view
from dfsring.keys import ObjectName
from dfsring.localstore import LocalStore
from dfsring.messages import (
    CoordinateWrite,
    HintedWrite,
    ListKeys,
    ListKeysReply,
    Message,
    ReplicaAck,
    ReplicaRead,
    ReplicaReadReply,
    ReplicaWrite,
    WriteReply,
)
from dfsring.metrics import NodeMetrics
from dfsring.peers import wall_ms
from dfsring.quorum import Outcome, QuorumGroups, QuorumTracker
from dfsring.ring import Ring
from dfsring.transport import PeerRefused, PeerUnavailable, RpcError, Transport
from dfsring.vclock import Versions, VersionVector
from dfsring.writequorum import WriteAck, WriteQuorum

log = logging.getLogger("dfsring.coordinator")
MAX_BACKGROUND = 2_000  # replication / repair tasks in flight; beyond it repair is skipped
MAX_RETRIED = 6  # new owners a write is sent to after its coordinator's ring changed
RING_POLL_S = 0.05  # how often a write in flight looks for a newer ring


@dataclass(frozen=True, slots=True)
class WriteResult:
    versions: Versions
    acks: int
    n: int
    hinted: int = 0


class Coordinator(Protocol):
    """What the HTTP edge needs of a coordinator; the app is typed against this, not the class."""

    @property
    def n(self) -> int: ...

    async def put(self, name: ObjectName, context: VersionVector, value: bytes | None,
                  content_type: str, *, w: int, sloppy: bool = True,
                  forward: bool = True) -> WriteResult: ...

    async def get(self, name: ObjectName, *, r: int, sloppy: bool = True) -> Versions: ...

    async def list_keys(self, bucket: bytes, prefix: bytes, after: bytes | None,
                        limit: int) -> list[tuple[bytes, bytes]]: ...


class Topology(Protocol):
    """What the coordinator needs of membership (dfsring.gossip.Gossiper provides it)."""

    @property
    def ring(self) -> Ring: ...

    @property
    def previous(self) -> tuple[Ring, ...]: ...

    def address_of(self, node_id: str) -> str: ...

    def is_alive(self, node_id: str) -> bool: ...


class ReplicatedCoordinator:
    def __init__(self, *, node_id: str, n: int, store: LocalStore, hint_store: HintStore,
                 topology: Topology, rpc: Transport, metrics: NodeMetrics, deadline_s: float,
                 now_ms: Callable[[], int] = wall_ms) -> None:
        self.node_id = node_id
        self._n = n
        self.store = store
        self.hints = hint_store
        self.topology = topology
        self.rpc = rpc
        self.metrics = metrics
        self.deadline_s = deadline_s
        self.now_ms = now_ms
        self._background = BackgroundTasks(MAX_BACKGROUND, self._background_failed)

    @property
    def n(self) -> int:
        return self._n

    def preference_list(self, name: ObjectName) -> tuple[str, ...]:
        return self.topology.ring.preference_list(self.store.partition(name))

    def write_targets(self, name: ObjectName) -> tuple[tuple[str, ...], tuple[str, ...]]:
        topo = self.topology
        return transition.write_targets(self.store.partition(name), topo.ring, topo.previous)

    @property
    def epoch(self) -> int:
        return self.topology.ring.epoch

    # --- writes ----------------------------------------------------------------------------

    async def put(self, name: ObjectName, context: VersionVector, value: bytes | None,
                  content_type: str, *, w: int, sloppy: bool = True,
                  forward: bool = True) -> WriteResult:
        """forward=False: coordinate here even if the ring says otherwise (a peer forwarded
        the write to us, and rings may briefly differ; never bounce it on)."""
        pref, extra = self.write_targets(name)
        epoch = self.epoch  # the ring `pref` is from
        if forward and self.node_id not in pref:
            return await self._forward(pref, name, context, value, content_type, w, sloppy)
        versions = await self.store.coordinate(name, context, value, content_type,
                                               self.now_ms())
        quorum = WriteQuorum(pref, w, epoch)
        quorum.ok(WriteAck(self.node_id, epoch))  # counts only if this node owns the key
        msg = ReplicaWrite(name.bucket_bytes, name.key_bytes, vclock.encode_versions(versions),
                           epoch)
        picker = None
        if sloppy:
            fallbacks = self.topology.ring.fallbacks(self.store.partition(name))
            picker = FallbackPicker(fallbacks, self.topology.is_alive, (self.node_id, *pref))
        calls = {owner: self._write_slot(owner, msg, picker)
                 for owner in pref if owner != self.node_id}
        for peer in extra:
            if peer != self.node_id and self.topology.is_alive(peer):
                self._spawn(self._best_effort(peer, msg))
        await self._await_write(quorum, calls, self.store.partition(name), msg, picker)
        if quorum.outcome is not Outcome.OK:
            raise quorum.error()
        return WriteResult(versions, quorum.acked, self.n, quorum.hinted)

    async def _write_slot(self, owner: str, msg: ReplicaWrite,
                          picker: FallbackPicker | None) -> WriteAck:
        """One owner's share of a write: the owner's ack, or that of the fallback that took
        it with a hint (sloppy quorum, Dynamo §4.6). An owner the failure detector holds
        down, or that does not answer within half the deadline, is replaced by the next live
        fallback in ring order (each used once per write)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        if self.topology.is_alive(owner):
            try:
                reply = await self.rpc.call(self.topology.address_of(owner), msg, ReplicaAck,
                                            self.deadline_s / 2 if picker else self.deadline_s)
                return _write_ack(owner, reply)
            except PeerUnavailable:
                if picker is None:
                    raise
        elif picker is None:
            raise PeerUnavailable(owner, "down")
        hint = HintedWrite(msg.bucket, msg.key, msg.versions, owner)
        failure: RpcError = PeerUnavailable(owner, "down, and no live fallback is left")
        while (fallback := picker.next()) is not None:
            try:
                reply = await self.rpc.call(self.topology.address_of(fallback), hint,
                                            ReplicaAck, max(0.1, deadline - loop.time()))
                return _write_ack(fallback, reply, for_owner=owner)
            except RpcError as exc:
                failure = exc
        raise failure

    async def _await_write(self, quorum: WriteQuorum, calls: dict[str, Awaitable[WriteAck]],
                           partition: int, msg: ReplicaWrite,
                           picker: FallbackPicker | None) -> None:
        """Run a write's calls until it is decided under the ring current at that moment,
        or the deadline passes (issue 15 part 4). Whenever this node adopts a newer ring
        mid-write, every reply is recounted against the new owners and the new owners not
        yet asked get the write (each at most once, at most MAX_RETRIED per write); acks
        applied under a ring newer than ours wait, within the deadline, until gossip brings
        it. Calls still running when the write is decided carry on in the background."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        tasks = {asyncio.ensure_future(aw): owner for owner, aw in calls.items()}
        asked = {self.node_id, *calls}
        retries = MAX_RETRIED
        while True:
            ring = self.topology.ring
            if ring.epoch > quorum.epoch:
                for owner in quorum.rering(ring.preference_list(partition), ring.epoch):
                    if owner not in asked and retries > 0:
                        asked.add(owner)
                        retries -= 1
                        retry = dataclasses.replace(msg, epoch=ring.epoch)
                        tasks[asyncio.ensure_future(
                            self._write_slot(owner, retry, picker))] = owner
            pending = [t for t in tasks if not t.done()]
            remaining = deadline - loop.time()
            if (quorum.outcome is not Outcome.PENDING or remaining <= 0
                    or (not pending and quorum.newest_epoch <= quorum.epoch)):
                break
            if pending:
                done, _ = await asyncio.wait(pending, timeout=min(remaining, RING_POLL_S),
                                             return_when=asyncio.FIRST_COMPLETED)
            else:  # every reply is in, some under a ring we have not seen yet
                await asyncio.sleep(min(remaining, RING_POLL_S))
                done = set()
            for task in done:
                _record_write(quorum, tasks.pop(task), task)
        for task, owner in tasks.items():
            if task.done():
                _record_write(quorum, owner, task)
            elif quorum.outcome is Outcome.PENDING:
                quorum.fail(owner, "timeout")
        for task in tasks:
            if not task.done():
                self._background.track(task)

    async def _forward(self, pref: tuple[str, ...], name: ObjectName, context: VersionVector,
                       value: bytes | None, content_type: str, w: int,
                       sloppy: bool) -> WriteResult:
        """Hand the write to the first reachable replica, which coordinates it."""
        msg = CoordinateWrite(name.bucket_bytes, name.key_bytes, vclock.encode_context(context),
                              value, content_type, w, sloppy, self.epoch)
        outcomes: dict[str, str] = {}
        alive = [p for p in pref if self.topology.is_alive(p)]
        for peer in alive + [p for p in pref if p not in alive]:
            try:
                reply = await self.rpc.call(self.topology.address_of(peer), msg, WriteReply,
                                            self.deadline_s + 1.0)
            except PeerUnavailable as exc:
                outcomes[peer] = exc.detail
                continue
            except PeerRefused as exc:
                raise _from_refusal(exc) from exc
            return WriteResult(vclock.decode_versions(reply.versions), reply.acks, reply.n,
                               reply.hinted)
        raise errors.QuorumNotMet(needed=w, acked=0, outcomes=outcomes)

    # --- reads -----------------------------------------------------------------------------

    async def get(self, name: ObjectName, *, r: int, sloppy: bool = True) -> Versions:
        """sloppy=False: only the owners count, as for writes; down ones are not replaced."""
        topo = self.topology
        partition = self.store.partition(name)
        groups = transition.read_groups(partition, topo.ring, topo.previous)
        # A down owner's stand-in: the fallback a sloppy write would have hinted (it answers
        # with its hinted data), so a value acked only by fallbacks is read with R.
        subs = hints.substitutes(groups[0], topo.ring.fallbacks(partition),
                                 topo.is_alive) if sloppy else {}
        groups = (tuple(subs.get(n, n) for n in groups[0]), *groups[1:])
        pref = tuple(dict.fromkeys(n for g in groups for n in g))
        tracker: QuorumTracker | QuorumGroups = (
            self._tracker(pref, r) if len(groups) == 1 else QuorumGroups(list(groups), r))
        msg = ReplicaRead(name.bucket_bytes, name.key_bytes)
        alive = [p for p in pref if p == self.node_id or topo.is_alive(p)]
        for peer in pref:
            if peer not in alive:
                tracker.fail(peer, "down")
        calls = {peer: self._read_one(peer, name, msg) for peer in alive}
        pending = await self._await_quorum(tracker, calls)
        if tracker.outcome is not Outcome.OK:
            _cancel(pending.values())
            raise _quorum_error(tracker)
        merged = vclock.sync_all(v for v in tracker.values().values() if v is not None)
        owners = tuple(n for n in pref if n not in subs.values())  # stand-ins are not repaired
        if pending or _stale(owners, tracker, merged):
            self._spawn(self._read_repair(name, owners, tracker, pending))
        return merged

    async def _read_one(self, peer: str, name: ObjectName, msg: ReplicaRead) -> Versions:
        if peer == self.node_id:
            try:
                return local_view(self.store, self.hints, name)
            except errors.CorruptValue:
                self.metrics.count_corrupt()
                raise
        reply = await self._call(peer, msg, ReplicaReadReply)
        return vclock.Versions() if reply.versions is None else vclock.decode_versions(
            reply.versions)

    async def _read_repair(self, name: ObjectName, pref: tuple[str, ...],
                           tracker: QuorumTracker | QuorumGroups,
                           pending: dict[str, asyncio.Task[object]]) -> None:
        """After answering: hear the slower replicas out, then bring every stale one up to
        the join of all replies. Replicas that did not answer are left to handoff and
        anti-entropy; a corrupt local copy is overwritten with the join."""
        if pending:
            await asyncio.wait(pending.values())
            for peer, task in pending.items():
                _record(tracker, peer, task)
        merged = vclock.sync_all(v for v in tracker.values().values() if v is not None)
        for peer in _stale(pref, tracker, merged):
            await self._repair(peer, name, merged)

    async def _repair(self, peer: str, name: ObjectName, merged: Versions) -> None:
        try:
            if peer == self.node_id:
                await self.store.merge(name, merged, overwrite_corrupt=True)
            else:
                msg = ReplicaWrite(name.bucket_bytes, name.key_bytes,
                                   vclock.encode_versions(merged), self.epoch)
                await self._call(peer, msg, ReplicaAck)
        except (RpcError, errors.DfsError) as exc:
            self.metrics.count_repair("failed")
            log.info("read repair failed", extra={"fields": {"peer": peer, "error": str(exc)}})
            return
        self.metrics.count_repair("ok")

    # --- listing ---------------------------------------------------------------------------

    async def list_keys(self, bucket: bytes, prefix: bytes, after: bytes | None,
                        limit: int) -> list[tuple[bytes, bytes]]:
        """Live keys in suffix order: the union of every member's local listing. Each key is
        on N nodes, so up to N-1 unreachable members still leave every key listed."""
        rings = (self.topology.ring, *self.topology.previous)
        nodes = dict.fromkeys(n for ring in rings for n in ring.node_ids())
        msg = ListKeys(bucket, prefix, after, limit)
        calls = {node: self._list_one(node, msg) for node in nodes}
        tracker = QuorumTracker(len(calls), max(1, len(calls) - rings[0].replicas + 1))
        pending = await self._await_quorum(tracker, calls)
        if pending:
            await asyncio.wait(pending.values())
            for node, task in pending.items():
                _record(tracker, node, task)
        if tracker.failed > len(calls) - tracker.needed:
            raise _quorum_error(tracker)
        merged = heapq.merge(*(items for items in tracker.values().values()))
        out: list[tuple[bytes, bytes]] = []
        for item in merged:
            if out and out[-1][0] == item[0]:
                continue
            out.append(item)
            if len(out) >= limit:
                break
        return out

    async def _list_one(self, node: str, msg: ListKeys) -> list[tuple[bytes, bytes]]:
        if node == self.node_id:
            return self.store.list_live(msg.bucket, msg.prefix, msg.after, msg.limit)
        reply = await self._call(node, msg, ListKeysReply)
        return list(reply.items)

    # --- plumbing --------------------------------------------------------------------------

    def _tracker(self, pref: tuple[str, ...], needed: int) -> QuorumTracker:
        """A tracker over the replicas that exist; missing ones (cluster smaller than N)
        count as failed so the outcome is decided, never awaited."""
        tracker = QuorumTracker(max(len(pref), needed), needed)
        for i in range(needed - len(pref)):
            tracker.fail(f"(missing replica {i + 1})", "cluster has fewer nodes than N")
        return tracker

    def _call(self, peer: str, msg: Message, reply: type) -> Awaitable:
        return self.rpc.call(self.topology.address_of(peer), msg, reply, self.deadline_s)

    async def _best_effort(self, peer: str, msg: Message) -> None:
        """A copy for an old owner during a transfer: it serves reads until the switch."""
        try:
            await self._call(peer, msg, ReplicaAck)
        except RpcError as exc:
            log.debug("write to an old owner failed", extra={"fields": {
                "peer": peer, "error": exc.detail}})

    async def _await_quorum(self, tracker: QuorumTracker | QuorumGroups,
                            calls: dict[str, Awaitable[object]]
                            ) -> dict[str, asyncio.Task[object]]:
        """Run calls until the tracker decides or the deadline passes; returns the calls
        still running (the caller may keep them for repair, or cancel them)."""
        tasks = {peer: asyncio.ensure_future(aw) for peer, aw in calls.items()}
        by_task = {task: peer for peer, task in tasks.items()}
        pending = set(tasks.values())
        deadline = asyncio.get_running_loop().time() + self.deadline_s
        while pending and tracker.outcome is Outcome.PENDING:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=remaining,
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                _record(tracker, by_task[task], task)
        if tracker.outcome is Outcome.PENDING:
            for peer, task in tasks.items():
                if task in pending:
                    tracker.fail(peer, "timeout")
        left = {by_task[t]: t for t in pending}
        for task in left.values():
            self._background.track(task)
        return left

    def _spawn(self, coro: Awaitable[None]) -> None:
        if not self._background.spawn(coro):
            self.metrics.count_repair("skipped")

    @staticmethod
    def _background_failed(exc: BaseException) -> None:
        if not isinstance(exc, RpcError | errors.DfsError):
            log.error("background task failed", exc_info=exc)

    async def close(self, grace_s: float = 1.0) -> None:
        """Let background replication finish briefly, then cancel what is left."""
        await self._background.close(grace_s)


def _record(tracker: QuorumTracker | QuorumGroups, peer: str, task: asyncio.Future) -> None:
    if task.cancelled():
        tracker.fail(peer, "cancelled")
        return
    exc = task.exception()
    if exc is None:
        tracker.ok(peer, task.result())
    elif isinstance(exc, errors.CorruptValue):
        tracker.fail(peer, "corrupt-value")
    elif isinstance(exc, PeerRefused):
        tracker.fail(peer, exc.reply.code)
    elif isinstance(exc, RpcError | errors.DfsError):
        tracker.fail(peer, str(exc))
    else:
        log.error("replica call failed unexpectedly", exc_info=exc)
        tracker.fail(peer, f"internal error: {type(exc).__name__}")


def _write_ack(replica: str, reply: ReplicaAck, for_owner: str | None = None) -> WriteAck:
    """A replica's ack, validated: a negative ring epoch is a broken peer, not an ack."""
    if reply.epoch < 0:
        raise PeerUnavailable(replica, f"ack names ring epoch {reply.epoch}")
    return WriteAck(replica, reply.epoch, for_owner)


def _record_write(quorum: WriteQuorum, owner: str, task: asyncio.Future) -> None:
    """Feed one finished write call to the quorum: its ack, or why the owner's share
    (itself and its fallbacks) failed."""
    if task.cancelled():
        quorum.fail(owner, "cancelled")
        return
    exc = task.exception()
    if exc is None:
        quorum.ok(task.result())
    elif isinstance(exc, PeerRefused):
        quorum.fail(owner, exc.reply.code)
    elif isinstance(exc, RpcError | errors.DfsError):
        quorum.fail(owner, str(exc))
    else:
        log.error("replica call failed unexpectedly", exc_info=exc)
        quorum.fail(owner, f"internal error: {type(exc).__name__}")


def _cancel(tasks: Iterable[asyncio.Future]) -> None:
    for task in tasks:
        task.cancel()


def _stale(pref: tuple[str, ...], tracker: QuorumTracker | QuorumGroups,
           merged: Versions) -> list[str]:
    """Replicas that answered with less than the join of all replies, or with corrupt data."""
    if not merged.siblings:
        return []
    replies, outcomes = tracker.values(), tracker.outcomes()
    return [p for p in pref
            if (p in replies and not vclock.descends(replies[p], merged))  # type: ignore[arg-type]
            or outcomes.get(p) == "corrupt-value"]


def _quorum_error(tracker: QuorumTracker | QuorumGroups) -> errors.QuorumNotMet:
    return errors.QuorumNotMet(needed=tracker.needed, acked=tracker.acked,
                               outcomes=tracker.outcomes())


def _from_refusal(exc: PeerRefused) -> errors.DfsError:
    """Re-raise a coordinating peer's refusal as the same domain error here."""
    reply = exc.reply
    if reply.code == "quorum-not-met":
        return errors.QuorumNotMet(needed=reply.needed, acked=reply.acked,
                                   outcomes={exc.peer: reply.detail})
    if reply.code == "too-many-siblings":
        return errors.TooManySiblings(reply.acked, reply.needed)
    if reply.code == "invalid-context":
        return errors.InvalidContext(reply.detail)
    if reply.code in ("bad-request", "invalid-key", "invalid-context"):
        return errors.BadRequest(reply.detail)
    if reply.code == "payload-too-large":
        return errors.BadRequest(reply.detail)
    return errors.StorageError(f"coordinating replica {exc.peer} failed: {reply.detail}")
