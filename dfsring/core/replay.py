"""Refuse a signed request seen before: a bounded memory of recent signatures.

A SigV4 signature covers the method, path, query, signed headers and the time, so a second
request with the same signature is the same request sent again: by a client retrying, or by
someone who captured it (issue 18 "clock-skew and replay bounds"). The clock-skew check in
dfsring.core.sigv4 already bounds a replay to the skew window (±15 minutes); this cache
closes that window for the requests it remembers.

Invariants:
- Never more than `max_entries` signatures, whatever the traffic: a flood of distinct
  signatures costs memory proportional to `max_entries`, not to the flood.
- An entry is forgotten once older than `window_s` (make it at least twice the allowed skew,
  so a signature is remembered as long as its time can pass the skew check).
- When full of unexpired entries the oldest is evicted. That is safe: it can only reopen a
  replay of the oldest request remembered, which the skew window still bounds, exactly as
  without the cache; and with `max_entries` above the peak signed-request rate times the
  window, eviction happens only under a flood, never in normal use.
- O(1) amortised per call: entries are kept in insertion order, so expiry pops from the front.

A replay is judged per node (each node keeps its own cache); a captured request can be
replayed once against each other node within the skew window. Presigned URLs are meant to
be reused until they expire, so the caller decides which requests go through the cache.
"""

from __future__ import annotations

from collections import OrderedDict


class ReplayCache:
    def __init__(self, max_entries: int, window_s: float) -> None:
        if max_entries < 1 or not window_s > 0:
            raise ValueError("a replay cache needs max_entries >= 1 and window_s > 0")
        self.max_entries = max_entries
        self.window_s = window_s
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature -> first seen, oldest first

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_record(self, signature: str, now_s: float) -> bool:
        """True when `signature` was seen within the window (a replay); else remember it."""
        self._expire(now_s)
        first = self._seen.get(signature)
        if first is not None and now_s - first <= self.window_s:
            return True
        self._seen.pop(signature, None)
        self._seen[signature] = now_s
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return False

    def _expire(self, now_s: float) -> None:
        """Forget the expired entries at the front. A clock that stepped back can leave an
        expired entry behind a younger one; `check_and_record` treats it as unseen, and it
        leaves through the front or the cap like any other."""
        while self._seen:
            signature, first = next(iter(self._seen.items()))
            if now_s - first <= self.window_s:
                return
            del self._seen[signature]
