"""Hostile and malformed requests each get their documented 4xx problem, and the node keeps
serving (CONTRACT.md; foundation issue: "20+ malformed requests")."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from urllib.parse import urlsplit

import aiohttp
import pytest

from dfsring.cli.launcher import LocalCluster, NodeProcess
from tests.cluster import rawhttp
from tests.cluster.rawhttp import request as req

LIMIT = 4096  # --max-value-size for this test's node
BODY_TIMEOUT = 1.0  # --request-timeout, so the stalled-body case stays short

CASES: list[tuple[str, bytes, int, str]] = [
    ("empty key", req("PUT", "/v1/kv/b/", body=b"x"), 400, "invalid-key"),
    ("key over 1024 bytes", req("PUT", "/v1/kv/b/" + "k" * 1025, body=b"x"), 400,
     "invalid-key"),
    ("multibyte key over 1024 bytes", req("GET", "/v1/kv/b/" + "%C3%A9" * 513), 400,
     "invalid-key"),
    ("uppercase bucket", req("PUT", "/v1/kv/Bucket/k", body=b"x"), 400, "invalid-key"),
    ("bucket over 63 chars", req("GET", "/v1/kv/" + "b" * 64 + "/k"), 400, "invalid-key"),
    ("w not a number", req("PUT", "/v1/kv/b/k?w=abc", body=b"x"), 400, "bad-request"),
    ("w zero", req("PUT", "/v1/kv/b/k?w=0", body=b"x"), 400, "bad-request"),
    ("w above n", req("PUT", "/v1/kv/b/k?w=9", body=b"x"), 400, "bad-request"),
    ("r unknown word", req("GET", "/v1/kv/b/k?r=most"), 400, "bad-request"),
    ("bad consistency header", req("GET", "/v1/kv/b/k", headers={"Dfs-Consistency": "some"}),
     400, "bad-request"),
    ("garbage context", req("PUT", "/v1/kv/b/k", headers={"Dfs-Context": "%%%not-a-token"},
                            body=b"x"), 400, "invalid-context"),
    ("context of valid base64 but not ours", req("DELETE", "/v1/kv/b/k",
                                                  headers={"Dfs-Context": "aGVsbG8"}),
     400, "invalid-context"),
    ("unknown query parameter", req("GET", "/v1/kv/b/k?W=2"), 400, "bad-request"),
    ("parameter twice", req("PUT", "/v1/kv/b/k?w=1&w=1", body=b"x"), 400, "bad-request"),
    ("sloppy not a boolean", req("PUT", "/v1/kv/b/k?sloppy=maybe", body=b"x"), 400,
     "bad-request"),
    ("list limit zero", req("GET", "/v1/kv/b?limit=0"), 400, "bad-request"),
    ("list limit too large", req("GET", "/v1/kv/b?limit=10001"), 400, "bad-request"),
    ("list cursor garbage", req("GET", "/v1/kv/b?cursor=***"), 400, "bad-request"),
    ("value over the inline limit (declared)",
     req("PUT", "/v1/kv/b/big", body=b"x" * (LIMIT + 1)), 413, "payload-too-large"),
    ("value over the inline limit (chunked)",
     req("PUT", "/v1/kv/b/big", headers={"Transfer-Encoding": "chunked"})
     + f"{LIMIT + 1:x}\r\n".encode() + b"y" * (LIMIT + 1) + b"\r\n0\r\n\r\n", 413,
     "payload-too-large"),
    ("huge header", req("GET", "/v1/kv/b/k", headers={"X-Junk": "j" * 20_000}), 431,
     "headers-too-large"),
    ("too many headers", req("GET", "/v1/kv/b/k",
                             headers={f"X-H{i}": "v" for i in range(150)}), 431,
     "headers-too-large"),
    ("wrong method POST", req("POST", "/v1/kv/b/k", body=b"x"), 405, "method-not-allowed"),
    ("wrong method PATCH", req("PATCH", "/v1/kv/b/k", body=b"x"), 405, "method-not-allowed"),
    ("unknown path", req("GET", "/v2/kv/b/k"), 404, "no-such-route"),
    ("garbled request line", b"GARBAGE\r\n\r\n", 400, "malformed-request"),
    ("non-numeric Content-Length", req("PUT", "/v1/kv/b/k", headers={"Content-Length": "ten"}),
     400, "malformed-request"),
    ("content type with control characters",
     req("PUT", "/v1/kv/b/k", headers={"Content-Type": "text/plain\x01"}, body=b"x"), 400,
     "malformed-request"),
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    cluster = LocalCluster(1, tmp_path_factory.mktemp("bad-input"), n=1, r=1, w=1,
                           extra_args=("--max-value-size", str(LIMIT),
                                       "--request-timeout", str(BODY_TIMEOUT)))
    with cluster:
        yield cluster.nodes[0]


def _authed(node: NodeProcess, payload: bytes) -> bytes:
    """The raw request with the cluster's credentials: these requests mean to reach a handler
    (or fail to parse before any could), never to be refused as unauthenticated."""
    return rawhttp.with_headers(payload, node.auth_headers)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


async def _still_serving(node: NodeProcess) -> None:
    key = f"{node.url}/v1/kv/alive/{secrets.token_hex(8)}"
    async with aiohttp.ClientSession(headers=node.auth_headers) as http:
        async with http.put(key, data=b"ok") as r:
            assert r.status == 204
        async with http.get(key) as r:
            assert r.status == 200 and await r.read() == b"ok"


def _assert_problem(resp: rawhttp.RawResponse, status: int, slug: str) -> None:
    assert resp.status == status, resp.body
    assert resp.headers["content-type"].startswith("application/problem+json")
    doc = resp.json()
    assert doc["status"] == status
    assert str(doc["type"]).endswith("/" + slug), doc
    assert doc["request_id"] == resp.headers["dfs-request-id"]
    assert doc["detail"] and doc["title"]


@pytest.mark.parametrize(("payload", "status", "slug"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_malformed_request_gets_documented_problem(node, payload: bytes, status: int,
                                                         slug: str) -> None:
    host, port = _host_port(node.url)
    resp = await rawhttp.send(host, port, _authed(node, payload))
    _assert_problem(resp, status, slug)
    await _still_serving(node)


async def test_an_expect_header_that_is_not_utf8_is_417_not_a_500_with_a_traceback(
        node) -> None:
    """The HTTP fuzz suite found it: aiohttp's default expect handler echoed the Expect value
    into its 417 text, and a value that is not UTF-8 made that a 500 with a traceback."""
    host, port = _host_port(node.url)
    payload = req("PUT", "/v1/kv/b/expect", body=b"x").replace(
        b"\r\n\r\n", b"\r\nExpect: \xff\xfe-continue\r\n\r\n", 1)
    resp = await rawhttp.send(host, port, _authed(node, payload))
    assert resp.status == 417, (resp.status, resp.body)
    assert "Traceback" not in node.log_tail(200)
    await _still_serving(node)


async def test_truncated_chunked_body_is_400(node) -> None:
    host, port = _host_port(node.url)
    payload = (req("PUT", "/v1/kv/b/trunc", headers={"Transfer-Encoding": "chunked"})
               + b"5\r\nhelloXX\r\nzz\r\n\r\n")
    resp = await rawhttp.send(host, port, _authed(node, payload))
    assert resp.status == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
    await _still_serving(node)


async def test_body_cut_by_client_close_stores_nothing(node) -> None:
    """A client that closes mid-body cannot read any answer; the write must simply not
    happen, and the node must carry on."""
    host, port = _host_port(node.url)
    payload = req("PUT", "/v1/kv/b/cut", content_length=100) + b"only ten b"
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        await rawhttp.send(host, port, _authed(node, payload), half_close=True)
    async with aiohttp.ClientSession(headers=node.auth_headers) as http, \
            http.get(f"{node.url}/v1/kv/b/cut") as r:
        assert r.status == 404
    await _still_serving(node)


async def test_stalled_body_is_408(node) -> None:
    host, port = _host_port(node.url)
    payload = req("PUT", "/v1/kv/b/stall", content_length=100) + b"partial"
    resp = await rawhttp.send(host, port, _authed(node, payload), wait_s=BODY_TIMEOUT + 10)
    _assert_problem(resp, 408, "http-error")
    await _still_serving(node)


async def _bad_request_count(url: str) -> float:
    series = 'dfsring_http_requests_total{method="GET",route="/v1/kv/{bucket}/{key}",status="400"}'
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(series):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_rejections_are_counted_in_metrics(node) -> None:
    host, port = _host_port(node.url)
    before = await _bad_request_count(node.url)
    for _ in range(3):
        await rawhttp.send(host, port, _authed(node, req("GET", "/v1/kv/b/k?r=most")))
    assert await _bad_request_count(node.url) == before + 3


async def test_internal_endpoints_refuse_outsiders_and_malformed_messages(node) -> None:
    """Without the cluster secret: 401. With it but a garbage message: 400. Still serving."""
    from dfsring.transport.messages import ReplicaRead
    from dfsring.transport.rpc import SECRET_HEADER

    url = f"http://{node.peer_address}/internal/v1/replica-read"
    good = ReplicaRead(b"b", b"k").encode()
    secret = node.spec.env["DFSRING_CLUSTER_SECRET"]
    async with aiohttp.ClientSession(headers=node.auth_headers) as http:
        for headers in ({}, {SECRET_HEADER: "wrong"}):
            async with http.post(url, data=good, headers=headers) as r:
                assert r.status == 401
        for junk in (b"\xc1\xc1", b"\x93\x01\xa4nope\x01", b"\x92\x01\xaereplica-read"):
            async with http.post(url, data=junk, headers={SECRET_HEADER: secret}) as r:
                assert r.status == 400
        async with http.post(url, data=good, headers={SECRET_HEADER: secret}) as r:
            assert r.status == 200
    await _still_serving(node)


async def test_hostile_hint_messages_are_refused_and_store_nothing(node) -> None:
    """A peer's hinted write with an impossible target, or a handoff batch with records that
    do not decode or lie outside every partition: 400 each, no hint kept, still serving."""
    from dfsring.transport.messages import HandoffBatch, HintedWrite
    from dfsring.transport.rpc import SECRET_HEADER

    secret = {SECRET_HEADER: node.spec.env["DFSRING_CLUSTER_SECRET"]}
    bad = [
        ("hinted-write", HintedWrite(b"b", b"k", b"\x00garbage", "node9").encode()),
        ("hinted-write", HintedWrite(b"b", b"k", b"\x90", "x" * 300).encode()),
        ("hinted-write", HintedWrite(b"b", b"k", b"\x90", "").encode()),
        ("handoff-batch", HandoffBatch(((b"\x00\x01k", b"\x07junk"),), 1).encode()),
        ("handoff-batch", HandoffBatch(((b"\xff\xffk", b"\x00\x90"),), 1).encode()),
        ("handoff-batch", HandoffBatch(((b"", b"\x00\x90"),), 1).encode()),
    ]
    async with aiohttp.ClientSession(headers=node.auth_headers) as http:
        for kind, body in bad:
            async with http.post(f"http://{node.peer_address}/internal/v1/{kind}", data=body,
                                 headers=secret) as r:
                assert r.status == 400, (kind, body, r.status, await r.text())
        async with http.get(f"{node.url}/v1/node/stats") as r:
            assert (await r.json())["hints_pending"] == 0
    await _still_serving(node)


async def test_malformed_gossip_views_are_refused_as_from_wire_refuses_them(node) -> None:
    """Gossip decodes through membership.View.from_wire: an ack2 naming a node twice, or a
    syn whose removed ids are malformed, is a 400 with from_wire's reason and a log line,
    nothing of it is merged, and the node keeps serving."""
    from dfsring.core.membership import MemberState, Status
    from dfsring.transport.messages import ErrorReply, GossipAck2, GossipSyn, decode
    from dfsring.transport.rpc import SECRET_HEADER

    secret = {SECRET_HEADER: node.spec.env["DFSRING_CLUSTER_SECRET"]}
    twice = MemberState("ghost", "127.0.0.1:9", "z", Status.UP, 1, 1, 0).to_wire()
    bad = [
        ("gossip-ack2", GossipAck2("", (twice, twice), None), "member entries name a node twice"),
        ("gossip-syn", GossipSyn("", "ghost", (), 0, "", ("",)), "node id"),
        ("gossip-syn", GossipSyn("", "ghost", (), 0, "", ("x", "x")), "node ids name a node"),
    ]
    async with aiohttp.ClientSession(headers=node.auth_headers) as http:
        for kind, msg, reason in bad:
            async with http.post(f"http://{node.peer_address}/internal/v1/{kind}",
                                 data=msg.encode(), headers=secret) as r:
                reply = decode(await r.read(), ErrorReply)
                assert (r.status, reply.code) == (400, "bad-request"), (kind, reply)
                assert reason in reply.detail, (kind, reply.detail)
        async with http.get(f"{node.url}/v1/cluster/members") as r:
            assert "ghost" not in await r.text()
    assert "malformed peer message" in node.log_path.read_text()
    await _still_serving(node)


async def test_peer_message_on_client_port_is_not_served(node) -> None:
    """Issue 18: peer messages have their own listener (--peer-port). The client port does
    not route RPC_PATH at all, even with the right cluster secret and root credentials: a 404
    like any unknown route, and nothing of the message is acted on."""
    from dfsring.transport.messages import ReplicaRead
    from dfsring.transport.rpc import RPC_PATH, SECRET_HEADER

    headers = {SECRET_HEADER: node.spec.env["DFSRING_CLUSTER_SECRET"], **node.auth_headers}
    good = ReplicaRead(b"b", b"k").encode()
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{node.url}{RPC_PATH}replica-read", data=good) as r:
            assert r.status == 404, await r.text()
            assert r.headers["content-type"].startswith("application/problem+json")
        async with http.post(f"http://{node.peer_address}{RPC_PATH}replica-read",
                             data=good) as r:
            assert r.status == 200  # the same message on the peer listener is served
        async with http.get(f"http://{node.peer_address}/v1/kv/b/k") as r:
            assert r.status == 404  # and the peer listener serves no client route
    await _still_serving(node)
