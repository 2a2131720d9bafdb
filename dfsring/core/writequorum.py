"""Which acks count toward W while ownership moves (issue 15 part 4). Pure.

A write is acknowledged when W of the key's owners hold it durably (Dynamo §4.5). Under
moving ownership "the key's owners" must be read as: the preference list of the key under
the ring current when the quorum is decided, the ring the write *completes* under. So:

* an ack counts for an owner of that ring: the owner's own copy, or a hint that a fallback
  (not itself an owner, or one node would count twice) keeps for that owner; the sloppy
  quorum rule (Dynamo §4.6), unchanged, except that the owner must still own the key;
* each replica says which ring epoch it applied the write under (`WriteAck.epoch`); an ack
  applied under a newer ring than the deciding one does not count until the coordinator has
  that ring and recounts (`rering`): the replica may hold the key there only as an old owner
  serving reads until it drops it;
* the coordinator's own copy is an ack like any other, so it counts only if the coordinator
  owns the key;
* a coordinator whose ring changed mid-write recounts every reply against the new owners
  (`rering`) and asks the new owners it has not heard from.

Replies are kept as they come and the count is recomputed from them, so a recount is exact
and nothing depends on the order of arrival. The decision itself is `QuorumTracker`'s, fed
at most one reply per owner of the deciding ring: it never sees more than N replies, however
many nodes answer (Riak's put_core would crash the FSM the same way on an extra reply).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dfsring.core.quorum import OK_OUTCOME, Outcome, QuorumTracker
from dfsring.foundation.errors import QuorumNotMet


@dataclass(frozen=True, slots=True)
class WriteAck:
    """`replica` stored the write durably under its ring epoch `epoch`; `for_owner` is set
    when it keeps the write as a hint for that (down) owner instead of as its own copy."""

    replica: str
    epoch: int
    for_owner: str | None = None

    @property
    def slot(self) -> str:
        """The owner this ack stands for."""
        return self.replica if self.for_owner is None else self.for_owner


def counted(acks: Iterable[WriteAck], owners: Sequence[str], epoch: int) -> dict[str, WriteAck]:
    """owner -> the ack that counts for it under the ring (`owners`, `epoch`); an owner's
    own copy is preferred over a hint for it. At most one ack per owner."""
    members = set(owners)
    out: dict[str, WriteAck] = {}
    for ack in acks:
        if ack.epoch > epoch or ack.slot not in members:
            continue
        if ack.for_owner is None:
            out[ack.replica] = ack
        elif ack.replica not in members:
            out.setdefault(ack.for_owner, ack)
    return out


class WriteQuorum:
    """The replies to one write, counted under the ring the coordinator holds now.

    Invariants: `acked <= len(owners) <= n`; `outcome` is OK exactly when `acked >= needed`
    and FAILED exactly when even every owner not yet heard could not make `needed`.
    """

    __slots__ = ("_acks", "_epoch", "_failures", "_needed", "_owners")

    def __init__(self, owners: Sequence[str], needed: int, epoch: int) -> None:
        if needed < 1:
            raise ValueError(f"needed must be at least 1, got {needed}")
        self._needed = needed
        self._acks: dict[tuple[str, str | None], WriteAck] = {}
        self._failures: dict[str, str] = {}
        self._owners: tuple[str, ...] = ()
        self._epoch = 0
        self.rering(owners, epoch)

    @property
    def owners(self) -> tuple[str, ...]:
        return self._owners

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def needed(self) -> int:
        return self._needed

    @property
    def n(self) -> int:
        """Replies the decision is over: the owners, padded to `needed` in a small cluster."""
        return max(len(self._owners), self._needed)

    @property
    def newest_epoch(self) -> int:
        """The newest ring epoch any replica applied the write under (0 if none)."""
        return max((a.epoch for a in self._acks.values()), default=0)

    def counted(self) -> dict[str, WriteAck]:
        return counted(self._acks.values(), self._owners, self._epoch)

    @property
    def acked(self) -> int:
        return len(self.counted())

    @property
    def hinted(self) -> int:
        """Counted acks that are fallbacks' hints."""
        return sum(1 for a in self.counted().values() if a.for_owner is not None)

    @property
    def outcome(self) -> Outcome:
        return self._tracker().outcome

    def ok(self, ack: WriteAck) -> Outcome:
        """Record an ack. The same (replica, for_owner) again keeps the newer epoch: the
        replica's latest word on which ring it holds the write under."""
        if ack.epoch < 0:
            raise ValueError(f"a ring epoch is never negative, got {ack.epoch}")
        seen = self._acks.get((ack.replica, ack.for_owner))
        if seen is None or ack.epoch > seen.epoch:
            self._acks[(ack.replica, ack.for_owner)] = ack
        return self.outcome

    def fail(self, owner: str, reason: str) -> Outcome:
        """Record that `owner`'s share of the write failed (itself and any fallback)."""
        self._failures.setdefault(owner, reason)
        return self.outcome

    def rering(self, owners: Sequence[str], epoch: int) -> tuple[str, ...]:
        """Count under a new ring from now on; returns its owners not heard from at all
        (no ack for them, no failure), in preference order: the ones still to ask."""
        if len(set(owners)) != len(owners):
            raise ValueError(f"a preference list names each node once: {owners}")
        self._owners, self._epoch = tuple(owners), epoch
        heard = {a.slot for a in self._acks.values()} | set(self._failures)
        return tuple(o for o in self._owners if o not in heard)

    def outcomes(self) -> dict[str, str]:
        """Every owner heard under the deciding ring, and every other reply with why it did
        not count, for the quorum error and logs."""
        good = self.counted()
        out = {o: OK_OUTCOME for o in good}
        for (replica, for_owner), ack in self._acks.items():
            name = replica if for_owner is None else f"{replica} (hint for {for_owner})"
            if good.get(ack.slot) is not ack:
                out.setdefault(name, self._why_not(ack))
        for owner, reason in self._failures.items():
            out.setdefault(owner, reason)
        return out

    def error(self) -> QuorumNotMet:
        return QuorumNotMet(self._needed, self.acked, self.outcomes())

    def _why_not(self, ack: WriteAck) -> str:
        if ack.epoch > self._epoch:
            return f"applied under ring epoch {ack.epoch}, newer than {self._epoch}"
        if ack.slot not in self._owners:
            return f"not an owner under ring epoch {self._epoch}"
        return "counted for the owner already"

    def _tracker(self) -> QuorumTracker:
        """The decision over at most one reply per owner of the deciding ring."""
        tracker = QuorumTracker.over(self._owners, self._needed)
        good = self.counted()
        for owner in self._owners:
            if owner in good:
                tracker.ok(owner)
            elif owner in self._failures:
                tracker.fail(owner, self._failures[owner])
        return tracker

    def __repr__(self) -> str:
        return (f"WriteQuorum(epoch={self._epoch}, owners={self._owners}, "
                f"needed={self._needed}, acked={self.acked})")
