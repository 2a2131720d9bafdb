"""Wall-clock time for the repair services. (What they need of membership is a
dfsring.core.clusterview.ClusterView, read from a ViewSource.)"""

from __future__ import annotations

import time


def wall_ms() -> int:
    """Wall-clock milliseconds, for timestamps shown to people and for ages (hints,
    tombstones); never for ordering versions (dfsring.core.vclock orders by causality)."""
    return time.time_ns() // 1_000_000
