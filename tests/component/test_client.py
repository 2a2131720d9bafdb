"""dfsring.client against a real single node (n=1), plus a stub server for the answers a single
node cannot give on demand (quorum not met, a lost answer)."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dfsring.cli.launcher import LocalCluster, free_port
from dfsring.client import (
    BadRequestError,
    ConnectionFailed,
    DfsClient,
    NotFoundError,
    OutcomeUnknown,
    PayloadTooLargeError,
    QuorumNotMetError,
    SiblingsError,
    SyncDfsClient,
)
from dfsring.client.credentials import Credentials

pytestmark = pytest.mark.component

REQUEST_ID = re.compile(r"[0-9a-f]{16}")


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(1, tmp_path_factory.mktemp("client"), n=1, r=1, w=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def node_url(one_node: LocalCluster) -> str:
    return one_node.urls[0]


@pytest.fixture(scope="module")
def creds(one_node: LocalCluster) -> Credentials:
    return one_node.credentials


@pytest.fixture
async def db(node_url: str, creds: Credentials) -> AsyncIterator[DfsClient]:
    async with DfsClient(node_url, timeout=5.0, credentials=creds) as client:
        yield client


@pytest.fixture
def bucket() -> str:
    """A bucket of this test's own, so tests sharing the node never see each other's keys."""
    return f"t-{secrets.token_hex(4)}"


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_put_get_delete_round_trip(db: DfsClient, bucket: str) -> None:
    written = await db.put(bucket, "greeting", b"hello", content_type="text/plain")
    assert (written.acks, written.n, written.hinted) == (1, 1, 0)
    assert written.context

    got = await db.get(bucket, "greeting")
    assert got is not None and not got.has_siblings
    assert (got.value, got.content_type) == (b"hello", "text/plain")
    assert got.values[0].modified is not None

    deleted = await db.delete(bucket, "greeting", context=got.context)
    assert deleted.acks == 1
    assert await db.get(bucket, "greeting") is None
    result, tombstone_context = await db.get_with_context(bucket, "greeting")
    assert result is None and tombstone_context


async def test_absent_key_is_none_without_context(db: DfsClient, bucket: str) -> None:
    assert await db.get(bucket, "never-written") is None
    assert await db.get_with_context(bucket, "never-written") == (None, None)


async def test_keys_with_slashes_and_reserved_characters_round_trip(
    db: DfsClient, bucket: str
) -> None:
    key = "dir/../a b?c#d%e/é"
    await db.put(bucket, key, b"odd")
    got = await db.get(bucket, key)
    assert got is not None and got.value == b"odd"
    assert [k async for k in db.list_keys(bucket)] == [key]


async def test_same_context_writes_are_siblings_and_update_resolves_them(
    db: DfsClient, bucket: str
) -> None:
    await db.put(bucket, "cart", b"milk")
    seen = await db.get(bucket, "cart")
    assert seen is not None
    await db.put(bucket, "cart", b"milk,apple", context=seen.context)
    await db.put(bucket, "cart", b"milk,bread", context=seen.context)

    both = await db.get(bucket, "cart")
    assert both is not None and both.has_siblings
    assert sorted(v.value for v in both.values) == [b"milk,apple", b"milk,bread"]
    with pytest.raises(SiblingsError):
        _ = both.value
    with pytest.raises(SiblingsError):
        await db.update(bucket, "cart", lambda values: values[0])

    def union(values: list[bytes]) -> bytes:
        return b",".join(sorted({item for v in values for item in v.split(b",")}))

    await db.update(bucket, "cart", lambda values: values[0] + b",eggs", resolve=union)
    final = await db.get(bucket, "cart")
    assert final is not None and final.value == b"apple,bread,milk,eggs"


async def test_update_of_an_absent_key_starts_from_nothing(db: DfsClient, bucket: str) -> None:
    def increment(values: list[bytes]) -> bytes:
        return str(int(values[0]) + 1 if values else 1).encode()

    for _ in range(3):
        await db.update(bucket, "counter", increment)
    got = await db.get(bucket, "counter")
    assert got is not None and got.value == b"3"


async def test_list_keys_follows_cursors(db: DfsClient, bucket: str) -> None:
    names = [f"k{i:02d}" for i in range(25)]
    await asyncio.gather(*(db.put(bucket, name, b"v") for name in names))
    await db.put(bucket, "other", b"v")

    first, cursor = await db.list_page(bucket, "k", limit=10)
    assert first == names[:10] and cursor is not None
    assert [k async for k in db.list_keys(bucket, "k", limit=10)] == names
    assert [k async for k in db.list_keys(bucket, "k", limit=10, max_keys=12)] == names[:12]
    assert [k async for k in db.list_keys(bucket, limit=10)] == [*names, "other"]


async def test_problems_map_to_errors_with_request_id(db: DfsClient, bucket: str) -> None:
    with pytest.raises(BadRequestError) as bad_name:
        await db.put("Not A Bucket", "k", b"v")
    assert bad_name.value.status == 400
    assert bad_name.value.slug == "invalid-key"
    assert REQUEST_ID.fullmatch(bad_name.value.request_id or "")
    assert bad_name.value.request_id in str(bad_name.value)

    with pytest.raises(BadRequestError) as bad_context:
        await db.put(bucket, "k", b"v", context="not-a-context")
    assert bad_context.value.slug == "invalid-context"

    with pytest.raises(BadRequestError) as bad_knob:
        await db.get(bucket, "k", r=2)  # more than N=1
    assert bad_knob.value.slug == "bad-request" and bad_knob.value.detail

    with pytest.raises(PayloadTooLargeError) as too_large:
        await db.put(bucket, "big", b"x" * ((1 << 20) + 1))
    assert too_large.value.status == 413


async def test_unknown_route_is_an_error_not_a_missing_key(node_url: str, bucket: str,
                                                          creds: Credentials) -> None:
    async with DfsClient(f"{node_url}/not-the-api", credentials=creds) as wrong:
        with pytest.raises(NotFoundError) as missing:
            await wrong.get(bucket, "k")
    assert missing.value.slug == "no-such-route"


async def test_fails_over_from_a_dead_url_to_a_live_one(node_url: str, bucket: str,
                                                        creds: Credentials) -> None:
    dead = dead_url()
    async with DfsClient([dead, node_url], timeout=5.0, credentials=creds) as client:
        await client.put(bucket, "k", b"v")
        assert client.url == node_url
        got = await client.get(bucket, "k")
        assert got is not None and got.value == b"v"

    other_dead = dead_url()
    async with DfsClient(f"{dead},{other_dead}", timeout=5.0, credentials=creds) as client:
        with pytest.raises(ConnectionFailed) as failed:
            await client.get(bucket, "k")
    assert set(failed.value.failures) == {dead, other_dead}


# --- a stub node, for answers a healthy single node does not give -----------------------------


class Stub:
    """Answers PUTs with ``put_status`` (503 quorum-not-met by default) and GETs with 404,
    or never answers at all when ``hang`` is set; counts what it received."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.hang = False
        self.never = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(request.method)
        if self.hang:
            await self.never.wait()
        if request.method == "PUT":
            return web.json_response(
                {
                    "type": "https://dfsring.dev/problems/quorum-not-met",
                    "title": "Quorum not met",
                    "status": 503,
                    "detail": "quorum not met: needed 2, acked 1",
                    "request_id": "00112233aabbccdd",
                    "needed": 2,
                    "acked": 1,
                    "replicas": {"n2": "timeout"},
                },
                status=503,
                content_type="application/problem+json",
            )
        return web.json_response(
            {"type": "https://dfsring.dev/problems/not-found", "status": 404, "title": "Not found"},
            status=404,
            content_type="application/problem+json",
        )


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Stub, str]]:
    state = Stub()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield state, str(server.make_url("")).rstrip("/")
        state.never.set()  # let hung handlers finish, so the server stops at once


async def test_quorum_not_met_carries_needed_and_acked(stub: tuple[Stub, str]) -> None:
    state, url = stub
    async with DfsClient(url) as client:
        with pytest.raises(QuorumNotMetError) as failed:
            await client.put("b", "k", b"v")
        error = failed.value
        assert (error.status, error.needed, error.acked) == (503, 2, 1)
        assert error.replicas == {"n2": "timeout"}
        assert error.request_id == "00112233aabbccdd"

        state.calls.clear()
        with pytest.raises(QuorumNotMetError):
            await client.update("b", "k", lambda values: b"new", retries=3)
    assert state.calls == ["GET", "PUT"], "a write that may have landed is never re-applied"


async def test_a_lost_write_answer_is_not_retried_but_a_read_fails_over(
    stub: tuple[Stub, str], node_url: str, bucket: str, creds: Credentials
) -> None:
    state, url = stub
    state.hang = True
    async with DfsClient([url, node_url], timeout=0.5, credentials=creds) as client:
        with pytest.raises(OutcomeUnknown):
            await client.put(bucket, "k", b"v")
        assert state.calls == ["PUT"]
        assert await client.get(bucket, "k") is None  # timed out on the stub, then the node
        assert client.url == node_url


# --- the blocking wrapper ----------------------------------------------------------------------


def test_sync_client_round_trip(node_url: str, bucket: str, creds: Credentials) -> None:
    with SyncDfsClient([dead_url(), node_url], credentials=creds) as client:
        client.put(bucket, "a", b"1")
        client.update(bucket, "a", lambda values: values[0] + b"2")
        got = client.get(bucket, "a")
        assert got is not None and got.value == b"12"
        assert list(client.list_keys(bucket, limit=1)) == ["a"]
        assert client.health()["status"] == "ok"
        assert client.stats()["keys"] >= 1
    with pytest.raises(RuntimeError, match="closed"):
        client.get(bucket, "a")


async def test_sync_client_refuses_to_block_an_event_loop(node_url: str,
                                                          creds: Credentials) -> None:
    with SyncDfsClient(node_url, credentials=creds) as client, \
            pytest.raises(RuntimeError, match="DfsClient"):
        client.get("b", "k")
