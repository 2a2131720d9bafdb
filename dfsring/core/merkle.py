"""Anti-entropy, the pure part: a Merkle tree per partition and the walk that compares two trees.

Pure: no I/O, no clocks; the only coroutine is ``adiff``, a thin driver of the pure walk.

Why a Merkle tree. Replicas that missed writes (and whose hints were lost) must find the keys
they differ on without sending every key: compare hashes of ever smaller key ranges and
descend only where they differ (Dynamo §4.7; Merkle, CRYPTO '87). The shape follows riak_core
``hashtree.erl``: a fixed number of leaves ("segments") chosen by a hash of the key, and a
fixed-fanout tree of hashes above them, so two replicas' trees line up node for node whatever
keys they hold. ``diff`` takes a function that fetches the other replica's nodes, as
``hashtree:compare/4`` does, so it is tested without a network.

Layout. Level 0 is the root, level ``depth`` the ``fanout ** depth`` leaves; node ``(level, i)``
has children ``(level + 1, fanout * i + j)``. All nodes sit in one flat list in that order
(heap order), each a 16-byte hash:

* a leaf is the XOR of ``item_digest(key, version_digest)`` over its items (the empty leaf is 16
  zero bytes). XOR makes insert, delete and replace O(1) on the leaf and independent of order,
  so a write updates the tree without reading the leaf's other keys (XOR-combined segment
  hashes as in Riak's Tictac AAE, martinsumner/leveled ``leveled_tictac.erl``; Garage
  ``merkle.rs`` likewise touches only the changed key's path);
* an inner node is blake2b of its children's hashes concatenated, so a write rehashes one node
  per level: ``depth`` hashes of ``16 * fanout`` bytes.

Invariant: every inner node is the hash of its children. Inner nodes are therefore derived data;
only the leaves need storing (``leaf_hashes``/``from_leaves``, ``to_bytes``/``from_bytes``).
The tree does not know the data: a caller that passes a wrong ``old_version_digest`` makes it
disagree with the data, which only a ``MerkleTree.build`` over a scan of the partition can
detect and repair (riak_kv rebuilds its hashtrees periodically for the same reason).

Defaults: fanout 16, depth 3, i.e. 4 096 leaves and 4 369 nodes per partition (68 KiB of
hashes, ~250 KiB as Python objects; 64 KiB stored). With 1 000 to 1 000 000 keys per partition
a leaf holds about 0.25 to 250 keys, so repairing one differing key costs 3 round trips of 16
hashes each (768 bytes of hashes) plus one leaf's key list (~10-20 KiB at 1M keys). Depth 2
would put ~4 000 keys in a leaf at 1M keys; depth 4 would cost 1 MiB per partition, i.e.
hundreds of MiB per node with 1 024 partitions and hundreds owned per node.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b

HASH_BYTES = 16  # 128 bits: a changed leaf keeps its old hash with probability 2**-128
DEFAULT_FANOUT = 16
DEFAULT_DEPTH = 3
MAX_FANOUT = 256
MAX_LEAVES = 1 << 20  # bounds the memory a (possibly hostile) shape can ask for
EMPTY_LEAF = bytes(HASH_BYTES)

_ITEM_PERSON = b"dfsring-mk-item"
_LEAF_PERSON = b"dfsring-mk-leaf"
_NODE_PERSON = b"dfsring-mk-node"
_MAGIC = b"DMK\x01"  # format version 1
_HEADER = struct.Struct(">4sHH")  # magic, fanout, depth

FetchChildren = Callable[[int, int], Sequence[bytes]]
AsyncFetchChildren = Callable[[int, int], Awaitable[Sequence[bytes]]]
# One batch per level: the walk yields the nodes whose children it needs and is
# sent their children, in the same order.
Node = tuple[int, int]  # (level, index)
DiffWalk = Generator[list[Node], list[Sequence[bytes]], "DiffResult"]


def item_digest(key: bytes, version_digest: bytes) -> int:
    """The 128-bit contribution of one item to its leaf's XOR.

    The key is length-prefixed so (key, digest) pairs never collide by re-splitting the bytes;
    the key is included so two keys with the same version digest do not cancel out.
    """
    h = blake2b(len(key).to_bytes(4, "big"), digest_size=HASH_BYTES, person=_ITEM_PERSON)
    h.update(key)
    h.update(version_digest)
    return int.from_bytes(h.digest(), "big")


def _leaf_index(key: bytes, leaves: int) -> int:
    """Top bits of blake2b(key) scaled to ``leaves`` (multiply-shift: exact top bits when
    ``leaves`` is a power of two, near-uniform otherwise). blake2b, not the mmh3 hash that
    chose the partition, so keys of one partition still spread over all leaves."""
    h = blake2b(key, digest_size=8, person=_LEAF_PERSON).digest()
    return (int.from_bytes(h, "big") * leaves) >> 64


def _hash_children(children: list[bytes]) -> bytes:
    return blake2b(b"".join(children), digest_size=HASH_BYTES, person=_NODE_PERSON).digest()


class MerkleTree:
    """A fixed-shape hash tree over one partition's (key -> version digest) items.

    Mutable (``update``), so unhashable; equality is shape plus node hashes.
    """

    __slots__ = ("_depth", "_fanout", "_leaf_offset", "_leaves", "_nodes", "_offsets")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, fanout: int = DEFAULT_FANOUT, depth: int = DEFAULT_DEPTH) -> None:
        """An empty tree; its root is a constant of the shape (all leaves ``EMPTY_LEAF``)."""
        if not 2 <= fanout <= MAX_FANOUT or depth < 1 or fanout**depth > MAX_LEAVES:
            raise ValueError(
                f"need 2 <= fanout <= {MAX_FANOUT}, depth >= 1 and fanout**depth <= "
                f"{MAX_LEAVES}; got fanout={fanout}, depth={depth}"
            )
        self._fanout = fanout
        self._depth = depth
        self._leaves: int = fanout**depth
        # first flat index of each level (and one past the leaves): (f**level - 1) / (f - 1)
        self._offsets: list[int] = [(fanout**lvl - 1) // (fanout - 1) for lvl in range(depth + 2)]
        self._leaf_offset = self._offsets[depth]
        self._nodes: list[bytes] = []
        self._set_leaves([EMPTY_LEAF] * self._leaves)

    def _set_leaves(self, leaves: list[bytes]) -> None:
        """Replace every leaf and recompute the inner nodes bottom-up."""
        nodes = [EMPTY_LEAF] * self._leaf_offset + leaves
        f = self._fanout
        for flat in range(self._leaf_offset - 1, -1, -1):
            nodes[flat] = _hash_children(nodes[f * flat + 1 : f * flat + 1 + f])
        self._nodes = nodes

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        items: Iterable[tuple[bytes, bytes]],
        fanout: int = DEFAULT_FANOUT,
        depth: int = DEFAULT_DEPTH,
    ) -> MerkleTree:
        """The tree of (key, version digest) items, e.g. a scan of a partition.

        Precondition: each key once (a key given twice cancels itself out of the XOR).
        """
        tree = cls(fanout, depth)
        acc = [0] * tree._leaves
        for key, version_digest in items:
            acc[_leaf_index(key, tree._leaves)] ^= item_digest(key, version_digest)
        tree._set_leaves([x.to_bytes(HASH_BYTES, "big") for x in acc])
        return tree

    @classmethod
    def from_leaves(
        cls, leaves: Sequence[bytes], fanout: int = DEFAULT_FANOUT, depth: int = DEFAULT_DEPTH
    ) -> MerkleTree:
        """Rebuild from stored leaf hashes (inner nodes are derived). Raises ValueError."""
        tree = cls(fanout, depth)
        if len(leaves) != tree._leaves:
            raise ValueError(f"expected {tree._leaves} leaves, got {len(leaves)}")
        if any(type(h) is not bytes or len(h) != HASH_BYTES for h in leaves):
            raise ValueError(f"every leaf hash must be {HASH_BYTES} bytes")
        tree._set_leaves(list(leaves))
        return tree

    def copy(self) -> MerkleTree:
        new = MerkleTree.__new__(MerkleTree)
        for name in self.__slots__:
            setattr(new, name, getattr(self, name))
        new._nodes = list(self._nodes)
        return new

    # -- incremental maintenance ----------------------------------------------------------------

    def update(
        self, key: bytes, old_version_digest: bytes | None, new_version_digest: bytes | None
    ) -> int | None:
        """Fold one local write or delete in: insert (old None), delete (new None) or replace.

        XORs the old item out of and the new one into the key's leaf, then rehashes the path to
        the root: O(depth) hashes. Returns the changed leaf's index (what a persistent store
        must rewrite), or None when nothing changed. ``old_version_digest`` must be what the
        tree last saw for ``key``; otherwise the tree drifts from the data (see module doc).
        """
        if old_version_digest == new_version_digest:
            return None
        delta = 0
        if old_version_digest is not None:
            delta ^= item_digest(key, old_version_digest)
        if new_version_digest is not None:
            delta ^= item_digest(key, new_version_digest)
        leaf = self.leaf_of(key)
        flat = self._leaf_offset + leaf
        value = int.from_bytes(self._nodes[flat], "big") ^ delta
        self._nodes[flat] = value.to_bytes(HASH_BYTES, "big")
        f = self._fanout
        while flat:
            flat = (flat - 1) // f
            self._nodes[flat] = _hash_children(self._nodes[f * flat + 1 : f * flat + 1 + f])
        return leaf

    # -- reading --------------------------------------------------------------------------------

    @property
    def fanout(self) -> int:
        return self._fanout

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def leaf_count(self) -> int:
        return self._leaves

    def leaf_of(self, key: bytes) -> int:
        """The leaf (segment) a key belongs to; depends only on the key and the shape."""
        return _leaf_index(key, self._leaves)

    def root(self) -> bytes:
        return self._nodes[0]

    def _flat(self, level: int, index: int) -> int:
        if not 0 <= level <= self._depth:
            raise ValueError(f"level must be in 0..{self._depth}, got {level}")
        width = self._offsets[level + 1] - self._offsets[level]
        if not 0 <= index < width:
            raise ValueError(f"index at level {level} must be in 0..{width - 1}, got {index}")
        return self._offsets[level] + index

    def node(self, level: int, index: int) -> bytes:
        return self._nodes[self._flat(level, index)]

    def children(self, level: int, index: int) -> list[bytes]:
        """The ``fanout`` child hashes of an inner node: what one exchange step sends."""
        if level >= self._depth:
            raise ValueError(f"leaves (level {self._depth}) have no children")
        first = self._fanout * self._flat(level, index) + 1
        return self._nodes[first : first + self._fanout]

    def leaf_hashes(self) -> list[bytes]:
        """The leaves in index order: the whole state (inner nodes derive from them)."""
        return self._nodes[self._leaf_offset :]

    # -- serialisation ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """``magic | fanout u16 | depth u16 | leaves | root``; the root doubles as a checksum."""
        header = _HEADER.pack(_MAGIC, self._fanout, self._depth)
        return header + b"".join(self.leaf_hashes()) + self.root()

    @classmethod
    def from_bytes(cls, data: bytes) -> MerkleTree:
        """Inverse of ``to_bytes``. Raises ValueError on a wrong magic, shape or length, or
        when the recomputed root differs from the stored one (a torn or corrupted blob)."""
        if len(data) < _HEADER.size or data[:4] != _MAGIC:
            raise ValueError("not a serialised MerkleTree (bad magic)")
        _, fanout, depth = _HEADER.unpack_from(data)
        tree = cls(fanout, depth)  # validates the shape before anything is allocated
        body = len(data) - _HEADER.size - HASH_BYTES
        if body != tree._leaves * HASH_BYTES:
            raise ValueError(f"wrong length {len(data)} for fanout={fanout}, depth={depth}")
        start = _HEADER.size
        leaves = [data[p : p + HASH_BYTES] for p in range(start, start + body, HASH_BYTES)]
        tree._set_leaves(leaves)
        if tree.root() != data[-HASH_BYTES:]:
            raise ValueError("serialised MerkleTree failed its root check")
        return tree

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MerkleTree):
            return NotImplemented
        return (self._fanout, self._depth, self._nodes) == (
            other._fanout,
            other._depth,
            other._nodes,
        )

    def __repr__(self) -> str:
        return f"MerkleTree(fanout={self._fanout}, depth={self._depth}, root={self.root().hex()})"


# -- comparing two replicas' trees --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffResult:
    """Outcome of one exchange.

    ``differing_leaves``: ascending leaf indexes whose hashes differ (then compare their keys
    with ``diff_leaf``). ``nodes_fetched``: remote hashes received, not counting the root the
    caller already had. ``rounds``: fetch batches, one per level descended (0 when the roots match,
    ``depth`` when some leaf differs).
    """

    differing_leaves: list[int]
    nodes_fetched: int
    rounds: int


def diff_walk(local: MerkleTree | TreeView, remote_root: bytes) -> DiffWalk:
    """The exchange as a sans-I/O coroutine (riak_core ``hashtree:compare/4``, level by level).

    Compares roots, then at each level asks for the children of the nodes that differ and keeps
    the children that differ from the local ones. Yields one request list per level, so a
    network driver can make one round trip per level; returns the ``DiffResult``. Work and
    transfer are O(fanout * depth * differing leaves), independent of the key count.
    Raises ValueError if the remote answers with the wrong number or size of hashes (a peer of
    another shape or a broken one).
    """
    if not isinstance(remote_root, bytes) or len(remote_root) != HASH_BYTES:
        raise ValueError(f"a root hash is {HASH_BYTES} bytes")
    fanout = local.fanout
    frontier = [] if remote_root == local.root() else [0]
    fetched = rounds = 0
    for level in range(local.depth):
        if not frontier:
            break
        answers = yield [(level, index) for index in frontier]
        if len(answers) != len(frontier):
            raise ValueError(f"asked for {len(frontier)} nodes' children, got {len(answers)}")
        rounds += 1
        next_frontier: list[int] = []
        for index, remote_children in zip(frontier, answers, strict=True):
            _check_children(remote_children, fanout)
            fetched += len(remote_children)
            pairs = zip(local.children(level, index), remote_children, strict=True)
            next_frontier.extend(
                fanout * index + j for j, (mine, theirs) in enumerate(pairs) if mine != theirs
            )
        frontier = next_frontier
    return DiffResult(differing_leaves=frontier, nodes_fetched=fetched, rounds=rounds)


def _check_children(children: Sequence[bytes], fanout: int) -> None:
    if len(children) != fanout:
        raise ValueError(f"expected {fanout} child hashes, got {len(children)}")
    if any(not isinstance(h, bytes) or len(h) != HASH_BYTES for h in children):
        raise ValueError(f"child hashes must be {HASH_BYTES} bytes")


def _step(walk: DiffWalk, answers: list[Sequence[bytes]] | None) -> DiffResult | list[Node]:
    """Advance the walk: its next request, or its result once it is done."""
    try:
        return next(walk) if answers is None else walk.send(answers)
    except StopIteration as done:
        result: DiffResult = done.value
        return result


def diff(local: MerkleTree, fetch_remote_children: FetchChildren, remote_root: bytes) -> DiffResult:
    """Leaves where ``local`` differs from a remote tree read through ``fetch_remote_children``
    ((level, index) -> that node's children). Identical trees cost 0 fetches."""
    walk = diff_walk(local, remote_root)
    step = _step(walk, None)
    while not isinstance(step, DiffResult):
        step = _step(walk, [fetch_remote_children(level, index) for level, index in step])
    return step


async def adiff(
    local: MerkleTree, fetch_remote_children: AsyncFetchChildren, remote_root: bytes
) -> DiffResult:
    """Async twin of ``diff``: the same walk, with one level's fetches awaited concurrently."""
    walk = diff_walk(local, remote_root)
    step = _step(walk, None)
    while not isinstance(step, DiffResult):
        answers = await asyncio.gather(*(fetch_remote_children(lvl, i) for lvl, i in step))
        step = _step(walk, list(answers))
    return step


@dataclass(frozen=True, slots=True)
class LeafDiff:
    """Key-level difference of one leaf, each list sorted: keys only the remote has
    (``missing_here``), keys only we have (``missing_there``), keys with other digests."""

    missing_here: list[bytes]
    missing_there: list[bytes]
    different: list[bytes]


def diff_leaf(local_items: Mapping[bytes, bytes], remote_items: Mapping[bytes, bytes]) -> LeafDiff:
    """The last step of an exchange: compare the (key -> version digest) maps of one leaf.
    Deciding which version wins is not done here: both sides' versions are merged (vclock.sync)."""
    return LeafDiff(
        missing_here=sorted(remote_items.keys() - local_items.keys()),
        missing_there=sorted(local_items.keys() - remote_items.keys()),
        different=sorted(
            k for k, v in local_items.items() if k in remote_items and remote_items[k] != v
        ),
    )


# -- stored leaves: what a replica keeps in the same transaction as its data ------------------

DEFAULT_LEAVES = DEFAULT_FANOUT**DEFAULT_DEPTH


def version_digest(record: bytes) -> bytes:
    """The digest of a stored record: records are canonical (dfsring.core.vclock encodes sorted
    clocks and siblings), so two replicas holding the same versions of a key agree on it."""
    return blake2b(record, digest_size=HASH_BYTES).digest()


def leaf_index(key: bytes, leaves: int = DEFAULT_LEAVES) -> int:
    """The leaf ``key`` falls in, for a tree of ``leaves`` leaves (same rule as the tree's)."""
    return _leaf_index(key, leaves)


def fold_leaf(leaf: bytes | None, key: bytes, old_digest: bytes | None,
              new_digest: bytes | None) -> bytes:
    """A stored leaf hash after one item changed (insert: old None; delete: new None): the
    XOR out of the old item and in of the new one, so a write touches only its own leaf."""
    value = int.from_bytes(leaf or EMPTY_LEAF, "big")
    if old_digest is not None:
        value ^= item_digest(key, old_digest)
    if new_digest is not None:
        value ^= item_digest(key, new_digest)
    return value.to_bytes(HASH_BYTES, "big")


def tree_from_sparse(leaves: Mapping[int, bytes], fanout: int = DEFAULT_FANOUT,
                     depth: int = DEFAULT_DEPTH) -> MerkleTree:
    """The tree of stored leaves given as {index: hash}; absent leaves are empty."""
    full = [EMPTY_LEAF] * (fanout**depth)
    for index, value in leaves.items():
        full[index] = value
    return MerkleTree.from_leaves(full, fanout, depth)


EMPTY_ROOT = MerkleTree().root()

class InnerNodes:
    """Every node above the leaves of one partition's tree, kept between exchanges.

    Why: anti-entropy compares the roots of every partition each round, and under a steady
    write load nearly every partition has changed since the last one. Rebuilding a tree costs
    one hash per inner node (273 with 4 096 leaves); a write changes one leaf, so only the
    bottom node above it and that node's ancestors need hashing again (3 hashes). The nodes
    are one flat bytearray (root first, the layout MerkleTree uses), 4.3 KiB per partition.
    """

    __slots__ = ("_bottom", "_buf", "_depth", "_fanout")

    def __init__(self, leaves: Mapping[int, bytes], fanout: int = DEFAULT_FANOUT,
                 depth: int = DEFAULT_DEPTH) -> None:
        tree = tree_from_sparse(leaves, fanout, depth)
        self._fanout, self._depth = fanout, depth
        self._bottom = (fanout ** (depth - 1) - 1) // (fanout - 1)  # flat index of group 0
        count = (fanout**depth - 1) // (fanout - 1)
        self._buf = bytearray(b"".join(tree._nodes[:count]))

    @property
    def groups(self) -> int:
        """How many bottom inner nodes there are (each covers ``fanout`` leaves)."""
        return int(self._fanout ** (self._depth - 1))

    def root(self) -> bytes:
        return bytes(self._buf[:HASH_BYTES])

    @property
    def fanout(self) -> int:
        return self._fanout

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def leaf_count(self) -> int:
        return int(self._fanout**self._depth)

    def children(self, level: int, index: int) -> list[bytes]:
        """The child hashes of an inner node above the bottom level (whose children are
        leaves, not kept here: see TreeView)."""
        if not 0 <= level < self._depth - 1:
            raise ValueError(f"level must be in 0..{self._depth - 2}, got {level}")
        width = self._fanout**level
        if not 0 <= index < width:
            raise ValueError(f"index at level {level} must be in 0..{width - 1}, got {index}")
        flat = (self._fanout**level - 1) // (self._fanout - 1) + index
        first = self._fanout * flat + 1
        return [bytes(self._buf[i * HASH_BYTES:(i + 1) * HASH_BYTES])
                for i in range(first, first + self._fanout)]

    def update(self, groups: Mapping[int, Sequence[bytes]]) -> None:
        """New leaves for some groups (group g holds leaves g*fanout .. g*fanout+fanout-1);
        rehashes those bottom nodes and their ancestors, each ancestor once."""
        f, buf = self._fanout, self._buf
        touched: set[int] = set()
        for group, leaves in groups.items():
            if not 0 <= group < self.groups or len(leaves) != f:
                raise ValueError(f"group {group} needs {f} leaves, within 0..{self.groups - 1}")
            flat = self._bottom + group
            buf[flat * HASH_BYTES:(flat + 1) * HASH_BYTES] = _hash_children(list(leaves))
            touched.add(flat)
        while touched and 0 not in touched:
            parents = {(flat - 1) // f for flat in touched}
            for flat in parents:
                first = f * flat + 1
                buf[flat * HASH_BYTES:(flat + 1) * HASH_BYTES] = blake2b(
                    buf[first * HASH_BYTES:(first + f) * HASH_BYTES], digest_size=HASH_BYTES,
                    person=_NODE_PERSON).digest()
            touched = parents


class TreeView:
    """A partition's tree as an exchange reads it: inner nodes from InnerNodes, the leaves
    of one bottom node at a time from ``leaves_of(group)`` (the store), so a walk costs the
    few nodes it visits instead of a whole tree built for it."""

    __slots__ = ("_inner", "_leaves_of")

    def __init__(self, inner: InnerNodes, leaves_of: Callable[[int], Sequence[bytes]]) -> None:
        self._inner = inner
        self._leaves_of = leaves_of

    @property
    def fanout(self) -> int:
        return self._inner.fanout

    @property
    def depth(self) -> int:
        return self._inner.depth

    @property
    def leaf_count(self) -> int:
        return self._inner.leaf_count

    def root(self) -> bytes:
        return self._inner.root()

    def children(self, level: int, index: int) -> list[bytes]:
        if level != self.depth - 1:
            return self._inner.children(level, index)
        if not 0 <= index < self._inner.groups:
            raise ValueError(f"index at level {level} must be in 0..{self._inner.groups - 1}")
        return list(self._leaves_of(index))

