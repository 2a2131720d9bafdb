"""Expiry of the removed-member set (`membership.View.removed`). Pure.

Why expire. The removed set is a grow-only set merged by union: every node id ever removed
stays in every node's memory, in every gossip Syn and Ack, and in cluster.json, forever; and
peers refuse a list longer than `membership.MAX_MEMBERS`, so a long-lived cluster that keeps
replacing nodes would one day send views its peers cannot decode. So a mark is dropped once it
is older than a grace period, as Cassandra drops a tombstone after ``gc_grace_seconds``
(default 10 days; ours `GRACE_S`, 3 days) and forgets a removed endpoint's gossip state
after a quarantine; and a hard cap (`MAX_REMOVED`) drops the oldest marks early, with a
log line, should removals ever outrun the grace.

What may expire. Only a mark whose removal took effect: the id is in no ring this node still
uses (the agreed ring nor its previous rings, whose owners transfers may still read from). A
mark for a ring member is an operator's pending request (membership.effective_status) and is
kept until a ring without it is chosen. This node's own id never expires here. Expiring a
mark drops the id's member entry too: a removed node's entry says what it said before it was
removed (up, typically: removal is for dead nodes), and without the mark it would read as a
live non-member.

Why an expired id cannot come back. After expiry the id is unknown here, and gossip admits an
unknown node's entry only if it is placed by the ring it is judged by, or says `joining`
(`membership.admissible_entries`, ``placed``). A removed node never says joining again: its
status was up, leaving or left, and is persisted, so neither a stale relay of its entry nor
the node itself restarting (a higher incarnation, the same status) gets back in; and removals
taken from peers require a known entry (`membership.admissible_removals`), so a peer that
has not yet expired the mark does not bring it back either: every node converges on
forgetting it. The one way back is the one an operator takes on purpose: wipe the node's data
dir, and it joins afresh (a new acceptor nonce, no data). As with Cassandra's gc_grace, a
node that was down for longer than the grace should be wiped rather than restarted: it may
still relay the removed node's entry from before it joined the ring.

Times are this node's wall clock when it first held each mark (persisted in cluster.json, so
a restart does not reset them); they never travel, so the wire format is unchanged and clocks
need not agree: a node that learned a mark late keeps it a little longer, which is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dfsring.core.membership import MAX_MEMBERS, View
from dfsring.core.ringstate import RingState

GRACE_S = 3 * 24 * 3600
"""How long a removal mark is kept after this node first held it."""

MAX_REMOVED = MAX_MEMBERS // 2
"""Expirable marks kept at most; past it the oldest go early (a peer refuses a removed list
over MAX_MEMBERS, and ring members' pending requests need room too)."""


def placed(ring: RingState, *, settled: bool = False) -> frozenset[str]:
    """Ids a ring still uses: its members, and the members of its previous rings until its
    transfers settled (a node stops consulting those then, dfsring.core.transition)."""
    ids = set(ring.member_ids)
    for previous in () if settled else ring.previous:
        ids.update(m.node_id for m in previous)
    return frozenset(ids)


def stamped(removed_at: Mapping[str, float], removed: Iterable[str],
            now: float) -> dict[str, float]:
    """The stamps for exactly the ids in `removed`: kept ones keep theirs, new ones get
    `now`."""
    return {node_id: removed_at.get(node_id, now) for node_id in removed}


def to_expire(view: View, removed_at: Mapping[str, float], now: float, self_id: str, *,
              settled: bool = False, grace_s: float = GRACE_S,
              cap: int = MAX_REMOVED) -> frozenset[str]:
    """The marks to drop now: expirable ones (module docstring) older than `grace_s`, and
    the oldest past `cap`. An id without a stamp counts as stamped now. `settled`: the
    ring's transfers are complete, so its previous rings are no longer in use."""
    in_use = placed(view.ring, settled=settled)
    expirable = sorted((removed_at.get(n, now), n) for n in view.removed
                       if n not in in_use and n != self_id)
    old = {n for at, n in expirable if now - at >= grace_s}
    young = [n for _at, n in expirable if n not in old]
    over = young[:max(0, len(young) - cap)]
    return frozenset(old | set(over))


def expire(view: View, ids: Iterable[str]) -> View:
    """`view` without these marks and without their member entries."""
    gone = frozenset(ids)
    if not gone:
        return view
    return View({k: m for k, m in view.members.items() if k not in gone},
                view.removed - gone, view.ring)
