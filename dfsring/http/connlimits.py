"""Connection and time limits of a listener: the bookkeeping behind dfsring.http.server.

The rules of admission are pure (dfsring.core.connbudget); this module adds what touches the
process: the descriptor limit, the settings, the metrics and a log that stays readable under a
flood (one line per reason per LOG_EVERY_S, with the count it stands for). Time limits, as
nginx and Envoy have them:

- header timeout: a request head (request line and headers) must arrive whole within this many
  seconds of its first byte, or of the connection's start (nginx `client_header_timeout`);
  this is what ends slowloris.
- idle timeout: a kept-alive connection with no request is closed after this many seconds
  (nginx `keepalive_timeout`, 75 s; aiohttp's default is 3630 s). It is longer than the 30 s
  our peers keep an unused pooled connection (dfsring.transport.rpc), so a peer closes first
  and never sends on a connection the node is closing.
- minimum upload rate: a request body must arrive at this many bytes/s on average over each
  UPLOAD_WINDOW_S, unless the node itself stopped reading (backpressure is not the client's
  fault). nginx's `client_body_timeout` and Envoy's `request_timeout` bound the same thing.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Hashable
from dataclasses import dataclass

from dfsring.core.connbudget import Admission, ConnectionTable, automatic_cap
from dfsring.foundation.metrics import NodeMetrics

log = logging.getLogger("dfsring.http.conns")

UPLOAD_WINDOW_S = 10.0
LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class ConnLimits:
    max_total: int
    max_per_source: int
    header_timeout: float
    idle_timeout: float
    min_upload_rate: int  # bytes/s; 0: not enforced
    upload_window: float = UPLOAD_WINDOW_S  # seconds the upload rate is averaged over


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force.

    The soft limit is often 1024, far below what a server needs, while the hard limit the
    administrator granted is much higher; raising up to it needs no privilege.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit",
                        extra={"fields": {"soft": soft, "hard": hard, "error": str(exc)}})
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def listener_cap(configured: int, nofile: int) -> int:
    """--max-connections, or the automatic cap when 0; never above the automatic cap, which
    keeps descriptors free for LMDB, peers, file chunks and logs."""
    ceiling = automatic_cap(nofile)
    if configured and configured > ceiling:
        log.warning("--max-connections lowered to stay below the open-file limit",
                    extra={"fields": {"configured": configured, "used": ceiling,
                                      "nofile": nofile}})
    return min(configured, ceiling) if configured else ceiling


class _Throttle:
    """At most one log line per reason per LOG_EVERY_S; it says how many events it covers."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def due(self, reason: str, now: float) -> int:
        """Events for `reason` since its last line, this one included, if a line is due; else 0."""
        self._count[reason] = self._count.get(reason, 0) + 1
        if now - self._last.get(reason, -LOG_EVERY_S) < LOG_EVERY_S:
            return 0
        self._last[reason] = now
        return self._count.pop(reason)


class ConnectionGuard:
    """One listener's table, limits and counters, shared by all its connection handlers."""

    def __init__(self, limits: ConnLimits, metrics: NodeMetrics | None = None, *,
                 gauges: bool = True) -> None:
        """`gauges`: this listener's open count and cap are the node's connection gauges
        (one listener's only, the client one: a gauge has one value); refusals and closes
        are counted for every guard."""
        self.limits = limits
        self.table: ConnectionTable[Hashable] = ConnectionTable(limits.max_total,
                                                                limits.max_per_source)
        self._metrics = metrics
        self._throttle = _Throttle()
        if metrics is not None and gauges:
            metrics.bind_connections(lambda: len(self.table), limits.max_total)

    def admit(self, conn: Hashable, source: str) -> Admission[Hashable]:
        admission = self.table.admit(conn, source)
        if admission.refused is not None:
            reason = admission.refused.value
            if self._metrics is not None:
                self._metrics.count_conn_refused(reason)
            self._note(f"refused:{reason}", "connection refused: limit reached",
                       {"reason": reason, "source": source,
                        "open": len(self.table), "max": self.limits.max_total,
                        "max_per_source": self.limits.max_per_source})
        elif admission.evict is not None:
            self.closed("evicted")
        return admission

    def closed(self, reason: str) -> None:
        """A connection the node closed on a limit: evicted, header_timeout, idle_timeout,
        slow_upload."""
        if self._metrics is not None:
            self._metrics.count_conn_closed(reason)
        if reason != "idle_timeout":  # the normal end of a kept-alive connection
            self._note(f"closed:{reason}", "connection closed: limit reached",
                       {"reason": reason, "open": len(self.table)})

    def _note(self, key: str, msg: str, fields: dict[str, object]) -> None:
        events = self._throttle.due(key, time.monotonic())
        if events:
            log.warning(msg, extra={"fields": {**fields, "events": events}})
