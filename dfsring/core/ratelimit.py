"""Token buckets per key (a source address, an access key), with a bounded number of keys.

A bucket holds up to `burst` tokens and refills at `rate` tokens per second (the classic
token bucket, RFC 2697's committed burst). `take` spends `amount` tokens if the bucket has
them and otherwise says how long until it will, which the edge turns into 429 + Retry-After.

Invariants:
- A request above `burst` (a large upload under a bandwidth limit) is let through when the
  bucket is full and leaves it in debt, so the long-run rate still holds and no size is
  refused forever.
- Never more than `max_keys` buckets. A new key past the cap evicts a full bucket among the
  least recently used ones, or else the least recently used: a full bucket carries no state
  worth keeping (a fresh bucket would be full too), and evicting anything else forgives at
  most one burst to a key that has been quiet longest.
- O(1) per call; pure (the caller passes the time). A clock that steps back refills nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_KEYS = 10_000  # keys KeyLimits tracks
OWN_LIMITS = 32  # distinct limits of keys' own that KeyLimits keeps buckets for at once
EVICTION_SCAN = 8  # LRU buckets looked at for a full one before evicting the oldest anyway


@dataclass
class _Bucket:
    tokens: float
    at_s: float


class KeyedBuckets:
    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        if not rate > 0 or not burst > 0 or max_keys < 1:
            raise ValueError("token buckets need rate > 0, burst > 0 and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, amount: float, now_s: float) -> float:
        """Spend `amount` tokens of `key`'s bucket: 0.0 if allowed, else the seconds until the
        same call would be allowed (nothing is spent then)."""
        if not amount >= 0:
            raise ValueError("amount must be >= 0")
        bucket = self._bucket(key, now_s)
        needed = min(amount, self.burst)
        if bucket.tokens >= needed:
            bucket.tokens -= amount
            return 0.0
        return (needed - bucket.tokens) / self.rate

    def charge(self, key: str, amount: float, now_s: float) -> None:
        """Spend `amount` tokens whatever the bucket holds, leaving it in debt if need be:
        for what was already done (bytes of an answer sent), which the next `take` pays for."""
        if not amount >= 0:
            raise ValueError("amount must be >= 0")
        self._bucket(key, now_s).tokens -= amount

    def tokens(self, key: str, now_s: float) -> float:
        """The tokens `key` would have at `now_s` (burst for a key not tracked)."""
        bucket = self._buckets.get(key)
        return self.burst if bucket is None else self._refilled(bucket, now_s)

    def _bucket(self, key: str, now_s: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._evict(now_s)
            bucket = self._buckets[key] = _Bucket(self.burst, now_s)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = self._refilled(bucket, now_s)
            bucket.at_s = max(bucket.at_s, now_s)
        return bucket

    def _refilled(self, bucket: _Bucket, now_s: float) -> float:
        return min(self.burst, bucket.tokens + max(0.0, now_s - bucket.at_s) * self.rate)

    def _evict(self, now_s: float) -> None:
        for i, (key, bucket) in enumerate(self._buckets.items()):
            if i >= EVICTION_SCAN:
                break
            if self._refilled(bucket, now_s) >= self.burst:
                del self._buckets[key]
                return
        self._buckets.popitem(last=False)


class KeyLimits:
    """Requests and bytes per access key (dfsring.http.keylimits): token buckets for the
    node's limits, and for each distinct limit a key has of its own (at most OWN_LIMITS of
    those at once, the least recently used dropped first, which forgives its keys one burst).
    A limit of 0 is no limit. A request rate's burst is `burst` for the node's rate and twice
    the rate for a key's own; a bandwidth's burst is one second's worth."""

    def __init__(self, rate: float, burst: float, bandwidth: int,
                 max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = burst or rate
        self.bandwidth = bandwidth
        self.max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, float], KeyedBuckets] = OrderedDict()

    def _of(self, kind: str, own: float | None) -> KeyedBuckets | None:
        node = self.rate if kind == "requests" else float(self.bandwidth)
        limit = node if own is None else own
        if not limit > 0:
            return None
        found = self._buckets.get((kind, limit))
        if found is None:
            if own is None or limit == node:
                burst = self.burst if kind == "requests" else limit
                found = KeyedBuckets(limit, burst, self.max_keys)
            else:
                if len(self._buckets) >= OWN_LIMITS + 2:
                    self._evict_own()
                found = KeyedBuckets(limit, 2 * limit if kind == "requests" else limit,
                                     max(1, self.max_keys // OWN_LIMITS))
            self._buckets[(kind, limit)] = found
        self._buckets.move_to_end((kind, limit))
        return found

    def _evict_own(self) -> None:
        nodes = {("requests", self.rate), ("bytes", float(self.bandwidth))}
        for pair in self._buckets:
            if pair not in nodes:
                del self._buckets[pair]
                return

    def admit(self, key: str, body_bytes: int, now_s: float, rate: float | None = None,
              bandwidth: int | None = None) -> tuple[str, float] | None:
        """None if the request may go on, else (reason, seconds to wait). The key must have
        tokens for the body it announces (up to a burst) but is charged only what is read
        (`sent`): a request refused before its body is read costs no bytes, whatever its
        Content-Length said. ``rate``/``bandwidth``: the key's own limits (None: the
        node's). A request refused for its bytes still counts as a request."""
        requests = self._of("requests", rate)
        if requests is not None:
            wait = requests.take(key, 1.0, now_s)
            if wait > 0:
                return "requests", wait
        nbytes = self._of("bytes", None if bandwidth is None else float(bandwidth))
        if nbytes is not None:  # checked, not spent: the body is charged as it is read
            needed = min(float(body_bytes), nbytes.burst)
            have = nbytes.tokens(key, now_s)
            if have < needed:
                return "bandwidth", (needed - have) / nbytes.rate
        return None

    def sent(self, key: str, nbytes: int, now_s: float, bandwidth: int | None = None) -> None:
        buckets = self._of("bytes", None if bandwidth is None else float(bandwidth))
        if buckets is not None and nbytes > 0:
            buckets.charge(key, float(nbytes), now_s)
