"""Ring epochs: the claimant proposes the next ring, the current members agree on it.

Ownership changes only by explicit, numbered epochs. Which change comes next is decided by
one node, the claimant: the lowest-id ring member it believes alive (riak_core's claimant).
Views of liveness can differ, so two nodes may act as claimant at once; that is harmless,
because epoch E+1 is decided by single-decree Paxos (Lamport, "Paxos Made Simple", 2001)
among the members of epoch E: each proposal needs promises and then accepts from a majority
of them, acceptors persist their promise before answering, and a proposer that learns of an
already accepted value completes that one instead of its own. So at most one ring is ever
chosen for an epoch number, and two different rings never carry the same epoch. Nodes adopt
only chosen rings (pushed right away by the proposer, spread by gossip otherwise).

The price of that guarantee: a change needs a majority of the current members reachable.
A two-node cluster cannot remove its dead half; a five-node cluster can lose two.

The pure parts (ballots, acceptor rules, the proposer state machine, what the next ring
should be) are in dfsring.core.epochs; this module does the persisting and the sending.

Acceptor memory (issue 15, dfsring.core.epochs explains why): `load_acceptor` gives a node with no
acceptor file a fresh memory with a new nonce, which sits out every vote until a chosen ring
lists that nonce; the claimant proposes such a ring (same members, new nonce) when gossip shows
a member's nonce differs from the ring's. Ballots carry a per-process proposer id, so a node
that restarted (or lost its disk) never reuses a ballot it may have used before (§2.5).

Proof of choice (issue 23): a ring newer than ours that a peer tells us of is adopted only
once the members of our ring vouch for it (dfsring.core.ringproof, asked by
dfsring.replication.ringlearn); this acceptor answers those questions (`handle_chosen`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from dfsring.core import epochs, ringproof
from dfsring.core.clusterview import Membership
from dfsring.core.epochs import AcceptorState, Ballot, Proposal
from dfsring.core.failure import Liveness
from dfsring.core.membership import Status
from dfsring.core.ringstate import RingState, adoption_problem
from dfsring.replication.ringlearn import RingProver
from dfsring.ring import RingMember
from dfsring.storage.clusterfile import write_atomic
from dfsring.transport import RpcError, Transport
from dfsring.transport.messages import (
    EpochAccept,
    EpochAccepted,
    EpochChosen,
    EpochChosenReply,
    EpochPrepare,
    EpochPromise,
    Message,
)

log = logging.getLogger("dfsring.replication.ringchange")


def load_acceptor(state_file: Path) -> AcceptorState:
    """The persisted acceptor memory; a missing file (first start, wiped data dir) gives a
    fresh one with a new nonce, written at once, that votes nowhere until re-admitted. A file
    from before nonces keeps its memory and votes as before; it gets a nonce so that a later
    loss is noticed too. ValueError for a damaged file."""
    try:
        state = AcceptorState.from_json(orjson.loads(state_file.read_bytes()))
    except FileNotFoundError:
        state = epochs.fresh(1, secrets.token_hex(8))
        log.info("new acceptor memory: it votes on ring changes once a ring lists it",
                 extra={"fields": {"nonce": state.nonce}})
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{state_file} is damaged ({exc}); restore it or wipe the data dir"
                         ) from exc
    if not state.nonce:
        state = AcceptorState(state.slot, state.promised, state.accepted,
                              secrets.token_hex(8), state.voting_from)
    write_atomic(state_file, orjson.dumps(state.to_json()))
    return state


class RingChanger:
    def __init__(self, *, membership: Membership, rpc: Transport, state_file: Path,
                 interval_s: float, deadline_s: float,
                 acceptor: AcceptorState | None = None,
                 count_proof: Callable[[str], None] = lambda _outcome: None) -> None:
        self.membership = membership
        self.node_id = membership.cluster_view().node_id
        self.rpc = rpc
        self.state_file = state_file
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self.acceptor = acceptor if acceptor is not None else load_acceptor(state_file)
        self._refresh()
        self._proposer = f"{self.node_id}~{secrets.token_hex(4)}"
        self._round = 0
        self._lock = asyncio.Lock()
        membership.subscribe(self._refresh)
        self.prover = RingProver(membership=membership, rpc=rpc, deadline_s=deadline_s,
                                 local=self.handle_chosen, retry_s=max(1.0, 4 * interval_s),
                                 count=count_proof)

    def _ring(self) -> RingState:
        return self.membership.cluster_view().ring_state

    # --- acceptor ----------------------------------------------------------------------------

    @property
    def voting(self) -> bool:
        """Whether this node's acceptor takes part in the next slot's vote."""
        return self.acceptor.voting_from <= self._ring().epoch + 1

    def _refresh(self) -> None:
        """Follow the adopted ring: move to its next slot, and be (re)admitted by it."""
        ring = self._ring()
        was = self.acceptor.voting_from
        state = epochs.admit(epochs.advance(self.acceptor, ring.epoch), ring, self.node_id)
        if state.voting_from != was:
            log.info("acceptor admitted: votes on ring changes", extra={"fields": {
                "from_epoch": state.voting_from}})
        self._persist(state)

    def _persist(self, state: AcceptorState) -> None:
        if state != self.acceptor:
            write_atomic(self.state_file, orjson.dumps(state.to_json()))
            self.acceptor = state

    def _catch_up(self, ring: RingState) -> None:
        """A proposer's ring (chosen) newer than ours: adopt it before voting on the next."""
        self.membership.adopt_ring(ring)
        self._refresh()

    def handle_prepare(self, msg: EpochPrepare) -> EpochPromise:
        """Everything is checked before the ring is caught up with or a promise persisted:
        a refused prepare changes nothing (issue 23)."""
        ring = RingState.from_wire(msg.ring)
        ballot = Ballot.from_wire(msg.ballot)
        if msg.slot != ring.epoch + 1:
            raise ValueError(f"a prepare for slot {msg.slot} carries the proposer's ring of "
                             f"epoch {msg.slot - 1}, not {ring.epoch}")
        problem = adoption_problem(self._ring(), ring)
        if problem:
            raise ValueError(f"the proposer's ring is refused: {problem}")
        self._catch_up(ring)
        if self._ring().epoch < ring.epoch:
            # the proposer's ring is being proven (ringlearn): until it is adopted, this
            # acceptor must not move its memory to the slot after it
            raise ValueError(f"the proposer's ring of epoch {ring.epoch} is not yet proven "
                             "chosen here")
        state, promise = epochs.on_prepare(self.acceptor, msg.slot, ballot)
        self._persist(state)
        accepted = promise.accepted
        return EpochPromise(promise.ok,
                            None if promise.promised is None else promise.promised.to_wire(),
                            None if accepted is None else accepted[0].to_wire(),
                            None if accepted is None else accepted[1].to_wire(),
                            self._ring().to_wire())

    def handle_accept(self, msg: EpochAccept) -> EpochAccepted:
        """An accept votes only in the slot after this node's ring: a proposer's prepare
        brings a lagging acceptor up to date first, so a later slot is refused unchanged
        (it would move the acceptor's memory past every slot still to be decided)."""
        ballot, value = Ballot.from_wire(msg.ballot), RingState.from_wire(msg.value)
        if msg.slot > self._ring().epoch + 1:
            raise ValueError(f"an accept for slot {msg.slot}, past our next "
                             f"({self._ring().epoch + 1})")
        self._refresh()
        state, ok = epochs.on_accept(self.acceptor, msg.slot, ballot, value)
        self._persist(state)
        return EpochAccepted(ok, self._ring().to_wire())

    def handle_chosen(self, msg: EpochChosen) -> EpochChosenReply:
        """What this acceptor knows of ring (epoch, id): a node proving it asks
        (dfsring.core.ringproof.answer). Read-only."""
        found = ringproof.answer(self.acceptor, self._ring(), self.prover.log, msg.epoch,
                                 msg.ring_id)
        knows, ballot = found.to_wire()
        return EpochChosenReply(knows, ballot)

    async def stop(self) -> None:
        await self.prover.stop()

    # --- claimant / proposer ---------------------------------------------------------------

    def is_claimant(self) -> bool:
        view = self.membership.cluster_view()
        ring = view.ring_state
        return ring.epoch >= 1 and epochs.claimant(ring, view.is_alive) == self.node_id

    def plan(self) -> RingState | None:
        """The ring the cluster should move to next, by this node's view (pure planning)."""
        view = self.membership.cluster_view()
        ring, members = view.ring_state, view.members
        in_ring = ring.member_ids
        joining = [RingMember(m.node_id, m.zone, acceptor=m.acceptor)
                   for m in members.members.values()
                   if m.node_id not in in_ring and view.status_of(m.node_id) is Status.JOINING
                   and view.liveness_of(m.node_id) is Liveness.UP]
        leaving = [n for n in in_ring if view.status_of(n) is Status.LEAVING]
        # a removal request takes effect only for a member the claimant holds down too
        removed = [n for n in in_ring if n in members.removed
                   and view.liveness_of(n) is Liveness.DOWN]
        return epochs.plan_next(ring, joining=joining, leaving=leaving, removed=removed,
                                settled=view.settled, renewed=self._renewed())

    def _renewed(self) -> dict[str, str]:
        """Members up whose gossiped acceptor nonce is not the ring's: they lost their
        acceptor memory (a wiped data dir) and wait to be re-admitted."""
        view = self.membership.cluster_view()
        out = {}
        for m in view.ring_state.members:
            entry = view.members.members.get(m.node_id)
            if (entry is not None and entry.acceptor and entry.acceptor != m.acceptor
                    and view.liveness_of(m.node_id) is Liveness.UP):
                out[m.node_id] = entry.acceptor
        return out

    async def run_once(self) -> RingState | None:
        """If this node is the claimant and a change is due, try to get it chosen."""
        async with self._lock:
            if not self.is_claimant():
                return None
            value = self.plan()
            if value is None:
                return None
            return await self.propose(value)

    async def propose(self, value: RingState) -> RingState | None:
        """One Paxos attempt for `value`'s epoch; the chosen ring if it was ours, else None
        (someone else's value was completed, or no majority answered: try again later)."""
        current = self._ring()
        self._round += 1
        ballot = Ballot(self._round, self._proposer)
        proposal = Proposal(value.epoch, ballot, current.member_ids, value)
        prepare = EpochPrepare(value.epoch, ballot.to_wire(), current.to_wire())
        await self._phase(proposal, current.member_ids, prepare, self._on_promise,
                          lambda: proposal.phase1_done or proposal.phase1_failed)
        if not proposal.phase1_done:
            seen = proposal.highest_seen()
            self._round = max(self._round, seen.round if seen else 0)
            log.info("ring change not promised", extra={"fields": {"epoch": value.epoch}})
            return None
        chosen_value = proposal.value_to_propose()
        accept = EpochAccept(value.epoch, ballot.to_wire(), chosen_value.to_wire())
        await self._phase(proposal, current.member_ids, accept, self._on_accepted,
                          lambda: proposal.chosen or proposal.failed)
        if not proposal.chosen:
            return None
        self.prover.record(chosen_value)  # a majority accepted it under our ballot: chosen
        self.membership.adopt_ring(chosen_value)
        log.info("ring epoch chosen", extra={"fields": {
            "epoch": chosen_value.epoch, "members": sorted(chosen_value.member_ids)}})
        await self.membership.announce(chosen_value,
                                       chosen_value.member_ids | current.member_ids
                                       | set(self.membership.cluster_view().members.members))
        return chosen_value if proposal.proposing_own else None

    async def _phase(self, proposal: Proposal, acceptors: frozenset[str], msg: Message,
                     record: Callable[[Proposal, str, Message], None],
                     decided: Callable[[], bool]) -> None:
        tasks = {asyncio.ensure_future(self._ask(node, msg)): node for node in acceptors}
        pending = set(tasks)
        try:
            async with asyncio.timeout(self.deadline_s):
                while pending and not decided():
                    done, pending = await asyncio.wait(pending,
                                                       return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        reply = task.result()
                        if reply is not None:
                            record(proposal, tasks[task], reply)
        except TimeoutError:
            pass
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _ask(self, node: str, msg: Message) -> Message | None:
        if node == self.node_id:
            if isinstance(msg, EpochPrepare):
                return self.handle_prepare(msg)
            assert isinstance(msg, EpochAccept)
            return self.handle_accept(msg)
        reply_type = EpochPromise if isinstance(msg, EpochPrepare) else EpochAccepted
        try:
            return await self.rpc.call(self.membership.cluster_view().address_of(node), msg,
                                       reply_type,
                                       self.deadline_s)
        except (RpcError, KeyError) as exc:
            log.debug("acceptor unreachable", extra={"fields": {"node": node,
                                                                "error": str(exc)[:200]}})
            return None

    def _on_promise(self, proposal: Proposal, node: str, reply: Message) -> None:
        assert isinstance(reply, EpochPromise)
        self._maybe_adopt(reply.ring)
        accepted = None
        if reply.accepted_ballot is not None and reply.accepted is not None:
            accepted = (Ballot.from_wire(reply.accepted_ballot),
                        RingState.from_wire(reply.accepted))
        promised = None if reply.promised is None else Ballot.from_wire(reply.promised)
        proposal.on_promise(node, epochs.Promise(reply.ok, accepted, promised))

    def _on_accepted(self, proposal: Proposal, node: str, reply: Message) -> None:
        assert isinstance(reply, EpochAccepted)
        self._maybe_adopt(reply.ring)
        proposal.on_accepted(node, reply.ok)

    def _maybe_adopt(self, wire: Any) -> None:
        try:
            self.membership.adopt_ring(RingState.from_wire(wire))
        except ValueError as exc:
            log.warning("acceptor sent an unusable ring", extra={"fields": {"error": str(exc)}})

