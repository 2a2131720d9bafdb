"""Which TCP connections a listener admits: a cap per listener and per source address.

The failure this answers (issue 23): 20 000 idle sockets filled the file-descriptor limit, and
from then on `accept()` failed for everyone, health checks and peers included. The rules:

- A listener holds at most `max_total` connections, kept below the descriptor limit (see
  `automatic_cap`), so `accept()` itself never runs out of descriptors.
- One source address holds at most `max_per_source`, so one client cannot take the listener.
- At the listener cap a new connection evicts the connection idle longest (no request being
  handled: a keep-alive wait, or a request head not complete yet). Closing such a connection
  loses no work, since HTTP clients retry a request on a kept-alive connection the server
  closed, and this is what keeps the node answering new clients while a flood holds the cap
  (nginx's `reset_timedout_connection` and Envoy's overload manager make the same trade).
  Only when every connection is busy is the newcomer refused.
- At the per-source cap the newcomer is refused: that source already holds its share.

Invariants: `open <= max_total`; a source never holds more than `max_per_source`; a busy
connection is never evicted. The table is pure (no sockets, no clock) and generic over the
connection handle, so the server adapter (dfsring.http.server) and the tests share it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)

# Descriptors kept out of the connection cap: the peer pool (512 outgoing connections in
# dfsring.transport.rpc), LMDB, file chunks being read or written, logs and listeners.
MIN_HEADROOM = 1024
AUTO_CAP_CEILING = 50_000  # idle connections cost memory too (figure in docs/API.md)


class Refusal(Enum):
    LISTENER = "listener"  # every connection is busy and the listener is at its cap
    SOURCE = "source"  # this source address holds its share already


@dataclass(frozen=True)
class Admission(Generic[C]):
    refused: Refusal | None = None
    evict: C | None = None  # close this one (it is already forgotten) to make room


def automatic_cap(nofile: int) -> int:
    """The listener cap for a descriptor limit: a quarter of it (at least MIN_HEADROOM, at most
    half) stays free for everything else the node opens."""
    headroom = max(nofile // 4, min(MIN_HEADROOM, nofile // 2))
    return max(1, min(AUTO_CAP_CEILING, nofile - headroom))


class ConnectionTable(Generic[C]):
    def __init__(self, max_total: int, max_per_source: int) -> None:
        if max_total < 1 or max_per_source < 1:
            raise ValueError("connection caps must be >= 1")
        self.max_total = max_total
        self.max_per_source = max_per_source
        self._source: dict[C, str] = {}
        self._per_source: dict[str, int] = {}
        self._idle: OrderedDict[C, None] = OrderedDict()  # oldest idle first

    def __len__(self) -> int:
        return len(self._source)

    def held_by(self, source: str) -> int:
        return self._per_source.get(source, 0)

    def admit(self, conn: C, source: str) -> Admission[C]:
        """Admit `conn` (idle until `busy`), refuse it, or admit it in place of an idle one."""
        if self.held_by(source) >= self.max_per_source:
            return Admission(refused=Refusal.SOURCE)
        victim: C | None = None
        if len(self._source) >= self.max_total:
            if not self._idle:
                return Admission(refused=Refusal.LISTENER)
            victim = next(iter(self._idle))
            self.release(victim)
        self._source[conn] = source
        self._per_source[source] = self.held_by(source) + 1
        self._idle[conn] = None
        return Admission(evict=victim)

    def busy(self, conn: C) -> None:
        """A request is being handled on `conn`: it may not be evicted."""
        self._idle.pop(conn, None)

    def idle(self, conn: C) -> None:
        if conn in self._source:
            self._idle[conn] = None
            self._idle.move_to_end(conn)

    def release(self, conn: C) -> None:
        """Forget `conn`; a no-op for one already forgotten (evicted, then closed)."""
        source = self._source.pop(conn, None)
        if source is None:
            return
        self._idle.pop(conn, None)
        left = self._per_source[source] - 1
        if left:
            self._per_source[source] = left
        else:
            del self._per_source[source]
