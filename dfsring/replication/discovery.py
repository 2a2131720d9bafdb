"""Asking the seeds before founding: the shell around dfsring.core.founding.

While this node holds no ring, every gossip interval it asks every seed, concurrently and
each within a deadline, which ring it holds (a gossip Syn with an empty digest: the seed
answers with its ring and changes nothing), then acts on `founding.decide`: found, adopt the
ring it learned (join or rejoin as itself), or wait. The reason for waiting is logged once
each time it changes and shown on /health, so a node that cannot find a founder says so within
seconds instead of waiting silently. Stops once a ring is known.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dfsring.core import founding
from dfsring.core.founding import Action, Verdict
from dfsring.core.ringstate import RingState
from dfsring.gossip import Gossiper
from dfsring.transport import RpcError, Transport
from dfsring.transport.messages import GossipAck, GossipSyn

log = logging.getLogger("dfsring.core.membership")


class Discovery:
    def __init__(self, *, gossip: Gossiper, rpc: Transport, seeds: tuple[str, ...],
                 bootstrap_expect: int, interval_s: float, deadline_s: float) -> None:
        self.gossip = gossip
        self.rpc = rpc
        self.seeds = seeds
        self.bootstrap_expect = bootstrap_expect
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self.verdict: Verdict | None = None

    def state_json(self) -> dict[str, Any] | None:
        if self.verdict is None:
            return None
        return {"state": str(self.verdict.action), "detail": self.verdict.detail}

    async def _ask(self, seed: str) -> tuple[str, RingState | None] | None:
        syn = GossipSyn("", self.gossip.node_id, (), 0, "", ())
        try:
            ack = await self.rpc.call(seed, syn, GossipAck, self.deadline_s)
            return seed, None if ack.ring is None else RingState.from_wire(ack.ring)
        except (RpcError, ValueError, OSError) as exc:
            log.debug("seed did not answer", extra={"fields": {"seed": seed,
                                                               "error": str(exc)[:200]}})
            return None

    async def run_once(self) -> Verdict | None:
        """One round of asking; None once a ring is known (nothing to decide)."""
        if self.gossip.ring_state.epoch:
            return None
        asked = [s for s in dict.fromkeys(self.seeds) if s != self.gossip.address]
        replies = await asyncio.gather(*(self._ask(s) for s in asked))
        answers = dict(r for r in replies if r is not None)
        if self.gossip.ring_state.epoch:  # gossip learned one meanwhile
            return None
        verdict = founding.decide(node_id=self.gossip.node_id, address=self.gossip.address,
                                  seeds=self.seeds, answers=answers,
                                  bootstrap_expect=self.bootstrap_expect)
        self._report(verdict)
        if verdict.action is Action.FOUND:
            self.gossip.found(verdict.detail)
        elif verdict.ring is not None:
            self.gossip.adopt_ring(verdict.ring)
        return verdict

    def _report(self, verdict: Verdict) -> None:
        if self.verdict is None or self.verdict.detail != verdict.detail:
            level = logging.WARNING if verdict.action is Action.WAIT else logging.INFO
            log.log(level, f"founding: {verdict.detail}",
                    extra={"fields": {"action": str(verdict.action)}})
        self.verdict = verdict

    @property
    def done(self) -> bool:
        """True once a ring is known: the discovery worker then ends (dfsring.foundation.worker)."""
        return bool(self.gossip.ring_state.epoch)
