"""Membership by push-pull gossip, with phi accrual failure detection.

Every `interval` this node bumps its heartbeat (its own entry's version) and starts a
push-pull round with `fanout` random peers (Cassandra's Syn/Ack/Ack2, van Renesse's
"scuttlebutt" reconciliation): the initiator sends only a digest of versions; the peer answers
with the entries the initiator lacks and the ids it wants; the initiator sends those. The
views merge by the pure, commutative, associative and idempotent `dfsring.core.membership.merge`,
so rounds can be lost, repeated or reordered and every node still converges.

Rounds run on a fixed cadence, independent of how long an exchange takes, so a slow link
delays heartbeats without spacing them out: the detector sees the same intervals, shifted
(no false suspicion from latency alone).

Failure detection is local and separate from ownership: every heartbeat increase seen for a
node, whoever relayed it, is an arrival for its phi accrual detector (Hayashibara et al.
2004); its up / suspect / down is this node's opinion only and never changes the ring. A
restarted node comes back with a higher incarnation, which resets its detector history.

Seeds are for bootstrapping only: a node gossips with a seed while it knows no live member,
and now and then afterwards so that two halves started apart find each other. A node without
a ring founds one only as dfsring.core.founding decides (dfsring.replication.discovery asks the
seeds first);
a node without seeds founds at once.

A node that lost its data dir and learns a ring listing its own id rejoined as itself: it
keeps its ownership, records that it is `refilling` (persisted) until its peers refilled it
(dfsring.core.refill), and reports so on /health.

Ring epochs travel here too: the highest epoch wins (only chosen rings exist, see
dfsring.replication.ringchange), and this module is the one place a node adopts one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from dfsring.core import membership, removals
from dfsring.core.clusterview import ClusterView
from dfsring.core.failure import DetectorSettings, Liveness, PhiAccrualDetector
from dfsring.core.membership import MemberState, Status, View
from dfsring.core.ringstate import RingState, adoption_problem
from dfsring.core.transition import transition_complete
from dfsring.foundation.errors import (
    WrongCluster as WrongCluster,  # its home before dfsring.foundation.errors
)
from dfsring.ring import Ring, RingMember
from dfsring.storage import clusterfile
from dfsring.storage.clusterfile import ClusterFile
from dfsring.transport import PeerRefused, RpcError, Transport
from dfsring.transport.messages import Ack, GossipAck, GossipAck2, GossipSyn, RingAnnounce

log = logging.getLogger("dfsring.core.membership")
SEED_PROBABILITY = 0.1
MAX_OUTSTANDING = 16


class RingGate(Protocol):
    """Whether a ring newer than ours may be adopted now (dfsring.replication.ringlearn)."""

    def vouch(self, ring: RingState) -> bool:
        """True if known chosen; else the gate starts proving it and adopts it itself once
        proven, and the caller adopts nothing now."""
        ...

    async def settle(self, ring: RingState) -> None:
        """Return once the proof of `ring` in flight, if any, has ended."""
        ...

    def forget(self, ring: RingState) -> None:
        """Drop a refusal of `ring` remembered, so that the next offer proves it again."""
        ...


@dataclass(frozen=True)
class GossipSettings:
    interval_s: float = 0.5
    fanout: int = 2
    phi_threshold: float = 8.0
    replicas: int = 3
    partition_bits: int = 10

    @property
    def call_deadline_s(self) -> float:
        return max(2.0, 4 * self.interval_s)


class Gossiper:
    def __init__(self, *, node_id: str, address: str, zone: str, seeds: Iterable[str],
                 settings: GossipSettings, rpc: Transport, state_file: Path,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, acceptor_nonce: str = "",
                 bootstrap_expect: int = 0, api: str = "",
                 wall: Callable[[], float] = time.time,
                 removed_grace_s: float = removals.GRACE_S) -> None:
        seeds = tuple(seeds)
        self.node_id = node_id
        self.address = address
        self.seeds = tuple(s for s in dict.fromkeys(seeds) if s != address)
        self.settings = settings
        self.rpc = rpc
        self.state_file = state_file
        self.clock = clock
        self.wall = wall  # removal marks expire by this node's wall clock (core.removals)
        self.removed_grace_s = removed_grace_s
        self.rng = rng or random.Random()
        self.detector = PhiAccrualDetector(DetectorSettings(threshold=settings.phi_threshold))
        self._listeners: list[Callable[[], None]] = []
        self._outstanding: dict[str, asyncio.Task[None]] = {}
        saved = clusterfile.load(state_file)
        self.fresh_start = saved is None
        if saved is None:
            saved = ClusterFile(0, Status.JOINING, 0, 0, RingState.empty())
        self.refilling = saved.refilling
        self.refill_started = clock()
        me = MemberState(node_id, address, zone, saved.status, saved.incarnation + 1, 0,
                         saved.synced_epoch, acceptor_nonce, api)
        now = clock()
        for peer in saved.peers:
            self.detector.reset(peer.node_id, now)
        entries = {p.node_id: p for p in saved.peers if p.node_id != node_id}
        self.view = View({**entries, node_id: me}, saved.removed, saved.ring)
        self.removed_at = dict(saved.removed_at)
        self.settled_epoch = saved.settled_epoch
        self._rings: tuple[RingState, Ring, tuple[Ring, ...]] | None = None
        self._snapshot: ClusterView | None = None
        self.gate: RingGate | None = None  # node wiring sets it (dfsring.node); None: trust
        self._save()
        if self.fresh_start and not tuple(seeds) and bootstrap_expect <= 1:
            self.found("no seeds")  # nothing to ask: a single node is its own cluster

    def found(self, reason: str) -> bool:
        """Found a new cluster (epoch 1, this node its only member) unless a ring is known;
        only dfsring.core.founding decides when (it asked the seeds first)."""
        if self.view.ring.epoch:
            return False
        ring = RingState.found(secrets.token_hex(8),
                               RingMember(self.node_id, self.me.zone, acceptor=self.me.acceptor))
        log.info("founding a new cluster", extra={"fields": {"cluster": ring.cluster,
                                                             "reason": reason}})
        return self.adopt_ring(ring, founded=True)

    def set_refilled(self) -> None:
        if self.refilling:
            self.refilling = False
            log.info("refilled by peers: data complete again", extra={"fields": {
                "seconds": round(self.clock() - self.refill_started, 1)}})
            self._save()

    # --- queries ------------------------------------------------------------------------

    def cluster_view(self) -> ClusterView:
        """The snapshot services read at the start of an operation (dfsring.core.clusterview).
        A new one whenever the member view (ring, addresses, statuses, heartbeats), the
        settled state or any member's liveness changed since the last; else the same object.
        Liveness is judged now: phi grows with silence, not only with gossip events."""
        now = self.clock()
        liveness = {n: self.detector.liveness(n, now) for n in self.view.members
                    if n != self.node_id}
        snap = self._snapshot
        if (snap is not None and snap.members is self.view and snap.settled == self.settled
                and snap.liveness == liveness):
            return snap
        _, ring, previous = self._built()
        snap = ClusterView(self.node_id, self.view, ring, previous, self.settled, liveness)
        self._snapshot = snap
        return snap

    @property
    def me(self) -> MemberState:
        return self.view.members[self.node_id]

    @property
    def ring_state(self) -> RingState:
        return self.view.ring

    @property
    def ring(self) -> Ring:
        return self._built()[1]

    @property
    def previous(self) -> tuple[Ring, ...]:
        """Older rings still holding data: empty once this epoch's transfers are settled."""
        return () if self.settled else self._built()[2]

    @property
    def settled(self) -> bool:
        return self.settled_epoch >= self.view.ring.epoch

    @property
    def complete(self) -> bool:
        """Ready to route key/value traffic: this node knows an agreed ring."""
        return self.view.ring.epoch >= 1 and self.me.status is not Status.LEFT

    # The one-off questions below are the current view's answers (dfsring.core.clusterview).

    def address_of(self, node_id: str) -> str:
        """A member's address; PeerUnavailable for one gossip has not brought yet."""
        return self.cluster_view().address_of(node_id)

    def liveness(self, node_id: str) -> Liveness:
        return self.cluster_view().liveness_of(node_id)

    def phi(self, node_id: str) -> float:
        return 0.0 if node_id == self.node_id else self.detector.phi(node_id, self.clock())

    def is_alive(self, node_id: str) -> bool:
        return self.cluster_view().is_alive(node_id)

    def status_of(self, node_id: str) -> Status:
        return self.cluster_view().status_of(node_id)

    def synced(self) -> dict[str, int]:
        return self.cluster_view().synced()

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Called (synchronously) whenever the ring or the settled state changes."""
        self._listeners.append(listener)

    def _built(self) -> tuple[RingState, Ring, tuple[Ring, ...]]:
        """The Ring objects for the current RingState, built once per adopted ring (by
        identity: this is on every request's path)."""
        rs = self.view.ring
        if self._rings is None or self._rings[0] is not rs:
            s = self.settings
            self._rings = (rs, rs.ring(s.replicas, s.partition_bits),
                           rs.previous_rings(s.replicas, s.partition_bits))
        return self._rings

    # --- changes made by this node -----------------------------------------------------------

    def _touch(self, **changes: object) -> None:
        """Change our own entry; every change is a new version (heartbeat + 1)."""
        me = self.me
        new = replace(me, heartbeat=me.heartbeat + 1, **changes)  # type: ignore[arg-type]
        self.view = membership.merge_entries(self.view, [new])

    def set_status(self, status: Status) -> None:
        if self.me.status is not status:
            log.info("status change", extra={"fields": {"from": str(self.me.status),
                                                         "to": str(status)}})
            self._touch(status=status)
            self._save()

    def set_synced(self, epoch: int) -> None:
        if epoch > self.me.synced_epoch:
            self._touch(synced_epoch=epoch)
            self._save()
            self._check_settled()

    def remove(self, node_id: str) -> None:
        self.view = membership.with_removed(self.view, [node_id])
        self._save()
        self._notify()

    def reset_to_join(self, seed: str) -> None:
        """Forget a single-node cluster of our own and join another through `seed`."""
        self.seeds = (seed, *(s for s in self.seeds if s != seed))
        self.view = View({self.node_id: self.me}, frozenset(), RingState.empty())
        self.settled_epoch = 0
        self._touch(status=Status.JOINING, synced_epoch=0)
        self._rings = None
        self._save()
        self._notify()

    def check_ring(self, ring: RingState) -> None:
        """Refuse a ring this node must not adopt (dfsring.core.ringstate.adoption_problem):
        WrongCluster or ValueError, raised before anything changes."""
        current = self.view.ring
        if current.epoch and ring.cluster != current.cluster:
            raise WrongCluster(f"ring of cluster {ring.cluster}, we are {current.cluster}")
        problem = adoption_problem(current, ring)
        if problem:
            raise ValueError(f"ring refused: {problem}")

    def adopt_ring(self, ring: RingState, *, founded: bool = False) -> bool:
        """Take a chosen ring if it is newer than ours; True if it was. A ring that is not
        a plausible chosen one is refused (ValueError) with nothing changed."""
        current = self.view.ring
        self.check_ring(ring)
        if ring.epoch < current.epoch or (ring.epoch == current.epoch
                                          and ring.digest() == current.digest()):
            return False
        if not founded and not self._vouched(ring):
            return False
        if ring.epoch == current.epoch:
            log.error("two different rings with one epoch", extra={"fields": {
                "epoch": ring.epoch, "ours": current.digest(), "theirs": ring.digest()}})
        self.view = membership.with_ring(self.view, ring)
        if self.view.ring is not ring:
            return False
        if self.node_id in ring.member_ids and self.me.status is Status.JOINING:
            self._touch(status=Status.UP)
        if (not current.epoch and self.fresh_start and not founded
                and self.node_id in ring.member_ids):
            self.refilling = True
            self.refill_started = self.clock()
            log.warning("rejoined as a member without its data: peers refill it", extra={
                "fields": {"cluster": ring.cluster, "epoch": ring.epoch}})
        if not ring.previous:
            self.settled_epoch = ring.epoch
            self._touch(synced_epoch=max(self.me.synced_epoch, ring.epoch))
        log.info("ring adopted", extra={"fields": {
            "epoch": ring.epoch, "members": len(ring.members), "hash": self.ring.hash[:12]}})
        self._save()
        self._check_settled()
        self._notify()
        return True

    def _vouched(self, ring: RingState) -> bool:
        """A ring newer than ours needs the gate's word (proof of choice, issue 23); a node
        without a ring takes its seeds' (ringstate.adoption_problem), and our own epoch's
        ring (its settled copy) was checked by check_ring."""
        current = self.view.ring
        if self.gate is None or not current.epoch or ring.epoch <= current.epoch:
            return True
        return self.gate.vouch(ring)

    def _check_settled(self) -> None:
        rs = self.view.ring
        if not self.settled and transition_complete(rs, self.synced()):
            self.settled_epoch = rs.epoch
            log.info("ring settled", extra={"fields": {"epoch": rs.epoch}})
            self._save()
            self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def _save(self) -> None:
        peers = tuple(m for m in self.view.members.values() if m.node_id != self.node_id)
        me = self.me
        self.removed_at = removals.stamped(self.removed_at, self.view.removed, self.wall())
        clusterfile.save(self.state_file, ClusterFile(
            me.incarnation, me.status, me.synced_epoch, self.settled_epoch, self.view.ring,
            self.view.removed, peers, self.refilling, self.removed_at))

    def expire_removed(self) -> frozenset[str]:
        """Drop the removal marks (and entries) past their grace or the cap
        (dfsring.core.removals); the ids dropped. Called with every heartbeat."""
        if not self.view.removed:
            return frozenset()
        now = self.wall()
        self.removed_at = removals.stamped(self.removed_at, self.view.removed, now)
        gone = removals.to_expire(self.view, self.removed_at, now, self.node_id,
                                  settled=self.settled, grace_s=self.removed_grace_s)
        if not gone:
            return gone
        early = sorted(n for n in gone if now - self.removed_at[n] < self.removed_grace_s)
        if early:
            log.warning("removed set over its cap: the oldest marks dropped before their grace",
                        extra={"fields": {"cap": removals.MAX_REMOVED, "dropped": len(early),
                                          "nodes": early[:8]}})
        log.info("removal marks expired", extra={"fields": {
            "count": len(gone), "nodes": sorted(gone)[:8],
            "grace_s": self.removed_grace_s}})
        self.view = removals.expire(self.view, gone)
        for node_id in gone:
            self.removed_at.pop(node_id, None)
            self.detector.forget(node_id)
        self._save()
        return gone

    # --- merging what peers tell us --------------------------------------------------------

    def _learn(self, entries: Iterable[MemberState], removed: Iterable[str],
               ring: RingState | None) -> None:
        """Merge what a peer sent. The ring, the one thing that refuses the message, is
        checked first, so a refused message changes nothing (issue 23); entries and removals
        that no peer may send are dropped (membership.admissible_entries, _learn_removed)."""
        entries = list(entries)
        if ring is not None:
            self.check_ring(ring)
        now = self.clock()
        before = self.view
        newer = ring is not None and ring.epoch > self.view.ring.epoch and self._vouched(ring)
        judge = ring if ring is not None and newer else self.view.ring
        placed = None  # a node without a ring takes every entry: nothing to judge by
        if self.view.ring.epoch:
            placed = removals.placed(self.view.ring, settled=self.settled)
            if judge is not self.view.ring:
                placed |= removals.placed(judge)
        admitted = membership.admissible_entries(self.view, entries, judge.member_ids,
                                                 placed=placed)
        incoming = [e for e in admitted if e.node_id != self.node_id]
        for e in admitted:
            if e.node_id == self.node_id and e.version() > self.me.version():
                self._touch(incarnation=e.incarnation + 1)  # refute a stale life of ours
        self.view = membership.merge_entries(self.view, incoming)
        for e in incoming:
            old = before.members.get(e.node_id)
            new = self.view.members[e.node_id]
            if old is None or new.incarnation > old.incarnation:
                self.detector.reset(e.node_id, now)
            elif new.heartbeat > old.heartbeat:
                self.detector.heartbeat(e.node_id, now)
        if ring is not None:
            self.adopt_ring(ring)
        self._learn_removed(removed)
        if (self.view.removed != before.removed
                or _addresses(self.view) != _addresses(before)
                or _statuses(self.view) != _statuses(before)):
            self._save()
        self._check_settled()

    def _learn_removed(self, removed: Iterable[str]) -> None:
        """Take the removals a peer may tell of (membership.admissible_removals: a fact of an
        agreed ring, or a request for a node this node holds down too); the rest are
        dropped, so no peer can evict a live node (issue 23). Logged at debug: a request
        for a node this node holds alive comes back with every round."""
        ids = set(removed) - self.view.removed
        taken = membership.admissible_removals(self.view, ids, lambda n: not self.is_alive(n))
        if ids - taken:
            log.debug("removal of a live or joining node not taken", extra={"fields": {
                "nodes": sorted(ids - taken)[:8]}})
        self.view = membership.with_removed(self.view, taken)
        if (membership.effective_status(self.view, self.node_id) is Status.LEFT
                and self.me.status is not Status.LEFT):
            log.warning("this node was removed from the cluster")
            self._touch(status=Status.LEFT)

    def _check_cluster(self, cluster: str) -> None:
        ours = self.view.ring.cluster
        if ours and cluster and cluster != ours:
            raise WrongCluster(f"peer belongs to cluster {cluster}, we are {ours}")

    # --- the protocol, receiving side ------------------------------------------------------

    def handle_syn(self, msg: GossipSyn) -> GossipAck:
        self._check_cluster(msg.cluster)
        theirs = membership.digest_from_wire(msg.digest)
        self._learn((), _view((), msg.removed, None).removed, None)
        ring = self.view.ring
        newer_ring = ring.epoch > msg.ring_epoch or (
            ring.epoch == msg.ring_epoch and ring.epoch and ring.digest() > msg.ring_digest)
        return GossipAck(ring.cluster,
                         tuple(e.to_wire() for e in membership.newer_than(self.view, theirs)),
                         tuple(membership.wanted(self.view, theirs)), ring.epoch,
                         ring.to_wire() if newer_ring else None,
                         tuple(sorted(self.view.removed)))

    def handle_ack2(self, msg: GossipAck2) -> None:
        self._check_cluster(msg.cluster)
        view = _view(msg.entries, (), msg.ring)
        self._learn(view.members.values(), (), None if msg.ring is None else view.ring)

    async def handle_announce(self, msg: RingAnnounce) -> None:
        """Adopt the announced ring; one that needs proof is answered once the proof ended
        (bounded by its deadline), so a proposer's announce still leaves the members on the
        ring it chose when it returns."""
        ring = RingState.from_wire(msg.ring)
        if self.gate is not None:  # an announce is proven afresh: the same ring may have been
            self.gate.forget(ring)  # offered (even forged) before its proposal was chosen
        if not self.adopt_ring(ring) and self.gate is not None:
            await self.gate.settle(ring)
            if ring.epoch > self.view.ring.epoch:
                raise ValueError(f"ring of epoch {ring.epoch} not adopted: our ring's acceptors "
                                 "do not vouch that it was chosen")

    # --- the protocol, initiating side -----------------------------------------------------

    async def exchange(self, address: str) -> None:
        """One push-pull round with the node at `address`."""
        ring = self.view.ring
        digest = tuple((m.node_id, *m.version()) for m in self.view.members.values())
        syn = GossipSyn(ring.cluster, self.node_id, digest, ring.epoch,
                        ring.digest() if ring.epoch else "", tuple(sorted(self.view.removed)))
        deadline = self.settings.call_deadline_s
        ack = await self.rpc.call(address, syn, GossipAck, deadline)
        self._check_cluster(ack.cluster)
        view = _view(ack.entries, ack.removed, ack.ring)
        self._learn(view.members.values(), view.removed, None if ack.ring is None else view.ring)
        ring = self.view.ring
        wanted = set(ack.wanted)
        entries = tuple(m.to_wire() for m in self.view.members.values() if m.node_id in wanted)
        send_ring = ring.epoch > ack.ring_epoch
        if entries or send_ring:
            await self.rpc.call(address, GossipAck2(ring.cluster, entries,
                                                    ring.to_wire() if send_ring else None),
                                Ack, deadline)

    async def announce(self, ring: RingState, node_ids: Iterable[str]) -> None:
        """Push a chosen ring to these nodes at once (best effort; gossip covers misses)."""
        msg = RingAnnounce(ring.to_wire())
        view = self.cluster_view()
        calls = [self.rpc.call(view.address_of(n), msg, Ack, self.settings.call_deadline_s)
                 for n in node_ids if n != self.node_id and n in self.view.members]
        await asyncio.gather(*calls, return_exceptions=True)

    def targets(self) -> list[str]:
        """Addresses for this round: `fanout` live peers, sometimes a down one (to notice it
        is back), and a seed while we know no live peer (or now and then, to heal splits)."""
        peers = [m for m in self.view.members.values()
                 if m.node_id != self.node_id and self.status_of(m.node_id) is not Status.LEFT]
        alive = [m.address for m in peers if self.is_alive(m.node_id)]
        down = [m.address for m in peers if not self.is_alive(m.node_id)]
        picks = self.rng.sample(alive, min(self.settings.fanout, len(alive)))
        if down and self.rng.random() < len(down) / (len(alive) + 1):
            picks.append(self.rng.choice(down))
        if self.seeds and (not alive or self.rng.random() < SEED_PROBABILITY):
            picks.append(self.rng.choice(self.seeds))
        return list(dict.fromkeys(picks))

    # --- the loop --------------------------------------------------------------------------

    async def run_once(self) -> None:
        """One round, awaited (tests and tools): heartbeat, then exchange with the targets."""
        self._touch()
        self.expire_removed()
        self._check_settled()
        await asyncio.gather(*(self._guarded(a) for a in self.targets()))

    async def _guarded(self, address: str) -> None:
        try:
            await self.exchange(address)
        except WrongCluster as exc:
            log.warning("peer of another cluster", extra={"fields": {"peer": address,
                                                                     "error": str(exc)}})
        except PeerRefused as exc:
            log.info("gossip refused", extra={"fields": {"peer": address, "error": exc.detail}})
        except RpcError as exc:
            log.debug("gossip round failed", extra={"fields": {"peer": address,
                                                               "error": str(exc)[:200]}})
        except ValueError as exc:  # the peer's reply decoded but is not a valid view
            log.warning("malformed gossip from a peer", extra={"fields": {
                "peer": address, "error": str(exc)[:300]}})

    def tick(self) -> None:
        """One round of the gossip worker (dfsring.foundation.worker): heartbeat, then start an
        exchange
        with each target that has none in flight. It does not wait for the replies, so one
        slow peer never delays the heartbeat that the others' failure detectors watch."""
        self._touch()
        self.expire_removed()
        self._check_settled()
        for address in self.targets():
            if address not in self._outstanding and len(self._outstanding) < MAX_OUTSTANDING:
                task = asyncio.create_task(self._guarded(address), name=f"gossip {address}")
                self._outstanding[address] = task
                task.add_done_callback(lambda _t, a=address: self._outstanding.pop(a, None))

    async def stop(self) -> None:
        """Cancel the exchanges still in flight (after the worker has stopped)."""
        tasks = list(self._outstanding.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_NO_RING = RingState.empty().to_wire()


def _view(entries: Any, removed: Any, ring: Any | None) -> View:
    """What a peer sent, decoded as a whole view is (membership.View.from_wire: every entry
    valid, no node named twice, at most MAX_MEMBERS); ValueError otherwise, before any of it
    is merged. A message without a ring decodes with the empty one, which no merge adopts."""
    return View.from_wire((entries, removed, _NO_RING if ring is None else ring))


def _addresses(view: View) -> dict[str, str]:
    """Peer and client address of each member: a change to either is a new snapshot."""
    return {k: f"{m.address} {m.api}" for k, m in view.members.items()}


def _statuses(view: View) -> dict[str, Status]:
    return {k: m.status for k, m in view.members.items()}
