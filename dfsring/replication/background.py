"""A bounded set of tasks that outlive the request that started them.

Replication beyond W, read repair, chunk repair and retention pruning all finish after their
request has answered. Each owner keeps such tasks here so that (1) there is a bound: past
``limit`` a new task is refused (its work is left to anti-entropy) instead of memory growing
under load; (2) a failure is logged, never lost in an unretrieved exception; (3) shutdown can
let them finish briefly and cancel the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


class BackgroundTasks:
    def __init__(self, limit: int, on_error: Callable[[BaseException], None]) -> None:
        self.limit = limit
        self._on_error = on_error
        self._tasks: set[asyncio.Future[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Awaitable[None]) -> bool:
        """Run ``coro`` in the background; False (and the coroutine closed) if at the limit."""
        if len(self._tasks) >= self.limit:
            if asyncio.iscoroutine(coro):
                coro.close()
            return False
        self.track(asyncio.ensure_future(coro))
        return True

    def track(self, task: asyncio.Future[None]) -> None:
        """Adopt a task already running (counted against the limit from now on)."""
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._on_error(exc)

    async def close(self, grace_s: float = 0.0) -> None:
        """Wait up to ``grace_s`` for the tasks, then cancel what is left."""
        tasks = list(self._tasks)
        if not tasks:
            return
        still: set[asyncio.Future[None]] = set(tasks)
        if grace_s > 0:
            _, still = await asyncio.wait(tasks, timeout=grace_s)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)


def log_errors(log: logging.Logger, what: str) -> Callable[[BaseException], None]:
    """An ``on_error`` that logs the exception with its traceback."""
    def on_error(exc: BaseException) -> None:
        log.error("%s failed", what, exc_info=exc)
    return on_error
