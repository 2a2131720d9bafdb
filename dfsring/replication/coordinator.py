"""Coordinating reads and writes of keys across their replicas (Dynamo §4.5; riak_kv put/get
FSMs). The quorum rules are pure (dfsring.core.quorum); this module does the sending and timing.

Write: coordinated by a replica of the key, so the dots it mints belong to an actor that holds
the key (a node outside the preference list forwards the request). The coordinator makes the
new version durable locally, sends it to the other replicas in parallel and answers after W
durable acks. Replication to the remaining replicas carries on in the background after the
answer, bounded by the request deadline.

Read: any node coordinates. It asks every replica, answers once R replied with the causal join
of their versions, then keeps listening until the deadline and repairs every replica that
turned out stale, empty or corrupt (read repair, Dynamo §4.7), in a tracked background task.

While ownership moves (dfsring.core.transition), writes go to the owners under the new ring and
the old ones, W counted over the new owners (the copies that survive); reads need R replies
from the owners under each ring still holding data. Which acks count is dfsring.core.writequorum's
rule: owners under the ring current when the write is decided, each ack naming the epoch it
was applied under; a ring adopted mid-write means a recount and the new owners asked.
Replicas the failure detector holds down are not waited for: they count as failed at once.
Each request routes by the one cluster view it read at its start (dfsring.core.clusterview); only
a write looking for a newer ring reads a fresh one. Replies are gathered by the shared
quorum wait loop (dfsring.replication.fanout).

Sloppy quorum (Dynamo §4.6): an owner that is down or silent for half the deadline is
replaced, for this write, by the next live node in the ring's fallback order, which keeps
the data as a hint for that owner (dfsring.storage.hintstore) and hands it over later
(dfsring.replication.handoff). Fallback acks count towards W unless the request says sloppy=false;
the
answer reports them as `hinted`. A read asks the same stand-ins in place of down owners.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from dfsring.core import keys, vclock
from dfsring.core.clusterview import ClusterView, FallbackPicker, ViewSource, substitutes
from dfsring.core.keys import ObjectName
from dfsring.core.quorum import Outcome, QuorumGroups, QuorumTracker
from dfsring.core.vclock import Versions, VersionVector
from dfsring.core.writequorum import WriteAck, WriteQuorum
from dfsring.foundation import errors
from dfsring.foundation.metrics import NodeMetrics
from dfsring.replication import fanout
from dfsring.replication.background import BackgroundTasks
from dfsring.replication.peers import wall_ms
from dfsring.storage.hintstore import HintStore, local_view
from dfsring.storage.localstore import LocalStore
from dfsring.transport import PeerRefused, PeerUnavailable, RpcError, Transport
from dfsring.transport.messages import (
    CoordinateWrite,
    HintedWrite,
    ListKeys,
    ListKeysReply,
    ListPartition,
    Message,
    ReplicaAck,
    ReplicaRead,
    ReplicaReadReply,
    ReplicaWrite,
    WriteReply,
)

log = logging.getLogger("dfsring.replication.coordinator")
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

    async def list_partition(self, bucket: bytes, group: str, prefix: bytes,
                             after: bytes | None, limit: int, *,
                             r: int) -> list[tuple[bytes, bytes]]: ...


class ReplicatedCoordinator:
    def __init__(self, *, node_id: str, n: int, store: LocalStore, hint_store: HintStore,
                 views: ViewSource, rpc: Transport, metrics: NodeMetrics, deadline_s: float,
                 now_ms: Callable[[], int] = wall_ms) -> None:
        self.node_id = node_id
        self._n = n
        self.store = store
        self.hints = hint_store
        self.views = views
        self.rpc = rpc
        self.metrics = metrics
        self.deadline_s = deadline_s
        self.now_ms = now_ms
        self._background = BackgroundTasks(MAX_BACKGROUND, self._background_failed)

    @property
    def n(self) -> int:
        return self._n

    # --- writes ----------------------------------------------------------------------------

    async def put(self, name: ObjectName, context: VersionVector, value: bytes | None,
                  content_type: str, *, w: int, sloppy: bool = True,
                  forward: bool = True) -> WriteResult:
        """forward=False: coordinate here even if the ring says otherwise (a peer forwarded
        the write to us, and rings may briefly differ; never bounce it on)."""
        view = self.views.cluster_view()
        partition = view.partition(name)
        pref, extra = view.write_targets(partition)
        epoch = view.epoch  # the ring `pref` is from
        if forward and self.node_id not in pref:
            return await self._forward(view, pref, name, context, value, content_type, w,
                                       sloppy)
        versions = await self.store.coordinate(name, context, value, content_type,
                                               self.now_ms())
        quorum = WriteQuorum(pref, w, epoch)
        quorum.ok(WriteAck(self.node_id, epoch))  # counts only if this node owns the key
        msg = ReplicaWrite(name.bucket_bytes, name.key_bytes, vclock.encode_versions(versions),
                           epoch)
        picker = view.fallback_picker(partition, (self.node_id, *pref)) if sloppy else None
        calls = {owner: self._write_slot(view, owner, msg, picker)
                 for owner in pref if owner != self.node_id}
        for peer in extra:
            if peer != self.node_id and view.is_alive(peer):
                self._spawn(self._best_effort(view, peer, msg))
        await self._await_write(quorum, calls, partition, msg, picker)
        if quorum.outcome is not Outcome.OK:
            raise quorum.error()
        return WriteResult(versions, quorum.acked, self.n, quorum.hinted)

    async def _write_slot(self, view: ClusterView, owner: str, msg: ReplicaWrite,
                          picker: FallbackPicker | None) -> WriteAck:
        """One owner's share of a write: the owner's ack, or that of the fallback that took
        it with a hint (sloppy quorum, Dynamo §4.6). An owner the failure detector holds
        down, or that does not answer within half the deadline, is replaced by the next live
        fallback in ring order (each used once per write)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        if view.is_alive(owner):
            try:
                reply = await self.rpc.call(view.address_of(owner), msg, ReplicaAck,
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
                reply = await self.rpc.call(view.address_of(fallback), hint,
                                            ReplicaAck, max(0.1, deadline - loop.time()))
                return _write_ack(fallback, reply, for_owner=owner)
            except RpcError as exc:
                failure = exc
        raise failure

    async def _await_write(self, quorum: WriteQuorum, calls: Mapping[str, Awaitable[WriteAck]],
                           partition: int, msg: ReplicaWrite,
                           picker: FallbackPicker | None) -> None:
        """Run a write's calls until it is decided under the ring current at that moment,
        or the deadline passes (issue 15 part 4). Whenever this node adopts a newer ring
        mid-write, every reply is recounted against the new owners and the new owners not
        yet asked get the write (each at most once, at most MAX_RETRIED per write); acks
        applied under a ring newer than ours wait, within the deadline, until gossip brings
        it. Calls still running when the write is decided carry on in the background."""
        deadline = asyncio.get_running_loop().time() + self.deadline_s
        asked = {self.node_id, *calls}
        retries = MAX_RETRIED

        def rering() -> dict[asyncio.Future[WriteAck], str]:
            nonlocal retries
            view = self.views.cluster_view()
            if view.epoch <= quorum.epoch:
                return {}
            started: dict[asyncio.Future[WriteAck], str] = {}
            for owner in quorum.rering(view.owners(partition), view.epoch):
                if owner not in asked and retries > 0:
                    asked.add(owner)
                    retries -= 1
                    retry = dataclasses.replace(msg, epoch=view.epoch)
                    started[asyncio.ensure_future(
                        self._write_slot(view, owner, retry, picker))] = owner
            return started

        running = await fanout.collect(
            fanout.start(calls), decided=lambda: quorum.outcome is not Outcome.PENDING,
            record=lambda owner, task: _record_write(quorum, owner, task), deadline=deadline,
            poll=rering, poll_s=RING_POLL_S, expecting=lambda: quorum.newest_epoch > quorum.epoch)
        if quorum.outcome is Outcome.PENDING:
            fanout.fail_unfinished(running, quorum.fail)
        for task in running:
            self._background.track(task)

    async def _forward(self, view: ClusterView, pref: tuple[str, ...], name: ObjectName,
                       context: VersionVector,
                       value: bytes | None, content_type: str, w: int,
                       sloppy: bool) -> WriteResult:
        """Hand the write to the first reachable replica, which coordinates it."""
        msg = CoordinateWrite(name.bucket_bytes, name.key_bytes, vclock.encode_context(context),
                              value, content_type, w, sloppy, view.epoch)
        outcomes: dict[str, str] = {}
        alive = [p for p in pref if view.is_alive(p)]
        for peer in alive + [p for p in pref if p not in alive]:
            try:
                reply = await self.rpc.call(view.address_of(peer), msg, WriteReply,
                                            self.deadline_s + 1.0)
            except PeerUnavailable as exc:
                outcomes[peer] = exc.detail
                continue
            except PeerRefused as exc:
                raise exc.error() from exc
            return WriteResult(vclock.decode_versions(reply.versions), reply.acks, reply.n,
                               reply.hinted)
        raise errors.QuorumNotMet(needed=w, acked=0, outcomes=outcomes)

    # --- reads -----------------------------------------------------------------------------

    async def get(self, name: ObjectName, *, r: int, sloppy: bool = True) -> Versions:
        """sloppy=False: only the owners count, as for writes; down ones are not replaced."""
        view = self.views.cluster_view()
        partition = view.partition(name)
        groups = view.read_groups(partition)
        # A down owner's stand-in: the fallback a sloppy write would have hinted (it answers
        # with its hinted data), so a value acked only by fallbacks is read with R.
        subs = substitutes(groups[0], view.fallbacks(partition),
                           view.is_alive) if sloppy else {}
        groups = (tuple(subs.get(n, n) for n in groups[0]), *groups[1:])
        pref = tuple(dict.fromkeys(n for g in groups for n in g))
        tracker: QuorumTracker | QuorumGroups = (
            QuorumTracker.over(pref, r) if len(groups) == 1 else QuorumGroups(list(groups), r))
        msg = ReplicaRead(name.bucket_bytes, name.key_bytes)
        alive = [p for p in pref if p == self.node_id or view.is_alive(p)]
        for peer in pref:
            if peer not in alive:
                tracker.fail(peer, "down")
        calls = {peer: self._read_one(view, peer, name, msg) for peer in alive}
        pending = await self._await_quorum(tracker, calls)
        if tracker.outcome is not Outcome.OK:
            _cancel(pending.values())
            raise _quorum_error(tracker)
        merged = vclock.sync_all(v for v in tracker.values().values() if v is not None)
        owners = tuple(n for n in pref if n not in subs.values())  # stand-ins are not repaired
        if pending or _stale(owners, tracker, merged):
            self._spawn(self._read_repair(name, owners, tracker, pending))
        return merged

    async def _read_one(self, view: ClusterView, peer: str, name: ObjectName,
                        msg: ReplicaRead) -> Versions:
        if peer == self.node_id:
            try:
                return local_view(self.store, self.hints, name)
            except errors.CorruptValue:
                self.metrics.count_corrupt()
                raise
        reply = await self._call(view, peer, msg, ReplicaReadReply)
        return vclock.Versions() if reply.versions is None else vclock.decode_versions(
            reply.versions)

    async def _read_repair(self, name: ObjectName, pref: tuple[str, ...],
                           tracker: QuorumTracker | QuorumGroups,
                           pending: dict[str, asyncio.Future[object]]) -> None:
        """After answering: hear the slower replicas out, then bring every stale one up to
        the join of all replies. Replicas that did not answer are left to handoff and
        anti-entropy; a corrupt local copy is overwritten with the join."""
        if pending:
            await asyncio.wait(pending.values())
            for peer, task in pending.items():
                _record(tracker, peer, task)
        merged = vclock.sync_all(v for v in tracker.values().values() if v is not None)
        view = self.views.cluster_view()  # the ring now: repairs carry its epoch
        for peer in _stale(pref, tracker, merged):
            await self._repair(view, peer, name, merged)

    async def _repair(self, view: ClusterView, peer: str, name: ObjectName,
                      merged: Versions) -> None:
        try:
            if peer == self.node_id:
                await self.store.merge(name, merged, overwrite_corrupt=True)
            else:
                msg = ReplicaWrite(name.bucket_bytes, name.key_bytes,
                                   vclock.encode_versions(merged), view.epoch)
                await self._call(view, peer, msg, ReplicaAck)
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
        view = self.views.cluster_view()
        rings = view.rings
        nodes = dict.fromkeys(n for ring in rings for n in ring.node_ids())
        msg = ListKeys(bucket, prefix, after, limit)
        calls = {node: self._list_one(view, node, msg) for node in nodes}
        tracker = QuorumTracker(len(calls), max(1, len(calls) - rings[0].replicas + 1))
        pending = await self._await_quorum(tracker, calls)
        if pending:
            await asyncio.wait(pending.values())
            for node, task in pending.items():
                _record(tracker, node, task)
        if tracker.failed > len(calls) - tracker.needed:
            raise _quorum_error(tracker)
        return _union(tracker.values().values(), limit)  # type: ignore[arg-type]

    async def _list_one(self, view: ClusterView, node: str,
                        msg: ListKeys | ListPartition) -> list[tuple[bytes, bytes]]:
        if node == self.node_id:
            if isinstance(msg, ListPartition):
                return self.store.list_partition(msg.partition, msg.bucket, msg.prefix,
                                                 msg.after, msg.limit)
            return self.store.list_live(msg.bucket, msg.prefix, msg.after, msg.limit)
        reply = await self._call(view, node, msg, ListKeysReply)
        return list(reply.items)

    async def list_partition(self, bucket: bytes, group: str, prefix: bytes,
                             after: bytes | None, limit: int, *,
                             r: int) -> list[tuple[bytes, bytes]]:
        """Live keys of a grouped system table (dfsring.core.keys.GROUPED_BUCKETS) for user
        bucket ``group``, in suffix order: the union of the listings of ``r`` owners of the
        one partition holding them (under each ring still holding data while ownership
        moves), not of every member. With R + W > N the union holds every key whose write
        was acknowledged. r = N (all owners, "strong") fails unless every owner answers;
        r = 1 ("eventual") answers with the first owner's listing. Owners that are down
        count as failed at once; QuorumNotMet when fewer than r can answer."""
        view = self.views.cluster_view()
        partition = keys.group_partition(bucket, group, view.ring.partition_bits)
        groups = view.read_groups(partition)
        pref = tuple(dict.fromkeys(n for g in groups for n in g))
        tracker: QuorumTracker | QuorumGroups = (
            QuorumTracker.over(pref, r) if len(groups) == 1 else QuorumGroups(list(groups), r))
        msg = ListPartition(bucket, prefix, after, limit, partition)
        alive = [p for p in pref if p == self.node_id or view.is_alive(p)]
        for peer in pref:
            if peer not in alive:
                tracker.fail(peer, "down")
        calls = {peer: self._list_one(view, peer, msg) for peer in alive}
        pending = await self._await_quorum(tracker, calls)
        _cancel(pending.values())
        if tracker.outcome is not Outcome.OK:
            raise _quorum_error(tracker)
        return _union(tracker.values().values(), limit)  # type: ignore[arg-type]

    # --- plumbing --------------------------------------------------------------------------

    def _call(self, view: ClusterView, peer: str, msg: Message, reply: type) -> Awaitable:
        return self.rpc.call(view.address_of(peer), msg, reply, self.deadline_s)

    async def _best_effort(self, view: ClusterView, peer: str, msg: Message) -> None:
        """A copy for an old owner during a transfer: it serves reads until the switch."""
        try:
            await self._call(view, peer, msg, ReplicaAck)
        except RpcError as exc:
            log.debug("write to an old owner failed", extra={"fields": {
                "peer": peer, "error": exc.detail}})

    async def _await_quorum(self, tracker: QuorumTracker | QuorumGroups,
                            calls: Mapping[str, Awaitable[object]]
                            ) -> dict[str, asyncio.Future[object]]:
        """Run calls until the tracker decides or the deadline passes; returns the calls
        still running (the caller may keep them for repair, or cancel them)."""
        deadline = asyncio.get_running_loop().time() + self.deadline_s
        running = await fanout.collect(
            fanout.start(calls), decided=lambda: tracker.outcome is not Outcome.PENDING,
            record=lambda peer, task: _record(tracker, peer, task), deadline=deadline)
        if tracker.outcome is Outcome.PENDING:
            fanout.fail_unfinished(running, tracker.fail)
        for task in running:
            self._background.track(task)
        return {peer: task for task, peer in running.items()}

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


def _failure(task: asyncio.Future) -> str | None:
    """None for a replica call that succeeded, else the outcome recorded for it."""
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    if exc is None:
        return None
    if isinstance(exc, errors.CorruptValue):
        return "corrupt-value"
    if isinstance(exc, PeerRefused):
        return exc.reply.code
    if isinstance(exc, RpcError | errors.DfsError):
        return str(exc)
    log.error("replica call failed unexpectedly", exc_info=exc)
    return f"internal error: {type(exc).__name__}"


def _record(tracker: QuorumTracker | QuorumGroups, peer: str, task: asyncio.Future) -> None:
    failure = _failure(task)
    if failure is None:
        tracker.ok(peer, task.result())
    else:
        tracker.fail(peer, failure)


def _record_write(quorum: WriteQuorum, owner: str, task: asyncio.Future) -> None:
    """Feed one finished write call to the quorum: its ack, or why the owner's share
    (itself and its fallbacks) failed."""
    failure = _failure(task)
    if failure is None:
        quorum.ok(task.result())
    else:
        quorum.fail(owner, failure)


def _write_ack(replica: str, reply: ReplicaAck, for_owner: str | None = None) -> WriteAck:
    """A replica's ack, validated: a negative ring epoch is a broken peer, not an ack."""
    if reply.epoch < 0:
        raise PeerUnavailable(replica, f"ack names ring epoch {reply.epoch}")
    return WriteAck(replica, reply.epoch, for_owner)


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


def _union(listings: Iterable[list[tuple[bytes, bytes]]],
           limit: int) -> list[tuple[bytes, bytes]]:
    """The first ``limit`` keys of the owners' sorted listings merged, each key once."""
    out: list[tuple[bytes, bytes]] = []
    for item in heapq.merge(*listings):
        if out and out[-1][0] == item[0]:
            continue
        out.append(item)
        if len(out) >= limit:
            break
    return out
