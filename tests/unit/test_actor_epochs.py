"""Actors that cannot be shadowed (issue 15 part 3; Riak KV679), as a randomized model.

Three replicas of one key, each a real LocalStore over the in-memory engine (no files, no
threads, no network). Random histories of: a write coordinated by one replica, with the
context of what some replica holds or with none (blind), copied to every replica as a W=all
write would be; replica 0 or 1 forgetting the key (its value quarantined after bit rot, or its
partition dropped by a transfer; replica 2 keeps its copy, so nothing is legitimately lost);
anti-entropy between two replicas. After a final full
sync, every acknowledged write that no later write's context saw must still be a sibling:
no acknowledged write is dominated by a dot minted again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core import keys, vclock
from dfsring.core.vclock import Versions, VersionVector
from dfsring.storage import MemoryEngine
from dfsring.storage.localstore import KV, TABLES, LocalStore
from dfsring.testing.bitrot import store_raw

NAME = keys.object_name("b", "k")
REPLICAS = 3

# (op, replica, other): write-blind, write-with-context-of(other), forget by quarantine,
# forget by a partition drop, anti-entropy between replica and other
ops = st.lists(st.tuples(st.sampled_from(["blind", "ctx", "rot", "drop", "sync"]),
                         st.integers(0, REPLICAS - 1), st.integers(0, REPLICAS - 1)),
               min_size=1, max_size=14)


@dataclass
class Model:
    stores: list[LocalStore]
    written: list[bytes] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)  # values some later write's context saw

    async def write(self, at: int, context_from: int | None) -> None:
        context = VersionVector()
        if context_from is not None:
            state = self.stores[context_from].get(NAME)
            context = state.clock
            self.seen.update(s.value for s in state.live() if s.value is not None)
        value = b"w%d" % len(self.written)
        new = await self.stores[at].coordinate(NAME, context, value, "text/plain", 1)
        self.written.append(value)
        for store in self.stores:  # W=all: every replica acknowledged it
            await store.merge(NAME, new, overwrite_corrupt=True)

    async def rot(self, at: int) -> None:
        store = self.stores[at]
        skey = store.storage_key(NAME)
        if store.engine.get(KV, skey) is not None:
            store_raw(store.engine, KV, skey, b"\x01rot!")
            assert await store.quarantine(skey, 1)

    async def drop(self, at: int) -> None:
        while await self.stores[at].drop_partition(self.stores[at].partition(NAME)):
            pass

    async def sync(self, a: int, b: int) -> None:
        joined = vclock.sync(self.stores[a].get(NAME), self.stores[b].get(NAME))
        for i in (a, b):
            await self.stores[i].merge(NAME, joined)


async def _run(history: list[tuple[str, int, int]]) -> tuple[Model, Versions]:
    stores = []
    for i in range(REPLICAS):
        store = LocalStore(MemoryEngine(TABLES), f"node{i}", 4)
        await store.open()
        stores.append(store)
    model = Model(stores)
    for op, at, other in history:
        if op == "blind":
            await model.write(at, None)
        elif op == "ctx":
            await model.write(at, other)
        elif op == "rot":
            await model.rot(at % (REPLICAS - 1))
        elif op == "drop":
            await model.drop(at % (REPLICAS - 1))
        else:
            await model.sync(at, other)
    final = vclock.sync_all(s.get(NAME) for s in stores)
    return model, final


@settings(max_examples=400, deadline=None)
@given(ops)
def test_kv679_a_replica_that_forgot_a_key_never_shadows_an_acknowledged_write(
        history: list[tuple[str, int, int]]) -> None:
    model, final = asyncio.run(_run(history))
    live = {s.value for s in final.live()}
    lost = [v for v in model.written if v not in model.seen and v not in live]
    assert not lost, f"acknowledged writes lost: {lost}; final {final}"


def test_kv679_the_minimal_history_loses_a_write_without_epochs() -> None:
    """The shortest failing history, spelled out: write, overwrite, forget, blind write."""
    _, final = asyncio.run(_run([("blind", 0, 0), ("ctx", 0, 0), ("rot", 0, 0),
                                 ("blind", 0, 0)]))
    assert {s.value for s in final.live()} == {b"w1", b"w2"}
