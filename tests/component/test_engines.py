"""The Engine contract, checked against both engines; LMDB-only tests cover group commit.

Tests that need a commit to be "in progress" hold the writer thread with a :class:`Gate`
mutation (a threading.Event it waits on), so batch boundaries are deterministic, not timing
luck. Every wait is a deadline poll.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from dfsring.foundation.errors import CorruptValue, StorageClosed, StorageError
from dfsring.storage import (
    MAX_KEY_SIZE,
    Engine,
    LmdbEngine,
    MemoryEngine,
    Txn,
    frame,
)
from dfsring.testing import async_wait_until
from dfsring.testing.bitrot import store_raw

pytestmark = pytest.mark.component

TABLES = ("kv", "meta")
MAP_SIZE = 256 << 20


class Boom(Exception):
    """A mutation's own failure, to tell it apart from engine errors."""


class Gate:
    """A mutation that holds the writer thread until the test opens the gate."""

    def __init__(self, key: bytes = b"gate") -> None:
        self.key = key
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, txn: Txn) -> str:
        self.entered.set()
        if not self.opened.wait(timeout=30):
            raise TimeoutError("test never opened the gate")
        txn.put("kv", self.key, b"gate")
        return "gate"


async def eventually(predicate: Callable[[], object], message: str, within: float = 10) -> None:
    async def check() -> object:
        return predicate()

    await async_wait_until(check, timeout=within, interval=0.005, message=message)


def put(table: str, key: bytes, value: bytes) -> Callable[[Txn], None]:
    return lambda txn: txn.put(table, key, value)


def failing_put(key: bytes) -> Callable[[Txn], None]:
    def mutation(txn: Txn) -> None:
        txn.put("kv", key, b"never visible")
        raise Boom(key)

    return mutation


@pytest.fixture(params=["memory", "lmdb"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    built: Engine
    if request.param == "memory":
        built = MemoryEngine(TABLES)
    else:
        built = LmdbEngine(tmp_path / "db", TABLES, map_size=MAP_SIZE)
    yield built
    await built.close()


@pytest.fixture
async def lmdb_engine(tmp_path: Path) -> AsyncIterator[LmdbEngine]:
    built = LmdbEngine(tmp_path / "db", TABLES, map_size=MAP_SIZE)
    yield built
    await built.close()


# -- the contract, both engines -------------------------------------------------------------


async def test_both_engines_satisfy_the_protocol(engine: Engine) -> None:
    assert isinstance(engine, Engine)


async def test_put_get_overwrite_delete(engine: Engine) -> None:
    assert engine.get("kv", b"a") is None
    await engine.apply(put("kv", b"a", b"1"))
    assert engine.get("kv", b"a") == b"1"
    await engine.apply(put("kv", b"a", b"2"))
    assert engine.get("kv", b"a") == b"2"
    assert engine.get("meta", b"a") is None  # tables are separate
    assert await engine.apply(lambda txn: txn.delete("kv", b"a")) is True
    assert await engine.apply(lambda txn: txn.delete("kv", b"a")) is False
    assert engine.get("kv", b"a") is None
    assert engine.count("kv") == 0


async def test_mutation_result_and_read_your_writes(engine: Engine) -> None:
    def mutation(txn: Txn) -> tuple[bytes | None, bytes | None, bool]:
        before = txn.get("kv", b"x")
        txn.put("kv", b"x", b"new")
        after = txn.get("kv", b"x")
        return before, after, txn.delete("kv", b"x") and txn.get("kv", b"x") is None

    assert await engine.apply(mutation) == (None, b"new", True)
    assert engine.get("kv", b"x") is None


async def test_concurrent_read_modify_write_is_serialised(engine: Engine) -> None:
    """Each mutation sees every earlier one, even inside one group commit."""

    def increment(txn: Txn) -> int:
        value = int(txn.get("kv", b"counter") or b"0") + 1
        txn.put("kv", b"counter", str(value).encode())
        return value

    results = await asyncio.gather(*(engine.apply(increment) for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert engine.get("kv", b"counter") == b"100"


async def test_scan_order_start_end_and_limit(engine: Engine) -> None:
    keys = [b"\x00", b"\x00\x00", b"a", b"ab", b"abc", b"b", b"ba", b"\x7f", b"\xff", b"\xff\xff"]
    shuffled = random.Random(7).sample(keys, len(keys))

    def fill(txn: Txn) -> None:
        for key in shuffled:
            txn.put("kv", key, b"v" + key)

    await engine.apply(fill)
    ordered = sorted(keys)
    assert engine.scan("kv") == [(k, b"v" + k) for k in ordered]
    assert engine.scan_keys("kv") == ordered
    assert engine.scan_keys("kv", b"ab") == ordered[ordered.index(b"ab") :]
    assert engine.scan_keys("kv", b"aa", b"b") == [b"ab", b"abc"]
    assert engine.scan_keys("kv", b"ab", b"ba") == [b"ab", b"abc", b"b"]
    assert engine.scan("kv", b"a", limit=2) == [(b"a", b"va"), (b"ab", b"vab")]
    assert engine.scan_keys("kv", end=b"a") == [b"\x00", b"\x00\x00"]
    assert engine.scan_keys("kv", limit=0) == []
    assert engine.scan_keys("kv", b"b", b"b") == []
    assert engine.scan_keys("kv", b"c", b"a") == []
    assert engine.scan_keys("kv", b"\xff\xff\x00") == []
    assert engine.scan("meta") == []
    with pytest.raises(ValueError, match="limit"):
        engine.scan("kv", limit=-1)


async def test_scan_start_longer_than_the_key_limit(engine: Engine) -> None:
    longest = b"a" * MAX_KEY_SIZE
    await engine.apply(lambda txn: [txn.put("kv", k, k) for k in (longest, b"b")])
    assert engine.scan_keys("kv", longest + b"\x00") == [b"b"]
    assert engine.scan_keys("kv", longest) == [longest, b"b"]


async def test_key_rules_and_unknown_tables(engine: Engine) -> None:
    for bad in (b"", b"x" * (MAX_KEY_SIZE + 1)):
        with pytest.raises(ValueError, match="key must be"):
            engine.get("kv", bad)
        with pytest.raises(ValueError, match="key must be"):
            await engine.apply(put("kv", bad, b"v"))
    with pytest.raises(TypeError):
        engine.get("kv", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await engine.apply(put("kv", b"k", "text"))  # type: ignore[arg-type]
    for call in (
        lambda: engine.get("nope", b"k"),
        lambda: engine.scan("nope"),
        lambda: engine.scan_keys("nope"),
        lambda: engine.count("nope"),
        lambda: store_raw(engine, "nope", b"k", b"x"),
    ):
        with pytest.raises(ValueError, match="unknown table"):
            call()
    with pytest.raises(ValueError, match="unknown table"):
        await engine.apply(put("nope", b"k", b"v"))
    assert engine.count("kv") == 0


CORRUPTIONS = {
    "flipped bit": lambda framed: framed[:-1] + bytes([framed[-1] ^ 0x10]),
    "bad format byte": lambda framed: b"\x02" + framed[1:],
    "short": lambda framed: framed[:3],
    "wrong crc": lambda framed: framed[:1] + b"\x00\x00\x00\x00" + framed[5:],
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
async def test_get_of_a_corrupted_value_raises(engine: Engine, kind: str) -> None:
    store_raw(engine, "kv", b"rotten", CORRUPTIONS[kind](frame(b"payload")))
    with pytest.raises(CorruptValue) as caught:
        engine.get("kv", b"rotten")
    assert (caught.value.table, caught.value.key) == ("kv", b"rotten")
    with pytest.raises(CorruptValue):
        await engine.apply(lambda txn: txn.get("kv", b"rotten"))


async def test_raw_put_of_a_valid_frame_reads_back(engine: Engine) -> None:
    store_raw(engine, "kv", b"k", frame(b"fine"))
    assert engine.get("kv", b"k") == b"fine"


async def test_scan_over_a_corrupt_entry_names_its_key_and_can_resume(engine: Engine) -> None:
    await engine.apply(lambda txn: [txn.put("kv", b"k%02d" % i, b"v") for i in range(10)])
    store_raw(engine, "kv", b"k05", frame(b"v")[:-1] + b"X")
    with pytest.raises(CorruptValue) as caught:
        engine.scan("kv")
    assert caught.value.key == b"k05"
    resumed = engine.scan("kv", caught.value.key + b"\x00")
    assert [k for k, _ in resumed] == [b"k%02d" % i for i in range(6, 10)]
    assert len(engine.scan_keys("kv")) == 10  # keys are not verified


async def test_a_failing_mutation_rolls_back_alone(engine: Engine) -> None:
    results = await asyncio.gather(
        engine.apply(put("kv", b"ok1", b"1")),
        engine.apply(failing_put(b"bad")),
        engine.apply(put("kv", b"ok2", b"2")),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Boom)
    assert engine.get("kv", b"bad") is None
    assert (engine.get("kv", b"ok1"), engine.get("kv", b"ok2")) == (b"1", b"2")


async def test_async_mutation_is_refused_and_writes_nothing(engine: Engine) -> None:
    async def mutation(txn: Txn) -> None:
        txn.put("kv", b"k", b"v")

    with pytest.raises(TypeError, match="plain function"):
        await engine.apply(mutation)  # type: ignore[arg-type]
    assert engine.count("kv") == 0


async def test_closed_engine_refuses_everything_and_close_is_idempotent(engine: Engine) -> None:
    await engine.apply(put("kv", b"k", b"v"))
    await engine.close()
    await engine.close()
    for call in (
        lambda: engine.get("kv", b"k"),
        lambda: engine.scan("kv"),
        lambda: engine.scan_keys("kv"),
        lambda: engine.count("kv"),
    ):
        with pytest.raises(StorageClosed):
            call()
    with pytest.raises(StorageClosed):
        await engine.apply(put("kv", b"k", b"v"))
    assert engine.info()["closed"] is True


async def test_info_reports_entries_and_group_counters(engine: Engine) -> None:
    await asyncio.gather(*(engine.apply(put("kv", b"%d" % i, b"v")) for i in range(10)))
    info = engine.info()
    assert info["entries"] == {"kv": 10, "meta": 0}
    assert info["mutations"] == 10
    assert isinstance(info["commits"], int) and 1 <= info["commits"] <= 10


# -- LMDB: group commit, backpressure, cancellation, durability of close -------------------


async def test_group_commit_200_concurrent_writes(lmdb_engine: LmdbEngine) -> None:
    await asyncio.gather(*(lmdb_engine.apply(put("kv", b"%03d" % i, b"v")) for i in range(200)))
    info = lmdb_engine.info()
    assert info["mutations"] == 200
    assert isinstance(info["commits"], int) and info["commits"] < 200 / 4
    assert lmdb_engine.count("kv") == 200


async def test_writes_arriving_during_a_commit_share_the_next(lmdb_engine: LmdbEngine) -> None:
    gate = Gate()
    first = asyncio.create_task(lmdb_engine.apply(gate))
    try:
        await eventually(gate.entered.is_set, "gate mutation running")
        later = [
            asyncio.create_task(lmdb_engine.apply(put("kv", b"%d" % i, b"v"))) for i in range(50)
        ]
        await eventually(lambda: lmdb_engine.info()["pending"] == 50, "50 writes queued")
    finally:
        gate.opened.set()
    assert await first == "gate"
    await asyncio.gather(*later)
    info = lmdb_engine.info()
    assert (info["commits"], info["mutations"], info["largest_group"]) == (2, 51, 50)


async def test_failing_mutation_in_a_batch_rolls_back_alone(lmdb_engine: LmdbEngine) -> None:
    gate = Gate()
    first = asyncio.create_task(lmdb_engine.apply(gate))
    try:
        await eventually(gate.entered.is_set, "gate mutation running")
        batch = [
            asyncio.create_task(lmdb_engine.apply(m))
            for m in (put("kv", b"ok1", b"1"), failing_put(b"bad"), put("kv", b"ok2", b"2"))
        ]
        await eventually(lambda: lmdb_engine.info()["pending"] == 3, "batch queued")
    finally:
        gate.opened.set()
    await first
    results = await asyncio.gather(*batch, return_exceptions=True)
    assert results[0] is None and results[2] is None and isinstance(results[1], Boom)
    assert lmdb_engine.info()["commits"] == 2  # the three shared one transaction
    assert lmdb_engine.get("kv", b"bad") is None
    assert (lmdb_engine.get("kv", b"ok1"), lmdb_engine.get("kv", b"ok2")) == (b"1", b"2")


async def test_backpressure_bounds_the_queue(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", TABLES, map_size=MAP_SIZE, max_pending=4)
    gate = Gate()
    first = asyncio.create_task(engine.apply(gate))
    try:
        await eventually(gate.entered.is_set, "gate mutation running")
        writers = [asyncio.create_task(engine.apply(put("kv", b"%d" % i, b"v"))) for i in range(20)]
        await eventually(lambda: engine.info()["pending"] == 4, "queue full")
        for _ in range(20):
            await asyncio.sleep(0)
        assert engine.info()["pending"] == 4
        assert not any(w.done() for w in writers)
    finally:
        gate.opened.set()
    await first
    await asyncio.wait_for(asyncio.gather(*writers), timeout=30)
    assert engine.count("kv") == 21
    await engine.close()


async def test_cancelled_callers_do_not_break_the_writer(lmdb_engine: LmdbEngine) -> None:
    gate = Gate()
    running = asyncio.create_task(lmdb_engine.apply(gate))
    try:
        await eventually(gate.entered.is_set, "gate mutation running")
        queued = asyncio.create_task(lmdb_engine.apply(put("kv", b"queued", b"v")))
        await eventually(lambda: lmdb_engine.info()["pending"] == 1, "write queued")
        running.cancel()  # its batch already started: the write still commits
        queued.cancel()  # cancelled before its batch was taken: skipped
    finally:
        gate.opened.set()
    for task in (running, queued):
        with pytest.raises(asyncio.CancelledError):
            await task
    await lmdb_engine.apply(put("kv", b"after", b"v"))
    assert lmdb_engine.get("kv", b"gate") == b"gate"
    assert lmdb_engine.get("kv", b"after") == b"v"
    assert lmdb_engine.get("kv", b"queued") is None


async def test_writer_survives_an_unexpected_batch_failure(
    lmdb_engine: LmdbEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = lmdb_engine._run_batch
    calls = 0

    def flaky(mutations: list[Callable[[Txn], object]]) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("simulated writer bug")
        return real(mutations)

    monkeypatch.setattr(lmdb_engine, "_run_batch", flaky)  # before the writer starts
    with caplog.at_level(logging.ERROR), pytest.raises(StorageError) as caught:
        await lmdb_engine.apply(put("kv", b"lost", b"v"))
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "group commit" in caplog.text
    await lmdb_engine.apply(put("kv", b"kept", b"v"))
    assert (lmdb_engine.get("kv", b"lost"), lmdb_engine.get("kv", b"kept")) == (None, b"v")


async def test_a_cancelled_writer_fails_its_batch_and_refuses_new_writes(
    lmdb_engine: LmdbEngine,
) -> None:
    """Loop teardown may cancel the writer task; nobody may be left waiting forever."""
    gate = Gate()
    running = asyncio.create_task(lmdb_engine.apply(gate))
    try:
        await eventually(gate.entered.is_set, "gate mutation running")
        queued = asyncio.create_task(lmdb_engine.apply(put("kv", b"queued", b"v")))
        await eventually(lambda: lmdb_engine.info()["pending"] == 1, "write queued")
        writer = lmdb_engine._committer._task  # type: ignore[union-attr]
        writer.cancel()
        await eventually(writer.done, "writer task ended")
    finally:
        gate.opened.set()
    for task in (running, queued):
        with pytest.raises(StorageClosed):
            await asyncio.wait_for(task, timeout=30)
    with pytest.raises(StorageClosed):
        await lmdb_engine.apply(put("kv", b"after", b"v"))
    await asyncio.wait_for(lmdb_engine.close(), timeout=30)


async def test_map_full_is_a_storage_error_and_the_engine_goes_on(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", TABLES, map_size=1 << 20)
    with pytest.raises(StorageError, match="map is full"):
        await engine.apply(put("kv", b"huge", b"x" * (4 << 20)))
    await engine.apply(put("kv", b"small", b"v"))
    assert engine.get("kv", b"small") == b"v"
    assert engine.get("kv", b"huge") is None
    await engine.close()


async def test_close_commits_queued_writes_then_refuses(tmp_path: Path) -> None:
    engine = await LmdbEngine.open(tmp_path / "db", TABLES, map_size=MAP_SIZE)
    gate = Gate()
    first = asyncio.create_task(engine.apply(gate))
    try:
        await eventually(gate.entered.is_set, "gate mutation running")
        queued = [asyncio.create_task(engine.apply(put("kv", b"%d" % i, b"v"))) for i in range(100)]
        await eventually(lambda: engine.info()["pending"] == 100, "writes queued")
        closing = asyncio.create_task(engine.close())
        await eventually(lambda: engine.info()["closing"], "close started")
        with pytest.raises(StorageClosed):
            await engine.apply(put("kv", b"too late", b"v"))
    finally:
        gate.opened.set()
    await asyncio.wait_for(closing, timeout=30)
    assert await first == "gate"
    assert await asyncio.gather(*queued) == [None] * 100
    reopened = LmdbEngine(tmp_path / "db", TABLES, map_size=MAP_SIZE)
    assert reopened.count("kv") == 101
    assert reopened.get("kv", b"too late") is None
    await reopened.close()


async def test_writers_waiting_for_room_at_close_get_storage_closed(tmp_path: Path) -> None:
    engine = LmdbEngine(tmp_path / "db", TABLES, map_size=MAP_SIZE, max_pending=2)
    gate = Gate()
    first = asyncio.create_task(engine.apply(gate))
    try:
        await eventually(gate.entered.is_set, "gate mutation running")
        writers = [asyncio.create_task(engine.apply(put("kv", b"%d" % i, b"v"))) for i in range(5)]
        await eventually(lambda: engine.info()["pending"] == 2, "queue full")
        closing = asyncio.create_task(engine.close())
        await eventually(lambda: engine.info()["closing"], "close started")
    finally:
        gate.opened.set()
    await asyncio.wait_for(closing, timeout=30)
    await first
    results = await asyncio.gather(*writers, return_exceptions=True)
    assert results[:2] == [None, None]
    assert all(isinstance(r, StorageClosed) for r in results[2:])


@pytest.mark.parametrize("durable", [True, False])
async def test_reopen_sees_the_data(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "db"
    engine = LmdbEngine(path, TABLES, durable=durable, map_size=MAP_SIZE)
    await asyncio.gather(*(engine.apply(put("kv", b"%d" % i, b"v%d" % i)) for i in range(50)))
    await engine.apply(put("meta", b"epoch", b"7"))
    await engine.close()
    reopened = LmdbEngine(path, TABLES, durable=durable, map_size=MAP_SIZE)
    assert reopened.count("kv") == 50
    assert reopened.get("kv", b"42") == b"v42"
    assert reopened.get("meta", b"epoch") == b"7"
    await reopened.close()


async def test_an_environment_opens_once_per_process(lmdb_engine: LmdbEngine) -> None:
    with pytest.raises(StorageError, match="already open"):
        LmdbEngine(lmdb_engine.info()["path"], TABLES)  # type: ignore[arg-type]


async def test_lmdb_info_reports_space(lmdb_engine: LmdbEngine) -> None:
    await lmdb_engine.apply(put("kv", b"k", b"v" * 10_000))
    info = lmdb_engine.info()
    assert info["durable"] is True and info["map_bytes"] == MAP_SIZE
    assert isinstance(info["used_bytes"], int) and info["used_bytes"] >= 10_000
