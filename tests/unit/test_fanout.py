"""The shared quorum wait loop: it stops exactly when the request is decided, the deadline
passes or nothing is left to wait for, feeds every finished call to the tracker once, and
hands back the calls still running."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core.quorum import Outcome, QuorumTracker
from dfsring.replication import fanout

pytestmark = pytest.mark.unit


def _recorder(tracker: QuorumTracker,
              seen: list[str]) -> Callable[[str, asyncio.Future[str]], None]:
    def record(replica: str, task: asyncio.Future[str]) -> None:
        seen.append(replica)
        if task.cancelled() or task.exception() is not None:
            tracker.fail(replica, "error")
        else:
            tracker.ok(replica, task.result())
    return record


def _futures(replicas: list[str]) -> dict[str, asyncio.Future[str]]:
    loop = asyncio.get_running_loop()
    return {r: loop.create_future() for r in replicas}


async def test_returns_once_decided_with_the_rest_still_running() -> None:
    futs = _futures(["a", "b", "c"])
    tracker, seen = QuorumTracker(3, 2), []
    loop = asyncio.get_running_loop()
    loop.call_soon(futs["a"].set_result, "va")
    loop.call_soon(futs["b"].set_result, "vb")
    running = await fanout.collect(fanout.start(futs), decided=lambda: tracker.done,
                                   record=_recorder(tracker, seen), deadline=loop.time() + 5)
    assert tracker.outcome is Outcome.OK
    assert sorted(seen) == ["a", "b"]
    assert list(running.values()) == ["c"]
    futs["c"].cancel()


async def test_returns_once_success_is_impossible() -> None:
    futs = _futures(["a", "b", "c"])
    tracker, seen = QuorumTracker(3, 2), []
    loop = asyncio.get_running_loop()
    loop.call_soon(futs["a"].set_exception, OSError("down"))
    loop.call_soon(futs["b"].set_exception, OSError("down"))
    running = await fanout.collect(fanout.start(futs), decided=lambda: tracker.done,
                                   record=_recorder(tracker, seen), deadline=loop.time() + 5)
    assert tracker.outcome is Outcome.FAILED
    assert list(running.values()) == ["c"]
    futs["c"].cancel()


async def test_the_deadline_ends_the_wait_and_the_silent_count_as_timeouts() -> None:
    futs = _futures(["a", "b"])
    tracker, seen = QuorumTracker(2, 2), []
    loop = asyncio.get_running_loop()
    start = loop.time()
    running = await fanout.collect(fanout.start(futs), decided=lambda: tracker.done,
                                   record=_recorder(tracker, seen), deadline=start + 0.05)
    assert loop.time() - start < 2.0
    assert seen == [] and sorted(running.values()) == ["a", "b"]
    fanout.fail_unfinished(running, tracker.fail)
    assert tracker.outcomes() == {"a": "timeout", "b": "timeout"}
    assert tracker.outcome is Outcome.FAILED
    for fut in futs.values():
        fut.cancel()


async def test_poll_adds_calls_and_expecting_waits_for_news() -> None:
    """A write whose ring changed: the first owner's ack does not count, `poll` brings the
    new owner's call, and `expecting` keeps the loop waiting meanwhile."""
    loop = asyncio.get_running_loop()
    futs = _futures(["a"])
    futs["a"].set_result("stale")
    late = loop.create_future()
    tracker, seen = QuorumTracker(1, 1), []
    polls: list[int] = []

    def poll() -> dict[asyncio.Future[str], str]:
        polls.append(1)
        if len(polls) == 3:  # the newer ring arrives on the third look
            loop.call_soon(late.set_result, "fresh")
            return {late: "b"}
        return {}

    def record(replica: str, task: asyncio.Future[str]) -> None:
        seen.append(replica)
        if replica == "b":
            tracker.ok(replica, task.result())

    running = await fanout.collect(fanout.start(futs), decided=lambda: tracker.done,
                                   record=record, deadline=loop.time() + 5, poll=poll,
                                   poll_s=0.01, expecting=lambda: "b" not in seen)
    assert running == {}
    assert seen == ["a", "b"]
    assert tracker.outcome is Outcome.OK


async def test_nothing_to_wait_for_returns_at_once() -> None:
    loop = asyncio.get_running_loop()
    tracker = QuorumTracker(1, 1)
    running: dict[asyncio.Future[str], str] = {}
    assert await fanout.collect(running, decided=lambda: tracker.done,
                                record=_recorder(tracker, []), deadline=loop.time() + 60) == {}


def _settle(fut: asyncio.Future[str], good: bool) -> None:
    if fut.done():  # cancelled by the test once the loop returned
        return
    if good:
        fut.set_result("v")
    else:
        fut.set_exception(OSError("x"))


replies = st.lists(st.tuples(st.integers(0, 8), st.booleans()), min_size=1, max_size=7)


@settings(max_examples=60, deadline=None)
@given(replies, st.integers(1, 7))
def test_stops_exactly_when_the_tracker_decides(plan: list[tuple[int, bool]],
                                                needed: int) -> None:
    """Replies arrive in a random order with random outcomes: every recorded call had
    finished and is recorded once, and the loop ends decided, with every call either
    recorded or handed back still running."""
    n = len(plan)
    needed = min(needed, n)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        futs = _futures([f"r{i}" for i in range(n)])
        for i, (delay_ms, good) in enumerate(plan):
            fut = futs[f"r{i}"]
            loop.call_later(delay_ms / 1000, _settle, fut, good)
        tracker, seen = QuorumTracker(n, needed), []
        running = await fanout.collect(fanout.start(futs), decided=lambda: tracker.done,
                                       record=_recorder(tracker, seen),
                                       deadline=loop.time() + 10)
        assert len(seen) == len(set(seen))
        assert all(futs[r].done() for r in seen)
        assert set(seen) | set(running.values()) == set(futs)
        assert tracker.done
        assert all(not fut.done() for fut in running)
        for fut in running:
            fut.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    asyncio.run(main())
