"""What each toxic does to the bytes passing one stub (Toxiproxy 2.x ``toxics/*.go``).

Every pipe follows the :class:`~dfsring.testing.faultproxy.stub.Stub` contract: take one chunk
with ``recv``, pass it on (or a prefix of it) with ``send`` or ``drop`` it, and ``close`` on
end-of-stream. They may be cancelled at any await (that is how the link interrupts them to
re-chain) and hold no state of their own outside ``stub.state``, so restarting one is safe.

Times in attributes are milliseconds except slicer's ``delay`` (microseconds); bandwidth's
``rate`` is KB/s with KB = 1000 bytes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping

from dfsring.testing.faultproxy.spec import ToxicSpec
from dfsring.testing.faultproxy.stub import Recv, Stub

log = logging.getLogger("dfsring.faultproxy")

Pipe = Callable[[Stub, ToxicSpec], Awaitable[None]]

_rng = random.Random()
BANDWIDTH_SLICE = 0.1  # seconds: bandwidth passes at most rate*100 bytes per 100 ms


async def noop(stub: Stub, toxic: ToxicSpec | None) -> None:
    """Pass everything through unchanged (also what a toxic does when toxicity says no)."""
    while await stub.recv() is not None:
        await stub.send()
    await stub.close()


async def latency(stub: Stub, toxic: ToxicSpec) -> None:
    """Delay each chunk by latency ± jitter measured from its arrival, keeping order.

    The stub's input buffers 1024 chunks, so chunks arriving during a delay are already waiting
    and each leaves at its own arrival + delay, not after the previous chunk's full delay.
    """
    loop = asyncio.get_running_loop()
    while (chunk := await stub.recv()) is not None:
        jitter = toxic.attr("jitter")
        delay_ms = toxic.attr("latency") + (_rng.uniform(-jitter, jitter) if jitter > 0 else 0)
        due = chunk.stamp + delay_ms / 1000
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        chunk.stamp = max(due, chunk.stamp)
        await stub.send()
    await stub.close()


async def bandwidth(stub: Stub, toxic: ToxicSpec) -> None:
    """Limit throughput to ``rate`` KB/s; rate <= 0 is unlimited.

    Toxiproxy's algorithm: a chunk larger than one 100 ms slice goes out a slice per 100 ms,
    and ``debt`` carries the rest of the time owed (and the sleep's overshoot) to the next chunk.
    """
    loop = asyncio.get_running_loop()
    debt = 0.0
    while (chunk := await stub.recv()) is not None:
        rate = toxic.attr("rate")
        if rate <= 0:
            debt = 0.0
            await stub.send()
            continue
        debt += len(chunk.data) / (rate * 1000)
        slice_bytes = rate * 100
        while stub.held is not None and len(stub.held.data) > slice_bytes:
            await asyncio.sleep(BANDWIDTH_SLICE)
            await stub.send(slice_bytes)
            debt -= BANDWIDTH_SLICE
        start = loop.time()
        if debt > 0:
            await asyncio.sleep(debt)
        debt -= loop.time() - start
        await stub.send()
    await stub.close()


async def slow_close(stub: Stub, toxic: ToxicSpec) -> None:
    """Pass data through; pass the close on ``delay`` ms late."""
    while await stub.recv() is not None:
        await stub.send()
    await asyncio.sleep(toxic.attr("delay") / 1000)
    await stub.close()


async def timeout(stub: Stub, toxic: ToxicSpec) -> None:
    """Drop all data; close once ``timeout`` ms pass with nothing arriving (0: never).

    Each dropped chunk restarts the timer. Removing this toxic closes the connection; the link
    does that (``ToxicType.closes_on_removal``), as Toxiproxy's ``Cleanup`` does.
    """
    limit = toxic.attr("timeout") / 1000
    while True:
        got = await (stub.recv_within(limit) if limit > 0 else stub.recv())
        if got is None or got is Recv.TIMED_OUT:
            await stub.close()
            return
        stub.drop()


async def reset_peer(stub: Stub, toxic: ToxicSpec) -> None:
    """On the first chunk or end-of-stream wait ``timeout`` ms, then reset the connection.

    Data is dropped; an end-of-stream stays held until the reset, so an interrupt in between
    still passes the close on.
    """
    await stub.recv()
    stub.drop()
    await asyncio.sleep(toxic.attr("timeout") / 1000)
    stub.reset()
    await stub.close()


def slice_sizes(total: int, average: int, variation: int, rng: random.Random) -> list[int]:
    """Toxiproxy's ``SlicerToxic.chunk``: halve around the middle (± variation) until each piece
    is at most average + variation bytes; the sizes, in order, sum to ``total``.

    Where Go would panic (variation 0 with an oversized piece, average <= 0) or cut outside the
    piece, this degrades to no slicing, an exact half, or a clamped cut.
    """
    if total <= 0:
        return []
    if average <= 0:
        return [total]
    variation = max(variation, 0)
    pieces: list[int] = []
    stack = [(0, total)]
    while stack:
        start, end = stack.pop()
        if (end - start) - average <= variation or end - start < 2:
            pieces.append(end - start)
            continue
        offset = rng.randrange(-variation, variation) if variation > 0 else 0
        mid = min(max(start + (end - start) // 2 + offset, start + 1), end - 1)
        stack.append((mid, end))
        stack.append((start, mid))
    return pieces


async def slicer(stub: Stub, toxic: ToxicSpec) -> None:
    """Cut each chunk into smaller ones (same bytes, same order), ``delay`` µs apart."""
    delay = toxic.attr("delay") / 1_000_000
    while (chunk := await stub.recv()) is not None:
        sizes = slice_sizes(
            len(chunk.data), toxic.attr("average_size"), toxic.attr("size_variation"), _rng
        )
        for size in sizes:
            await stub.send(size)
            if delay > 0:
                await asyncio.sleep(delay)
    await stub.close()


async def limit_data(stub: Stub, toxic: ToxicSpec) -> None:
    """Close once ``bytes`` bytes have passed; the count is per connection (``stub.state``)."""
    limit = toxic.attr("bytes")
    stub.state.setdefault("sent", 0)
    while (chunk := await stub.recv()) is not None:
        allowed = min(len(chunk.data), max(0, limit - stub.state["sent"]))
        if allowed > 0:
            await stub.send(allowed)
            stub.state["sent"] += allowed
        stub.drop()
        if limit - stub.state["sent"] <= 0:
            break
    await stub.close()


PIPES: Mapping[str, Pipe] = {
    "latency": latency,
    "bandwidth": bandwidth,
    "slow_close": slow_close,
    "timeout": timeout,
    "reset_peer": reset_peer,
    "slicer": slicer,
    "limit_data": limit_data,
    "noop": noop,
}


async def run_stub(stub: Stub) -> None:
    """Run the stub's toxic, or a noop when its toxicity draw fails (drawn at every (re)start).

    A toxic that fails closes its stream rather than wedge the connection.
    """
    toxic = stub.toxic
    use_toxic = toxic is not None and _rng.random() < toxic.toxicity
    try:
        if use_toxic and toxic is not None:
            await PIPES[toxic.type](stub, toxic)
        else:
            await noop(stub, toxic)
    except Exception:
        log.exception("toxic failed; closing its stream", extra={"fields": {"toxic": toxic}})
        if not stub.closing:
            await stub.close()
    if not stub.closing:
        await stub.close()
