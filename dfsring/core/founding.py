"""Whether a node without a ring founds a cluster, joins one, rejoins as itself, or waits.

Pure: the shell (dfsring.replication.discovery) asks every seed what ring it holds and calls
`decide`.

Why this is not "the first seed founds" any more (issue 15). A node that lost its whole data
dir forgets that a cluster exists. If it then founds on its own, as the first seed of a
StatefulSet-style seed list used to, it starts a second cluster of one (epoch 1, itself the
only member) and stays apart for good. So a node founds only when it can establish that no
cluster exists, or when told to:

* any seed that knows a cluster wins: a node the cluster lists as a member *rejoins* as
  itself (same id, same ring ownership; its peers refill it), any other node joins;
* no seeds at all: a single node founds its own cluster at once (an explicit act: nothing
  to ask);
* ``--bootstrap-expect N`` (Consul's ``bootstrap_expect``): found only once N seeds, this
  node included, answered and none knows a cluster; of those, the lowest address founds,
  the others wait for its ring;
* otherwise the first seed founds once *every* other seed answered without a cluster; a seed
  that does not answer might hold the cluster, so the node waits and says so.

A node whose seeds omit itself never founds by the default rule; it says so rather than wait
silently. Every waiting verdict carries a one-line reason for /health and the log.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dfsring.core.ringstate import RingState


class Action(enum.StrEnum):
    FOUND = "found"
    JOIN = "join"
    REJOIN = "rejoin"
    WAIT = "waiting"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    detail: str
    ring: RingState | None = None


def decide(*, node_id: str, address: str, seeds: Sequence[str],
           answers: Mapping[str, RingState | None], bootstrap_expect: int = 0) -> Verdict:
    """The verdict for a node with no ring, given which seeds answered and with what ring.

    ``answers`` maps each seed (other than ``address``) that answered to the ring it holds
    (None or epoch 0: it has none); a seed missing from it did not answer.
    """
    known = [r for r in answers.values() if r is not None and r.epoch >= 1]
    if known:
        ring = max(known, key=lambda r: r.epoch)
        if node_id in ring.member_ids:
            return Verdict(Action.REJOIN, f"seeds know cluster {ring.cluster} (epoch "
                           f"{ring.epoch}) with this node as a member: rejoining as itself",
                           ring)
        return Verdict(Action.JOIN, f"joining cluster {ring.cluster} (epoch {ring.epoch})",
                       ring)
    others = [s for s in dict.fromkeys(seeds) if s != address]
    silent = [s for s in others if s not in answers]
    if bootstrap_expect:
        return _expect(address, others, silent, bootstrap_expect)
    if not seeds:
        return Verdict(Action.FOUND, "no seeds: founding a single-node cluster")
    if address not in seeds:
        return Verdict(Action.WAIT, f"seeds omit this node ({address}), so it never founds a "
                       f"cluster; waiting for a seed that knows one{_silent(silent)}; list "
                       "this node among the seeds or use --bootstrap-expect")
    if seeds[0] != address:
        return Verdict(Action.WAIT, f"waiting for the first seed {seeds[0]} to found the "
                       f"cluster{_silent(silent)}")
    if silent:
        return Verdict(Action.WAIT, "cannot establish that no cluster exists: this node (the "
                       "first seed) founds only once every seed answered without one"
                       f"{_silent(silent)}")
    return Verdict(Action.FOUND, f"every seed ({len(others)}) answered and none knows a "
                   "cluster: founding one")


def _expect(address: str, others: Sequence[str], silent: Sequence[str],
            expect: int) -> Verdict:
    reached = [address, *(s for s in others if s not in silent)]
    if len(reached) < expect:
        return Verdict(Action.WAIT, f"--bootstrap-expect {expect}: {len(reached)} seed(s) "
                       f"reachable, this node included{_silent(silent)}")
    founder = min(reached)
    if founder != address:
        return Verdict(Action.WAIT, f"--bootstrap-expect {expect} met: waiting for {founder} "
                       "(the lowest address reached) to found the cluster")
    return Verdict(Action.FOUND, f"--bootstrap-expect {expect} met and no seed knows a "
                   "cluster: founding one")


def _silent(silent: Sequence[str]) -> str:
    if not silent:
        return ""
    shown = ", ".join(silent[:5]) + (" ..." if len(silent) > 5 else "")
    return f" (no answer from {shown})"
