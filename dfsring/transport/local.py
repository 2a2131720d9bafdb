"""An in-process transport: nodes in one event loop call each other's handler tables.

`LocalNetwork` is the wire: it maps an advertised address to the node's PeerService and
holds the faults injected per link. Each node gets a `LocalTransport` (its own address is
the source of its calls), which implements dfsring.transport.Transport, so every service
runs unchanged over it. Component tests use it to run a whole cluster of coordinators,
handoff, anti-entropy and transfers in one process (dfsring.testing.localcluster).

What a call goes through, as over HTTP: the message is encoded to bytes and decoded by the
receiver against the typed catalogue, the receiver's `PeerService.answer` runs the handler
and translates its errors, and the reply is decoded against the reply type the caller
expects. So wire round trips, ErrorReply codes and PeerRefused behave as in production; only
the socket and the cluster secret (an HTTP concern) are left out.

Faults (links are symmetric: a fault between a and b applies to both directions):
- `partition(a, b)` / `isolate(a)`: a call across it raises PeerUnavailable **at once**, as
  a refused connection would; a reply coming back across a partition raised meanwhile is
  lost (PeerUnavailable, as a reset connection). `heal()` removes every fault.
- `drop(a, b, p)`: each call is lost with probability p (seeded RNG, reproducible); a lost
  call is a black hole and raises PeerUnavailable only at its deadline, as a real timeout.
- `delay(a, b, s)`: s seconds of one-way latency, so a round trip costs 2 s.
Every call honours its deadline: PeerUnavailable once `deadline_s` has passed, whatever the
receiver was doing (its handler is cancelled, as a client disconnect cancels an aiohttp one).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import TypeVar

from dfsring.transport import (
    Answer,
    Payload,
    PeerService,
    PeerUnavailable,
    read_reply,
)
from dfsring.transport.messages import ErrorReply, Message

log = logging.getLogger("dfsring.transport.local")
R = TypeVar("R", bound=Message)


@dataclass
class _Faults:
    delay_s: float = 0.0
    drop: float = 0.0


def _link(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


class LocalNetwork:
    """The addresses of the nodes in this process, and the faults between them."""

    def __init__(self, seed: int = 0) -> None:
        self._nodes: dict[str, PeerService] = {}
        self._partitioned: set[frozenset[str]] = set()
        self._isolated: set[str] = set()
        self._faults: dict[frozenset[str], _Faults] = {}
        self._rng = random.Random(seed)
        self.calls = 0

    # --- membership of the wire -------------------------------------------------------------

    def attach(self, address: str, service: PeerService) -> None:
        """`address` answers from now on (a node that started listening)."""
        self._nodes[address] = service

    def detach(self, address: str) -> None:
        """`address` refuses calls from now on (a stopped node)."""
        self._nodes.pop(address, None)

    def transport(self, address: str) -> LocalTransport:
        """The transport a node at `address` calls its peers with."""
        return LocalTransport(self, address)

    # --- faults ------------------------------------------------------------------------------

    def partition(self, a: str, b: str) -> None:
        self._partitioned.add(_link(a, b))

    def isolate(self, address: str) -> None:
        """Partition `address` from every other node, present and future."""
        self._isolated.add(address)

    def delay(self, a: str, b: str, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a delay is never negative")
        self._faults.setdefault(_link(a, b), _Faults()).delay_s = seconds

    def drop(self, a: str, b: str, probability: float) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError("a drop probability is in 0..1")
        self._faults.setdefault(_link(a, b), _Faults()).drop = probability

    def heal(self) -> None:
        """Remove every partition, delay and loss."""
        self._partitioned.clear()
        self._isolated.clear()
        self._faults.clear()

    def reachable(self, source: str, target: str) -> bool:
        if source == target:
            return True
        cut = source in self._isolated or target in self._isolated
        return not cut and _link(source, target) not in self._partitioned

    # --- delivery ----------------------------------------------------------------------------

    async def deliver(self, source: str, target: str, message: Message,
                      payload: Payload | None, deadline_s: float) -> Answer:
        """Carry one call and its answer, or raise PeerUnavailable (see the module doc)."""
        self.calls += 1
        try:
            async with asyncio.timeout(deadline_s):
                return await self._round_trip(source, target, message, payload)
        except TimeoutError:
            raise PeerUnavailable(target, f"no reply within {deadline_s:g}s") from None

    async def _round_trip(self, source: str, target: str, message: Message,
                          payload: Payload | None) -> Answer:
        faults = self._faults.get(_link(source, target), _Faults())
        service = self._service(source, target)
        if faults.drop and self._rng.random() < faults.drop:
            await asyncio.Event().wait()  # lost: only the deadline ends the wait
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        kind = service.knows(message.KIND)
        if kind is None:  # as dfsring.http.internal_api answers an unknown route
            detail = f"unknown message kind {message.KIND}"
            return Answer(404, ErrorReply("no-such-route", detail, 0, 0))
        pieces = [bytes(payload)] if payload else []
        try:
            answer = await service.answer(kind, message.encode(), pieces, peer=source)
        except Exception as exc:  # a handler bug: over HTTP, a 500 without a message
            log.exception("peer handler failed", extra={"fields": {"kind": message.KIND}})
            raise PeerUnavailable(target, f"HTTP 500: {type(exc).__name__}") from exc
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        if target not in self._nodes or not self.reachable(target, source):
            raise PeerUnavailable(target, "connection reset: the reply was lost")
        return answer

    def _service(self, source: str, target: str) -> PeerService:
        service = self._nodes.get(target)
        if service is None or not self.reachable(source, target):
            raise PeerUnavailable(target, "connection refused")
        return service


class LocalTransport:
    """dfsring.transport.Transport for the node at `address` on a LocalNetwork."""

    def __init__(self, network: LocalNetwork, address: str) -> None:
        self.network = network
        self.address = address

    async def call(self, address: str, message: Message, reply_type: type[R],
                   deadline_s: float) -> R:
        answer = await self.network.deliver(self.address, address, message, None, deadline_s)
        return read_reply(address, answer.status, answer.message.encode(), reply_type)

    async def call_with_payload(self, address: str, message: Message, payload: Payload,
                                reply_type: type[R], deadline_s: float) -> R:
        answer = await self.network.deliver(self.address, address, message, payload,
                                            deadline_s)
        return read_reply(address, answer.status, answer.message.encode(), reply_type)

    async def call_for_payload(self, address: str, message: Message, reply_type: type[R],
                               deadline_s: float) -> tuple[R, memoryview]:
        answer = await self.network.deliver(self.address, address, message, None, deadline_s)
        reply = read_reply(address, answer.status, answer.message.encode(), reply_type)
        return reply, memoryview(bytes(answer.payload or b""))

    async def close(self) -> None:
        """Nothing to release: no sockets."""
