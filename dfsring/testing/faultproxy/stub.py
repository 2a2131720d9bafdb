"""A toxic's place in one direction of one connection: its input, its output, what it holds.

Toxiproxy chains toxics with Go channels (``toxics/toxic.go``: ``ToxicStub``); this is the same
with bounded asyncio queues. ``None`` on a channel is end-of-stream.

The invariant that makes re-chaining live connections safe: **a toxic never loses data when it is
interrupted.** A toxic is interrupted by cancelling its task, and every byte it has taken from its
input but not yet passed on is in :attr:`Stub.held` (and an end-of-stream it has taken is in
:attr:`Stub.eof_held`) at every await point, because

- :meth:`Stub.recv` takes at most one item and records it before returning (a cancelled
  ``Queue.get`` leaves the item in the queue);
- :meth:`Stub.send` passes on a prefix of ``held`` and shortens ``held`` only after the put
  succeeded (a cancelled ``Queue.put`` puts nothing).

So the link can hand ``held`` on to the output after an interrupt, which is Toxiproxy's
"don't drop any data on the floor" (``stub.Output <- c`` on interrupt).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

from dfsring.testing.faultproxy.spec import ToxicSpec


@dataclass(slots=True)
class Chunk:
    """Bytes read in one go, stamped with the loop time they reached the proxy.

    A latency toxic moves the stamp on by the delay it applied, so a second latency toxic in the
    same chain measures from there (Toxiproxy's ``StreamChunk.Timestamp``).
    """

    data: bytes
    stamp: float


Channel = asyncio.Queue[Chunk | None]


def new_channel(buffer_chunks: int) -> Channel:
    """A bounded channel; Go's unbuffered hand-over becomes room for one chunk."""
    return asyncio.Queue(maxsize=max(1, buffer_chunks))


class Recv(enum.Enum):
    """What :meth:`Stub.recv` returns when no chunk came in time."""

    TIMED_OUT = "timed out"


class Stub:
    """Per-connection, per-direction state of one toxic in the chain (Go's ``ToxicStub``).

    ``state`` is the toxic's per-connection memory (limit_data's byte count); it lives as long as
    the stub, so updating or restarting the toxic keeps it.
    """

    def __init__(
        self,
        toxic: ToxicSpec | None,
        input_channel: Channel,
        output_channel: Channel,
        on_reset: Callable[[], None],
    ) -> None:
        self.toxic = toxic  # None for the hidden noop that heads every chain
        self.input = input_channel
        self.output = output_channel
        self.held: Chunk | None = None
        self.eof_held = False
        self.closing = False
        self.state: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None
        self._on_reset = on_reset

    def _take(self, item: Chunk | None) -> Chunk | None:
        if item is None:
            self.eof_held = True
        else:
            self.held = item
        return item

    async def recv(self) -> Chunk | None:
        """The next chunk, or None at end-of-stream.

        The caller must have sent or dropped the previous chunk: a stub holds one at a time.
        """
        assert self.held is None and not self.eof_held, "recv with data still held"
        return self._take(await self.input.get())

    async def recv_within(self, seconds: float) -> Chunk | Recv | None:
        """Like :meth:`recv`, but TIMED_OUT if nothing arrives within ``seconds``."""
        assert self.held is None and not self.eof_held, "recv with data still held"
        if not self.input.empty():
            return self._take(self.input.get_nowait())
        getter = asyncio.ensure_future(self.input.get())
        try:
            await asyncio.wait({getter}, timeout=seconds)
        finally:
            if not getter.done():
                getter.cancel()  # a cancelled get leaves the item in the queue
            elif not getter.cancelled():
                # Got an item even if we are being interrupted: keep it held, not lost.
                self._take(getter.result())
        if not getter.done() or getter.cancelled():
            return Recv.TIMED_OUT
        return self.held

    async def send(self, size: int | None = None) -> None:
        """Pass on the first ``size`` bytes held (all of them by default)."""
        held = self.held
        assert held is not None, "send with nothing held"
        if size is None or size >= len(held.data):
            await self.output.put(held)
            self.held = None
            return
        await self.output.put(Chunk(held.data[:size], held.stamp))
        self.held = Chunk(held.data[size:], held.stamp)

    def drop(self) -> None:
        """Throw away the held data (timeout, reset_peer, limit_data past its limit)."""
        self.held = None

    async def close(self) -> None:
        """Pass end-of-stream on and finish; a closing stub is never interrupted again."""
        self.closing = True
        self.held = None
        self.eof_held = False
        await self.output.put(None)

    def reset(self) -> None:
        """Reset both sockets of the connection (reset_peer): RST instead of FIN."""
        self._on_reset()
