"""The hybrid logical clock that names this node's file versions (the shell of dfsring.core.hlc).

A version id only has to be greater than every other version of the same file, and unique
among them. The service gets that by observing the newest version it finds under the path
right before it takes a new timestamp (``next(after=...)``): an upload that follows
another, even through a node whose wall clock is behind, or after this node restarted with its
clock set back, is newer; two uploads of one path through one node get two timestamps of one
clock; through two nodes, the node ids differ. So nothing needs to be persisted (the
timestamps of different files are never compared), and versions stay within clock skew of
real time, which the retention rule "younger than T days" relies on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dfsring.core import hlc

log = logging.getLogger("dfsring.files")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class VersionClock:
    def __init__(self, node_id: str, now_ms: Callable[[], int] = wall_ms) -> None:
        self._now_ms = now_ms
        self._clock = hlc.HybridClock(node_id)

    def next(self, after: hlc.Timestamp | None = None) -> hlc.Timestamp:
        """A new version id, greater than every one issued or observed here and than ``after``
        (the newest version of the file, if any).

        A version absurdly far ahead (hlc's drift bound: some node's clock is wrong) is not
        folded into the clock, so it cannot drag every later version along; this one version
        is still made newer than it, so the upload becomes current as the user expects."""
        now = self._now_ms()
        if after is None:
            return self._clock.now(now)
        try:
            self._clock.observe(after, now)
        except hlc.ClockSkewError as exc:
            log.warning("the newest version of a file is from the future", extra={"fields": {
                "version": after.encode(), "error": str(exc)}})
            return hlc.tick(hlc.Timestamp(after.wall_ms, after.counter, self._clock.node_id),
                            now)
        return self._clock.now(now)
