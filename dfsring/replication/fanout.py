"""The quorum wait loop: run a request's replica calls until it is decided.

One loop for every quorum request (key/value reads, writes and listings in
dfsring.replication.coordinator, chunk writes in dfsring.files.chunks), as riak_kv's get and put
FSMs
share one shape around their pure cores (dfsring.core.quorum, dfsring.core.writequorum): the caller
starts the calls, `collect` feeds each finished one to the caller's `record` (which turns a
reply or an error into an ok or a fail on the tracker) and stops as soon as

* the tracker is decided (W or R successes, or so many failures that success is
  impossible: the tracker says so, the loop only asks), or
* the deadline passes, or
* nothing is left to wait for.

It returns the calls still running: the caller decides whether they count as timeouts,
carry on in the background (replication beyond W, read repair) or are cancelled.

A write whose ring may change mid-flight (issue 15: acks count only from owners under the
ring the write completes under) passes `poll`, called before every wait and at least every
`poll_s`, which may start more calls (the new owners); and `expecting`, which keeps the loop
waiting with no call running for a ring that gossip has yet to bring.

Bounded: every pass either records at least one finished call or waits until the next
poll; no pass outlasts the deadline, so the loop ends by the deadline at the latest.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


def start(calls: Mapping[str, Awaitable[T]]) -> dict[asyncio.Future[T], str]:
    """Schedule each replica's call; the mapping `collect` runs."""
    return {asyncio.ensure_future(aw): replica for replica, aw in calls.items()}


def _never() -> bool:
    return False


async def collect(running: dict[asyncio.Future[T], str], *, decided: Callable[[], bool],
                  record: Callable[[str, asyncio.Future[T]], None], deadline: float,
                  poll: Callable[[], Mapping[asyncio.Future[T], str]] | None = None,
                  poll_s: float = math.inf,
                  expecting: Callable[[], bool] = _never) -> dict[asyncio.Future[T], str]:
    """Feed finished calls to `record` until `decided()`, the loop time `deadline`, or no
    call is left (unless `expecting()`); returns the calls still running. `running` is
    consumed: recorded calls are removed from it."""
    loop = asyncio.get_running_loop()
    while True:
        if poll is not None:
            running.update(poll())
        remaining = deadline - loop.time()
        if decided() or remaining <= 0 or (not running and not expecting()):
            return running
        wait = min(remaining, poll_s)
        if running:
            done, _ = await asyncio.wait(running, timeout=wait,
                                         return_when=asyncio.FIRST_COMPLETED)
        else:  # every reply is in, and the caller expects news from `poll`
            await asyncio.sleep(wait)
            done = set()
        for task in done:
            record(running.pop(task), task)


def fail_unfinished(running: Mapping[asyncio.Future[T], str],
                    fail: Callable[[str, str], object]) -> None:
    """Count every call still running at the end as a timeout (a tracker's `fail`)."""
    for replica in running.values():
        fail(replica, "timeout")
