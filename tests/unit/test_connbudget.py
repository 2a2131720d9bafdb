"""The listener's admission rules (dfsring.core.connbudget): caps hold under any sequence of
connects, requests and closes; only idle connections are evicted, longest idle first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dfsring.core.connbudget import (
    AUTO_CAP_CEILING,
    MIN_HEADROOM,
    ConnectionTable,
    Refusal,
    automatic_cap,
)

OPS = st.lists(st.tuples(st.sampled_from(["open", "busy", "idle", "close"]),
                         st.integers(0, 30), st.sampled_from(["a", "b", "c"])), max_size=200)


@given(OPS, st.integers(1, 8), st.integers(1, 8))
def test_caps_hold_and_busy_connections_are_never_evicted(ops: list[tuple[str, int, str]],
                                                         total: int, per_source: int) -> None:
    table: ConnectionTable[int] = ConnectionTable(total, per_source)
    held: dict[int, str] = {}
    busy: set[int] = set()
    for op, conn, source in ops:
        if op == "open" and conn not in held:
            adm = table.admit(conn, source)
            if adm.refused is None:
                held[conn] = source
            if adm.evict is not None:
                assert adm.evict not in busy
                held.pop(adm.evict)
        elif op == "busy" and conn in held:
            table.busy(conn)
            busy.add(conn)
        elif op == "idle" and conn in held:
            table.idle(conn)
            busy.discard(conn)
        elif op == "close":
            table.release(conn)
            held.pop(conn, None)
            busy.discard(conn)
        assert len(table) == len(held) <= total
        for s in ("a", "b", "c"):
            assert table.held_by(s) == sum(1 for v in held.values() if v == s) <= per_source


def test_full_listener_evicts_the_longest_idle_connection() -> None:
    table: ConnectionTable[str] = ConnectionTable(2, 10)
    table.admit("old", "x")
    table.admit("new", "y")
    table.idle("old")  # it finished a request: now the most recently idle
    assert table.admit("third", "z").evict == "new"
    assert table.admit("fourth", "z").evict == "old"


def test_full_listener_with_every_connection_busy_refuses() -> None:
    table: ConnectionTable[str] = ConnectionTable(1, 10)
    table.admit("a", "x")
    table.busy("a")
    assert table.admit("b", "y").refused is Refusal.LISTENER


def test_source_at_its_cap_is_refused_while_others_are_admitted() -> None:
    table: ConnectionTable[str] = ConnectionTable(10, 2)
    table.admit("a1", "a")
    table.admit("a2", "a")
    assert table.admit("a3", "a").refused is Refusal.SOURCE
    assert table.admit("b1", "b").refused is None


def test_automatic_cap_leaves_headroom_below_the_descriptor_limit() -> None:
    assert automatic_cap(20_000) == 15_000
    assert automatic_cap(1024) == 512
    assert automatic_cap(4096) == 4096 - MIN_HEADROOM
    assert automatic_cap(1 << 20) == AUTO_CAP_CEILING
    for nofile in (64, 256, 1024, 4096, 20_000, 65_536):
        assert nofile - automatic_cap(nofile) >= min(MIN_HEADROOM, nofile // 2)
