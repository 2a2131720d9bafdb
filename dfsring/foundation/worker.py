"""One shape for every background loop of a node, and the supervisor that owns them.

Before this module the node had about ten loops in seven shapes, started three ways; a loop that
raised outside its own ``try`` died silently, because shutdown gathered with
``return_exceptions=True``, and none could say whether it was busy. Now each loop is a
:class:`Worker` around one coroutine function, ``work()``, that does one bounded unit of work
and says what it found (after Swift's ``Daemon.run_once``/``run_forever``,
``swift/common/daemon.py``, and Garage's ``Worker::work`` returning Busy/Idle/Done,
``src/util/background/worker.rs``):

- :attr:`WorkResult.BUSY`: there is more to do now, so the next unit runs at once (after a
  yield to the event loop);
- :attr:`WorkResult.IDLE`: caught up, so it waits its interval (jittered, so that nodes do not
  march in step) or until :meth:`Worker.wake`;
- :attr:`WorkResult.DONE`: the work is finished for good (founding discovery once a ring
  exists); the worker ends.

Failures. An exception listed in ``expected`` is a round that failed for a known outside reason
(a peer timed out): it is recorded as ``last_error``, logged at the level the old loop used, and
the worker waits its usual interval. Any other exception is a crash: it is logged with the
worker's name, iteration and traceback, the state becomes ``failed``, and the worker restarts
after a backoff that doubles from its interval up to ``max(interval, MAX_BACKOFF_S)``, so a
broken loop never runs more often than a healthy one. Should ``run_forever`` itself end with an
exception (a bug in this module), the :class:`Supervisor` logs it and starts it again after a
bounded backoff: a crash is always reported, never swallowed.

Invariants: a worker has at most one task; ``stop(deadline_s)`` returns within about
``deadline_s`` (it lets the current unit finish until then, then cancels it); every wait is
bounded by the interval or the backoff cap.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger("dfsring.foundation.worker")

MAX_BACKOFF_S = 10.0
"""Longest wait after repeated crashes, unless the worker's own interval is longer."""
RESTART_BACKOFF_S = 1.0
"""First wait before the supervisor restarts a worker whose loop itself ended by a crash."""
STOP_DEADLINE_S = 1.0


class WorkResult(enum.Enum):
    BUSY = "busy"
    IDLE = "idle"
    DONE = "done"


class WorkerState(enum.Enum):
    STARTING = "starting"  # created or started, first unit not yet run (or waiting to)
    BUSY = "busy"
    IDLE = "idle"
    FAILED = "failed"  # the last unit crashed; waiting out the backoff before the next
    DONE = "done"
    STOPPED = "stopped"


@dataclass
class WorkerStatus:
    """What /v1/node/stats shows of one worker. Times are wall-clock seconds (epoch)."""

    state: WorkerState = WorkerState.STOPPED
    iterations: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_run_at: float | None = None
    consecutive_failures: int = 0

    def to_json(self) -> dict[str, object]:
        return {"state": self.state.value, "iterations": self.iterations,
                "last_error": self.last_error, "last_error_at": _round(self.last_error_at),
                "last_run_at": _round(self.last_run_at)}


Work = Callable[[], Awaitable[WorkResult]]


@dataclass(frozen=True)
class Schedule:
    """When a worker runs: every ``interval_s`` while idle, times a uniform factor in
    ``[1 - jitter, 1 + jitter]``; ``first_wait`` waits one interval before the first unit
    (for loops that would find nothing right after start, e.g. before the failure detector
    knows anybody)."""

    interval_s: float
    jitter: float = 0.1
    first_wait: bool = False

    def idle_wait(self, rng: random.Random) -> float:
        return max(0.0, self.interval_s * rng.uniform(1 - self.jitter, 1 + self.jitter))

    def failure_wait(self, failures: int) -> float:
        """Doubling from the interval, capped: never sooner than a healthy run would be."""
        cap = max(self.interval_s, MAX_BACKOFF_S)
        doublings = min(max(failures - 1, 0), 16)
        return min(cap, max(self.interval_s, 0.01) * float(2 ** doublings))


class Worker:
    """One background loop: ``work`` repeated on ``schedule`` until stopped or done."""

    def __init__(self, name: str, work: Work, schedule: Schedule, *,
                 expected: tuple[type[Exception], ...] = (),
                 expected_level: int = logging.INFO,
                 wake_event: asyncio.Event | None = None,
                 rng: random.Random | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.name = name
        self.work = work
        self.schedule = schedule
        self.expected = expected
        self.expected_level = expected_level
        self.status = WorkerStatus()
        self._wake = wake_event if wake_event is not None else asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_unit = False
        self._task: asyncio.Task[None] | None = None
        self._rng = rng or random.Random()
        self._wall = wall

    def wake(self) -> None:
        """Cut the current idle wait short (e.g. the ring changed and transfers have work)."""
        self._wake.set()

    async def run_once(self) -> WorkResult:
        """One unit of work, with its outcome recorded in :attr:`status`. Crashes propagate
        (tests and tools see them); ``run_forever`` turns them into a restart."""
        self.status.iterations += 1
        self._in_unit = True
        try:
            result = await self.work()
        except self.expected as exc:
            self.record_error(exc)
            log.log(self.expected_level, "%s round failed", self.name, extra={"fields": {
                "worker": self.name, "iteration": self.status.iterations,
                "error": _describe(exc)[:200]}})
            result = WorkResult.IDLE
        finally:
            self._in_unit = False
            self.status.last_run_at = self._wall()
        self.status.consecutive_failures = 0
        self.status.state = WorkerState(result.value)
        return result

    async def run_forever(self) -> None:
        """Run units until :meth:`stop` or DONE; a crash is logged and retried after backoff."""
        self.status.state = WorkerState.STARTING
        if self.schedule.first_wait and await self._wait(self.schedule.idle_wait(self._rng)):
            return self._stopped()
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                result = await self.run_once()
            except Exception as exc:  # a crash of one unit: logged, retried after backoff
                wait = self._crashed(exc)
            else:
                if result is WorkResult.DONE:
                    return
                wait = 0.0 if result is WorkResult.BUSY else self.schedule.idle_wait(self._rng)
            if await self._wait(wait):
                break
        self._stopped()

    @property
    def in_unit(self) -> bool:
        """True while a unit of work runs (stop then lets it finish, up to its deadline)."""
        return self._in_unit

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, on_exit: Callable[[Worker, asyncio.Task[None]], None] | None = None,
              ) -> None:
        """Start :meth:`run_forever` as this worker's one task; ``on_exit`` hears how it ended
        (the supervisor uses it to report and restart a crashed loop)."""
        if self.running:
            return
        self._stopping.clear()
        self.status.state = WorkerState.STARTING
        self._task = asyncio.create_task(self.run_forever(), name=f"worker {self.name}")
        if on_exit is not None:
            self._task.add_done_callback(lambda t: on_exit(self, t))

    async def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """Stop within about ``deadline_s``: a worker that is waiting stops at once, a unit
        in progress may finish until the deadline and is cancelled after it."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None or task.done():
            self.status.state = WorkerState.STOPPED
            return
        if not self._in_unit:
            task.cancel()  # only waiting: nothing to finish
        _, late = await asyncio.wait({task}, timeout=deadline_s)
        if late:
            log.warning("worker %s did not stop in %.1f s; cancelled", self.name, deadline_s,
                        extra={"fields": {"worker": self.name, "deadline_s": deadline_s}})
            task.cancel()
            await asyncio.wait({task}, timeout=deadline_s)
        self.status.state = WorkerState.STOPPED

    def _crashed(self, exc: Exception) -> float:
        self.record_error(exc)
        self.status.state = WorkerState.FAILED
        self.status.consecutive_failures += 1
        wait = self.schedule.failure_wait(self.status.consecutive_failures)
        log.error("worker %s failed; restarting in %.1f s", self.name, wait, exc_info=exc,
                  extra={"fields": {"worker": self.name, "iteration": self.status.iterations,
                                    "error": _describe(exc)[:200], "retry_in_s": wait}})
        return wait

    def record_error(self, exc: BaseException) -> None:
        self.status.last_error = _describe(exc)
        self.status.last_error_at = self._wall()

    def _stopped(self) -> None:
        self.status.state = WorkerState.STOPPED

    async def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, less if woken; True if a stop was requested."""
        if seconds <= 0:
            await asyncio.sleep(0)  # busy: let the rest of the node run between units
            return self._stopping.is_set()
        stop = asyncio.ensure_future(self._stopping.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stop, wake}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stop, wake):
                waiter.cancel()
            await asyncio.gather(stop, wake, return_exceptions=True)
        return self._stopping.is_set()


class Supervisor:
    """Owns every worker of a node (node.py holds the one instance): starts them, restarts one
    whose loop itself crashed, reports their status, and stops them all within a deadline."""

    def __init__(self) -> None:
        self._workers: dict[str, Worker] = {}
        self._restarts: dict[str, int] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._stopping = False

    def add(self, worker: Worker) -> Worker:
        if worker.name in self._workers:
            raise ValueError(f"two workers named {worker.name!r}")
        self._workers[worker.name] = worker
        return worker

    def __iter__(self) -> Iterator[Worker]:
        return iter(list(self._workers.values()))

    def __getitem__(self, name: str) -> Worker:
        return self._workers[name]

    def start(self) -> None:
        self._stopping = False
        for worker in self._workers.values():
            worker.start(self._ended)

    def status_json(self) -> dict[str, dict[str, object]]:
        return {name: w.status.to_json() for name, w in self._workers.items()}

    async def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """Stop every worker concurrently; returns within about twice ``deadline_s``."""
        self._stopping = True
        for pending in list(self._pending):
            pending.cancel()
        await asyncio.gather(*(w.stop(deadline_s) for w in self._workers.values()))

    def _ended(self, worker: Worker, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if exc is None:  # DONE, or stopped on request
            return
        restarts = self._restarts[worker.name] = self._restarts.get(worker.name, 0) + 1
        wait = min(MAX_BACKOFF_S, RESTART_BACKOFF_S * 2 ** min(restarts - 1, 8))
        worker.status.state = WorkerState.FAILED
        worker.record_error(exc)
        log.error("worker %s loop died; restarting in %.1f s", worker.name, wait, exc_info=exc,
                  extra={"fields": {"worker": worker.name, "restarts": restarts}})
        pending = asyncio.ensure_future(self._restart_after(worker, wait))
        self._pending.add(pending)
        pending.add_done_callback(self._pending.discard)

    async def _restart_after(self, worker: Worker, wait: float) -> None:
        await asyncio.sleep(wait)
        if not self._stopping:
            worker.start(self._ended)


def _describe(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None)  # RpcError and the problem errors carry one
    text = detail if isinstance(detail, str) and detail else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _round(at: float | None) -> float | None:
    return None if at is None else round(at, 3)


def idle(unit: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[WorkResult]]:
    """A unit that always catches up in one go: the worker waits its interval after it."""
    async def work() -> WorkResult:
        await unit()
        return WorkResult.IDLE
    return work
