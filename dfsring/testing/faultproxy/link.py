"""One direction of one proxied connection, and changing its toxics while it carries data.

A link is Toxiproxy's ``ToxicLink`` (``link.go``)::

    source socket -> reader -> [noop] -> [toxic 1] -> ... -> [toxic n] -> writer -> dest socket

Each ``[ ]`` is a :class:`~dfsring.testing.faultproxy.stub.Stub` running its toxic in a task,
joined by bounded channels. The hidden noop at the head is always there, so adding the first
toxic is the same operation as adding the tenth.

Adding, updating or removing a toxic re-chains every live link (this is what cuts an aiohttp
keep-alive pool's idle connections): the change is queued to the link's own control loop, which
applies changes one at a time, in order, as Toxiproxy does under its lock:

- add: interrupt the last stub, hand its held data on, splice the new stub in after it;
- update: interrupt the stub, hand its held data on, restart it with the new settings;
- remove: interrupt the stub and the one before it, move everything still between them along,
  join the two ends; removing a ``timeout`` closes the stream instead (Toxiproxy's ``Cleanup``).

"Interrupt" is cancelling the stub's task; the stub contract guarantees nothing is lost. Once any
stub has passed end-of-stream on, the link is ending and changes that would touch it are skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dfsring.testing.faultproxy.spec import ToxicSpec
from dfsring.testing.faultproxy.stub import Channel, Chunk, Stub, new_channel
from dfsring.testing.faultproxy.toxics import run_stub

log = logging.getLogger("dfsring.faultproxy")

READ_CHUNK = 32 * 1024  # bytes per socket read, so one chunk never exceeds this
MAX_PENDING_CHANGES = 256  # a link this far behind is wedged and gets closed

ChangeKind = Literal["add", "update", "remove"]


@dataclass(frozen=True)
class Peer:
    """Both ends of one socket: a link reads a source peer and writes a destination peer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        """Close fully, and end reading at once as Go's ``Close`` does: the other direction's
        reader sees end-of-stream now, not only once asyncio has flushed the write buffer."""
        self.writer.close()
        self.reader.feed_eof()


@dataclass
class Change:
    """One toxic change for a link; ``done`` resolves once the link has applied (or dropped) it."""

    kind: ChangeKind
    toxic: ToxicSpec
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Link:
    """Moves bytes from ``source`` to ``dest`` through one direction's toxic chain."""

    def __init__(
        self,
        direction: str,
        source: Peer,
        dest: Peer,
        chain: Sequence[ToxicSpec],
        on_reset: Callable[[], None],
        on_bytes: Callable[[int], None],
    ) -> None:
        self.direction = direction
        self._source, self._dest = source, dest
        self._on_reset, self._on_bytes = on_reset, on_bytes
        self._input = new_channel(0)
        self._stubs: list[Stub] = []
        upstream_end = self._input
        specs: list[ToxicSpec | None] = [None, *chain]
        for i, spec in enumerate(specs):
            following = specs[i + 1] if i + 1 < len(specs) else None
            out = new_channel(following.kind.buffer_size if following is not None else 0)
            self._stubs.append(Stub(spec, upstream_end, out, on_reset))
            upstream_end = out
        self._output = upstream_end
        self._changes: asyncio.Queue[Change] = asyncio.Queue(MAX_PENDING_CHANGES)
        self._tasks: list[asyncio.Task[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[object] | None = None
        self.finished = False

    def submit(self, kind: ChangeKind, toxic: ToxicSpec) -> asyncio.Future[None] | None:
        """Queue a change; None if the link is gone. A wedged link is closed instead."""
        if self.finished:
            return None
        change = Change(kind, toxic)
        try:
            self._changes.put_nowait(change)
        except asyncio.QueueFull:
            log.warning("link cannot keep up with toxic changes; closing it")
            if self._runner is not None:
                self._runner.cancel()  # it may be stuck inside a change: cancel the whole link
            return None
        return change.done

    async def run(self) -> None:
        """Carry data until the writer is done, applying toxic changes as they come."""
        self._runner = asyncio.current_task()
        self._tasks.append(asyncio.create_task(self._read()))
        for stub in self._stubs:
            self._start(stub)
        self._writer = asyncio.create_task(self._write())
        try:
            await self._serve_changes(self._writer)
        finally:
            self.finished = True
            await self._teardown()

    async def _serve_changes(self, writer: asyncio.Task[None]) -> None:
        while not writer.done():
            getter = asyncio.ensure_future(self._changes.get())
            try:
                await asyncio.wait({getter, writer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if not getter.done() or getter.cancelled():
                return
            change = getter.result()
            try:
                await self._apply(change)
            except Exception:
                log.exception("re-chaining a link failed; closing it")
                return
            finally:
                change.settle()

    async def _teardown(self) -> None:
        tasks = [*self._tasks, *(s.task for s in self._stubs if s.task is not None)]
        if self._writer is not None:
            tasks.append(self._writer)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not self._changes.empty():
            self._changes.get_nowait().settle()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await self._source.reader.read(READ_CHUNK):
                await self._input.put(Chunk(data, loop.time()))
        except OSError:
            pass  # a reset or aborted source ends the stream like an EOF
        await self._input.put(None)

    async def _write(self) -> None:
        """Write what comes out of the chain; at its end close ``dest`` fully (no half-close)."""
        try:
            while (chunk := await self._output.get()) is not None:
                self._dest.writer.write(chunk.data)
                await self._dest.writer.drain()
                self._on_bytes(len(chunk.data))
        except OSError:
            pass  # the destination went away; the other direction will see it too
        finally:
            self._dest.close()

    def _start(self, stub: Stub) -> None:
        stub.task = asyncio.create_task(run_stub(stub))

    async def _apply(self, change: Change) -> None:
        if change.kind == "add":
            await self._add(change.toxic)
        elif change.kind == "update":
            await self._update(change.toxic)
        else:
            await self._remove(change.toxic)

    def _index(self, name: str) -> int | None:
        for i, stub in enumerate(self._stubs):
            if stub.toxic is not None and stub.toxic.name == name:
                return i
        return None

    async def _interrupt(self, stub: Stub) -> bool:
        """Stop the stub's toxic; False if it has closed (or is closing) its stream."""
        task = stub.task
        if stub.closing or task is None or task.done():
            return False
        task.cancel()
        await asyncio.wait({task})
        return not stub.closing

    @staticmethod
    async def _hand_on(stub: Stub, to: Channel) -> bool:
        """Pass what an interrupted stub held to ``to``; False if that included end-of-stream."""
        if stub.held is not None:
            await to.put(stub.held)
            stub.held = None
        if stub.eof_held:
            stub.eof_held = False
            stub.closing = True
            await to.put(None)
            return False
        return True

    async def _add(self, toxic: ToxicSpec) -> None:
        last = self._stubs[-1]
        if not await self._interrupt(last):
            return
        if not await self._hand_on(last, last.output):  # held data skips the new toxic, as in Go
            return
        stub = Stub(toxic, new_channel(toxic.kind.buffer_size), last.output, self._on_reset)
        last.output = stub.input
        self._stubs.append(stub)
        self._start(stub)
        self._start(last)

    async def _update(self, toxic: ToxicSpec) -> None:
        index = self._index(toxic.name)
        if index is None:
            return
        stub = self._stubs[index]
        if await self._interrupt(stub) and await self._hand_on(stub, stub.output):
            stub.toxic = toxic
            self._start(stub)

    async def _remove(self, toxic: ToxicSpec) -> None:
        index = self._index(toxic.name)
        if index is None:
            return
        stub, before = self._stubs[index], self._stubs[index - 1]
        if not await self._interrupt(stub):
            return
        if toxic.kind.closes_on_removal:
            await stub.close()
            return
        if not await self._hand_on(stub, stub.output):
            return
        if not await self._interrupt(before):
            # ``before`` is closing: its end-of-stream is on its way into stub.input.
            await _move_until_eof(stub.input, stub.output)
            return
        if not await _move_ready(stub.input, stub.output):
            return
        if not await self._hand_on(before, stub.output):  # newer than what was queued
            return
        before.output = stub.output
        del self._stubs[index]
        self._start(before)


async def _move_ready(source: Channel, dest: Channel) -> bool:
    """Move what is queued in ``source`` to ``dest``; False if end-of-stream was among it."""
    while not source.empty():
        item = source.get_nowait()
        await dest.put(item)
        if item is None:
            return False
    return True


async def _move_until_eof(source: Channel, dest: Channel) -> None:
    while (item := await source.get()) is not None:
        await dest.put(item)
    await dest.put(None)
