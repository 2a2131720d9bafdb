"""Quorum bookkeeping for one request: pure, so every rule is tested without a network.

Modelled on riak_kv's `riak_kv_put_core.erl` / `riak_kv_get_core.erl`: the coordinator (the
imperative shell) sends to the replicas, and feeds each reply to a `QuorumTracker`
(``add_result``), which says whether the request is decided (``enough``) and how
(``response``). Timers, retries and read repair stay in the shell.

The rule, for ``n`` replicas of which ``needed`` (Dynamo's R or W, §4.5) must succeed:

* OK as soon as ``acked >= needed``: the quorum is reached;
* FAILED as soon as ``failed >= n - needed + 1``: even if every replica not yet heard
  succeeded, fewer than ``needed`` could; riak's put_core fails once N-W+1 replicas failed;
* otherwise PENDING. Both conditions cannot hold at once (that would take n+1 replies), so the
  decision is made exactly when it becomes inevitable, and never changes afterwards.

Replies after the decision are still recorded: a read keeps collecting values for read repair
(Dynamo §4.7) and a failed request reports every replica's outcome (`QuorumNotMet.outcomes`).
A replica is heard once: its first reply counts and later ones (a retransmission, a late
duplicate) are ignored, so no replica can vote twice.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence

from dfsring.foundation.errors import BadRequest, QuorumNotMet

OK_OUTCOME = "ok"
_DECIMAL = re.compile(r"[0-9]{1,6}")


class Outcome(enum.Enum):
    """Where a quorum request stands; only PENDING ever changes."""

    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"


class QuorumTracker:
    """Counts replica replies for one request and decides it as early as possible.

    Invariants: ``acked + failed == len(outcomes()) <= n``; once `outcome` is OK or FAILED it
    never changes.
    """

    __slots__ = ("_failed", "_n", "_needed", "_outcome", "_reasons", "_values")

    def __init__(self, n: int, needed: int) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not 1 <= needed <= n:
            raise ValueError(f"needed must be in 1..{n}, got {needed}")
        self._n = n
        self._needed = needed
        self._values: dict[str, object] = {}
        self._reasons: dict[str, str] = {}
        self._failed = 0
        self._outcome = Outcome.PENDING

    @classmethod
    def over(cls, replicas: Sequence[str], needed: int) -> QuorumTracker:
        """A tracker over the replicas that exist; the missing ones (a cluster smaller than
        N) count as failed at once, so the outcome is decided, never awaited."""
        tracker = cls(max(len(replicas), needed), needed)
        for i in range(needed - len(replicas)):
            tracker.fail(f"(missing replica {i + 1})", "cluster has fewer nodes than N")
        return tracker

    @property
    def n(self) -> int:
        """Number of replicas the request went to."""
        return self._n

    @property
    def needed(self) -> int:
        """Successes required (R for a read, W for a write)."""
        return self._needed

    @property
    def acked(self) -> int:
        """Distinct replicas that succeeded."""
        return len(self._values)

    @property
    def failed(self) -> int:
        """Distinct replicas that failed."""
        return self._failed

    @property
    def outcome(self) -> Outcome:
        return self._outcome

    @property
    def done(self) -> bool:
        """True once the outcome is decided (riak's ``enough``)."""
        return self._outcome is not Outcome.PENDING

    def ok(self, replica: str, value: object = None) -> Outcome:
        """Record a success from ``replica``; a replica already heard is ignored."""
        if self._first_reply(replica):
            self._values[replica] = value
            self._reasons[replica] = OK_OUTCOME
        return self._decide()

    def fail(self, replica: str, reason: str) -> Outcome:
        """Record a failure (error, timeout, refusal) from ``replica``; repeats are ignored."""
        if self._first_reply(replica):
            self._failed += 1
            self._reasons[replica] = reason
        return self._decide()

    def values(self) -> dict[str, object]:
        """The successful replies, by replica (a copy)."""
        return dict(self._values)

    def outcomes(self) -> dict[str, str]:
        """Every replica heard: "ok" or the failure reason (a copy), for errors and logs."""
        return dict(self._reasons)

    def error(self) -> QuorumNotMet:
        """The error a failed request raises, carrying every replica's outcome."""
        return QuorumNotMet(self._needed, self.acked, self.outcomes())

    def _first_reply(self, replica: str) -> bool:
        if replica in self._reasons:
            return False
        if len(self._reasons) == self._n:
            raise ValueError(
                f"reply from {replica!r}, but all {self._n} replicas of this request have answered"
            )
        return True

    def _decide(self) -> Outcome:
        if self._outcome is Outcome.PENDING:
            if self.acked >= self._needed:
                self._outcome = Outcome.OK
            elif self._failed >= self._n - self._needed + 1:
                self._outcome = Outcome.FAILED
        return self._outcome

    def __repr__(self) -> str:
        return (
            f"QuorumTracker(n={self._n}, needed={self._needed}, acked={self.acked}, "
            f"failed={self._failed}, outcome={self._outcome.name})"
        )


def resolve_level(raw: str | None, n: int, default: int) -> int:
    """Turn a per-request level (``r=``, ``w=``, ``Dfs-Consistency``) into a replica count.

    ``None`` means the configured default, clamped to ``n`` so a small cluster still works;
    "one" is 1, "quorum" a strict majority ``n // 2 + 1`` (Dynamo §4.5: R + W > N with both
    at quorum), "all" is ``n``, and a decimal integer 1..n is taken as is. Names are
    case-insensitive. Anything else is the client's mistake and raises `BadRequest`.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if raw is None:
        if default < 1:
            raise ValueError(f"default level must be at least 1, got {default}")
        return min(default, n)
    text = raw.strip().lower()
    named = {"one": 1, "quorum": n // 2 + 1, "all": n}
    if text in named:
        return named[text]
    if _DECIMAL.fullmatch(text) and 1 <= int(text) <= n:
        return int(text)
    shown = raw if len(raw) <= 32 else raw[:32] + "..."
    raise BadRequest(
        f"consistency level must be 'one', 'quorum', 'all' or an integer from 1 to {n}; "
        f"got {shown!r}"
    )


class QuorumGroups:
    """One request that needs `needed` successes in *each* of several replica groups.

    While ownership moves (dfsring.core.transition) a read must hear R owners under the new ring
    and R under each older one: data acknowledged before the change may sit only with the old
    owners, data written since only with the new. A replica in several groups counts for
    each. A group smaller than `needed` (a cluster with fewer nodes than N) is padded with
    replicas that have already failed, so the outcome is decided, never awaited.
    Same surface as `QuorumTracker`, so the coordinator drives either.
    """

    __slots__ = ("_groups", "_needed", "_reasons", "_values")

    def __init__(self, groups: list[tuple[str, ...]], needed: int) -> None:
        if not groups:
            raise ValueError("at least one group")
        self._needed = needed
        self._groups: list[tuple[frozenset[str], QuorumTracker]] = []
        for group in groups:
            tracker = QuorumTracker(max(len(group), needed), needed)
            for i in range(needed - len(group)):
                tracker.fail(f"(missing replica {i + 1})", "cluster has fewer nodes than N")
            self._groups.append((frozenset(group), tracker))
        self._values: dict[str, object] = {}
        self._reasons: dict[str, str] = {}

    @property
    def needed(self) -> int:
        return self._needed

    @property
    def acked(self) -> int:
        """Successes in the weakest group: what the request can claim everywhere."""
        return min(t.acked for _, t in self._groups)

    @property
    def outcome(self) -> Outcome:
        outcomes = [t.outcome for _, t in self._groups]
        if Outcome.FAILED in outcomes:
            return Outcome.FAILED
        return Outcome.OK if all(o is Outcome.OK for o in outcomes) else Outcome.PENDING

    def ok(self, replica: str, value: object = None) -> Outcome:
        if replica not in self._reasons:
            self._values[replica] = value
            self._reasons[replica] = OK_OUTCOME
            for members, tracker in self._groups:
                if replica in members:
                    tracker.ok(replica, value)
        return self.outcome

    def fail(self, replica: str, reason: str) -> Outcome:
        if replica not in self._reasons:
            self._reasons[replica] = reason
            for members, tracker in self._groups:
                if replica in members:
                    tracker.fail(replica, reason)
        return self.outcome

    def values(self) -> dict[str, object]:
        return dict(self._values)

    def outcomes(self) -> dict[str, str]:
        reasons = dict(self._reasons)
        for _, tracker in self._groups:
            for replica, reason in tracker.outcomes().items():
                reasons.setdefault(replica, reason)
        return reasons
