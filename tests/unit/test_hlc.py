"""Laws of dfsring.core.hlc: monotonic, causal, close to physical time, encodings that sort right.

The simulation runs three clocks whose physical clocks are skewed, jump back and stall, and
exchanges messages between them; it checks the properties of Kulkarni et al. 2014 (§3, Fig. 5)
on every event.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core.hlc import (
    DEFAULT_MAX_DRIFT_MS,
    MAX_COUNTER,
    MAX_WALL_MS,
    ClockSkewError,
    HybridClock,
    Timestamp,
    receive,
    tick,
)

pytestmark = pytest.mark.unit

node_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
timestamps = st.builds(
    Timestamp, st.integers(0, MAX_WALL_MS), st.integers(0, MAX_COUNTER), node_ids
)


# --- timestamps and their encodings -----------------------------------------------------------


@given(timestamps, timestamps)
def test_order_is_wall_then_counter_then_node(a: Timestamp, b: Timestamp) -> None:
    assert (a < b) == ((a.wall_ms, a.counter, a.node_id) < (b.wall_ms, b.counter, b.node_id))


@given(timestamps, timestamps)
def test_encodings_sort_like_timestamps(a: Timestamp, b: Timestamp) -> None:
    assert (a < b) == (a.encode() < b.encode()) == (a.to_bytes() < b.to_bytes())
    assert (a == b) == (a.encode() == b.encode())
    assert (a.encode().encode() < b.encode().encode()) == (a < b)  # as UTF-8 bytes too


@given(timestamps)
def test_encodings_round_trip(ts: Timestamp) -> None:
    assert Timestamp.decode(ts.encode()) == ts
    assert Timestamp.from_bytes(ts.to_bytes()) == ts
    assert len(ts.encode()) == 20 + len(ts.node_id)


def test_encoding_example() -> None:
    ts = Timestamp(1_700_000_000_000, 3, "node-1")
    assert ts.encode() == "018bcfe5680000000003node-1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "018bcfe5680000000003",  # no node id
        "018BCFE5680000000003node-1",  # upper-case hex is not canonical
        "018bcfe5680000000003node-1\n",
        " 018bcfe5680000000003node-1",
        "018bcfe568000000000_node-1",
        "018bcfe5680000000003-node",  # node ids start with a letter or digit
        "018bcfe5680000000003nöde",
        "018bcfe5680000000003" + "n" * 65,
        "x" * 10_000,
    ],
)
def test_decode_refuses_malformed_ids(text: str) -> None:
    with pytest.raises(ValueError):
        Timestamp.decode(text)


@given(st.one_of(st.text(max_size=100), st.binary(max_size=100), st.integers(), st.none()))
def test_decode_of_anything_is_a_timestamp_or_value_error(junk: object) -> None:
    try:
        ts = Timestamp.decode(junk)  # type: ignore[arg-type]
    except ValueError:
        return
    assert ts.encode() == junk


@given(st.binary(max_size=90))
def test_from_bytes_of_anything_is_a_timestamp_or_value_error(junk: bytes) -> None:
    try:
        ts = Timestamp.from_bytes(junk)
    except ValueError:
        return
    assert ts.to_bytes() == junk


@pytest.mark.parametrize(
    ("wall", "counter", "node"),
    [
        (-1, 0, "a"),
        (MAX_WALL_MS + 1, 0, "a"),
        (0, -1, "a"),
        (0, MAX_COUNTER + 1, "a"),
        (True, 0, "a"),
        (1.0, 0, "a"),
        (0, 0, ""),
        (0, 0, "a b"),
        (0, 0, "a" * 65),
        (0, 0, None),
    ],
)
def test_invalid_timestamps_are_refused(wall: object, counter: object, node: object) -> None:
    with pytest.raises(ValueError):
        Timestamp(wall, counter, node)  # type: ignore[arg-type]


# --- the clock --------------------------------------------------------------------------------


def test_now_follows_physical_time_and_counts_when_it_stalls() -> None:
    clock = HybridClock("a")
    assert clock.now(100) == Timestamp(100, 0, "a")
    assert clock.now(100) == Timestamp(100, 1, "a")
    assert clock.now(90) == Timestamp(100, 2, "a")  # the physical clock went back
    assert clock.now(101) == Timestamp(101, 0, "a")
    assert clock.last == Timestamp(101, 0, "a")


def test_observe_takes_the_larger_time() -> None:
    clock = HybridClock("a")
    clock.now(100)
    assert clock.observe(Timestamp(150, 7, "b"), 120) == Timestamp(150, 8, "a")
    assert clock.observe(Timestamp(150, 2, "b"), 120) == Timestamp(150, 9, "a")
    assert clock.observe(Timestamp(10, 2, "b"), 200) == Timestamp(200, 0, "a")
    assert clock.observe(Timestamp(10, 2, "b"), 150) == Timestamp(200, 1, "a")


def test_observe_refuses_a_clock_far_in_the_future() -> None:
    clock = HybridClock("a", max_drift_ms=1000)
    before = clock.now(5000)
    with pytest.raises(ClockSkewError) as info:
        clock.observe(Timestamp(6001, 0, "b"), 5000)
    assert isinstance(info.value, ValueError) and info.value.remote_ms == 6001
    assert clock.last == before
    assert clock.observe(Timestamp(6000, 0, "b"), 5000) == Timestamp(6000, 1, "a")


def test_counter_overflow_borrows_the_next_millisecond() -> None:
    last = Timestamp(5, MAX_COUNTER, "a")
    assert tick(last, 5) == Timestamp(6, 0, "a")
    assert receive(last, Timestamp(5, MAX_COUNTER, "b"), 5) == Timestamp(6, 0, "a")


def test_restart_from_the_last_timestamp_stays_monotonic() -> None:
    clock = HybridClock("a")
    last = clock.now(10_000)
    restarted = HybridClock("a", last=last)
    assert restarted.now(5_000) > last  # the physical clock went back across the restart


@pytest.mark.parametrize("physical", [-1, MAX_WALL_MS + 1, 1.5, True, None])
def test_bad_physical_time_is_refused(physical: object) -> None:
    clock = HybridClock("a")
    with pytest.raises(ValueError):
        clock.now(physical)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        clock.observe(Timestamp(1, 0, "b"), physical)  # type: ignore[arg-type]


def test_bad_clock_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        HybridClock("not ok")
    with pytest.raises(ValueError):
        HybridClock("a", last=Timestamp(1, 0, "b"))
    with pytest.raises(ValueError):
        HybridClock("a", max_drift_ms=-1)
    with pytest.raises(TypeError):
        HybridClock("a").observe((1, 0, "b"), 1)  # type: ignore[arg-type]


# --- simulation -------------------------------------------------------------------------------

NODES = ("a", "b", "c")
event = st.tuples(
    st.sampled_from(NODES),  # where
    st.integers(-50, 100),  # how far its physical clock moves (it may go back)
    st.one_of(st.none(), st.integers(0, 50)),  # None: local event; k: receive message k
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(NODES), st.integers(0, 500), min_size=3, max_size=3),
    st.lists(event, max_size=80),
)
def test_simulation_keeps_the_hlc_properties(skews: dict[str, int], events: list) -> None:
    clocks = {n: HybridClock(n, max_drift_ms=DEFAULT_MAX_DRIFT_MS) for n in NODES}
    physical = {n: 1_000 + skews[n] for n in NODES}
    issued: dict[str, list[Timestamp]] = {n: [] for n in NODES}
    sent: list[Timestamp] = []
    highest = 0  # the largest physical time any node has read so far
    for node, step, msg in events:
        physical[node] = max(0, physical[node] + step)
        highest = max(highest, physical[node])
        if msg is None or msg >= len(sent):
            ts = clocks[node].now(physical[node])
            sent.append(ts)
        else:
            ts = clocks[node].observe(sent[msg], physical[node])
            assert ts > sent[msg]  # causality through the message
        assert not issued[node] or ts > issued[node][-1]  # monotonic
        assert ts.wall_ms <= highest  # l stays within the clock skew of real time
        issued[node].append(ts)
    every = [ts for seq in issued.values() for ts in seq]
    assert len(set(every)) == len(every)
    assert len({ts.encode() for ts in every}) == len(every)
