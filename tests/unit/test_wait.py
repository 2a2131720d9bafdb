"""The deadline-poll helpers every test uses instead of sleeping."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from dfsring.testing import async_wait_until, wait_until

SLACK = 1.0  # scheduling noise allowed on a loaded CI machine


def test_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter) >= 3 and "done", timeout=5, message="count") == "done"


def test_retries_through_exceptions_until_success() -> None:
    tries = itertools.count()

    def flaky() -> int:
        n = next(tries)
        if n < 2:
            raise ConnectionRefusedError("not yet")
        return n

    assert wait_until(flaky, timeout=5, interval=0.01, message="flaky") == 2


def test_timeout_names_message_and_last_value() -> None:
    with pytest.raises(TimeoutError, match=r"replicas agree \(not true after .*last value: 0"):
        wait_until(lambda: 0, timeout=0.1, interval=0.01, message="replicas agree")


def test_timeout_names_last_exception_and_chains_it() -> None:
    def refuse() -> bool:
        raise ConnectionRefusedError("port closed")

    with pytest.raises(TimeoutError, match="last error: ConnectionRefusedError: port closed") as ei:
        wait_until(refuse, timeout=0.1, interval=0.01, message="node up")
    assert isinstance(ei.value.__cause__, ConnectionRefusedError)


def test_unlisted_exception_aborts_at_once() -> None:
    calls = itertools.count(1)

    def broken() -> bool:
        next(calls)
        raise KeyError("gone")

    with pytest.raises(KeyError):
        wait_until(broken, timeout=5, message="x", retry_on=(OSError,))
    assert next(calls) == 2  # called exactly once


def test_wait_is_bounded_by_the_deadline() -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        wait_until(lambda: False, timeout=0.3, interval=0.05, message="never")
    assert 0.3 <= time.monotonic() - start < 0.3 + SLACK


def test_zero_timeout_still_tries_once() -> None:
    assert wait_until(lambda: "yes", timeout=0, message="once") == "yes"


@pytest.mark.parametrize(("timeout", "interval"), [(-1, 0.05), (1, 0), (1, -0.1)])
def test_rejects_nonsense_arguments(timeout: float, interval: float) -> None:
    with pytest.raises(ValueError):
        wait_until(lambda: True, timeout=timeout, interval=interval, message="x")


async def test_async_returns_value() -> None:
    counter = itertools.count()

    async def ready() -> int:
        return next(counter) >= 2 and 42

    assert await async_wait_until(ready, timeout=5, interval=0.01, message="ready") == 42


async def test_async_timeout_names_message_and_last_error() -> None:
    async def refuse() -> bool:
        raise OSError("no route")

    with pytest.raises(TimeoutError, match=r"gossip converged .*last error: OSError: no route"):
        await async_wait_until(refuse, timeout=0.1, interval=0.01, message="gossip converged")


async def test_async_bounds_a_hanging_predicate() -> None:
    async def hang() -> bool:
        await asyncio.sleep(3600)
        return True

    start = time.monotonic()
    with pytest.raises(TimeoutError, match="hung"):
        await async_wait_until(hang, timeout=0.2, interval=0.05, message="hung")
    assert time.monotonic() - start < 0.2 + 0.05 + SLACK
