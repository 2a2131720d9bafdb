"""Laws of dfsring.core.vclock, checked on states reachable through update and sync.

Well-formed states come from a simulation: replicas "a", "b", "c" coordinate writes and deletes
with contexts taken from random earlier reads (including the empty context and stale ones) and
sync pairwise at random. Beside the real states the simulation keeps a model: every write's
context and the set of writes each replica has learned of. The maximal versions of a replica
are the learned writes that no learned write's context covers (Almeida et al., DAIS 2014); the
replica's siblings must be exactly those.
"""

from __future__ import annotations

import base64
import itertools
from collections import Counter
from dataclasses import dataclass, field

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfsring.core.vclock import (
    DEFAULT_CONTENT_TYPE,
    MAX_CONTEXT_ENTRIES,
    MAX_CONTEXT_TOKEN,
    MAX_COUNTER,
    Dot,
    Sibling,
    Versions,
    VersionVector,
    decode_context,
    decode_versions,
    descends,
    encode_context,
    encode_versions,
    merge_all,
    sync,
    sync_all,
    update,
)
from dfsring.foundation.errors import InvalidContext

pytestmark = pytest.mark.unit

ACTORS = ("a", "b", "c")
EMPTY = VersionVector()


def dots(v: Versions) -> set[Dot]:
    return {s.dot for s in v.siblings}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# --- the simulation --------------------------------------------------------------------------


@dataclass
class World:
    replicas: dict[str, Versions] = field(default_factory=lambda: {a: Versions() for a in ACTORS})
    known: dict[str, set[Dot]] = field(default_factory=lambda: {a: set() for a in ACTORS})
    ctx_of: dict[Dot, VersionVector] = field(default_factory=dict)
    value_of: dict[Dot, bytes | None] = field(default_factory=dict)
    reads: list[VersionVector] = field(default_factory=lambda: [EMPTY])
    history: list[Versions] = field(default_factory=lambda: [Versions()])
    timeline: dict[str, list[Versions]] = field(
        default_factory=lambda: {a: [Versions()] for a in ACTORS}
    )

    def write(self, actor: str, context: VersionVector, value: bytes | None) -> Dot:
        before = self.replicas[actor]
        after = update(before, context, actor, value, "text/plain", len(self.ctx_of))
        (dot,) = dots(after) - dots(before)
        self.ctx_of[dot] = context
        self.value_of[dot] = value
        self.known[actor].add(dot)
        self._set(actor, after)
        return dot

    def sync(self, dst: str, src: str, both: bool) -> None:
        joined = sync(self.replicas[dst], self.replicas[src])
        self.known[dst] |= self.known[src]
        self._set(dst, joined)
        if both:
            self.known[src] = set(self.known[dst])
            self._set(src, joined)

    def _set(self, actor: str, state: Versions) -> None:
        self.replicas[actor] = state
        self.reads.append(state.clock)
        self.history.append(state)
        self.timeline[actor].append(state)

    def maximal(self, known: set[Dot]) -> set[Dot]:
        return {d for d in known if not any(self.ctx_of[w].covers(d) for w in known)}


write_ops = st.tuples(
    st.just("write"),
    st.sampled_from(ACTORS),
    st.integers(0, 2**16),  # which earlier read supplies the context
    st.integers(0, 3),  # 0 -> delete
)
sync_ops = st.tuples(
    st.just("sync"), st.sampled_from(ACTORS), st.sampled_from(ACTORS), st.booleans()
)


def run(ops: list[tuple[str, str, object, object]]) -> World:
    world = World()
    for n, op in enumerate(ops):
        if op[0] == "write":
            _, actor, pick, kind = op
            assert isinstance(pick, int)
            context = world.reads[pick % len(world.reads)]
            world.write(actor, context, None if kind == 0 else f"w{n}".encode())
        else:
            _, dst, src, both = op
            assert isinstance(src, str)
            world.sync(dst, src, bool(both))
    return world


worlds = st.lists(st.one_of(write_ops, sync_ops), min_size=1, max_size=25).map(run)


def states(data: st.DataObject, count: int) -> list[Versions]:
    world = data.draw(worlds, label="world")
    return [data.draw(st.sampled_from(world.history), label=f"s{i}") for i in range(count)]


# --- the laws of sync ------------------------------------------------------------------------


@given(st.data())
def test_sync_commutative_idempotent_and_an_upper_bound(data: st.DataObject) -> None:
    a, b = states(data, 2)
    ab = sync(a, b)
    assert ab == sync(b, a)
    assert sync(a, a) == a
    assert sync(ab, a) == ab and sync(ab, b) == ab
    assert descends(ab, a) and descends(ab, b)
    assert ab.clock == a.clock.merge(b.clock)


@given(st.data())
def test_sync_associative(data: st.DataObject) -> None:
    a, b, c = states(data, 3)
    assert sync(sync(a, b), c) == sync(a, sync(b, c))


@given(st.data())
def test_sync_keeps_exactly_the_maximal_versions(data: st.DataObject) -> None:
    group = states(data, data.draw(st.integers(1, 4), label="n"))
    joined = sync_all(group)
    expected = {
        d
        for s in group
        for d in dots(s)
        if all(d in dots(other) or not other.clock.covers(d) for other in group)
    }
    assert dots(joined) == expected
    assert joined.clock == merge_all(s.clock for s in group)
    for order in itertools.permutations(group):
        assert sync_all(order) == joined


@settings(max_examples=200)
@given(worlds)
def test_replicas_hold_exactly_the_writes_no_known_write_superseded(world: World) -> None:
    for actor in ACTORS:
        state = world.replicas[actor]
        maximal = world.maximal(world.known[actor])
        assert dots(state) == maximal
        # Siblings are pairwise concurrent writes: never more than the writes not superseded.
        assert len(state.siblings) == len(maximal) <= len(world.known[actor])
        for s in state.siblings:
            assert s.value == world.value_of[s.dot]
        assert all(state.clock.covers(d) for d in world.known[actor])


@given(worlds)
def test_replicas_converge_once_all_have_synced(world: World) -> None:
    for dst, src in itertools.permutations(ACTORS, 2):
        world.sync(dst, src, both=True)
    final = {world.replicas[a] for a in ACTORS}
    assert len(final) == 1
    (state,) = final
    assert dots(state) == world.maximal(set(world.ctx_of))


@given(st.data())
def test_descends_is_a_partial_order_following_each_replica(data: st.DataObject) -> None:
    a, b = states(data, 2)
    assert descends(a, a)
    if descends(a, b) and descends(b, a):
        assert a == b
    assert descends(a, Versions())


@given(st.data())
def test_on_reachable_states_the_clock_alone_decides_descent(data: st.DataObject) -> None:
    """The dots make the clock an exact summary of a replica's knowledge (DAIS 2014 §4)."""
    a, b = states(data, 2)
    assert descends(a, b) == a.clock.descends(b.clock)


def test_descends_also_checks_the_siblings_of_hand_made_states() -> None:
    clock = VersionVector.from_dict({"a": 1, "b": 1})
    a = Versions(clock, (Sibling(("a", 1), b"x"),))
    b = Versions(clock, (Sibling(("b", 1), b"y"),))
    assert not descends(a, b) and not descends(b, a)
    assert sync(a, b).siblings == ()


def test_sync_stays_commutative_when_states_disagree_about_a_dot() -> None:
    clock = VersionVector.from_dict({"a": 1})
    x = Versions(clock, (Sibling(("a", 1), b"x"),))
    y = Versions(clock, (Sibling(("a", 1), b"y", "text/plain", 9),))
    tomb = Versions(clock, (Sibling(("a", 1), None),))
    assert sync(x, y) == sync(y, x) == y
    assert sync(x, tomb) == sync(tomb, x) == x
    assert sync(sync(x, y), tomb) == sync(x, sync(y, tomb))


@given(worlds)
def test_a_replica_only_moves_forward(world: World) -> None:
    for actor in ACTORS:
        for before, after in itertools.pairwise(world.timeline[actor]):
            assert descends(after, before)


# --- update: what a write supersedes ---------------------------------------------------------


@given(st.data())
def test_update_replaces_exactly_the_siblings_the_context_saw(data: st.DataObject) -> None:
    current, read = states(data, 2)
    actor = data.draw(st.sampled_from(ACTORS))
    out = update(current, read.clock, actor, b"new", "text/plain", 7)
    new = dots(out) - dots(current)
    assert len(new) == 1
    assert dots(out) - new == {d for d in dots(current) if not read.clock.covers(d)}
    # the write supersedes everything the read returned, wherever it is still stored
    assert sync(out, read) == out
    assert out.clock == merge_all([current.clock, read.clock, VersionVector.from_dict(dict(new))])


@given(worlds, st.integers(1, 6), st.lists(st.sampled_from(ACTORS), min_size=6, max_size=6))
def test_n_writers_with_the_same_stale_context_make_n_siblings(
    world: World, n: int, coordinators: list[str]
) -> None:
    read = world.replicas["a"]
    for actor in ACTORS:  # the cluster moves on after the read
        world.write(actor, world.replicas[actor].clock, b"later")
    new = {world.write(coordinators[i], read.clock, f"writer{i}".encode()) for i in range(n)}
    joined = sync_all(world.replicas.values())
    # exactly the n new versions beside the three later ones, none of what the writers read
    assert new <= dots(joined) and len(joined.siblings) == n + len(ACTORS)
    assert not dots(read) & dots(joined)


def test_n_writers_through_distinct_coordinators() -> None:
    base = update(update(Versions(), EMPTY, "a", b"0"), EMPTY, "b", b"1")
    stale = base.clock
    writers = [update(base, stale, f"w{i}", f"v{i}".encode()) for i in range(5)]
    joined = sync_all(writers)
    assert len(joined.siblings) == 5
    assert not dots(base) & dots(joined)


def test_same_coordinator_concurrent_writes_are_not_lost() -> None:
    """The false overwrite of a server-keyed plain vector clock (DAIS 2014 §3) does not happen."""
    v0 = update(Versions(), EMPTY, "a", b"v0")
    ctx = v0.clock
    v1 = update(v0, ctx, "a", b"x")
    v2 = update(v1, ctx, "a", b"y")
    assert [s.value for s in v2.siblings] == [b"x", b"y"]
    v3 = update(v2, v2.clock, "a", b"resolved")
    assert [s.value for s in v3.siblings] == [b"resolved"]


# --- sessions: a client that carries its context has at most one sibling ----------------------

session_writes = st.tuples(
    st.just("write"),
    st.integers(0, 3),  # client
    st.sampled_from(ACTORS),  # coordinator
    st.one_of(st.none(), st.sampled_from(ACTORS)),  # replica read first, if any
    st.integers(0, 4),  # 0 -> delete
)


@given(st.integers(1, 4), st.lists(st.one_of(session_writes, sync_ops), max_size=30))
def test_sibling_count_is_bounded_by_concurrent_writers(clients: int, ops: list[tuple]) -> None:
    world = World()
    ctx = [EMPTY] * clients
    writer: dict[Dot, int] = {}
    for op in ops:
        if op[0] == "write":
            _, c, coordinator, read_from, kind = op
            c %= clients
            context = ctx[c]
            if read_from is not None:
                context = context.merge(world.replicas[read_from].clock)
            dot = world.write(coordinator, context, None if kind == 0 else b"x")
            writer[dot] = c
            ctx[c] = world.replicas[coordinator].clock  # the context the PUT returns
        else:
            world.sync(op[1], op[2], op[3])
        for state in world.replicas.values():
            per_client = Counter(writer[s.dot] for s in state.siblings)
            assert max(per_client.values(), default=0) <= 1
            if clients == 1:  # a read-modify-write chain of one client
                assert len(state.siblings) == (0 if state.is_empty else 1)
    final = sync_all(world.replicas.values())
    assert len(final.siblings) <= clients
    if writer and clients == 1:
        assert len(final.siblings) == 1


# --- tombstones ------------------------------------------------------------------------------


def test_delete_supersedes_what_it_saw_and_a_concurrent_write_survives() -> None:
    v = update(Versions(), EMPTY, "a", b"one")
    read = v.clock
    concurrent_write = update(v, EMPTY, "b", b"two")  # at replica b, not seen by the deleter
    deleted = update(v, read, "a", None)
    assert deleted.all_tombstones and not deleted.live() and not deleted.is_empty
    joined = sync(deleted, concurrent_write)
    assert [s.value for s in joined.siblings] == [None, b"two"]
    assert [s.value for s in joined.live()] == [b"two"]
    assert not joined.all_tombstones
    final = update(joined, joined.clock, "c", None)
    assert final.all_tombstones and len(final.siblings) == 1


def test_empty_state() -> None:
    assert Versions().is_empty and not Versions().all_tombstones and Versions().live() == ()
    assert sync_all([]) == Versions()


def test_counter_exhaustion_is_an_invalid_context() -> None:
    forged = VersionVector((("a", MAX_COUNTER),))
    with pytest.raises(InvalidContext):
        update(Versions(), forged, "a", b"x")


# --- VersionVector and constructors ----------------------------------------------------------


def test_version_vector_basics() -> None:
    x = VersionVector.from_dict({"b": 2, "a": 1, "z": 0})
    y = VersionVector.from_dict({"a": 3})
    assert x.entries == (("a", 1), ("b", 2)) and x.to_dict() == {"a": 1, "b": 2}
    assert x.get("b") == 2 and x.get("q") == 0
    assert x.covers(("b", 2)) and not x.covers(("b", 3)) and not x.covers(("q", 1))
    assert x.concurrent(y) and not x.descends(y) and not y.descends(x)
    assert x.merge(y) == VersionVector.from_dict({"a": 3, "b": 2}) == y.merge(x)
    assert x.merge(y).descends(x) and not x.merge(y).concurrent(x)
    assert merge_all([]) == EMPTY and EMPTY.descends(EMPTY)


@pytest.mark.parametrize(
    "entries",
    [
        (("b", 1), ("a", 1)),
        (("a", 1), ("a", 2)),
        (("a", 0),),
        (("a", -1),),
        (("a", True),),
        (("", 1),),
        (("x" * 129, 1),),
        (("a", MAX_COUNTER + 1),),
        [("a", 1)],
        (["a", 1],),
        ((1, 1),),
    ],
)
def test_version_vector_rejects_non_canonical_entries(entries: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        VersionVector(entries)  # type: ignore[arg-type]


def test_versions_rejects_broken_invariants() -> None:
    s1, s2 = Sibling(("a", 1), b"x"), Sibling(("a", 2), b"y")
    clock = VersionVector((("a", 2),))
    with pytest.raises(ValueError):
        Versions(VersionVector((("a", 1),)), (s1, s2))  # clock misses a dot
    with pytest.raises(ValueError):
        Versions(clock, (s2, s1))  # unsorted
    with pytest.raises(ValueError):
        Versions(clock, (s1, s1))  # duplicate dot
    with pytest.raises(TypeError):
        Sibling(("a", 1), "text")  # type: ignore[arg-type]


# --- the Dfs-Context token -------------------------------------------------------------------

vectors = st.dictionaries(
    st.text(min_size=1, max_size=16), st.integers(1, MAX_COUNTER), max_size=32
).map(VersionVector.from_dict)


@given(vectors)
def test_context_token_round_trip(vv: VersionVector) -> None:
    token = encode_context(vv)
    assert len(token) <= MAX_CONTEXT_TOKEN
    assert token.isascii() and not set(token) - set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert decode_context(token) == vv


def test_context_token_is_small_and_fits_the_documented_bound() -> None:
    assert encode_context(EMPTY) == "" and decode_context("") == EMPTY
    three = VersionVector.from_dict({"node-1": 12, "node-2": 7, "node-3": 1_000_000})
    assert len(encode_context(three)) < 60
    biggest = VersionVector.from_dict({f"{i:032d}": MAX_COUNTER for i in range(64)})
    assert decode_context(encode_context(biggest)) == biggest


def _token(obj: object) -> str:
    return b64(msgpack.packb(obj, use_bin_type=True))


GOOD = encode_context(VersionVector.from_dict({"a": 1, "b": 2}))

MALFORMED = [
    "!!!!",
    "kgGRkqFhAQ==",  # padding
    "kgGRkqFhAQ=",
    "A",  # impossible length
    " " + GOOD,
    GOOD + "\n",
    GOOD.replace("-", "+").replace("_", "/") + "+/",  # standard alphabet
    "kgGRkqFhAR",  # non-canonical trailing bits
    "é" + GOOD,
    b64(b"\xc1"),  # never-used msgpack byte
    b64(base64.urlsafe_b64decode(GOOD + "==")[:-1]),  # truncated
    b64(base64.urlsafe_b64decode(GOOD + "==") + b"\x00"),  # trailing data
    _token({"a": 1}),
    _token([1]),
    _token([1, [["a", 1]], "extra"]),
    _token([2, [["a", 1]]]),
    _token([True, [["a", 1]]]),
    _token([1, {"a": 1}]),
    _token([1, [["a", 0]]]),
    _token([1, [["a", -1]]]),
    _token([1, [["a", 2**63]]]),
    _token([1, [["a", 2**64 - 1]]]),
    _token([1, [["a", True]]]),
    _token([1, [["a", 1.0]]]),
    _token([1, [["a", None]]]),
    _token([1, [[b"a", 1]]]),
    _token([1, [[1, 1]]]),
    _token([1, [["", 1]]]),
    _token([1, [["x" * 129, 1]]]),
    _token([1, [["a", 1], ["a", 2]]]),
    _token([1, [["a", 1, 2]]]),
    _token([1, ["a", 1]]),
    _token([1, [[f"n{i}", 1] for i in range(MAX_CONTEXT_ENTRIES + 1)]]),
    b64(b"\x92\x01\x91\x92\xa2\xff\xfe\x01"),  # invalid UTF-8 in the actor
    b64(b"\x91" * 5000)[:MAX_CONTEXT_TOKEN],  # deep nesting
    "A" * (MAX_CONTEXT_TOKEN + 4),
]


@pytest.mark.parametrize("token", MALFORMED)
def test_decode_context_rejects_malformed_tokens(token: str) -> None:
    with pytest.raises(InvalidContext):
        decode_context(token)


def test_decode_context_rejects_non_strings() -> None:
    with pytest.raises(InvalidContext):
        decode_context(b"kgGRkqFhAQ")  # type: ignore[arg-type]


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
context_like = st.lists(
    st.lists(
        st.one_of(st.text(max_size=4), st.integers(-2, 2**64 - 1), msgpack_values), max_size=3
    ),
    max_size=4,
).map(lambda pairs: [1, pairs])


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(max_size=64),
        st.binary(max_size=64).map(b64),
        msgpack_values.map(_token),
        context_like.map(_token),
    )
)
def test_decode_context_raises_only_invalid_context(token: str) -> None:
    try:
        vv = decode_context(token)
    except InvalidContext:
        return
    assert encode_context(vv) == token or decode_context(encode_context(vv)) == vv


# --- storage / RPC encoding ------------------------------------------------------------------


@given(st.data())
def test_versions_round_trip(data: st.DataObject) -> None:
    (state,) = states(data, 1)
    assert decode_versions(encode_versions(state)) == state
    assert decode_versions(bytearray(encode_versions(state))) == state


def test_versions_round_trip_keeps_every_field() -> None:
    v = update(Versions(), EMPTY, "node-é", b"\x00\xff", "text/plain; charset=utf-8", 1234)
    v = update(v, EMPTY, "b", None, DEFAULT_CONTENT_TYPE, 5)
    v = update(v, EMPTY, "b", b"", "application/json", MAX_COUNTER)
    assert decode_versions(encode_versions(v)) == v
    assert len(encode_versions(Versions())) <= 4


SAMPLE = encode_versions(
    update(update(Versions(), EMPTY, "a", b"x", "text/plain", 1), EMPTY, "b", None)
)

BAD_VERSIONS = [
    b"",
    b"\xc1",
    SAMPLE[:-1],
    SAMPLE + b"\x00",
    msgpack.packb([2, [], []]),
    msgpack.packb([1, [], []])[:-1],
    msgpack.packb([1, [["b", 1], ["a", 1]], []]),  # clock not sorted
    msgpack.packb([1, [["a", 1], ["a", 1]], []]),
    msgpack.packb([1, [["a", 1]], [["a", 2, b"x", None, 0]]]),  # dot not covered
    msgpack.packb([1, [["a", 2]], [["a", 2, b"x", None, 0], ["a", 1, b"y", None, 0]]]),
    msgpack.packb([1, [["a", 2]], [["a", 1, b"x", None, 0], ["a", 1, b"x", None, 0]]]),
    msgpack.packb([1, [["a", 1]], [["a", 1, "text", None, 0]]], use_bin_type=True),
    msgpack.packb([1, [["a", 1]], [["a", 1, b"x", 5, 0]]], use_bin_type=True),
    msgpack.packb([1, [["a", 1]], [["a", 1, b"x", None, -1]]], use_bin_type=True),
    msgpack.packb([1, [["a", 1]], [["a", 1, b"x", None]]], use_bin_type=True),
    msgpack.packb([1, [["a", 0]], []]),
    msgpack.packb([1, {"a": 1}, []]),
    msgpack.packb({"format": 1}),
    b"\x91" * 100_000,
]


@pytest.mark.parametrize("raw", BAD_VERSIONS)
def test_decode_versions_rejects_garbage(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_versions(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=64),
        msgpack_values.map(lambda o: msgpack.packb(o, use_bin_type=True)),
        st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255)).map(
            lambda p: SAMPLE[: p[0]] + bytes([p[1]]) + SAMPLE[p[0] + 1 :]
        ),
        st.lists(msgpack_values, max_size=3).map(
            lambda sibs: msgpack.packb([1, [["a", 3]], sibs], use_bin_type=True)
        ),
    )
)
def test_decode_versions_raises_only_value_error(raw: bytes) -> None:
    try:
        v = decode_versions(raw)
    except ValueError:
        return
    assert isinstance(v, Versions) and decode_versions(encode_versions(v)) == v
