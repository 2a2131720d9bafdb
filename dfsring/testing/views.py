"""Cluster views for tests: hand a service a fixed ring and liveness without gossip.

A service reads its cluster through a dfsring.core.clusterview.ViewSource; these build the
ClusterView a test wants (every ring member known, at a made-up address unless given, and
the named nodes held down by the failure detector).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dfsring.core.clusterview import ClusterView
from dfsring.core.failure import Liveness
from dfsring.core.membership import MemberState, Status, View
from dfsring.core.ringstate import RingState
from dfsring.ring import Ring

TEST_CLUSTER = "test"


def view_of(ring: Ring, me: str, *, previous: tuple[Ring, ...] = (),
            down: Iterable[str] = (), addresses: Mapping[str, str] | None = None,
            ) -> ClusterView:
    """``me``'s view of ``ring`` (and of ``previous`` rings, unsettled while there are any);
    every member of any ring is known, ``down`` ones held down. Addresses default to
    ``<node>.invalid:1``: nothing listens there."""
    known = dict.fromkeys([me, *(m.node_id for r in (ring, *previous) for m in r.members)])
    addresses = addresses or {}
    entries = {n: MemberState(n, addresses.get(n, f"{n}.invalid:1"), "", Status.UP, 1, 0,
                              ring.epoch) for n in known}
    rs = RingState(TEST_CLUSTER, ring.epoch, ring.members,
                   tuple(r.members for r in previous))
    dead = set(down)
    liveness = {n: Liveness.DOWN if n in dead else Liveness.UP for n in known if n != me}
    return ClusterView(me, View(entries, frozenset(), rs), ring, previous, not previous,
                       liveness)
