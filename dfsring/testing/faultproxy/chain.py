"""A proxy's toxics in both directions, and the live links they are applied to.

Toxiproxy's ``ToxicCollection`` (``toxic_collection.go``). The lists here are the truth the API
reports; every change is also queued to each live link of that direction, and the caller gets
the links' acknowledgements back to wait on (see :func:`settle`), so an API call returns once
live connections carry the change, yet never hangs on a wedged one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from dfsring.testing.faultproxy.link import ChangeKind, Link
from dfsring.testing.faultproxy.spec import DIRECTIONS, ToxicSpec

RECHAIN_WAIT = 0.3  # seconds an API call waits for live links to apply a change


async def settle(acks: Iterable[asyncio.Future[None]], timeout: float = RECHAIN_WAIT) -> None:  # noqa: ASYNC109
    """Wait until the links applied the changes, or ``timeout`` passed (they carry on anyway)."""
    pending = set(acks)
    if pending:
        await asyncio.wait(pending, timeout=timeout)


class ToxicCollection:
    """The toxic chains of one proxy, upstream and downstream, in insertion order."""

    def __init__(self) -> None:
        self._chains: dict[str, list[ToxicSpec]] = {d: [] for d in DIRECTIONS}
        self._links: set[Link] = set()

    def chain(self, direction: str) -> tuple[ToxicSpec, ...]:
        return tuple(self._chains[direction])

    def all(self) -> list[ToxicSpec]:
        """Upstream toxics first, then downstream, each in insertion order (as Toxiproxy lists)."""
        return [toxic for direction in DIRECTIONS for toxic in self._chains[direction]]

    def find(self, name: str) -> ToxicSpec | None:
        return next((t for t in self.all() if t.name == name), None)

    def attach(self, link: Link) -> None:
        """Start sending changes to ``link``; call right after building it from :meth:`chain`
        with no await in between, so the link never misses a change."""
        self._links.add(link)

    def detach(self, link: Link) -> None:
        self._links.discard(link)

    def add(self, toxic: ToxicSpec) -> list[asyncio.Future[None]]:
        self._chains[toxic.direction].append(toxic)
        return self._broadcast("add", toxic)

    def update(self, toxic: ToxicSpec) -> list[asyncio.Future[None]]:
        chain = self._chains[toxic.direction]
        index = next(i for i, t in enumerate(chain) if t.name == toxic.name)
        chain[index] = toxic
        return self._broadcast("update", toxic)

    def remove(self, toxic: ToxicSpec) -> list[asyncio.Future[None]]:
        self._chains[toxic.direction].remove(toxic)
        return self._broadcast("remove", toxic)

    def clear(self) -> list[asyncio.Future[None]]:
        """Remove every toxic, first to last, as Toxiproxy's ``ResetToxics`` does."""
        acks: list[asyncio.Future[None]] = []
        for toxic in self.all():
            acks += self.remove(toxic)
        return acks

    def _broadcast(self, kind: ChangeKind, toxic: ToxicSpec) -> list[asyncio.Future[None]]:
        acks = []
        for link in self._links:
            if link.direction == toxic.direction:
                ack = link.submit(kind, toxic)
                if ack is not None:
                    acks.append(ack)
        return acks
