"""Peer writes pass the same checks as a client's (issue 23 part 1).

Each test sends one hostile peer message, with the right secret, to a node of an in-process
cluster through its PeerService (the adapter behind /internal/v1/{kind}), and asserts that it
is refused with a 4xx ErrorReply and that nothing was stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfsring.core import vclock
from dfsring.core.keys import object_name, partition_of, storage_key
from dfsring.core.vclock import Sibling, Versions, VersionVector
from dfsring.storage.localstore import encode_record
from dfsring.testing.localcluster import InProcessCluster, LocalNode, start_cluster
from dfsring.transport.messages import (
    CoordinateWrite,
    ErrorReply,
    HandoffBatch,
    HintedWrite,
    Message,
    ReplicaWrite,
)

pytestmark = pytest.mark.component
LIMIT = 4096  # --max-value-size of these nodes
ACTOR = "n1.00000001"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    cluster = await start_cluster(tmp_path, 3, max_value_size=LIMIT)
    try:
        yield cluster
    finally:
        await cluster.stop()


async def _send(node: LocalNode, msg: Message) -> tuple[int, Message]:
    answer = await node.svc.peer.answer(type(msg), msg.encode(), (), peer="test")
    return answer.status, answer.message


def _versions(value: bytes, ctype: str) -> bytes:
    dot = (ACTOR, 1)
    return vclock.encode_versions(Versions(VersionVector((dot,)),
                                           (Sibling(dot, value, ctype, 1_700_000_000_000),)))


def _owner(cluster: InProcessCluster, bucket: str, key: str) -> LocalNode:
    return cluster.node(cluster.owners(object_name(bucket, key))[0])


def _nothing_stored(cluster: InProcessCluster, bucket: str, key: str) -> bool:
    name = object_name(bucket, key)
    return all(not n.svc.store.get(name).siblings for n in cluster.nodes)


async def _refused(node: LocalNode, msg: Message) -> ErrorReply:
    status, reply = await _send(node, msg)
    assert 400 <= status < 500 and isinstance(reply, ErrorReply), (status, reply)
    return reply


def _coordinate(bucket: str, key: str, value: bytes, ctype: str) -> CoordinateWrite:
    return CoordinateWrite(bucket.encode(), key.encode(), "", value, ctype, 1, True, 1)


async def test_coordinate_write_with_crlf_content_type_is_refused(
        cluster: InProcessCluster) -> None:
    node = _owner(cluster, "b", "crlf")
    await _refused(node, _coordinate("b", "crlf", b"v", "text/plain\r\nX-Evil: 1"))
    assert _nothing_stored(cluster, "b", "crlf")


async def test_coordinate_write_past_max_value_size_is_refused(
        cluster: InProcessCluster) -> None:
    node = _owner(cluster, "b", "big")
    reply = await _refused(node, _coordinate("b", "big", b"x" * (LIMIT + 1), "text/plain"))
    assert reply.code == "payload-too-large"
    assert _nothing_stored(cluster, "b", "big")


async def test_coordinate_write_into_a_reserved_bucket_is_refused(
        cluster: InProcessCluster) -> None:
    node = _owner(cluster, "x..internal", "k")
    reply = await _refused(node, _coordinate("x..internal", "k", b"v", "text/plain"))
    assert reply.code in ("invalid-key", "bad-request")
    assert _nothing_stored(cluster, "x..internal", "k")


async def test_coordinate_write_with_nul_in_key_is_refused(cluster: InProcessCluster) -> None:
    node = _owner(cluster, "b", "a\x00b")
    await _refused(node, _coordinate("b", "a\x00b", b"v", "text/plain"))
    assert _nothing_stored(cluster, "b", "a\x00b")


async def test_replica_write_with_crlf_content_type_is_refused(
        cluster: InProcessCluster) -> None:
    node = _owner(cluster, "b", "rw")
    await _refused(node, ReplicaWrite(b"b", b"rw", _versions(b"v", "a\r\nb"), 1))
    assert _nothing_stored(cluster, "b", "rw")


async def test_replica_write_past_max_value_size_is_refused(
        cluster: InProcessCluster) -> None:
    node = _owner(cluster, "b", "rwbig")
    await _refused(node, ReplicaWrite(b"b", b"rwbig", _versions(b"x" * (LIMIT + 1), "t/x"), 1))
    assert _nothing_stored(cluster, "b", "rwbig")


async def test_hinted_write_past_max_value_size_is_refused(cluster: InProcessCluster) -> None:
    name = object_name("b", "hint")
    owner = cluster.owners(name)[0]
    fallback = next(n for n in cluster.nodes if n.node_id != owner)
    await _refused(fallback, HintedWrite(b"b", b"hint", _versions(b"x" * (LIMIT + 1), "t/x"),
                                         owner))
    assert _nothing_stored(cluster, "b", "hint")


async def test_handoff_batch_with_crlf_content_type_is_refused(
        cluster: InProcessCluster) -> None:
    name = object_name("b", "handoff")
    node = _owner(cluster, "b", "handoff")
    bits = node.svc.store.partition_bits
    skey = storage_key(partition_of(b"b", b"handoff", bits), b"b", b"handoff")
    bad = vclock.decode_versions(_versions(b"v", "x\r\ny"))
    await _refused(node, HandoffBatch(((skey, encode_record(name, bad)),), 1))
    assert _nothing_stored(cluster, "b", "handoff")


async def test_handoff_batch_into_a_reserved_bucket_is_refused(
        cluster: InProcessCluster) -> None:
    name = object_name("x..y", "k")
    node = _owner(cluster, "x..y", "k")
    bits = node.svc.store.partition_bits
    skey = storage_key(partition_of(b"x..y", b"k", bits), b"x..y", b"k")
    good = vclock.decode_versions(_versions(b"v", "text/plain"))
    await _refused(node, HandoffBatch(((skey, encode_record(name, good)),), 1))
    assert _nothing_stored(cluster, "x..y", "k")
