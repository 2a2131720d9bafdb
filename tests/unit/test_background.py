"""Background tasks are bounded, their failures reported, and shutdown cancels what is left."""

from __future__ import annotations

import asyncio

from dfsring.replication.background import BackgroundTasks


async def test_past_the_limit_a_task_is_refused_and_its_coroutine_closed() -> None:
    errors: list[BaseException] = []
    tasks = BackgroundTasks(2, errors.append)
    gate = asyncio.Event()
    assert tasks.spawn(gate.wait()) and tasks.spawn(gate.wait())
    refused = gate.wait()
    assert not tasks.spawn(refused)
    assert refused.cr_frame is None  # closed: no "never awaited" warning, nothing runs
    gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(tasks) == 0 and errors == []


async def test_a_failure_is_reported_once() -> None:
    errors: list[BaseException] = []
    tasks = BackgroundTasks(4, errors.append)

    async def boom() -> None:
        raise ValueError("x")

    tasks.spawn(boom())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [type(e) for e in errors] == [ValueError] and len(tasks) == 0


async def test_close_lets_quick_tasks_finish_and_cancels_the_rest() -> None:
    tasks = BackgroundTasks(4, lambda exc: None)
    done: list[str] = []

    async def quick() -> None:
        await asyncio.sleep(0.01)
        done.append("quick")

    forever = asyncio.ensure_future(asyncio.Event().wait())
    tasks.spawn(quick())
    tasks.track(forever)  # type: ignore[arg-type]
    await asyncio.wait_for(tasks.close(grace_s=0.5), timeout=5)
    assert done == ["quick"] and forever.cancelled()


async def test_close_without_grace_cancels_at_once() -> None:
    tasks = BackgroundTasks(4, lambda exc: None)
    forever = asyncio.ensure_future(asyncio.Event().wait())
    tasks.track(forever)  # type: ignore[arg-type]
    await asyncio.wait_for(tasks.close(), timeout=5)
    assert forever.cancelled()
