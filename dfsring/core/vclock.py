"""Causal versions of one key: a dotted causal store with a version-vector context.

Pure: no I/O, no clocks (the coordinator's wall-clock time is passed in and only displayed).

Why dots. Plain per-client or per-server vector clocks either grow with the number of clients
or, keyed by server, create false conflicts or lose writes (Dynamo §4.4; "Why vector clocks are
hard", Basho 2010). Dotted version vectors fix this with a server-keyed vector clock plus one
*dot* (actor, counter) per stored version, so that a write made with a stale context adds
exactly one new sibling and keeps every version it did not see (Almeida, Gonçalves et al.,
"Scalable and Accurate Causality Tracking for Eventually Consistent Stores", DAIS 2014, §4-5;
ricardobcl/Dotted-Version-Vectors `dvvset.erl`; Riak 2.0 `riak_object` with `dvv_enabled`).

The state of a key on a replica is a causal dot store (Almeida, Shoker, Baquero, "Delta State
Replicated Data Types", JPDC 2018, §6):

    Versions(clock, siblings)   clock: a version vector, the set of dots this replica knows of
                                siblings: the versions no known write has superseded

Invariants (checked by the constructors): siblings are sorted by dot with no dot twice; the
clock covers every sibling's dot. Because only replica ``r`` mints dots ``(r, n)``, a clock entry
``r: n`` stands for every dot ``(r, 1..n)``, so the clock is the causal context of the paper
compressed to a version vector.

* ``update`` (a coordinator's write or delete) drops the siblings the client's context covers
  and adds one sibling with a fresh dot; the new clock includes the context, so replicas that
  still hold the superseded versions drop them when they sync with this one.
* ``sync`` is the causal join: a sibling survives iff every state whose clock covers its dot
  also holds it. It is commutative, associative and idempotent (a join semilattice), so
  replication, read repair, hinted handoff and anti-entropy can apply it in any order and any
  number of times.
* Deletes are tombstones, ordinary siblings with ``value=None``: a delete supersedes exactly the
  versions its context saw and a concurrent write survives it.

Bounds. Actors are per-key actor epochs of replicas (dfsring.core.actors): ``<base>.<epoch>``. A
replica mints a key's dots under one epoch for as long as it holds the key's whole history,
and takes a fresh epoch only after it forgot the key (quarantine, a dropped partition, a
purged tombstone, a repaired corrupt record) or cannot vouch for its copy (a restored or
non-durable data dir). So the clock has at most one entry per (replica, span of holding the
key without a break) in which that replica coordinated a write of the key: in steady state
one per coordinating replica, and one more per forget-then-coordinate event, which are rare
and each paid once. Entries are never pruned (pruning a clock loses writes or resurrects
superseded ones, Riak's old ``small_vclock``); the edge accepts contexts of at most
MAX_CONTEXT_ENTRIES actors of a form the cluster issues (``decode_context`` and
``dfsring.core.actors.context_problem``), so a forged token cannot grow a clock either. Siblings
are pairwise concurrent writes: at most one per concurrent writer, and ``update`` refuses to
keep more than ``max_siblings`` (TooManySiblings, the node's ``--max-siblings``); the causal
join of replicas that each took writes apart can hold more, at most N times the limit, which
is what the peer message limit must carry (dfsring.foundation.config).

Caveat (riak_test ``kv679_dataloss``): a replica that mints a dot again (same actor, same
counter) after forgetting what it minted makes an acknowledged write disappear; that is why
the minting actor comes from dfsring.core.actors, never from a bare replica id. Anything that
deletes a stored record without going through dfsring.storage.localstore (which drops the key's
claim in the same transaction) reopens that hole.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import msgpack

from dfsring.foundation.errors import InvalidContext, TooManySiblings

Dot = tuple[str, int]  # (actor, counter): the identity of one write

MAX_COUNTER = 2**63 - 1  # fits a signed 64-bit integer in any peer or tool
MAX_ACTOR_LEN = 128
MAX_CONTEXT_ENTRIES = 64
MAX_CONTEXT_TOKEN = 4096
CONTEXT_FORMAT = 1
VERSIONS_FORMAT = 1
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_actor_of = itemgetter(0)


def _actor_problem(actor: object) -> str | None:
    if not isinstance(actor, str):
        return f"actor must be a string, not {type(actor).__name__}"
    if not 1 <= len(actor) <= MAX_ACTOR_LEN:
        return f"actor must be 1-{MAX_ACTOR_LEN} characters, got {len(actor)}"
    return None


def _counter_problem(counter: object) -> str | None:
    if type(counter) is not int:  # excludes bool, which msgpack and Python treat as int
        return f"counter must be an integer, not {type(counter).__name__}"
    if not 1 <= counter <= MAX_COUNTER:
        return f"counter must be in 1..{MAX_COUNTER}, got {counter}"
    return None


def _check_dot(dot: object) -> None:
    if type(dot) is not tuple or len(dot) != 2:
        raise TypeError("a dot is a tuple (actor, counter)")
    problem = _actor_problem(dot[0]) or _counter_problem(dot[1])
    if problem:
        raise ValueError(problem)


@dataclass(frozen=True, slots=True)
class VersionVector:
    """What a replica (or a client's context) has seen: actor -> highest counter.

    Canonical form, so equal vectors compare and hash equal: entries sorted by actor, each actor
    once, counters >= 1 (an absent actor means 0).
    """

    entries: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if type(self.entries) is not tuple:
            raise TypeError("entries must be a tuple of (actor, counter) tuples")
        previous: str | None = None
        for entry in self.entries:
            _check_dot(entry)
            if previous is not None and entry[0] <= previous:
                raise ValueError("entries must be sorted by actor, each actor once")
            previous = entry[0]

    @classmethod
    def from_dict(cls, d: Mapping[str, int]) -> VersionVector:
        """Build from a mapping; zero counters are dropped (absent means 0)."""
        return cls(tuple(sorted((a, n) for a, n in d.items() if n != 0)))

    def get(self, actor: str) -> int:
        i = bisect_left(self.entries, actor, key=_actor_of)
        if i < len(self.entries) and self.entries[i][0] == actor:
            return self.entries[i][1]
        return 0

    def covers(self, dot: Dot) -> bool:
        """True if the write ``dot`` is in this vector's causal past."""
        return dot[1] <= self.get(dot[0])

    def descends(self, other: VersionVector) -> bool:
        """self >= other pointwise: everything other has seen, self has seen."""
        return all(n <= self.get(actor) for actor, n in other.entries)

    def concurrent(self, other: VersionVector) -> bool:
        return not self.descends(other) and not other.descends(self)

    def merge(self, other: VersionVector) -> VersionVector:
        """Pointwise max, the least upper bound of the two."""
        if other is self or not other.entries or self.descends(other):
            return self
        if other.descends(self):
            return other
        return merge_all((self, other))

    def to_dict(self) -> dict[str, int]:
        return dict(self.entries)


def merge_all(vvs: Iterable[VersionVector]) -> VersionVector:
    """Pointwise max of any number of vectors (the empty vector for none)."""
    acc: dict[str, int] = {}
    for vv in vvs:
        for actor, n in vv.entries:
            if n > acc.get(actor, 0):
                acc[actor] = n
    return VersionVector(tuple(sorted(acc.items())))


@dataclass(frozen=True, slots=True)
class Sibling:
    """One stored version of a key, identified by the dot of the write that made it.

    ``modified_ms`` is the coordinator's wall clock, for display (Last-Modified) only: ordering
    by wall clocks loses writes under skew, so causality never looks at it.
    """

    dot: Dot
    value: bytes | None  # None is a tombstone: the version a delete wrote
    content_type: str = DEFAULT_CONTENT_TYPE
    modified_ms: int = 0

    def __post_init__(self) -> None:
        _check_dot(self.dot)
        if self.value is not None and type(self.value) is not bytes:
            raise TypeError("value must be bytes or None")
        if not isinstance(self.content_type, str):
            raise TypeError("content_type must be a string")
        if type(self.modified_ms) is not int or not 0 <= self.modified_ms <= MAX_COUNTER:
            raise ValueError("modified_ms must be an integer in 0..2**63-1")

    @property
    def is_tombstone(self) -> bool:
        return self.value is None


def _sibling_rank(s: Sibling) -> tuple[bool, bytes, str, int]:
    """A total order used only if two states disagree about the same dot (never in a correct
    cluster, since a dot names one write): picking the max keeps ``sync`` a semilattice."""
    return (s.value is not None, s.value or b"", s.content_type, s.modified_ms)


def _dot_of(s: Sibling) -> Dot:
    return s.dot


@dataclass(frozen=True, slots=True)
class Versions:
    """The whole causal state of one key on one replica (see the module docstring)."""

    clock: VersionVector = VersionVector()
    siblings: tuple[Sibling, ...] = ()

    def __post_init__(self) -> None:
        if type(self.clock) is not VersionVector:
            raise TypeError("clock must be a VersionVector")
        if type(self.siblings) is not tuple:
            raise TypeError("siblings must be a tuple")
        previous: Dot | None = None
        for s in self.siblings:
            if type(s) is not Sibling:
                raise TypeError("siblings must be Sibling instances")
            if previous is not None and s.dot <= previous:
                raise ValueError("siblings must be sorted by dot, each dot once")
            if not self.clock.covers(s.dot):
                raise ValueError(f"clock does not cover sibling dot {s.dot!r}")
            previous = s.dot

    def live(self) -> tuple[Sibling, ...]:
        """The siblings that hold a value; none means the key reads as not found."""
        return tuple(s for s in self.siblings if not s.is_tombstone)

    @property
    def is_empty(self) -> bool:
        """Nothing was ever written here (no siblings and an empty clock)."""
        return not self.siblings and not self.clock.entries

    @property
    def all_tombstones(self) -> bool:
        """There are siblings and every one is a delete (a candidate for tombstone GC)."""
        return bool(self.siblings) and all(s.is_tombstone for s in self.siblings)


def update(
    current: Versions,
    context: VersionVector,
    actor: str,
    value: bytes | None,
    content_type: str = DEFAULT_CONTENT_TYPE,
    modified_ms: int = 0,
    *,
    max_siblings: int | None = None,
) -> Versions:
    """A coordinator's write (``value=None``: a delete) made with the client's ``context``.

    Drops exactly the siblings the context covers (what the client saw) and adds one sibling
    with dot (actor, max(current, context) + 1): DVV "update", Almeida et al. 2014 §5. Taking the
    max with the context keeps the dot fresh even if the context saw dots this replica lost.
    Raises InvalidContext if the counter space is exhausted (only a forged context can do that),
    and TooManySiblings if the result would hold more than ``max_siblings`` siblings (a write
    whose context covers every sibling always passes: it leaves one).
    """
    counter = max(current.clock.get(actor), context.get(actor)) + 1
    if counter > MAX_COUNTER:
        raise InvalidContext(f"context exhausts the counter of actor {actor!r}")
    new = Sibling((actor, counter), value, content_type, modified_ms)
    kept = [s for s in current.siblings if not context.covers(s.dot)]
    if max_siblings is not None and len(kept) + 1 > max_siblings:
        raise TooManySiblings(len(kept) + 1, max_siblings)
    kept.append(new)
    kept.sort(key=_dot_of)
    clock = merge_all((current.clock, context, VersionVector(((actor, counter),))))
    return Versions(clock, tuple(kept))


def sync(a: Versions, b: Versions) -> Versions:
    """Causal join of two replicas' states (delta-CRDT dot store join, Almeida et al. 2018 §6).

    A sibling survives iff the other side holds the same dot or has not seen it; a sibling the
    other side has seen but no longer holds was superseded there.
    """
    if a == b:
        return a
    in_a = {s.dot: s for s in a.siblings}
    in_b = {s.dot: s for s in b.siblings}
    kept: list[Sibling] = []
    for dot, s in in_a.items():
        other = in_b.get(dot)
        if other is not None:
            kept.append(max(s, other, key=_sibling_rank))
        elif not b.clock.covers(dot):
            kept.append(s)
    kept.extend(s for dot, s in in_b.items() if dot not in in_a and not a.clock.covers(dot))
    kept.sort(key=_dot_of)
    return Versions(a.clock.merge(b.clock), tuple(kept))


def sync_all(states: Iterable[Versions]) -> Versions:
    """Join any number of states (the empty state for none); order does not matter."""
    acc = Versions()
    for state in states:
        acc = sync(acc, state)
    return acc


def descends(a: Versions, b: Versions) -> bool:
    """True if ``a`` already knows everything ``b`` knows: syncing ``b`` into ``a`` is a no-op."""
    return a.clock.descends(b.clock) and sync(a, b) == a


# --- the opaque Dfs-Context token ---------------------------------------------------------


def encode_context(vv: VersionVector) -> str:
    """The Dfs-Context token for ``vv``: urlsafe base64 (no padding) of msgpack
    ``[CONTEXT_FORMAT, [[actor, counter], ...]]``; the empty vector is "".

    A vector of at most MAX_CONTEXT_ENTRIES actors of at most 32 ASCII characters always fits in
    MAX_CONTEXT_TOKEN; larger vectors still encode, but decode_context would refuse the token.
    """
    if not vv.entries:
        return ""
    raw = msgpack.packb([CONTEXT_FORMAT, vv.entries], use_bin_type=True)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_context(token: str) -> VersionVector:
    """Parse a Dfs-Context token; "" is the empty context.

    The token comes from a client, so anything but a token we could have issued raises
    InvalidContext (and nothing else): bad base64, bad msgpack, wrong shape, bad actor or
    counter, duplicate actors, too many entries, too long. The entry limit bounds how much one
    forged token can grow a key's clock; the edge may further reject actors that are not
    replica ids of this cluster.
    """
    if not isinstance(token, str):
        raise InvalidContext("context token must be a string")
    if token == "":
        return VersionVector()
    if len(token) > MAX_CONTEXT_TOKEN:
        raise InvalidContext(f"context token longer than {MAX_CONTEXT_TOKEN} characters")
    obj = _unpack(_unbase64(token), InvalidContext)
    if type(obj) is not list or len(obj) != 2 or type(obj[1]) is not list:
        raise InvalidContext("context token has the wrong shape")
    if type(obj[0]) is not int or obj[0] != CONTEXT_FORMAT:
        raise InvalidContext("context token has an unknown format version")
    if len(obj[1]) > MAX_CONTEXT_ENTRIES:
        raise InvalidContext(f"context token has more than {MAX_CONTEXT_ENTRIES} entries")
    seen: dict[str, int] = {}
    for pair in obj[1]:
        if type(pair) is not list or len(pair) != 2:
            raise InvalidContext("context entries must be [actor, counter] pairs")
        problem = _actor_problem(pair[0]) or _counter_problem(pair[1])
        if problem:
            raise InvalidContext(f"context token: {problem}")
        if pair[0] in seen:
            raise InvalidContext(f"context token names actor {pair[0]!r} twice")
        seen[pair[0]] = pair[1]
    return VersionVector.from_dict(seen)


def _unbase64(token: str) -> bytes:
    """Strict urlsafe base64 without padding: only the canonical spelling of some bytes."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidContext("context token is not valid base64") from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != token.encode("ascii"):
        raise InvalidContext("context token is not canonical urlsafe base64 without padding")
    return raw


def _unpack(raw: bytes, error: type[Exception]) -> Any:
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises ValueError, TypeError, StackError, ... on garbage
        raise error(f"not valid msgpack: {exc}") from exc


# --- storage and internal RPC encoding -------------------------------------------------------


def encode_versions(v: Versions) -> bytes:
    """Compact msgpack ``[VERSIONS_FORMAT, [[actor, n], ...], [sibling, ...]]``.

    A sibling is ``[actor, counter, value (bin or nil), content_type (nil = default), ms]``.
    """
    siblings = [
        [
            s.dot[0],
            s.dot[1],
            s.value,
            None if s.content_type == DEFAULT_CONTENT_TYPE else s.content_type,
            s.modified_ms,
        ]
        for s in v.siblings
    ]
    raw: bytes = msgpack.packb([VERSIONS_FORMAT, v.clock.entries, siblings], use_bin_type=True)
    return raw


def decode_versions(raw: bytes) -> Versions:
    """Inverse of ``encode_versions``. Peers and disks are not trusted: anything that is not a
    well-formed encoding of valid Versions raises ValueError (and nothing else)."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ValueError("encoded versions must be bytes")
    obj = _unpack(bytes(raw), ValueError)
    if type(obj) is not list or len(obj) != 3:
        raise ValueError("encoded versions have the wrong shape")
    if type(obj[0]) is not int or obj[0] != VERSIONS_FORMAT:
        raise ValueError("encoded versions have an unknown format version")
    if type(obj[1]) is not list or type(obj[2]) is not list:
        raise ValueError("encoded versions have the wrong shape")
    try:
        clock = VersionVector(tuple(_pair(e) for e in obj[1]))
        return Versions(clock, tuple(_sibling(e) for e in obj[2]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid encoded versions: {exc}") from exc


def _pair(entry: object) -> tuple[Any, Any]:
    if type(entry) is not list or len(entry) != 2:
        raise ValueError("clock entries must be [actor, counter] pairs")
    return (entry[0], entry[1])


def _sibling(entry: object) -> Sibling:
    if type(entry) is not list or len(entry) != 5:
        raise ValueError("siblings must be [actor, counter, value, content_type, ms]")
    actor, counter, value, content_type, modified_ms = entry
    if content_type is None:
        content_type = DEFAULT_CONTENT_TYPE
    return Sibling((actor, counter), value, content_type, modified_ms)
