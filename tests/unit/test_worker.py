"""The worker shape: busy reruns at once, idle waits, a crash is logged and retried, stop is
bounded, the status follows; and the supervisor reports and restarts a loop that died."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.foundation import worker as worker_module
from dfsring.foundation.worker import (
    MAX_BACKOFF_S,
    Schedule,
    Supervisor,
    Worker,
    WorkerState,
    WorkResult,
)


async def until(condition: Callable[[], bool], within_s: float = 2.0) -> None:
    """Poll ``condition`` until true; fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class Script:
    """A unit of work that plays back results (or raises) and records when it ran."""

    def __init__(self, *steps: WorkResult | BaseException, then: WorkResult = WorkResult.IDLE,
                 ) -> None:
        self.steps = list(steps)
        self.then = then
        self.ran_at: list[float] = []

    async def __call__(self) -> WorkResult:
        self.ran_at.append(time.monotonic())
        step = self.steps.pop(0) if self.steps else self.then
        if isinstance(step, BaseException):
            raise step
        return step


async def test_busy_runs_again_at_once_and_idle_waits_until_woken() -> None:
    script = Script(WorkResult.BUSY, WorkResult.BUSY, WorkResult.BUSY)
    w = Worker("w", script, Schedule(3600.0))
    w.start()
    try:
        await until(lambda: len(script.ran_at) == 4)  # three busy units, then the idle one
        assert w.status.state is WorkerState.IDLE and w.status.iterations == 4
        w.wake()
        await until(lambda: len(script.ran_at) == 5)
        assert script.ran_at[4] - script.ran_at[0] < 1.0  # nobody waited an hour
    finally:
        await w.stop(1.0)
    assert w.status.state is WorkerState.STOPPED


async def test_idle_waits_its_interval_between_units() -> None:
    script = Script()
    w = Worker("w", script, Schedule(0.1, jitter=0.0))
    w.start()
    try:
        await until(lambda: len(script.ran_at) >= 3)
    finally:
        await w.stop(1.0)
    gaps = [b - a for a, b in zip(script.ran_at, script.ran_at[1:], strict=False)]
    assert all(g >= 0.09 for g in gaps), gaps


async def test_first_wait_delays_the_first_unit() -> None:
    script = Script()
    w = Worker("w", script, Schedule(0.1, jitter=0.0, first_wait=True))
    began = time.monotonic()
    w.start()
    try:
        await until(lambda: len(script.ran_at) >= 1)
    finally:
        await w.stop(1.0)
    assert script.ran_at[0] - began >= 0.09


async def test_a_crash_is_logged_with_context_and_the_worker_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    script = Script(RuntimeError("disk on fire"), RuntimeError("still"))
    w = Worker("scrub", script, Schedule(0.01, jitter=0.0))
    seen: list[WorkerState] = []

    async def watch() -> None:
        while True:
            if not seen or seen[-1] is not w.status.state:
                seen.append(w.status.state)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    with caplog.at_level(logging.ERROR, logger="dfsring.foundation.worker"):
        w.start()
        try:
            await until(lambda: len(script.ran_at) >= 3 and w.status.state is WorkerState.IDLE)
        finally:
            await w.stop(1.0)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    assert seen[0] is WorkerState.STARTING
    assert seen.index(WorkerState.FAILED) < seen.index(WorkerState.IDLE)
    crashes = [r for r in caplog.records if "failed; restarting" in r.getMessage()]
    assert len(crashes) == 2
    fields = crashes[0].__dict__["fields"]
    assert fields["worker"] == "scrub" and fields["iteration"] == 1
    assert fields["error"] == "RuntimeError: disk on fire"
    assert crashes[0].exc_info is not None  # the traceback is kept
    assert w.status.last_error == "RuntimeError: still"
    assert w.status.last_error_at is not None and w.status.last_run_at is not None
    assert w.status.consecutive_failures == 0  # reset by the good unit


async def test_an_expected_error_is_recorded_but_is_no_crash(
        caplog: pytest.LogCaptureFixture) -> None:
    script = Script(ConnectionError("peer gone"))
    w = Worker("exchange", script, Schedule(3600.0), expected=(ConnectionError,))
    with caplog.at_level(logging.INFO, logger="dfsring.foundation.worker"):
        assert await w.run_once() is WorkResult.IDLE
    assert w.status.state is WorkerState.IDLE
    assert w.status.last_error == "ConnectionError: peer gone"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_run_once_lets_a_crash_through_for_tests_and_tools() -> None:
    w = Worker("w", Script(ValueError("bad")), Schedule(1.0))
    with pytest.raises(ValueError):
        await w.run_once()
    assert w.status.iterations == 1 and w.status.last_run_at is not None


async def test_stop_while_waiting_is_immediate() -> None:
    w = Worker("w", Script(), Schedule(3600.0))
    w.start()
    await until(lambda: w.status.state is WorkerState.IDLE)
    began = time.monotonic()
    await w.stop(5.0)
    assert time.monotonic() - began < 0.5
    assert w.status.state is WorkerState.STOPPED and not w.running


async def test_stop_lets_a_unit_finish_within_the_deadline() -> None:
    finished = asyncio.Event()

    async def work() -> WorkResult:
        await asyncio.sleep(0.05)
        finished.set()
        return WorkResult.IDLE

    w = Worker("w", work, Schedule(3600.0))
    w.start()
    await until(lambda: w.in_unit)
    await w.stop(2.0)
    assert finished.is_set()


async def test_stop_cancels_a_unit_that_overruns_the_deadline() -> None:
    cancelled = asyncio.Event()

    async def hang() -> WorkResult:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return WorkResult.IDLE

    w = Worker("w", hang, Schedule(3600.0))
    w.start()
    await until(lambda: w.in_unit)
    began = time.monotonic()
    await w.stop(0.1)
    assert time.monotonic() - began < 0.5
    assert cancelled.is_set() and w.status.state is WorkerState.STOPPED


async def test_done_ends_the_worker_and_the_supervisor_leaves_it_ended() -> None:
    supervisor = Supervisor()
    w = supervisor.add(Worker("discovery", Script(WorkResult.IDLE, WorkResult.DONE),
                              Schedule(0.01)))
    supervisor.start()
    await until(lambda: not w.running)
    assert w.status.state is WorkerState.DONE and w.status.iterations == 2
    await supervisor.stop(1.0)
    assert w.status.state is WorkerState.STOPPED


class Fatal(BaseException):
    """Escapes ``except Exception``: stands for a bug in the loop itself."""


async def test_the_supervisor_reports_and_restarts_a_loop_that_died(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "RESTART_BACKOFF_S", 0.01)
    script = Script(Fatal("loop bug"))
    supervisor = Supervisor()
    w = supervisor.add(Worker("gossip", script, Schedule(3600.0)))
    with caplog.at_level(logging.ERROR, logger="dfsring.foundation.worker"):
        supervisor.start()
        await until(lambda: len(script.ran_at) == 2)
    await until(lambda: w.status.state is WorkerState.IDLE)
    assert w.status.last_error == "Fatal: loop bug"
    assert any("loop died" in r.getMessage() for r in caplog.records)
    status = supervisor.status_json()
    assert set(status) == {"gossip"}
    assert set(status["gossip"]) == {"state", "iterations", "last_error", "last_error_at",
                                     "last_run_at"}
    assert status["gossip"]["state"] == "idle"
    await supervisor.stop(1.0)
    assert supervisor.status_json()["gossip"]["state"] == "stopped"


def test_two_workers_may_not_share_a_name() -> None:
    supervisor = Supervisor()
    supervisor.add(Worker("a", Script(), Schedule(1.0)))
    with pytest.raises(ValueError):
        supervisor.add(Worker("a", Script(), Schedule(1.0)))


@given(interval=st.floats(0.001, 10_000), failures=st.integers(1, 100))
def test_failure_backoff_is_never_sooner_than_the_interval_and_bounded(
        interval: float, failures: int) -> None:
    s = Schedule(interval)
    wait = s.failure_wait(failures)
    assert min(interval, max(interval, MAX_BACKOFF_S)) <= wait <= max(interval, MAX_BACKOFF_S)
    assert s.failure_wait(failures + 1) >= wait


@given(interval=st.floats(0, 10_000), jitter=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_idle_wait_stays_within_the_jitter(interval: float, jitter: float, seed: int) -> None:
    wait = Schedule(interval, jitter=jitter).idle_wait(random.Random(seed))
    assert interval * (1 - jitter) - 1e-9 <= wait <= interval * (1 + jitter) + 1e-9
