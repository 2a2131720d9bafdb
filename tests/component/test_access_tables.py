"""The identity tables and caches over an in-process cluster (real coordinator, real peer
handlers, a LocalNetwork): concurrent admin edits, the access-changed announcement, and the
TTL bound for a node that missed it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from dfsring.core.access import Role
from dfsring.foundation import errors
from dfsring.replication.access.service import AccessService
from dfsring.testing.localcluster import InProcessCluster, start_cluster

pytestmark = pytest.mark.component


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    cluster = await start_cluster(tmp_path, 3, gossip=False, admin_access_key="ROOT",
                                  admin_secret_key="root-secret", cluster_secret="c" * 16)
    try:
        yield cluster
    finally:
        await cluster.stop()


def access(cluster: InProcessCluster, index: int) -> AccessService:
    return cluster.nodes[index].svc.access


async def test_concurrent_admin_edits_merge_to_the_most_restrictive(
        cluster: InProcessCluster) -> None:
    one, two, three = (access(cluster, i) for i in range(3))
    new = await one.create_key(name="k", expires_in_s=None, admin=False)
    key = new.record.access_key
    await one.set_grant("a", key, Role.WRITE)
    record, context = await one.tables.read_key(key)
    assert record is not None
    # two admins edit from the same read, on different nodes: siblings
    await one.tables.write_key(replace(record, admin=True, grants={"a": Role.WRITE,
                                                                   "b": Role.OWNER}), context)
    await two.tables.write_key(replace(record, disabled=True, grants={"a": Role.READ}),
                               context)
    merged, _ = await three.tables.read_key(key)
    assert merged is not None
    assert merged.disabled and not merged.admin and dict(merged.grants) == {"a": Role.READ}
    with pytest.raises(errors.Unauthenticated):
        await three.authenticate(key, new.secret)
    # the next edit, made with the merged read's context, resolves the siblings
    await three.set_disabled(key, False)
    assert (await one.authenticate(key, new.secret)).grants == {"a": Role.READ}


async def test_a_change_is_announced_to_every_member_cache(cluster: InProcessCluster) -> None:
    one, two, three = (access(cluster, i) for i in range(3))
    new = await one.create_key(name="", expires_in_s=None, admin=False)
    key = new.record.access_key
    for service in (two, three):
        await service.authenticate(key, new.secret)
        assert service.keys.fresh(key, service.clock()) is not None
    await one.delete_key(key)
    for service in (two, three):
        assert service.keys.fresh(key, service.clock()) is None
        with pytest.raises(errors.Unauthenticated):
            await service.authenticate(key, new.secret)


async def test_a_node_that_missed_the_announcement_refuses_once_the_ttl_passed(
        cluster: InProcessCluster) -> None:
    one, two = access(cluster, 0), access(cluster, 1)
    clock = FakeClock()
    two.clock = clock
    new = await one.create_key(name="", expires_in_s=None, admin=False)
    key = new.record.access_key
    await two.authenticate(key, new.secret)
    cluster.network.partition(cluster.nodes[0].address, cluster.nodes[1].address)
    await one.delete_key(key)  # node 2 does not hear of it
    clock.now += two.settings.ttl_s - 0.1
    assert (await two.authenticate(key, new.secret)).access_key == key  # stale, within TTL
    clock.now += 0.1
    with pytest.raises(errors.Unauthenticated):
        await two.authenticate(key, new.secret)


async def test_a_rotated_secret_is_found_by_rereading_without_any_announcement(
        cluster: InProcessCluster) -> None:
    one, two = access(cluster, 0), access(cluster, 1)
    clock = FakeClock()
    two.clock = clock
    new = await one.create_key(name="", expires_in_s=None, admin=False)
    key = new.record.access_key
    await two.authenticate(key, new.secret)
    cluster.network.partition(cluster.nodes[0].address, cluster.nodes[1].address)
    rotated = await one.rotate(key)
    cluster.network.heal()
    clock.now += two.settings.min_reread_s
    assert (await two.authenticate(key, rotated.secret)).access_key == key
    # a wrong secret right after costs no second read: the re-read is at most once a second
    reads = 0
    original = two.tables.read_key

    async def counting(access_key: str):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        return await original(access_key)

    two.tables.read_key = counting  # type: ignore[method-assign]
    for _ in range(5):
        with pytest.raises(errors.Unauthenticated):
            await two.authenticate(key, "wrong")
    assert reads == 0


async def test_an_unknown_key_is_read_once_then_cached_as_absent(
        cluster: InProcessCluster) -> None:
    two = access(cluster, 1)
    for _ in range(3):
        with pytest.raises(errors.Unauthenticated):
            await two.authenticate("DK" + "Q" * 18, "whatever")
    entry = two.keys.fresh("DK" + "Q" * 18, two.clock())
    assert entry is not None and entry.value is None


async def test_signing_key_gives_the_clear_secret_of_a_usable_key_only(
        cluster: InProcessCluster) -> None:
    """What the SigV4 check needs: the secret itself, and the same freshness rules."""
    one, two = access(cluster, 0), access(cluster, 1)
    new = await one.create_key(name="", expires_in_s=None, admin=False)
    key = new.record.access_key
    found = await two.signing_key(key)
    assert found is not None and found[1] == new.secret
    root = await two.signing_key("ROOT")
    assert root is not None and root[0].admin and root[1] == "root-secret"
    rotated = await one.rotate(key)
    again = await two.signing_key(key, reread=True)
    assert again is not None and again[1] == rotated.secret
    await one.set_disabled(key, True)
    assert await two.signing_key(key) is None
    assert await two.signing_key("not-a-key") is None
