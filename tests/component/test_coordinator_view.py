"""A coordinator handed a fixed cluster view (dfsring.core.clusterview.FixedView) on an in-memory
store: the view alone decides who is asked. Owners the view holds down are not called at
all, they count as failed at once, so these requests never touch the network."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dfsring.core import keys
from dfsring.core.clusterview import FixedView
from dfsring.core.vclock import VersionVector
from dfsring.foundation import errors
from dfsring.foundation.metrics import NodeMetrics
from dfsring.replication.coordinator import ReplicatedCoordinator
from dfsring.ring import Ring, RingMember
from dfsring.storage import MemoryEngine
from dfsring.storage.hintstore import TABLES as HINT_TABLES
from dfsring.storage.hintstore import HintStore
from dfsring.storage.localstore import TABLES, LocalStore
from dfsring.testing.views import view_of
from dfsring.transport.rpc import RpcClient

pytestmark = pytest.mark.component
BITS = 6
RING = Ring.build([RingMember(n) for n in ("n1", "n2", "n3")], replicas=3, partition_bits=BITS,
                  epoch=1)
NAME = keys.object_name("b", "k")


@pytest.fixture
async def alone() -> AsyncIterator[ReplicatedCoordinator]:
    """n1, with n2 and n3 (the other owners of every key) held down by its view."""
    engine = MemoryEngine((*TABLES, *HINT_TABLES))
    store = LocalStore(engine, "n1", BITS)
    await store.open()
    hint_store = HintStore(engine, 1 << 20)
    hint_store.open()
    coordinator = ReplicatedCoordinator(
        node_id="n1", n=3, store=store, hint_store=hint_store,
        views=FixedView(view_of(RING, "n1", down={"n2", "n3"})), rpc=RpcClient("secret"),
        metrics=NodeMetrics(), deadline_s=2.0)
    yield coordinator
    await coordinator.close()
    await engine.close()


async def test_owners_held_down_count_as_failed_without_a_call(
        alone: ReplicatedCoordinator) -> None:
    written = await alone.put(NAME, VersionVector(), b"v", "text/plain", w=1, sloppy=False)
    assert (written.acks, written.n, written.hinted) == (1, 3, 0)
    with pytest.raises(errors.QuorumNotMet) as caught:
        await alone.put(NAME, written.versions.clock, b"w", "text/plain", w=2, sloppy=False)
    assert (caught.value.needed, caught.value.acked) == (2, 1)
    assert set(caught.value.outcomes) == {"n1", "n2", "n3"}


async def test_a_read_needs_only_the_replicas_the_view_holds_up(
        alone: ReplicatedCoordinator) -> None:
    await alone.put(NAME, VersionVector(), b"v", "text/plain", w=1, sloppy=False)
    versions = await alone.get(NAME, r=1, sloppy=False)
    assert [s.value for s in versions.siblings] == [b"v"]
    with pytest.raises(errors.QuorumNotMet) as caught:
        await alone.get(NAME, r=2, sloppy=False)
    assert caught.value.outcomes["n2"] == "down" and caught.value.outcomes["n3"] == "down"
