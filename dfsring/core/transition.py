"""Who holds and who needs what while partition ownership moves between ring epochs.

Pure. A new epoch changes owners at once, but data moves later: until every member of the
epoch has fetched its new partitions (`transition_complete`), a value acknowledged under an
older ring may sit only on that ring's owners. `RingState.previous` keeps those rings
(newest first) and the rules here keep reads and writes correct meanwhile:

* writes go to the current owners, and W is counted over them only, since they are the
  copies that survive the transition; the previous owners get the write too (`write_targets`)
  so they keep serving reads until they hand over;
* reads need R replies from *each* ring's preference list (`read_groups`): a value acked
  under ring k is on W of ring k's owners, and R + W > N within each list makes every read
  meet it (Dynamo §4.5), whichever ring it was written under;
* a node fetches the partitions it owns now but did not own in some previous ring
  (`incoming`) from those rings' owners (`sources`), and drops what it no longer owns once
  the transition is complete (`not_owned`).

Cassandra likewise writes to both the natural and the pending replicas of a range while it
moves (its "pending ranges"); here the new owners are the counted ones and the old owners the
extra ones, and a read consults every ring, so it is correct whichever ring a value was
acknowledged under.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dfsring.core.ringstate import RingState
from dfsring.ring import Ring


def _unique(nodes: Iterable[str], skip: Iterable[str] = ()) -> tuple[str, ...]:
    """``nodes`` in order, each once, without those in ``skip``."""
    seen = set(skip)
    out: list[str] = []
    for node in nodes:
        if node not in seen:
            seen.add(node)
            out.append(node)
    return tuple(out)


def write_targets(
    partition: int, current: Ring, previous: Sequence[Ring]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(counted, extra)`` for a write to ``partition``.

    ``counted`` is the current preference list, the only replies W is counted over: the new
    owners are the copies that survive. ``extra`` are the previous rings' owners not already
    counted (newest ring first, each once); they still serve reads until transfers finish.
    """
    counted = current.preference_list(partition)
    older = (node for ring in previous for node in ring.preference_list(partition))
    return counted, _unique(older, skip=counted)


def read_groups(
    partition: int, current: Ring, previous: Sequence[Ring]
) -> tuple[tuple[str, ...], ...]:
    """One preference list per ring, current first; a read needs R replies from each group.

    Lists holding the same nodes are one group (the quorum rule depends on the set, not the
    order), and empty lists are skipped.
    """
    groups: list[tuple[str, ...]] = []
    seen: set[frozenset[str]] = set()
    for ring in (current, *previous):
        plist = ring.preference_list(partition)
        if plist and frozenset(plist) not in seen:
            seen.add(frozenset(plist))
            groups.append(plist)
    return tuple(groups)


def incoming(node_id: str, current: Ring, previous: Sequence[Ring]) -> tuple[int, ...]:
    """Partitions ``node_id`` owns in ``current`` but not in every previous ring, ascending.

    Those are the partitions whose data may be missing here: under a previous ring where the
    node was not an owner, writes were acked without it. () when nothing is in transition.
    """
    if not previous:
        return ()
    return tuple(p for p in current.partitions_of(node_id)
                 if any(node_id not in ring.preference_list(p) for ring in previous))


def sources(
    partition: int, node_id: str, previous: Sequence[Ring], exclude: Iterable[str] = ()
) -> tuple[str, ...]:
    """Where to fetch ``partition`` from: its owners in the previous rings, newest ring
    first, each once, without ``node_id`` itself and ``exclude`` (e.g. removed nodes)."""
    owners = (node for ring in previous for node in ring.preference_list(partition))
    return _unique(owners, skip=(node_id, *exclude))


def not_owned(
    node_id: str, current: Ring, partitions_with_data: Iterable[int]
) -> tuple[int, ...]:
    """Partitions ``node_id`` holds data for but does not own in ``current``, ascending.

    Drop them only once the transition is complete: until then a read may still need them.
    """
    owned = set(current.partitions_of(node_id))
    return tuple(sorted(set(partitions_with_data) - owned))


def transition_complete(ring: RingState, synced: Mapping[str, int]) -> bool:
    """True once every member reports ``synced[member] >= ring.epoch`` (missing counts as 0):
    every new owner has fetched its data, so the previous rings can be forgotten. A ring
    with nothing previous is complete by definition."""
    if not ring.previous:
        return True
    return all(synced.get(node, 0) >= ring.epoch for node in ring.member_ids)


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """Counters of one node's incoming transfer, for the progress API.

    The ETA extrapolates the partition completion rate: total bytes are unknown in advance,
    partitions are not. ``started_at`` and ``now`` are seconds on one monotonic clock.
    """

    partitions_total: int
    partitions_done: int = 0
    bytes_done: int = 0
    keys_done: int = 0
    started_at: float = 0.0
    now: float = 0.0

    def __post_init__(self) -> None:
        if min(self.partitions_total, self.partitions_done, self.bytes_done, self.keys_done) < 0:
            raise ValueError("transfer counters cannot be negative")
        if self.partitions_done > self.partitions_total:
            raise ValueError("more partitions done than there are to do")

    @property
    def elapsed(self) -> float:
        return max(0.0, self.now - self.started_at)

    @property
    def fraction(self) -> float:
        """Share of partitions done; 1.0 when there is nothing to transfer."""
        if self.partitions_total == 0:
            return 1.0
        return self.partitions_done / self.partitions_total

    @property
    def rate(self) -> float:
        """Bytes per second since the start; 0.0 before any time has passed."""
        return self.bytes_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the partition rate so far; None until a partition is done."""
        remaining = self.partitions_total - self.partitions_done
        if remaining == 0:
            return 0.0
        if self.partitions_done == 0 or self.elapsed <= 0:
            return None
        return self.elapsed * remaining / self.partitions_done

    def add(
        self, *, now: float, partitions: int = 0, bytes_: int = 0, keys: int = 0
    ) -> TransferProgress:
        """These counters after more work, observed at ``now``."""
        return replace(self, partitions_done=self.partitions_done + partitions,
                       bytes_done=self.bytes_done + bytes_, keys_done=self.keys_done + keys,
                       now=max(self.now, now))

    def to_json(self) -> dict[str, Any]:
        return {"partitions_total": self.partitions_total,
                "partitions_done": self.partitions_done, "bytes_done": self.bytes_done,
                "keys_done": self.keys_done, "elapsed_s": self.elapsed, "rate": self.rate,
                "eta_s": self.eta_s}
