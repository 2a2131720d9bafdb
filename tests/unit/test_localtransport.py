"""LocalTransport: delivery by address, the error translation shared with the HTTP adapter,
and the injected faults (partition, loss, delay) with their deadline rules."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dfsring.core.contenthash import chunk_id
from dfsring.files import replica as files_replica
from dfsring.files.chunkstore import ChunkStore
from dfsring.foundation import errors
from dfsring.gossip import WrongCluster
from dfsring.transport import (
    PeerRefused,
    PeerService,
    PeerUnavailable,
    Pieces,
    Reply,
    peer_error,
)
from dfsring.transport.local import LocalNetwork
from dfsring.transport.messages import (
    Ack,
    ChunkData,
    ChunkGet,
    ChunkPut,
    ListKeys,
    ReplicaRead,
    ReplicaReadReply,
)

A, B, C = "127.0.0.1:7001", "127.0.0.2:7002", "127.0.0.3:7003"
QUICK_S = 0.3  # "at once", with room for a busy CI machine


class Replica:
    """A stand-in node answering ReplicaRead, recording what it was sent."""

    def __init__(self, fail: Exception | None = None, wait: asyncio.Event | None = None) -> None:
        self.seen: list[ReplicaRead] = []
        self.fail = fail
        self.wait = wait

    async def read(self, msg: ReplicaRead, _: Pieces) -> Reply:
        self.seen.append(msg)
        if self.wait is not None:
            await self.wait.wait()
        if self.fail is not None:
            raise self.fail
        return ReplicaReadReply(None)

    def service(self) -> PeerService:
        return PeerService({ReplicaRead: self.read})


def network_of(**nodes: Replica) -> LocalNetwork:
    net = LocalNetwork(seed=7)
    for address, node in zip((A, B, C), nodes.values(), strict=False):
        net.attach(address, node.service())
    return net


async def timed(coro: object) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        await coro  # type: ignore[misc]
    except Exception as exc:
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


async def test_a_call_reaches_the_handler_as_a_decoded_message_and_returns_its_reply() -> None:
    b = Replica()
    net = network_of(a=Replica(), b=b)
    reply = await net.transport(A).call(B, ReplicaRead(b"bk", b"key"), ReplicaReadReply, 1.0)
    assert reply == ReplicaReadReply(None)
    assert b.seen == [ReplicaRead(b"bk", b"key")]


async def test_domain_errors_come_back_as_peer_refused_with_their_code_and_figures() -> None:
    net = network_of(a=Replica(), b=Replica(fail=errors.QuorumNotMet(2, 1)))
    with pytest.raises(PeerRefused) as caught:
        await net.transport(A).call(B, ReplicaRead(b"b", b"k"), ReplicaReadReply, 1.0)
    reply = caught.value.reply
    assert (reply.code, reply.needed, reply.acked) == ("quorum-not-met", 2, 1)


async def test_a_kind_the_peer_does_not_serve_is_refused_as_no_such_route() -> None:
    net = network_of(a=Replica(), b=Replica())
    with pytest.raises(PeerRefused, match="no-such-route"):
        await net.transport(A).call(B, ListKeys(b"b", b"", b"", 10), Ack, 1.0)


async def test_a_handler_bug_is_an_unavailable_peer_as_an_http_500_would_be() -> None:
    net = network_of(a=Replica(), b=Replica(fail=KeyError("oops")))
    with pytest.raises(PeerUnavailable, match="500"):
        await net.transport(A).call(B, ReplicaRead(b"b", b"k"), ReplicaReadReply, 1.0)


@pytest.mark.parametrize(("exc", "code"), [
    (errors.StaleRing("x"), "stale-ring"),
    (errors.HintsFull("x"), "hints-full"),
    (errors.InvalidKey("x"), "invalid-key"),
    (errors.TooManySiblings(5, 4), "too-many-siblings"),
    (errors.PayloadTooLarge(10, 5), "payload-too-large"),
    (errors.CorruptValue("t", b"k"), "corrupt-value"),
    (errors.StorageClosed("x"), "internal"),
    (WrongCluster("x"), "wrong-cluster"),
    (ValueError("x"), "bad-request"),
])
def test_every_error_has_its_peer_reply_by_one_lookup(exc: Exception, code: str) -> None:
    reply = peer_error(exc)
    assert reply is not None and reply.code == code


def test_an_error_that_is_a_bug_has_no_peer_reply() -> None:
    assert peer_error(KeyError("x")) is None


async def test_a_partition_refuses_at_once_both_ways_until_healed() -> None:
    net = network_of(a=Replica(), b=Replica(), c=Replica())
    net.partition(A, B)
    for src, dst in ((A, B), (B, A)):
        elapsed, exc = await timed(net.transport(src).call(dst, ReplicaRead(b"b", b"k"),
                                                           ReplicaReadReply, 5.0))
        assert isinstance(exc, PeerUnavailable) and elapsed < QUICK_S
    await net.transport(A).call(C, ReplicaRead(b"b", b"k"), ReplicaReadReply, 1.0)
    net.heal()
    await net.transport(A).call(B, ReplicaRead(b"b", b"k"), ReplicaReadReply, 1.0)


async def test_an_isolated_node_reaches_nobody_and_a_detached_one_refuses() -> None:
    net = network_of(a=Replica(), b=Replica(), c=Replica())
    net.isolate(C)
    for src, dst in ((C, A), (B, C)):
        with pytest.raises(PeerUnavailable):
            await net.transport(src).call(dst, ReplicaRead(b"b", b"k"), ReplicaReadReply, 1.0)
    net.detach(B)
    with pytest.raises(PeerUnavailable, match="refused"):
        await net.transport(A).call(B, ReplicaRead(b"b", b"k"), ReplicaReadReply, 1.0)


async def test_a_reply_is_lost_when_a_partition_is_raised_while_the_peer_works() -> None:
    gate = asyncio.Event()
    b = Replica(wait=gate)
    net = network_of(a=Replica(), b=b)
    call = asyncio.ensure_future(net.transport(A).call(B, ReplicaRead(b"b", b"k"),
                                                       ReplicaReadReply, 1.0))
    while not b.seen:  # bounded by the call's own deadline
        await asyncio.sleep(0)
        assert not call.done()
    net.partition(A, B)
    gate.set()
    with pytest.raises(PeerUnavailable):
        await call


async def test_a_dropped_call_times_out_at_its_deadline_and_never_reaches_the_peer() -> None:
    b = Replica()
    net = network_of(a=Replica(), b=b)
    net.drop(A, B, 1.0)
    elapsed, exc = await timed(net.transport(A).call(B, ReplicaRead(b"b", b"k"),
                                                     ReplicaReadReply, 0.1))
    assert isinstance(exc, PeerUnavailable) and 0.1 <= elapsed < 0.1 + QUICK_S
    assert b.seen == []


def test_loss_is_reproducible_from_the_seed() -> None:
    async def pattern() -> list[bool]:
        net = network_of(a=Replica(), b=Replica())
        net.drop(A, B, 0.5)
        outcome = []
        for _ in range(20):
            _, exc = await timed(net.transport(A).call(B, ReplicaRead(b"b", b"k"),
                                                       ReplicaReadReply, 0.005))
            outcome.append(exc is None)
        return outcome

    first, second = asyncio.run(pattern()), asyncio.run(pattern())
    assert first == second and any(first) and not all(first)


async def test_a_delay_is_paid_each_way_and_a_delay_past_the_deadline_is_a_timeout() -> None:
    net = network_of(a=Replica(), b=Replica())
    net.delay(A, B, 0.03)
    elapsed, exc = await timed(net.transport(B).call(A, ReplicaRead(b"b", b"k"),
                                                     ReplicaReadReply, 1.0))
    assert exc is None and 0.06 <= elapsed < 0.06 + QUICK_S
    elapsed, exc = await timed(net.transport(A).call(B, ReplicaRead(b"b", b"k"),
                                                     ReplicaReadReply, 0.04))
    assert isinstance(exc, PeerUnavailable) and elapsed < 0.04 + QUICK_S


def test_faults_are_checked() -> None:
    net = LocalNetwork()
    with pytest.raises(ValueError):
        net.drop(A, B, 1.5)
    with pytest.raises(ValueError):
        net.delay(A, B, -1)


async def test_chunks_travel_as_payload_both_ways(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks", durable=False)
    store.open()
    net = LocalNetwork()
    net.attach(B, PeerService(files_replica.handlers(store)))
    data = b"chunk bytes " * 100
    cid = chunk_id(data)
    transport = net.transport(A)
    ack = await transport.call_with_payload(B, ChunkPut(cid, len(data), False), data, Ack, 1.0)
    assert ack.changed and store.get(cid) == data
    reply, payload = await transport.call_for_payload(B, ChunkGet(cid), ChunkData, 1.0)
    assert reply.size == len(data) and bytes(payload) == data
    with pytest.raises(PeerRefused, match="bad-request"):  # the bytes must match the id
        await transport.call_with_payload(B, ChunkPut(chunk_id(b"xyz"), 3, False), b"abc",
                                          Ack, 1.0)
