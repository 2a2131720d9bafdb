"""The gossiped cluster view and its merge: a join-semilattice of member entries.

Pure: no I/O, no clocks. The gossip service owns a `View`, bumps its own entry's heartbeat, and
merges whatever peers send; every rule of how two views combine lives here.

Why a semilattice. Gossip delivers views late, twice, and in any order, so the merge must be
commutative, associative and idempotent; then every node that has (transitively) heard every
update holds the same view, whatever the path (a state-based CRDT: Shapiro, Preguiça, Baquero,
Zawirski, "Conflict-free Replicated Data Types", SSS 2011, §2.2). `View` is the product of
three such lattices, merged component-wise:

* ``members``: node id -> `MemberState`, keeping per id the entry with the larger
  ``(incarnation, heartbeat)``. Only a node writes its own entry and bumps its heartbeat on
  every change, so the larger version is the newer one (heartbeat counters gossiped, van
  Renesse, Minsky, Hayden, "A Gossip-Style Failure Detection Service", Middleware 1998;
  Cassandra's ``HeartBeatState`` of generation and version, ``org.apache.cassandra.gms``).
  The incarnation is persisted and grows on each restart, so a restarted node's entry beats
  everything its previous life said, though its heartbeat starts again at 0 (Cassandra's
  generation, SWIM §4.2's incarnation number). Equal versions with different content never
  occur in a correct cluster; should they (two processes with one id), the rest of the wire
  tuple breaks the tie, so the merge stays a total, deterministic join.
* ``removed``: node ids removed from the cluster, a grow-only set (a G-set). Removal is
  permanent: an id in it that the agreed ring no longer lists is LEFT whatever its entry
  says, so no stale gossip, and no restart of the removed node, brings it back. An id in it
  that the ring still lists is only a request: it takes effect through a chosen ring epoch
  (`effective_status`, `admissible_removals`; issue 23). Entries of removed nodes are kept
  with the mark (they are the tombstones that make this so) until the mark expires, after a
  grace period, with the entry (dfsring.core.removals; from then on the id is unknown, and
  `admissible_entries` keeps it out). Expiry is the one step outside the lattice: a node
  drops what it has held past the grace, and the admission rules make sure no merge brings
  it back.
* ``ring``: the agreed `RingState` with the larger ``(epoch, settled, digest)``. Two agreed
  rings never share an epoch (dfsring.core.ringstate), except a ring and its own `settled()`
  copy; settling is monotone (every member having synced an epoch stays true), so the
  settled copy wins. Ordering that pair by digest alone would let gossip un-settle a ring,
  and refuse a node's own `with_ring(view, ring.settled())` half the time.

Push-pull reconciliation (Cassandra's GossipDigestSyn / Ack / Ack2, ``Gossiper.java``; the
"scuttlebutt" exchange of van Renesse, Dumitriu, Gough, Thomas, "Efficient Reconciliation
and Flow Control for Anti-Entropy Protocols", LADIS 2008): A sends ``digest(A)``; B answers
``newer_than(B, dA)`` and ``wanted(B, dA)``; A merges the entries and sends
``entries_for(A, wanted)``; B merges. Both then hold the same members (given, as above, that
one (id, version) names one content), and only entries that differ crossed the wire.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dfsring.core.ringstate import RingState

MAX_MEMBERS = 1024
"""Most entries (or ids) a decoded message may carry: bounds what a peer can make us hold."""

MAX_STRING = 255
MAX_INT = 2**63 - 1  # fits a signed 64-bit integer in any peer or tool

MemberWire = tuple[str, str, str, str, int, int, int, str, str]
DigestWire = list[tuple[str, int, int]]
ViewWire = tuple[list[MemberWire], list[str], Any]
Version = tuple[int, int]


class Status(enum.StrEnum):
    """What a node says of itself (liveness is local, see dfsring.core.failure)."""

    JOINING = "joining"
    UP = "up"
    LEAVING = "leaving"
    LEFT = "left"


_STATUSES = frozenset(s.value for s in Status)


def _string_problem(name: str, value: object, *, empty: bool) -> str | None:
    if type(value) is not str:
        return f"{name} must be a string, not {type(value).__name__}"
    if not empty and not value:
        return f"{name} must not be empty"
    if len(value) > MAX_STRING:
        return f"{name} is longer than {MAX_STRING} characters"
    return None


def _int_problem(name: str, value: object) -> str | None:
    if type(value) is not int:  # excludes bool, which msgpack and Python treat as int
        return f"{name} must be an integer, not {type(value).__name__}"
    if not 0 <= value <= MAX_INT:
        return f"{name} must be in 0..{MAX_INT}, got {value}"
    return None


def _status_problem(status: object) -> str | None:
    if not isinstance(status, str) or status not in _STATUSES:
        return f"status must be one of {sorted(_STATUSES)}, got {status!r:.40}"
    return None


def _address_problem(address: str) -> str | None:
    """``host:port``; an IPv6 host is bracketed, ``[::1]:7000``."""
    host, sep, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if not sep or not host or any(c.isspace() for c in host) or (":" in host and not bracketed):
        return f"address must be 'host:port', got {address!r}"
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return f"address port must be 1..65535, got {port!r}"
    return None


def _api_problem(api: object) -> str | None:
    """The client API address: empty (an entry from before it was gossiped) or host:port."""
    if api == "":
        return None
    return _string_problem("api", api, empty=False) or _address_problem(str(api))


@dataclass(frozen=True, slots=True)
class MemberState:
    """One node's entry, written only by that node (see the module docstring).

    ``synced_epoch`` is the highest ring epoch whose incoming transfers this node finished;
    when every member of an epoch reports it, that ring can be settled (dfsring.core.ringstate).
    ``acceptor`` is the nonce of the node's Paxos acceptor memory (dfsring.core.epochs): a ring
    member whose nonce differs from the ring's lost that memory and is re-admitted.
    ``address`` is the node's peer listener (all that peers ever dial); ``api`` its client
    API, gossiped so that any node and the CLI can name it (``dfsring status`` asks each).
    The constructor validates, so no malformed entry exists past a decoder.
    """

    node_id: str
    address: str
    zone: str
    status: Status
    incarnation: int
    heartbeat: int
    synced_epoch: int
    acceptor: str = ""
    api: str = ""

    def __post_init__(self) -> None:
        problem = (_string_problem("node_id", self.node_id, empty=False)
                   or _string_problem("address", self.address, empty=False)
                   or _address_problem(self.address)
                   or _string_problem("zone", self.zone, empty=True)
                   or _status_problem(self.status)
                   or _int_problem("incarnation", self.incarnation)
                   or _int_problem("heartbeat", self.heartbeat)
                   or _int_problem("synced_epoch", self.synced_epoch)
                   or _string_problem("acceptor", self.acceptor, empty=True)
                   or _api_problem(self.api))
        if problem:
            raise ValueError(problem)
        object.__setattr__(self, "status", Status(self.status))

    def version(self) -> Version:
        return (self.incarnation, self.heartbeat)

    def to_wire(self) -> MemberWire:
        return (self.node_id, self.address, self.zone, self.status.value,
                self.incarnation, self.heartbeat, self.synced_epoch, self.acceptor, self.api)

    @classmethod
    def from_wire(cls, raw: Any) -> MemberState:
        """Inverse of to_wire (a list, as msgpack decodes it, is accepted; the 7- and 8-element
        forms of entries written before acceptor nonces and client addresses too);
        ValueError for anything else."""
        if type(raw) not in (list, tuple) or len(raw) not in (7, 8, 9):
            raise ValueError("a member entry is a 9-element array")
        try:
            return cls(*raw)
        except ValueError as exc:
            raise ValueError(f"malformed member entry: {exc}") from exc


def _order_key(m: MemberState) -> tuple[int, int, MemberWire]:
    """Newer version first; the whole wire tuple makes the order total over distinct entries."""
    return (m.incarnation, m.heartbeat, m.to_wire())


def _ring_key(r: RingState) -> tuple[int, bool, str]:
    return (r.epoch, not r.in_transition, r.digest())


@dataclass(frozen=True, slots=True)
class View:
    """A node's picture of the cluster: the join of everything it has heard.

    Invariants: ``members`` is read-only, keyed by each entry's node id and iterated in id
    order; equality and hashing are by content.
    """

    members: Mapping[str, MemberState] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()
    ring: RingState = field(default_factory=RingState.empty)

    def __post_init__(self) -> None:
        for node_id, entry in self.members.items():
            if node_id != entry.node_id:
                raise ValueError(f"entry for {entry.node_id!r} filed under {node_id!r}")
        object.__setattr__(self, "members", MappingProxyType(dict(sorted(self.members.items()))))
        object.__setattr__(self, "removed", frozenset(self.removed))

    def __hash__(self) -> int:
        return hash((tuple(self.members.values()), self.removed, self.ring))

    def to_wire(self) -> ViewWire:
        return ([m.to_wire() for m in self.members.values()], sorted(self.removed),
                self.ring.to_wire())

    @classmethod
    def from_wire(cls, raw: Any) -> View:
        """Inverse of to_wire; ValueError for anything malformed or over `MAX_MEMBERS`."""
        if type(raw) not in (list, tuple) or len(raw) != 3:
            raise ValueError("a view is a 3-element array")
        entries = entries_from_wire(raw[0])
        return cls({m.node_id: m for m in entries}, frozenset(ids_from_wire(raw[1])),
                   RingState.from_wire(raw[2]))


# -- the merge ---------------------------------------------------------------------------------


def _merged(base: Mapping[str, MemberState], entries: Iterable[MemberState],
            ) -> dict[str, MemberState]:
    out = dict(base)
    for entry in entries:
        current = out.get(entry.node_id)
        if current is None or _order_key(entry) > _order_key(current):
            out[entry.node_id] = entry
    return out


def merge(a: View, b: View) -> View:
    """The least upper bound of two views (commutative, associative, idempotent)."""
    return View(_merged(a.members, b.members.values()), a.removed | b.removed,
                max(a.ring, b.ring, key=_ring_key))


def merge_entries(view: View, entries: Iterable[MemberState]) -> View:
    """`view` joined with just these entries (what a gossip Ack or Ack2 carries)."""
    return View(_merged(view.members, entries), view.removed, view.ring)


def with_ring(view: View, ring: RingState) -> View:
    """`view` with the larger of its ring and `ring`; `view` itself if that is its own."""
    if _ring_key(ring) <= _ring_key(view.ring):
        return view
    return View(view.members, view.removed, ring)


def with_removed(view: View, ids: Iterable[str]) -> View:
    """`view` with these ids removed, permanently."""
    removed = view.removed.union(ids)
    return view if removed == view.removed else View(view.members, removed, view.ring)


def effective_status(view: View, node_id: str) -> Status:
    """LEFT for a removed node the agreed ring no longer lists, else what the node says;
    KeyError for a node never heard of. A removed id still in the ring is a request (an
    operator's remove waiting for its epoch): until a ring without it is chosen, the node
    keeps its status and its partitions (issue 23: no peer evicts a member by gossip)."""
    if node_id in view.removed and node_id not in view.ring.member_ids:
        return Status.LEFT
    return view.members[node_id].status


INCARNATION_WINDOW = 1 << 20
"""How far one relayed entry may move a known node's incarnation (a restart adds 1)."""


def admissible_entries(view: View, entries: Iterable[MemberState], listed: frozenset[str],
                       *, placed: frozenset[str] | None = None) -> list[MemberState]:
    """The relayed entries a node holding `view` may merge, given the ids its agreed ring
    lists; the rest are dropped, not refused, so the rest of a gossip message still merges.

    * A node reports `left` only once a chosen ring no longer lists it (it left, or was
      removed), so an entry saying a ring member left is not its subject's (issue 23). A
      node that lags the ring without it takes the entry a round later, once it adopts it.
    * An entry may move a known node's incarnation by at most `INCARNATION_WINDOW`, and an
      unknown node's is at most ``MAX_INT // 2``: an entry near ``MAX_INT`` would beat
      everything its subject can ever send (it refutes by going one past), so the subject's
      heartbeats would go unseen and it would look down for good.
    * With ``placed`` (the ids the judging ring and its previous rings use; given once this
      node holds a ring), an unknown node's entry is taken only if it is placed or says
      `joining`: a node whose removal mark expired (dfsring.core.removals) is unknown again,
      and neither stale gossip of it nor the node itself, restarted, gets back in.
    """
    out = []
    for e in entries:
        known = view.members.get(e.node_id)
        ceiling = MAX_INT // 2 if known is None else known.incarnation + INCARNATION_WINDOW
        stranger = (known is None and placed is not None and e.node_id not in placed
                    and e.status is not Status.JOINING)
        if (not (e.status is Status.LEFT and e.node_id in listed) and e.incarnation <= ceiling
                and not stranger):
            out.append(e)
    return out


def admissible_removals(view: View, ids: Iterable[str],
                        is_down: Callable[[str], bool]) -> frozenset[str]:
    """The ids a peer says are removed that this node may add to its removed set.

    Membership changes come only from their subject or through an agreed epoch, so:
    * a ring member is taken only if this node holds it down too: it is then an operator's
      removal request (the admin API asks the same of its own node), which changes nothing
      until the claimant, who checks liveness again, gets a ring without it chosen;
    * an id the agreed ring does not list is taken if this node knows its entry and it is not
      joining: the ring already dropped it, and the mark only keeps it out for good. A
      joining node (never in a ring) cannot be removed by gossip, nor an unknown id
      (it may be a joiner gossip has not brought yet; the next round brings its entry).
    """
    ring = view.ring.member_ids
    taken = set()
    for node_id in ids:
        entry = view.members.get(node_id)
        if node_id in ring:
            ok = is_down(node_id)
        else:
            ok = (bool(view.ring.epoch) and entry is not None
                  and entry.status is not Status.JOINING)
        if ok:
            taken.add(node_id)
    return frozenset(taken)


# -- digest-based push-pull --------------------------------------------------------------------


def digest(view: View) -> dict[str, Version]:
    """Node id -> version of each entry: what a gossip Syn carries instead of the entries."""
    return {node_id: m.version() for node_id, m in view.members.items()}


def newer_than(view: View, peer: Mapping[str, Version]) -> list[MemberState]:
    """Entries of `view` that the peer's digest lacks or holds at a smaller version, by id."""
    return [m for node_id, m in view.members.items()
            if node_id not in peer or peer[node_id] < m.version()]


def wanted(view: View, peer: Mapping[str, Version]) -> list[str]:
    """Ids the peer's digest holds at a larger version than `view`, or `view` lacks, sorted."""
    return sorted(node_id for node_id, version in peer.items()
                  if node_id not in view.members
                  or view.members[node_id].version() < version)


def entries_for(view: View, ids: Iterable[str]) -> list[MemberState]:
    """The entries of `view` for these ids (those it has), sorted by id: the Ack2 reply."""
    return sorted((view.members[i] for i in set(ids) if i in view.members),
                  key=lambda m: m.node_id)


# -- wire helpers ------------------------------------------------------------------------------


def _array(raw: Any, what: str) -> list[Any] | tuple[Any, ...]:
    if type(raw) not in (list, tuple):
        raise ValueError(f"{what} must be an array")
    if len(raw) > MAX_MEMBERS:
        raise ValueError(f"{what} has {len(raw)} items, more than {MAX_MEMBERS}")
    items: list[Any] | tuple[Any, ...] = raw
    return items


def _unique(ids: list[str], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} name a node twice")


def entries_to_wire(entries: Iterable[MemberState]) -> list[MemberWire]:
    return [m.to_wire() for m in entries]


def entries_from_wire(raw: Any) -> list[MemberState]:
    """Entries as gossip carries them; ValueError if malformed, over `MAX_MEMBERS` or naming
    a node twice."""
    entries = [MemberState.from_wire(e) for e in _array(raw, "member entries")]
    _unique([m.node_id for m in entries], "member entries")
    return entries


def ids_from_wire(raw: Any) -> list[str]:
    """A list of node ids (a `wanted` list, a removed set); ValueError if malformed."""
    ids = list(_array(raw, "node ids"))
    for node_id in ids:
        problem = _string_problem("node id", node_id, empty=False)
        if problem:
            raise ValueError(problem)
    _unique(ids, "node ids")
    return ids


def digest_to_wire(d: Mapping[str, Version]) -> DigestWire:
    return [(node_id, inc, hb) for node_id, (inc, hb) in sorted(d.items())]


def digest_from_wire(raw: Any) -> dict[str, Version]:
    """Inverse of digest_to_wire; ValueError if malformed or over `MAX_MEMBERS`."""
    out: dict[str, Version] = {}
    for item in _array(raw, "digest"):
        if type(item) not in (list, tuple) or len(item) != 3:
            raise ValueError("a digest item is (node_id, incarnation, heartbeat)")
        node_id, inc, hb = item
        problem = (_string_problem("node id", node_id, empty=False)
                   or _int_problem("incarnation", inc) or _int_problem("heartbeat", hb))
        if problem:
            raise ValueError(f"malformed digest: {problem}")
        out[node_id] = (inc, hb)
    if len(out) != len(raw):
        raise ValueError("digest items name a node twice")
    return out
