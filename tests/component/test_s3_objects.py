"""The S3 object layer (dfsring.s3.objects) over real nodes in one process: the real
coordinator, files service, access service and chunk replicas of a 3-node in-process
cluster (dfsring.testing.localcluster), N=3, R=W=2. Writes go through one node's layer and
reads through another's, so every answer crossed the replicated store."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfsring.files import versions as fv
from dfsring.files.service import StoredBody, VersionExtras, system_name
from dfsring.s3 import obj_uploads as up
from dfsring.s3.errors import S3Error
from dfsring.s3.model import NULL_VERSION, Conditions, ListEntry, ObjectMeta
from dfsring.s3.objects import S3Objects, build_object_layer
from dfsring.testing.localcluster import InProcessCluster, start_cluster
from dfsring.testing.wait import async_wait_until

pytestmark = pytest.mark.component
OWNER = "ROOT"  # the root key owns without a grant; OTHER is made a real table key
MIB = 1 << 20


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    cluster = await start_cluster(tmp_path, 3, gossip=False, admin_access_key="ROOT",
                                  admin_secret_key="root-secret", cluster_secret="c" * 16,
                                  chunk_size=65_536, gc_grace=0.2)
    try:
        yield cluster
    finally:
        await cluster.stop()


def layer(cluster: InProcessCluster, index: int) -> S3Objects:
    node = cluster.nodes[index]
    return build_object_layer(node.cfg, node.svc.files, node.svc.access)


async def body(data: bytes, piece: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start:start + piece]


async def read_all(s3: S3Objects, bucket: str, key: str,
                   version: str | None = None) -> bytes:
    obj = await s3.head_object(bucket, key, version)
    if obj.size == 0:
        return b""
    return b"".join([bytes(p) async for p in s3.read_object(obj, 0, obj.size - 1)])


async def entries(s3: S3Objects, bucket: str, *, versions: bool,
                  prefix: str = "") -> list[ListEntry]:
    return [e async for e in s3.scan(bucket, prefix, None, versions=versions)]


async def code_of(coro: object) -> S3Error:
    with pytest.raises(S3Error) as caught:
        await coro  # type: ignore[misc]
    return caught.value


META = ObjectMeta("text/plain", {"cache-control": "no-cache"}, {"colour": "blue"})


async def test_an_object_written_through_one_node_reads_and_lists_through_another(
        cluster: InProcessCluster) -> None:
    one, two = layer(cluster, 0), layer(cluster, 1)
    await one.create_bucket("photos", OWNER)
    data = os.urandom(300_000)
    put = await one.put_object("photos", "a/b c+é.txt", body(data), meta=META)
    assert put.etag == hashlib.md5(data).hexdigest() and put.version_id == NULL_VERSION
    head = await two.head_object("photos", "a/b c+é.txt")
    assert (head.size, head.etag, head.meta) == (len(data), put.etag, META)
    assert await read_all(two, "photos", "a/b c+é.txt") == data
    part = [bytes(p) async for p in two.read_object(head, 10, 20)]
    assert b"".join(part) == data[10:21]
    listed = await entries(two, "photos", versions=False)
    assert [(e.key, e.size, e.etag) for e in listed] == [("a/b c+é.txt", len(data), put.etag)]
    small = await one.put_object("photos", "tiny", body(b"hi"), meta=ObjectMeta())
    assert small.etag == hashlib.md5(b"hi").hexdigest()
    assert await read_all(two, "photos", "tiny") == b"hi"
    empty = await one.put_object("photos", "empty", body(b""), meta=ObjectMeta())
    assert (await two.head_object("photos", "empty")).size == 0 == empty.size


async def test_a_never_versioned_bucket_keeps_only_the_newest_version(
        cluster: InProcessCluster) -> None:
    one, two = layer(cluster, 0), layer(cluster, 2)
    await one.create_bucket("plain", OWNER)
    for i in range(3):
        await one.put_object("plain", "k", body(b"v%d" % i), meta=ObjectMeta())
    found = await entries(two, "plain", versions=True)
    assert [(e.version_id, e.size) for e in found] == [(NULL_VERSION, 2)]
    assert await read_all(two, "plain", "k") == b"v2"
    assert await read_all(two, "plain", "k", NULL_VERSION) == b"v2"
    result = await two.delete_object("plain", "k")
    assert (result.version_id, result.delete_marker) == (None, False)
    assert (await code_of(one.head_object("plain", "k"))).code == "NoSuchKey"
    assert await entries(one, "plain", versions=True) == []


async def test_enabled_versioning_keeps_versions_and_deletes_with_markers(
        cluster: InProcessCluster) -> None:
    one, two = layer(cluster, 0), layer(cluster, 1)
    await one.create_bucket("vers", OWNER)
    await one.put_object("vers", "k", body(b"before"), meta=ObjectMeta())  # a null version
    info = await two.set_versioning("vers", "Enabled")
    assert info.versioning == "Enabled"
    first = await one.put_object("vers", "k", body(b"first"), meta=ObjectMeta())
    second = await two.put_object("vers", "k", body(b"second"), meta=ObjectMeta())
    assert NULL_VERSION != first.version_id != second.version_id != NULL_VERSION
    marker = await one.delete_object("vers", "k")
    assert marker.delete_marker and marker.version_id not in (None, NULL_VERSION)

    gone = await code_of(two.head_object("vers", "k"))
    assert gone.code == "NoSuchKey" and gone.headers["x-amz-delete-marker"] == "true"
    assert gone.headers["x-amz-version-id"] == marker.version_id
    named = await code_of(two.head_object("vers", "k", marker.version_id))
    assert named.code == "MethodNotAllowed"
    assert await read_all(two, "vers", "k", first.version_id) == b"first"
    assert await read_all(two, "vers", "k", NULL_VERSION) == b"before"
    missing = await code_of(two.head_object("vers", "k", "0" * 20 + "n9"))
    assert missing.code == "NoSuchVersion"
    bad = await code_of(two.head_object("vers", "k", "../etc"))
    assert bad.code == "InvalidArgument"

    listed = await entries(two, "vers", versions=True)
    assert [e.version_id for e in listed] == [NULL_VERSION, first.version_id,
                                              second.version_id, marker.version_id]
    assert [e.delete_marker for e in listed] == [False, False, False, True]
    current = await entries(two, "vers", versions=False)
    assert [(e.version_id, e.delete_marker) for e in current] == [(marker.version_id, True)]

    removed = await two.delete_object("vers", "k", marker.version_id)
    assert removed.delete_marker and removed.version_id == marker.version_id
    assert await read_all(one, "vers", "k") == b"second"
    await one.delete_object("vers", "k", second.version_id)
    assert await read_all(one, "vers", "k") == b"first"


async def test_a_suspended_bucket_replaces_the_null_version(
        cluster: InProcessCluster) -> None:
    one, two = layer(cluster, 0), layer(cluster, 1)
    await one.create_bucket("susp", OWNER)
    await one.set_versioning("susp", "Enabled")
    kept = await one.put_object("susp", "k", body(b"kept"), meta=ObjectMeta())
    await one.set_versioning("susp", "Suspended")
    await two.put_object("susp", "k", body(b"null-1"), meta=ObjectMeta())
    await one.put_object("susp", "k", body(b"null-2"), meta=ObjectMeta())
    listed = await entries(two, "susp", versions=True)
    assert [e.version_id for e in listed] == [kept.version_id, NULL_VERSION]
    assert await read_all(two, "susp", "k") == b"null-2"
    deleted = await two.delete_object("susp", "k")
    assert (deleted.version_id, deleted.delete_marker) == (NULL_VERSION, True)
    listed = await entries(one, "susp", versions=True)
    assert [(e.version_id, e.delete_marker) for e in listed] == [
        (kept.version_id, False), (NULL_VERSION, True)]
    assert (await code_of(one.set_versioning("susp", ""))).code == "MalformedXML"


async def test_two_null_versions_left_by_a_crash_read_as_the_newest_and_the_next_write_clears(
        cluster: InProcessCluster) -> None:
    one = layer(cluster, 0)
    await one.create_bucket("crash", OWNER)
    files = cluster.nodes[0].svc.files.service
    for data in (b"old", b"new"):  # two null versions, as a crash before the removal leaves
        stored = StoredBody(None, data, hashlib.sha256(data).hexdigest(),
                            hashlib.md5(data).hexdigest(), len(data), 0)
        result = await files.commit("crash", "k", stored, content_type="text/plain",
                                    metadata={}, extras=VersionExtras(prune=False))
        assert result.ref is not None
        await files._write(fv.VersionRef(  # the same version, flagged null
            "crash", "k", result.ref.version, result.ref.kind, result.ref.size,
            result.ref.etag, True), b"")
        await files.remove_version(result.ref)
    raw = await files.versions("crash", "k")
    assert sum(r.null for r in raw) == 2
    assert len(fv.superseded_nulls(raw)) == 1
    assert [e.version_id for e in await entries(one, "crash", versions=True)] == [NULL_VERSION]
    await one.put_object("crash", "k", body(b"newest"), meta=ObjectMeta())
    raw = await files.versions("crash", "k")
    assert [r.null for r in raw] == [True]
    assert await read_all(one, "crash", "k") == b"newest"


async def test_conditional_writes_are_refused_not_best_effort(
        cluster: InProcessCluster) -> None:
    one = layer(cluster, 0)
    await one.create_bucket("cond", OWNER)
    refused = await code_of(one.put_object("cond", "k", body(b"x"), meta=ObjectMeta(),
                                           conditions=Conditions(if_none_match="*")))
    assert refused.code == "NotImplemented" and refused.status == 501
    assert await entries(one, "cond", versions=True) == []


async def test_buckets_create_exist_list_and_delete(cluster: InProcessCluster) -> None:
    one, two = layer(cluster, 0), layer(cluster, 1)
    other = (await cluster.nodes[0].svc.access.create_key(
        name="other", expires_in_s=None, admin=False)).record.access_key
    made = await one.create_bucket("bkt", OWNER)
    assert made.owner == OWNER and made.versioning == ""
    assert (await code_of(two.create_bucket("bkt", OWNER))).code == "BucketAlreadyOwnedByYou"
    assert (await code_of(two.create_bucket("bkt", other))).code == \
        "BucketAlreadyExists"
    assert (await code_of(two.create_bucket("Bad_Name", OWNER))).code == "InvalidBucketName"
    assert "bkt" in [b.name for b in await two.list_buckets()]
    await one.put_object("bkt", "k", body(b"x"), meta=ObjectMeta())
    assert (await code_of(two.delete_bucket("bkt"))).code == "BucketNotEmpty"
    await two.delete_object("bkt", "k")
    await two.delete_bucket("bkt")
    for s3 in (one, two):
        assert (await code_of(s3.bucket("bkt"))).code == "NoSuchBucket"
        assert (await code_of(s3.head_object("bkt", "k"))).code == "NoSuchBucket"
    assert "bkt" not in [b.name for b in await one.list_buckets()]
    again = await two.create_bucket("bkt", other)
    assert again.owner == other
    assert (await one.bucket("bkt")).owner == other


async def test_a_key_past_the_bound_is_key_too_long(cluster: InProcessCluster) -> None:
    one = layer(cluster, 0)
    await one.create_bucket("long", OWNER)
    key = "k" * fv.MAX_PATH_BYTES
    await one.put_object("long", key, body(b"x"), meta=ObjectMeta())
    assert await read_all(one, "long", key) == b"x"
    err = await code_of(one.put_object("long", key + "k", body(b"x"), meta=ObjectMeta()))
    assert err.code == "KeyTooLongError"


async def test_copy_references_the_same_chunks(cluster: InProcessCluster) -> None:
    one, two = layer(cluster, 0), layer(cluster, 1)
    await one.create_bucket("src", OWNER)
    await one.create_bucket("dst", OWNER)
    data = os.urandom(200_000)
    await one.put_object("src", "a", body(data), meta=META)
    source = await two.head_object("src", "a")
    kept = await two.copy_object(source, "dst", "b", meta=None)
    assert (kept.etag, kept.meta) == (source.etag, META)
    replaced = await two.copy_object(source, "dst", "c", meta=ObjectMeta("image/png"))
    assert replaced.meta == ObjectMeta("image/png")
    assert await read_all(one, "dst", "b") == data == await read_all(one, "dst", "c")


async def test_multipart_upload_completes_to_one_manifest_of_the_parts(
        cluster: InProcessCluster) -> None:
    one, two = layer(cluster, 0), layer(cluster, 1)
    await one.create_bucket("mpu", OWNER)
    upload = await one.create_upload("mpu", "big", meta=META, owner=OWNER)
    first, second = os.urandom(5 * MIB), os.urandom(1000)
    p2 = await two.upload_part("mpu", "big", upload.upload_id, 2, body(second))
    p1 = await one.upload_part("mpu", "big", upload.upload_id, 1, body(b"replaced"))
    p1 = await two.upload_part("mpu", "big", upload.upload_id, 1, body(first))
    assert p1.etag == hashlib.md5(first).hexdigest()
    uploads, more = await two.list_uploads("mpu", "", None, None, 10)
    assert [u.upload_id for u in uploads] == [upload.upload_id] and not more
    _, parts, more = await two.list_parts("mpu", "big", upload.upload_id, 0, 1)
    assert [p.number for p in parts] == [1] and more
    _, parts, more = await two.list_parts("mpu", "big", upload.upload_id, 1, 10)
    assert [p.number for p in parts] == [2] and not more

    bad_order = await code_of(one.complete_upload("mpu", "big", upload.upload_id,
                                                  [(2, p2.etag), (1, p1.etag)]))
    assert bad_order.code == "InvalidPartOrder"
    wrong = await code_of(one.complete_upload("mpu", "big", upload.upload_id,
                                              [(1, "0" * 32), (2, p2.etag)]))
    assert wrong.code == "InvalidPart"
    done = await one.complete_upload("mpu", "big", upload.upload_id,
                                     [(1, f'"{p1.etag}"'), (2, p2.etag)])
    expected = hashlib.md5(bytes.fromhex(p1.etag) + bytes.fromhex(p2.etag)).hexdigest()
    assert (done.etag, done.parts, done.size) == (f"{expected}-2", 2, len(first) + len(second))
    assert await read_all(two, "mpu", "big") == first + second
    head = await two.head_object("mpu", "big")
    assert (head.etag, head.parts, head.meta) == (done.etag, 2, META)
    listed = await entries(two, "mpu", versions=False)
    assert [(e.key, e.etag) for e in listed] == [("big", done.etag)]
    gone = await code_of(two.list_parts("mpu", "big", upload.upload_id, 0, 10))
    assert gone.code == "NoSuchUpload"
    assert (await two.list_uploads("mpu", "", None, None, 10))[0] == []


async def test_complete_with_a_part_under_5_mib_is_entity_too_small(
        cluster: InProcessCluster) -> None:
    one = layer(cluster, 0)
    await one.create_bucket("small", OWNER)
    upload = await one.create_upload("small", "k", meta=ObjectMeta(), owner=OWNER)
    p1 = await one.upload_part("small", "k", upload.upload_id, 1, body(b"a" * 1000))
    p2 = await one.upload_part("small", "k", upload.upload_id, 2, body(b"b"))
    err = await code_of(one.complete_upload("small", "k", upload.upload_id,
                                            [(1, p1.etag), (2, p2.etag)]))
    assert err.code == "EntityTooSmall"
    assert (await code_of(one.delete_bucket("small"))).code == "BucketNotEmpty"
    await one.abort_upload("small", "k", upload.upload_id)
    assert (await code_of(one.abort_upload("small", "k", upload.upload_id))).code == \
        "NoSuchUpload"
    await one.delete_bucket("small")


async def test_part_chunks_survive_gc_while_the_upload_is_open(
        cluster: InProcessCluster) -> None:
    one = layer(cluster, 0)
    for node in cluster.nodes[1:]:
        layer(cluster, cluster.nodes.index(node))  # the hooks on every node's collector
    await one.create_bucket("gcb", OWNER)
    upload = await one.create_upload("gcb", "k", meta=ObjectMeta(), owner=OWNER)
    data = os.urandom(400_000)
    part = await one.upload_part("gcb", "k", upload.upload_id, 1, body(data))
    stores = [n.svc.files for n in cluster.nodes]
    held = sum(f.store.stats.count for f in stores)
    assert held > 0

    async def every_chunk_is_a_candidate() -> bool:
        reports = [await f.gc.run_once() for f in stores]
        assert all(not r.skipped and r.deleted == 0 for r in reports), reports
        return sum(r.candidates for r in reports) >= held

    await async_wait_until(every_chunk_is_a_candidate, timeout=10,
                           message="the part's chunks never grew older than the grace")
    assert sum(f.store.stats.count for f in stores) >= held  # (copies beyond W may land late)
    done = await one.complete_upload("gcb", "k", upload.upload_id, [(1, part.etag)])
    assert done.size == len(data)
    for f in stores:
        assert (await f.gc.run_once()).deleted == 0
    assert await read_all(one, "gcb", "k") == data
    await one.delete_object("gcb", "k")  # never versioned: the version is removed

    async def collected() -> bool:
        return sum([(await f.gc.run_once()).deleted for f in stores]) > 0 or \
            sum(f.store.stats.count for f in stores) == 0

    await async_wait_until(collected, timeout=10, message="unreferenced chunks stayed")


async def test_an_upload_lists_only_its_buckets_partition_owners(
        tmp_path: Path) -> None:
    """Issue 17 item 4: an upload asks the owners of the bucket's one partition for the
    path's versions, never every member (ListKeys)."""
    cluster = await start_cluster(tmp_path, 5, gossip=False, chunk_size=65_536)
    try:
        seen: list[tuple[str, str]] = []
        deliver = cluster.network.deliver

        async def counting(source: str, target: str, message: object, *args: object) -> object:
            seen.append((type(message).__name__, target))
            return await deliver(source, target, message, *args)  # type: ignore[arg-type]

        cluster.network.deliver = counting  # type: ignore[method-assign]
        files = cluster.nodes[0].svc.files.service
        await files.upload("solo", "a/b", body(b"data"), content_type="text/plain",
                           metadata={})
        await files.versions("solo", "a/b")
        kinds = {kind for kind, _ in seen}
        assert "ListKeys" not in kinds
        svc = cluster.nodes[0].svc
        owners = {cluster.node(n).address for n in svc.membership.ring.preference_list(
            svc.store.partition(system_name("solo/any path")))}
        asked = {target for kind, target in seen if kind == "ListPartition"}
        assert asked and asked <= owners
    finally:
        await cluster.stop()


def test_upload_ids_are_refused_unless_ours() -> None:
    with pytest.raises(S3Error) as caught:
        up.check_upload_id("../../x")
    assert caught.value.code == "NoSuchUpload"


async def test_scan_resumes_after_a_key_a_common_prefix_or_a_cursor_past_the_bound(
        cluster: InProcessCluster) -> None:
    one, two = layer(cluster, 0), layer(cluster, 1)
    await one.create_bucket("scan", OWNER)
    names = ["a/1", "a/2", "b", "c", "k" * fv.MAX_PATH_BYTES, "z"]
    for name in names:
        await one.put_object("scan", name, body(b"x"), meta=ObjectMeta())

    async def keys(prefix: str, after: str | None) -> list[str]:
        return [e.key async for e in two.scan("scan", prefix, after, versions=False)]

    assert await keys("", None) == names
    assert await keys("a/", None) == ["a/1", "a/2"]
    assert await keys("", "a/1") == names[1:]
    assert await keys("", "a/\U0010ffff") == names[2:]
    assert await keys("", "k" * fv.MAX_PATH_BYTES + "\U0010ffff") == ["z"]
    assert await keys("", "k" * (fv.MAX_PATH_BYTES - 1) + "\U0010ffff") == ["z"]
    assert await keys("", "k" * (fv.MAX_PATH_BYTES - 1)) == names[4:]
    assert await keys("x" * 400, None) == []


async def test_concurrent_null_writes_through_two_nodes_leave_the_newest(
        cluster: InProcessCluster) -> None:
    """Each null write removes only older null versions: two at once must not remove each
    other's (which would lose the key)."""
    one, two = layer(cluster, 0), layer(cluster, 1)
    await one.create_bucket("race", OWNER)
    for round_ in range(5):
        await asyncio.gather(one.put_object("race", "k", body(b"one%d" % round_),
                                            meta=ObjectMeta()),
                             two.put_object("race", "k", body(b"two%d" % round_),
                                            meta=ObjectMeta()))
        assert await read_all(one, "race", "k") in (b"one%d" % round_, b"two%d" % round_)
    listed = await entries(two, "race", versions=True)
    assert [e.version_id for e in listed] == [NULL_VERSION]


async def test_hostile_arguments_are_s3_errors_never_crashes(cluster: InProcessCluster) -> None:
    one = layer(cluster, 0)
    await one.create_bucket("hostile", OWNER)
    obj = await one.put_object("hostile", "k", body(b"abc"), meta=ObjectMeta())

    async def drain(start: int, end: int) -> None:
        async for _ in one.read_object(obj, start, end):
            pass

    upload = await one.create_upload("hostile", "m", meta=ObjectMeta(), owner=OWNER)
    cases = [
        (drain(2, 3), "InvalidRange"), (drain(-1, 1), "InvalidRange"),
        (one.head_object("hostile", "k" * 1000), "KeyTooLongError"),
        (one.head_object("Hostile!", "k"), "InvalidBucketName"),
        (one.head_object("héllo", "k"), "InvalidBucketName"),
        (one.head_object("nobucket", "k"), "NoSuchBucket"),
        (one.delete_object("hostile", "k", "not a version"), "InvalidArgument"),
        (one.upload_part("hostile", "m", upload.upload_id, 0, body(b"x")), "InvalidArgument"),
        (one.upload_part("hostile", "m", upload.upload_id, 10_001, body(b"x")),
         "InvalidArgument"),
        (one.upload_part("hostile", "m", "../x", 1, body(b"x")), "NoSuchUpload"),
        (one.upload_part("hostile", "other", upload.upload_id, 1, body(b"x")), "NoSuchUpload"),
        (one.complete_upload("hostile", "m", upload.upload_id, []), "MalformedXML"),
        (one.put_object("hostile", "x", body(b"x"), meta=ObjectMeta("bad\ntype")),
         "InvalidArgument"),
    ]
    for coro, code in cases:
        assert (await code_of(coro)).code == code
    _, parts, more = await one.list_parts("hostile", "m", upload.upload_id, -5, -1)
    assert (parts, more) == ([], False)
    uploads, _ = await one.list_uploads("hostile", "\x00", "\x00", "??", 5)
    assert uploads == []


async def test_native_retention_never_prunes_an_s3_versioned_bucket(tmp_path: Path) -> None:
    cluster = await start_cluster(tmp_path, 3, gossip=False, admin_access_key="ROOT",
                                  admin_secret_key="root-secret", cluster_secret="c" * 16,
                                  file_retention_versions=1)
    try:
        s3 = [layer(cluster, i) for i in range(3)]
        files = cluster.nodes[0].svc.files.service
        await s3[0].create_bucket("kept", OWNER)
        await s3[0].set_versioning("kept", "Enabled")
        for i in range(3):
            await s3[i].put_object("kept", "k", body(b"v%d" % i), meta=ObjectMeta())
        await files.upload("kept", "k", body(b"native"), content_type="text/plain",
                           metadata={})
        await files.upload("plain", "k", body(b"a"), content_type="text/plain", metadata={})
        await files.upload("plain", "k", body(b"b"), content_type="text/plain", metadata={})
        for node in cluster.nodes:
            assert not (await node.svc.files.gc.run_once()).skipped
        assert len(await files.versions("kept", "k")) == 4
        assert len(await files.versions("plain", "k")) == 1  # the rule still applies there
    finally:
        await cluster.stop()


async def test_upload_part_copy_stores_a_range_of_another_object(
        cluster: InProcessCluster) -> None:
    one, two = layer(cluster, 0), layer(cluster, 1)
    await one.create_bucket("pcopy", OWNER)
    data = os.urandom(150_000)
    await one.put_object("pcopy", "src", body(data), meta=ObjectMeta())
    source = await two.head_object("pcopy", "src")
    upload = await two.create_upload("pcopy", "dst", meta=ObjectMeta(), owner=OWNER)
    part = await two.upload_part_copy("pcopy", "dst", upload.upload_id, 1, source, 100, 99_999)
    assert part.size == 99_900 and part.etag == hashlib.md5(data[100:100_000]).hexdigest()
    await one.complete_upload("pcopy", "dst", upload.upload_id, [(1, part.etag)])
    assert await read_all(one, "pcopy", "dst") == data[100:100_000]


async def test_the_abort_worker_aborts_only_uploads_older_than_the_max_age(
        cluster: InProcessCluster) -> None:
    one, two = layer(cluster, 0), layer(cluster, 1)
    await one.create_bucket("aged", OWNER)
    old = await one.create_upload("aged", "old", meta=ObjectMeta(), owner=OWNER)
    await one.upload_part("aged", "old", old.upload_id, 1, body(b"part"))
    clock = old.initiated_ms + int(two.multipart.max_age_s * 1000) + 1
    two.multipart.now_ms = lambda: clock
    young = await two.create_upload("aged", "young", meta=ObjectMeta(), owner=OWNER)
    assert await two.multipart.abort_expired() == 1
    uploads, _ = await one.list_uploads("aged", "", None, None, 10)
    assert [u.upload_id for u in uploads] == [young.upload_id]
    assert (await code_of(one.list_parts("aged", "old", old.upload_id, 0, 10))).code == \
        "NoSuchUpload"
    assert await one.multipart.chunk_references() == set()
    assert [w.name for w in two.workers()] == ["s3-multipart-abort"]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_versions_listing_matches_a_model_of_s3_versioning(
        cluster: InProcessCluster, seed: int) -> None:
    """Random PUTs and DELETEs while versioning goes from never-enabled to Enabled to
    Suspended (and back to Enabled), checked against S3's rules kept in a plain model:
    per key, the list of (version id, delete marker) oldest first."""
    rng = random.Random(seed)
    writer, reader = layer(cluster, 0), layer(cluster, 1 + seed % 2)
    bucket = f"model-{seed}"
    await writer.create_bucket(bucket, OWNER)
    model: dict[str, list[tuple[str, bool]]] = {}
    state = ""
    for step in range(40):
        if step in (10, 25, 33):
            state = {10: "Enabled", 25: "Suspended", 33: "Enabled"}[step]
            await writer.set_versioning(bucket, state)  # type: ignore[arg-type]
        key = rng.choice(["a", "b", "c/d"])
        history = model.setdefault(key, [])
        if rng.random() < 0.6:
            obj = await writer.put_object(bucket, key, body(b"%d" % step), meta=ObjectMeta())
            if state != "Enabled":
                history[:] = [v for v in history if v[0] != NULL_VERSION]
            history.append((obj.version_id, False))
            continue
        result = await writer.delete_object(bucket, key)
        if state == "Enabled":
            history.append((str(result.version_id), True))
        elif state == "Suspended":
            history[:] = [v for v in history if v[0] != NULL_VERSION]
            history.append((NULL_VERSION, True))
        else:
            history[:] = [v for v in history if v[0] != NULL_VERSION]
            if history and not history[-1][1]:
                history.append((NULL_VERSION, True))
    listed: dict[str, list[tuple[str, bool]]] = {}
    for e in await entries(reader, bucket, versions=True):
        listed.setdefault(e.key, []).append((e.version_id, e.delete_marker))
    assert listed == {k: v for k, v in model.items() if v}
    current = {e.key: e.delete_marker for e in await entries(reader, bucket, versions=False)}
    assert current == {k: v[-1][1] for k, v in model.items() if v}


async def test_a_get_right_after_a_delete_marker_was_removed_does_not_say_no_such_key(
        tmp_path: Path) -> None:
    """The S3 client suite saw it: a delete marker removed through node1 (acknowledged by a
    write quorum), then GetObject through node2 said NoSuchKey. One owner had not received the
    removal yet and still listed the marker, and the listing is a union of R owners. The
    current version must be confirmed by a quorum read of its own key, not taken from the
    listing alone. The stale owner is made by putting back its old record after the removal
    (anti-entropy is slowed so it cannot repair it during the test)."""
    cluster = await start_cluster(tmp_path, 3, gossip=False, admin_access_key="ROOT",
                                  admin_secret_key="root-secret", cluster_secret="c" * 16,
                                  chunk_size=65_536, ae_interval=3600)
    try:
        one = layer(cluster, 0)
        await one.create_bucket("vers", OWNER)
        await one.set_versioning("vers", "Enabled")
        put = await one.put_object("vers", "doc", body(b"the only version"), meta=META)
        marker = await one.delete_object("vers", "doc")
        assert marker.delete_marker and marker.version_id is not None
        stale = cluster.nodes[2]
        ref = next(r for r in await one.files.versions("vers", "doc") if r.deleted)
        storage_key = stale.svc.store.storage_key(system_name(ref.key))
        before = stale.engine.get("kv", storage_key)
        assert before is not None
        removed = await one.delete_object("vers", "doc", marker.version_id)
        assert removed.delete_marker  # the version removed was the marker
        await stale.engine.apply(lambda txn: txn.put("kv", storage_key, before))
        # Read through node1 with node2 out of reach: its quorum is node1 + the stale node3.
        cluster.network.partition(cluster.nodes[0].address, cluster.nodes[1].address)
        listed = await one.files.versions("vers", "doc")
        assert any(r.deleted for r in listed), "the stale owner no longer lists the marker"
        got = await one.head_object("vers", "doc")
        assert (got.version_id, got.delete_marker) == (put.version_id, False)
        assert await read_all(one, "vers", "doc") == b"the only version"
    finally:
        await cluster.stop()
