"""Phi accrual failure detection: how much to believe a peer is down, from its heartbeats.

Pure: no clocks, no I/O. The caller passes monotonic seconds in; the gossip service calls
`heartbeat` whenever it learns a newer heartbeat of a peer and asks `liveness` when it routes.
Liveness is each node's local opinion and never enters the ring (Dynamo §4.8.1).

Why accrual. A fixed timeout is either slow to notice a crash or quick to accuse a node behind
a slow link. The phi accrual detector (Hayashibara, Défago, Yared, Katayama, "The φ Accrual
Failure Detector", SRDS 2004) instead learns the distribution of inter-arrival times from a
sliding window and reports ``phi = -log10(P(the next heartbeat arrives later than now))``:
phi 1 is a 10% chance of a false accusation, phi 8 one in 10^8. Thresholds on phi then adapt
to each link's own mean and jitter.

The variant is Akka's (``akka.remote.PhiAccrualFailureDetector``):

* the normal CDF is the logistic approximation ``1 / (1 + exp(-y (1.5976 + 0.070566 y²)))``,
  ``y = (elapsed - mean) / std`` (Bowling et al., "A logistic approximation to the cumulative
  normal distribution", 2009). Akka writes ``-log10(e / (1 + e))`` and ``-log10(1 - 1/(1 + e))``
  for the two sides of the mean; both equal ``log10(1 + exp(x))`` with
  ``x = y (1.5976 + 0.070566 y²)``, which `phi_of` computes as a stable softplus, so neither a
  long silence (exp underflows to 0, phi would be infinite) nor an early check (exp overflows)
  can fail. Phi is capped at `MAX_PHI`;
* ``acceptable_pause_s`` is added to the mean, tolerating that much pause (a GC, a busy loop)
  before suspicion grows; the standard deviation is at least ``min_std_s``, so a perfectly
  regular peer is not accused the instant it is a little late;
* a new peer's history starts with two samples ``first ± first/4`` (Akka's
  first-heartbeat-estimate), so phi is meaningful from its first heartbeat;
* an interval is learned only if the peer was not DOWN when the heartbeat came, so the gap of
  an outage does not inflate the mean and slow the next detection.

Cassandra's detector (``FailureDetector.java``) models arrivals as exponential instead, with
phi proportional to ``elapsed / mean``; the normal model reacts to jitter, which gossip-relayed
heartbeats have.

Detection time with the defaults and a heartbeat every 0.5 s (checked in
tests/unit/test_failure.py): after 20 s of regular heartbeats (mean 0.52 s over the window,
std 0.12 s, both bootstrap samples still in it), phi reaches the suspect threshold 3 about
1.89 s and the down threshold 8 about 2.15 s after the last heartbeat; once the window holds
only 0.5 s intervals (std at its floor 0.1 s), about 1.81 s and 2.02 s. With ±0.2 s jitter on
each arrival a peer that keeps beating stays UP (phi below 0.01), and is DOWN 2.4-2.6 s after
it stops. Added latency that delays every arrival by the same amount lengthens one interval
only (0.7 s instead of 0.5 s), far below the mean plus the acceptable pause.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

MAX_PHI = 1e9
"""Phi of a silence so long that the model's probability underflows: certainly down."""

_LN10 = math.log(10.0)


class Liveness(enum.StrEnum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


@dataclass(frozen=True)
class DetectorSettings:
    """Thresholds on phi and the model's knobs (Akka's names in the module docstring)."""

    threshold: float = 8.0
    suspect_threshold: float = 3.0
    window: int = 100
    min_std_s: float = 0.1
    acceptable_pause_s: float = 1.0
    first_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.suspect_threshold <= self.threshold:
            raise ValueError("thresholds must satisfy 0 < suspect_threshold <= threshold")
        if self.window < 2:
            raise ValueError("window must hold at least 2 samples")
        if self.min_std_s <= 0 or self.first_interval_s <= 0 or self.acceptable_pause_s < 0:
            raise ValueError("min_std_s and first_interval_s must be > 0, "
                             "acceptable_pause_s >= 0")


DEFAULT_SETTINGS = DetectorSettings()


def phi_of(elapsed: float, mean: float, std: float) -> float:
    """-log10 of the chance that a heartbeat due after `mean` ± `std` comes later than
    `elapsed` (logistic approximation, see the module docstring); in 0..MAX_PHI."""
    y = (elapsed - mean) / std
    x = y * (1.5976 + 0.070566 * y * y)
    if x > 0:  # softplus(x) = x + log(1 + e^-x), exact where e^x would overflow
        value = (x + math.log1p(math.exp(-x))) / _LN10
    else:
        value = math.log1p(math.exp(x)) / _LN10
    return value if value < MAX_PHI else MAX_PHI  # also maps inf and nan to the cap


@dataclass(slots=True)
class _History:
    """One peer's last arrival and its window of inter-arrival times, with their statistics
    recomputed on each arrival (cheap for the window, exact unlike running sums)."""

    last: float
    intervals: deque[float]
    mean: float = 0.0
    std: float = 0.0

    def add(self, interval: float) -> None:
        self.intervals.append(interval)
        n = len(self.intervals)
        self.mean = math.fsum(self.intervals) / n
        self.std = math.sqrt(math.fsum((i - self.mean) ** 2 for i in self.intervals) / n)


class PhiAccrualDetector:
    """Phi accrual failure detection for every peer this node hears from.

    Not thread-safe; one owner (the gossip service) feeds it. Unknown peers are UP with phi 0:
    a peer is judged only once it has been heard.
    """

    def __init__(self, settings: DetectorSettings = DEFAULT_SETTINGS) -> None:
        self.settings = settings
        self._peers: dict[str, _History] = {}

    def heartbeat(self, node_id: str, now: float) -> None:
        """Record that `node_id` was heard at `now`. A time not after the last arrival (the
        same news relayed twice) teaches nothing and is ignored."""
        history = self._peers.get(node_id)
        if history is None:
            self.reset(node_id, now)
            return
        if now <= history.last:
            return
        if self.liveness(node_id, now) is not Liveness.DOWN:
            history.add(now - history.last)
        history.last = now

    def reset(self, node_id: str, now: float) -> None:
        """Forget `node_id`'s history (it restarted: a new incarnation) and count `now` as its
        first heartbeat, with Akka's bootstrap samples."""
        first = self.settings.first_interval_s
        history = _History(now, deque(maxlen=self.settings.window))
        history.add(first - first / 4)
        history.add(first + first / 4)
        self._peers[node_id] = history

    def forget(self, node_id: str) -> None:
        self._peers.pop(node_id, None)

    def phi(self, node_id: str, now: float) -> float:
        history = self._peers.get(node_id)
        if history is None:
            return 0.0
        s = self.settings
        return phi_of(now - history.last, history.mean + s.acceptable_pause_s,
                      max(history.std, s.min_std_s))

    def liveness(self, node_id: str, now: float) -> Liveness:
        phi = self.phi(node_id, now)
        if phi >= self.settings.threshold:
            return Liveness.DOWN
        if phi >= self.settings.suspect_threshold:
            return Liveness.SUSPECT
        return Liveness.UP

    def known(self) -> list[str]:
        return sorted(self._peers)
