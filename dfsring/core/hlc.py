"""Hybrid logical clock: timestamps that follow wall-clock time and never go backwards.

Pure: no I/O and no clock reads; the caller passes the physical time (ms since the epoch).

Why. A file version needs an id that orders versions newest-first, is unique across nodes and
stays close to real time (so "newest" and "kept for 30 days" mean what a user expects). Wall
clocks alone go backwards and disagree between nodes; Lamport clocks order causally but drift
from real time. A hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks",
OPODIS 2014, Fig. 5) keeps ``l``, the largest physical time it has heard of, and a counter
``c`` that orders events within one ``l``:

* it never goes backwards, even if the physical clock does;
* if event e happened before f (also through a message: ``observe``), ts(e) < ts(f);
* ``l`` is at most the largest physical time seen anywhere, so it stays within the clock skew
  of real time; the counter stays small (bounded by the events in one skew interval).

Ties between nodes are broken by node id, so timestamps are totally ordered and, since one
node never issues one twice, unique. To keep that across a restart whose clock went
backwards, a node starts its clock from the last timestamp it issued (``HybridClock(last=)``).

Bounds. ``observe`` refuses a remote time more than ``max_drift_ms`` ahead of the local
physical clock (the paper's ε): otherwise one peer with a clock set to 2099, or a forged
timestamp, would drag every clock of the cluster into the future for good. Should the counter
overflow (an absurd event rate in one ms), the clock borrows the next millisecond.

Encoding. ``Timestamp.encode()`` is a compact string that sorts (as strings or as UTF-8
bytes) exactly like the timestamps: 12 hex digits of ms, 8 hex digits of counter, then the
node id. Fixed-width fields make the lexicographic order the numeric one; node ids are ASCII
from one alphabet, so their string order is their byte order. It is used as a file version id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_WALL_MS = (1 << 48) - 1  # 12 hex digits: until the year 10889
MAX_COUNTER = (1 << 32) - 1  # 8 hex digits
MAX_NODE_ID_LEN = 64
DEFAULT_MAX_DRIFT_MS = 60_000
_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)  # as dfsring.storage.datadir
_ENCODED_RE = re.compile(r"([0-9a-f]{12})([0-9a-f]{8})([A-Za-z0-9][A-Za-z0-9._-]{0,63})", re.ASCII)
ENCODED_MAX_LEN = 12 + 8 + MAX_NODE_ID_LEN


class ClockSkewError(ValueError):
    """A remote timestamp too far ahead of the local physical clock."""

    def __init__(self, remote_ms: int, physical_ms: int, max_drift_ms: int) -> None:
        super().__init__(
            f"remote clock {remote_ms} ms is {remote_ms - physical_ms} ms ahead of the local "
            f"clock; the limit is {max_drift_ms} ms"
        )
        self.remote_ms = remote_ms
        self.physical_ms = physical_ms
        self.max_drift_ms = max_drift_ms


def _check_int(name: str, value: object, high: int) -> None:
    if type(value) is not int:  # excludes bool
        raise ValueError(f"{name} must be an integer, not {type(value).__name__}")
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be in 0..{high}, got {value}")


def _check_node_id(node_id: object) -> None:
    if not isinstance(node_id, str) or not _NODE_ID_RE.fullmatch(node_id):
        raise ValueError(
            f"node_id must be 1-{MAX_NODE_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_' or "
            f"'-', starting with a letter or digit; got {node_id!r:.80}"
        )


@dataclass(frozen=True, slots=True, order=True)
class Timestamp:
    """(wall_ms, counter, node_id), compared in that order: a total order of events."""

    wall_ms: int
    counter: int
    node_id: str

    def __post_init__(self) -> None:
        _check_int("wall_ms", self.wall_ms, MAX_WALL_MS)
        _check_int("counter", self.counter, MAX_COUNTER)
        _check_node_id(self.node_id)

    def encode(self) -> str:
        """The sortable id: ``decode(a.encode()) == a`` and ``a < b`` iff the encodings are."""
        return f"{self.wall_ms:012x}{self.counter:08x}{self.node_id}"

    @classmethod
    def decode(cls, text: str) -> Timestamp:
        """Parse ``encode``'s output; anything else (it may come from a client) -> ValueError."""
        if not isinstance(text, str) or len(text) > ENCODED_MAX_LEN:
            raise ValueError("not an encoded timestamp")
        match = _ENCODED_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"not an encoded timestamp: {text!r:.100}")
        return cls(int(match[1], 16), int(match[2], 16), match[3])

    def to_bytes(self) -> bytes:
        """Binary form sorting like the timestamps: 6 bytes ms, 4 bytes counter, node id."""
        head = (self.wall_ms << 32 | self.counter).to_bytes(10, "big")
        return head + self.node_id.encode("ascii")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Timestamp:
        """Inverse of ``to_bytes``; malformed input -> ValueError."""
        if not isinstance(raw, bytes) or not 11 <= len(raw) <= 10 + MAX_NODE_ID_LEN:
            raise ValueError("not a binary timestamp")
        try:
            node_id = raw[10:].decode("ascii")
        except UnicodeDecodeError as exc:
            raise ValueError("binary timestamp has a non-ASCII node id") from exc
        head = int.from_bytes(raw[:10], "big")
        return cls(head >> 32, head & MAX_COUNTER, node_id)


def _next(wall_ms: int, counter: int, node_id: str) -> Timestamp:
    """The timestamp (wall_ms, counter), borrowing the next ms if the counter overflows."""
    if counter > MAX_COUNTER:
        wall_ms, counter = wall_ms + 1, 0
    return Timestamp(wall_ms, counter, node_id)


def tick(last: Timestamp, physical_ms: int) -> Timestamp:
    """The timestamp of a local or send event after ``last`` (Kulkarni et al., Fig. 5)."""
    _check_int("physical_ms", physical_ms, MAX_WALL_MS)
    if physical_ms > last.wall_ms:
        return Timestamp(physical_ms, 0, last.node_id)
    return _next(last.wall_ms, last.counter + 1, last.node_id)


def receive(
    last: Timestamp,
    remote: Timestamp,
    physical_ms: int,
    max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
) -> Timestamp:
    """The timestamp of receiving ``remote`` after ``last`` (Kulkarni et al., Fig. 5).

    Raises ClockSkewError if ``remote`` is more than ``max_drift_ms`` ahead of ``physical_ms``.
    """
    _check_int("physical_ms", physical_ms, MAX_WALL_MS)
    if type(remote) is not Timestamp:
        raise TypeError("remote must be a Timestamp")
    if remote.wall_ms - physical_ms > max_drift_ms:
        raise ClockSkewError(remote.wall_ms, physical_ms, max_drift_ms)
    wall = max(last.wall_ms, remote.wall_ms, physical_ms)
    if wall == last.wall_ms == remote.wall_ms:
        counter = max(last.counter, remote.counter) + 1
    elif wall == last.wall_ms:
        counter = last.counter + 1
    elif wall == remote.wall_ms:
        counter = remote.counter + 1
    else:
        counter = 0
    return _next(wall, counter, last.node_id)


class HybridClock:
    """One node's clock: ``tick``/``receive`` over the last timestamp it issued.

    Mutable (it is a clock), not thread-safe; the caller supplies the physical time.
    """

    __slots__ = ("_last", "_max_drift_ms")

    def __init__(
        self,
        node_id: str,
        *,
        last: Timestamp | None = None,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
    ) -> None:
        """``last``: the newest timestamp this node issued before a restart, if known."""
        _check_node_id(node_id)
        _check_int("max_drift_ms", max_drift_ms, MAX_WALL_MS)
        if last is not None and last.node_id != node_id:
            raise ValueError(f"last timestamp belongs to node {last.node_id!r}, not {node_id!r}")
        self._last = last if last is not None else Timestamp(0, 0, node_id)
        self._max_drift_ms = max_drift_ms

    @property
    def node_id(self) -> str:
        return self._last.node_id

    @property
    def last(self) -> Timestamp:
        """The newest timestamp issued (what to persist to survive a restart)."""
        return self._last

    def now(self, physical_ms: int) -> Timestamp:
        """A new timestamp for a local event, later than every one issued or observed."""
        self._last = tick(self._last, physical_ms)
        return self._last

    def observe(self, remote: Timestamp, physical_ms: int) -> Timestamp:
        """Fold in a timestamp received from another node; returns the receive event's.

        Raises ClockSkewError (a ValueError), leaving the clock unchanged, if ``remote`` is
        more than ``max_drift_ms`` ahead of ``physical_ms``.
        """
        self._last = receive(self._last, remote, physical_ms, self._max_drift_ms)
        return self._last
