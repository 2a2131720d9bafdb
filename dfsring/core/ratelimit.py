"""Token buckets per key (a source address, an access key), with a bounded key count. Pure.

A minimal copy of authcore's module under the fixed interface, in this branch only so the
failed-authentication limit can run; at merge authcore's version replaces it.

Each key holds up to ``burst`` tokens, refilled at ``rate`` per second. ``take`` spends
``amount`` if that many are there (answer 0.0) or spends nothing and answers how long until
they will be. At most ``max_keys`` keys are tracked: past that the least recently used is
forgotten, which can only hand a forgotten key a full bucket again, never refuse a stranger.
"""

from __future__ import annotations

from collections import OrderedDict


class KeyedBuckets:
    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        if rate <= 0 or burst <= 0 or max_keys < 1:
            raise ValueError("rate, burst and max_keys must be positive")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, key: str, amount: float, now_s: float) -> float:
        tokens, at = self._buckets.pop(key, (self.burst, now_s))
        tokens = min(self.burst, tokens + max(0.0, now_s - at) * self.rate)
        wait = 0.0
        if tokens >= amount:
            tokens -= amount
        else:
            wait = (amount - tokens) / self.rate
        self._buckets[key] = (tokens, now_s)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
