"""Deadline polling: the only way tests wait for a condition.

A fixed ``sleep`` is either too short (flaky on a loaded CI machine) or too long (slow everywhere).
Polling a predicate against a deadline is both fast and patient, and when it gives up it says
what it was waiting for and what it last saw, so a red CI run explains itself.

Invariants:
- the predicate is called at least once, even with ``timeout=0``;
- no sleep runs past the deadline, so the total wait is ``timeout`` plus at most one predicate
  call (the async variant also cuts that call off, see :func:`async_wait_until`);
- exceptions of the ``retry_on`` types count as "not yet" and are kept for the error message;
  any other exception propagates at once, which is how a predicate aborts a hopeless wait
  (for instance "the process I am waiting for has exited").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

_RetryOn = tuple[type[BaseException], ...]


@dataclass
class _Attempts:
    """What the poll has seen so far, for the timeout message."""

    message: str
    timeout: float
    count: int = 0
    last_value: object = None
    last_error: BaseException | None = field(default=None)

    def saw_value(self, value: object) -> None:
        self.count += 1
        self.last_value, self.last_error = value, None

    def saw_error(self, error: BaseException) -> None:
        self.count += 1
        self.last_error = error

    def timeout_error(self) -> TimeoutError:
        if self.last_error is not None:
            seen = f"last error: {type(self.last_error).__name__}: {self.last_error}"
        else:
            seen = f"last value: {self.last_value!r}"
        text = f"{self.message} (not true after {self.timeout:g}s, {self.count} tries; {seen})"
        error = TimeoutError(text)
        error.__cause__ = self.last_error
        return error


def _check_args(timeout: float, interval: float) -> None:
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout}")
    if interval <= 0:
        raise ValueError(f"interval must be > 0, got {interval}")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.05,
    message: str,
    retry_on: _RetryOn = (Exception,),
) -> T:
    """Call ``predicate`` until it returns something truthy; return that value.

    Raises TimeoutError naming ``message`` and the last value or exception seen once ``timeout``
    seconds have passed. A predicate that blocks is not interrupted: give it its own short
    timeout (for example on an HTTP call).
    """
    _check_args(timeout, interval)
    attempts = _Attempts(message, timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except retry_on as exc:
            attempts.saw_error(exc)
        else:
            if value:
                return value
            attempts.saw_value(value)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise attempts.timeout_error()
        time.sleep(min(interval, remaining))


async def async_wait_until(
    predicate: Callable[[], Awaitable[T]],
    *,
    timeout: float,  # noqa: ASYNC109 - same signature as wait_until; bounds each call itself
    interval: float = 0.05,
    message: str,
    retry_on: _RetryOn = (Exception,),
) -> T:
    """The coroutine form of :func:`wait_until` for an async predicate.

    Each call of the predicate is cancelled once it runs past the deadline (it always gets at
    least ``interval``), so unlike the sync form this one is bounded even when the predicate
    hangs: the total is at most ``timeout + interval``. A call cut short counts as a
    TimeoutError seen, whatever ``retry_on`` says.
    """
    _check_args(timeout, interval)
    attempts = _Attempts(message, timeout)
    deadline = time.monotonic() + timeout
    while True:
        budget = max(deadline - time.monotonic(), interval)
        try:
            value = await asyncio.wait_for(predicate(), timeout=budget)
        except (*retry_on, TimeoutError) as exc:
            attempts.saw_error(exc)
        else:
            if value:
                return value
            attempts.saw_value(value)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise attempts.timeout_error()
        await asyncio.sleep(min(interval, remaining))
