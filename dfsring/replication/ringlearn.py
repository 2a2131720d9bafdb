"""Adopt a newer ring only once the acceptors of our own ring vouch for it (issue 23).

The rule and why it is sound are in dfsring.core.ringproof; this module asks. Membership
(dfsring.gossip.Gossiper) consults `RingProver.vouch` before it adopts a ring newer than its
own: a ring this node knows chosen (it held it, or its own proposal got it chosen, or it
proved it) passes at once; any other starts a proof in the background and is not adopted
now. The proof dials every member of this node's current ring at the address this node holds
for it (never the sender's word), asks `EpochChosen`, and on a proof adopts the ring itself.
Gossip and the proposer's retries offer the ring again, so a failed proof is retried after
`retry_s` (an announce at once: the same ring may have been offered, even forged, before its
proposal was chosen); a refusal changes nothing and is logged once per ring, and counted.

Cost: one round trip to each member of the current ring, in parallel, per adopted epoch and
per node that did not propose it (the proposer knows its ring chosen); one proof serves every
messenger of the same ring.

Bounds: at most MAX_PENDING proofs at a time, one per ring; each within `deadline_s`; the
retry and log memories are capped (MAX_REMEMBERED).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from dfsring.core import ringproof
from dfsring.core.clusterview import Membership
from dfsring.core.ringproof import Answer, ChosenLog
from dfsring.core.ringstate import RingState
from dfsring.transport import RpcError, Transport
from dfsring.transport.messages import EpochChosen, EpochChosenReply

log = logging.getLogger("dfsring.replication.ringlearn")

MAX_PENDING = 4
"""Proofs in flight at once: a flood of plausible forged rings costs at most this many."""
MAX_REMEMBERED = 256
"""Rings whose refusal is remembered (retry time, logged once) before the memory is reset."""

Key = tuple[int, str]


class RingProver:
    def __init__(self, *, membership: Membership, rpc: Transport, deadline_s: float,
                 local: Callable[[EpochChosen], EpochChosenReply], retry_s: float,
                 count: Callable[[str], None] = lambda _outcome: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.membership = membership
        self.node_id = membership.cluster_view().node_id
        self.rpc = rpc
        self.deadline_s = deadline_s
        self.local = local
        self.retry_s = retry_s
        self.count = count
        self.clock = clock
        self.log = ChosenLog()
        self.asked = 0  # EpochChosen calls sent: what the proofs cost
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._refused_until: dict[Key, float] = {}
        self._logged: set[Key] = set()
        self._follow()
        membership.subscribe(self._follow)

    def _current(self) -> RingState:
        return self.membership.cluster_view().ring_state

    def _follow(self) -> None:
        """Every ring this node adopts was chosen: remember it, to vouch for it later."""
        self.log = self.log.with_ring(self._current())

    def record(self, ring: RingState) -> None:
        """`ring` is known chosen here (this node's own proposal got it chosen)."""
        self.log = self.log.with_ring(ring)

    def vouch(self, ring: RingState) -> bool:
        """True if `ring` may be adopted now; else a proof of it is started (or already
        running, or refused a moment ago) and the caller adopts nothing."""
        if self.log.knows(ring.epoch, ringproof.ring_id(ring)):
            return True
        self._start(ring)
        return False

    async def settle(self, ring: RingState) -> None:
        """Return once the proof of `ring` in flight, if any, has ended (each proof is
        bounded by `deadline_s`; a caller cancelled meanwhile leaves the proof running)."""
        task = self._tasks.get((ring.epoch, ringproof.ring_id(ring)))
        if task is not None:
            await asyncio.wait({task})

    def forget(self, ring: RingState) -> None:
        self._refused_until.pop((ring.epoch, ringproof.ring_id(ring)), None)

    def _start(self, ring: RingState) -> None:
        key = (ring.epoch, ringproof.ring_id(ring))
        if (key in self._tasks or len(self._tasks) >= MAX_PENDING
                or self._refused_until.get(key, 0.0) > self.clock()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller in a test): nothing to prove with
            return
        task = loop.create_task(self._prove_and_adopt(ring, key), name=f"prove ring {key[0]}")
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(key, None))

    async def _prove_and_adopt(self, ring: RingState, key: Key) -> None:
        current = self._current()
        if ring.epoch <= current.epoch:
            return
        try:
            ok = await self.prove(current, ring)
        except Exception as exc:  # a background task: log it, never lose it
            log.warning("ring proof failed", extra={"fields": {
                "epoch": ring.epoch, "error": repr(exc)[:300]}})
            ok = False
        if not ok:
            self._refuse(key, current)
            return
        self.record(ring)
        self.count("proven")
        try:
            self.membership.adopt_ring(ring)
        except ValueError as exc:  # moved on meanwhile to a ring this one does not fit
            log.info("proven ring no longer adoptable", extra={"fields": {
                "epoch": ring.epoch, "error": str(exc)[:300]}})

    def _refuse(self, key: Key, current: RingState) -> None:
        self.count("refused")
        if len(self._refused_until) >= MAX_REMEMBERED:
            self._refused_until.clear()
            self._logged.clear()
        self._refused_until[key] = self.clock() + self.retry_s
        if key not in self._logged:
            self._logged.add(key)
            log.warning("ring not adopted: its choice is not proven by our ring's acceptors",
                        extra={"fields": {"epoch": key[0], "ring": key[1][:12],
                                          "our_epoch": current.epoch}})

    async def prove(self, current: RingState, ring: RingState) -> bool:
        """Ask the members of `current` about `ring`; True once their answers prove it
        chosen (dfsring.core.ringproof.proven). Stops as soon as the outcome is decided."""
        msg = EpochChosen(ring.epoch, ringproof.ring_id(ring))
        answers: dict[str, Answer] = {}
        tasks = {asyncio.ensure_future(self._ask(node, msg)): node
                 for node in current.member_ids}
        pending = set(tasks)
        try:
            async with asyncio.timeout(self.deadline_s):
                while (pending and not ringproof.proven(current, ring, answers)
                       and not ringproof.hopeless(current, ring, answers)):
                    done, pending = await asyncio.wait(pending,
                                                       return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        got = task.result()
                        if got is not None:
                            answers[tasks[task]] = got
        except TimeoutError:
            pass
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return ringproof.proven(current, ring, answers)

    async def _ask(self, node: str, msg: EpochChosen) -> Answer | None:
        """One acceptor's answer; None if it cannot be reached or answers nonsense."""
        try:
            if node == self.node_id:
                reply = self.local(msg)
            else:
                self.asked += 1
                address = self.membership.cluster_view().address_of(node)
                reply = await self.rpc.call(address, msg, EpochChosenReply, self.deadline_s)
            return Answer.from_wire(reply.knows, reply.ballot)
        except (RpcError, KeyError, ValueError) as exc:
            log.debug("acceptor gave no answer on a ring", extra={"fields": {
                "node": node, "error": str(exc)[:200]}})
            return None

    async def stop(self) -> None:
        """Cancel the proofs in flight (on shutdown)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
