"""The public edge against hostile input (issue 23 parts 4 and 6), on one real node (N=1).

Requests go over a raw socket (tests/cluster/rawhttp.py) where a client library would
normalise them: non-ASCII header bytes, undecodable percent escapes, HTTP/0.9, transfer
codings. Each test is named after the failure it pins; none may ever see a 5xx.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import quote, urlsplit

import pytest

from dfsring.cli.launcher import LocalCluster
from tests.cluster import rawhttp

pytestmark = pytest.mark.component


class Edge(NamedTuple):
    host: str
    port: int
    secret: str
    peer_port: int
    auth: dict[str, str]  # the root key's header: these requests mean to reach a handler


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with LocalCluster(1, tmp_path_factory.mktemp("edge"), n=1, r=1, w=1) as cluster:
        url = urlsplit(cluster.urls[0])
        assert url.hostname is not None and url.port is not None
        peer_port = int(cluster.nodes[0].peer_address.rpartition(":")[2])
        yield Edge(url.hostname, url.port, cluster.secret, peer_port, cluster.auth_headers)


def _raw(method: str, target: bytes, headers: dict[bytes, bytes] | None = None,
         body: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    hdrs = {b"Host": b"localhost", b"Connection": b"close", **(headers or {})}
    if body and b"Transfer-Encoding" not in hdrs:
        hdrs[b"Content-Length"] = str(len(body)).encode()
    head = method.encode() + b" " + target + b" " + version + b"\r\n"
    return head + b"".join(k + b": " + v + b"\r\n" for k, v in hdrs.items()) + b"\r\n" + body


async def _send(node: Edge, payload: bytes) -> rawhttp.RawResponse:
    return await rawhttp.send(node.host, node.port, rawhttp.with_headers(payload, node.auth))


def _bucket() -> str:
    return f"e-{secrets.token_hex(4)}"


async def test_non_ascii_cluster_secret_header_is_401_not_500(
        node: Edge) -> None:
    resp = await rawhttp.send(node.host, node.peer_port, _raw(
        "POST", b"/internal/v1/replica-read",
        {b"Dfs-Cluster-Secret": "s\u00e9cr\u00e8t".encode() + b"\xff\xfe"}, b"\x90"))
    assert resp.status == 401, resp


@pytest.mark.parametrize("limit", ["\u00b2", "\u2460", "\u0661", "+5", " 5", ""])
async def test_list_limit_with_non_ascii_digits_is_400_not_500(
        node: Edge, limit: str) -> None:
    for path in (f"/v1/kv/{_bucket()}", f"/v1/files/{_bucket()}", "/v1/node/local/kv/b"):
        resp = await _send(node, _raw("GET", f"{path}?limit={quote(limit)}".encode()))
        assert resp.status == 400, (path, limit, resp)


@pytest.mark.parametrize("header", [b"Dfs-Context", b"Content-Type", b"Dfs-Consistency",
                                    b"Range", b"If-None-Match"])
async def test_non_utf8_header_bytes_are_never_a_500(node: Edge,
                                                     header: bytes) -> None:
    bucket = _bucket()
    for method, path in (("PUT", f"/v1/kv/{bucket}/k"), ("GET", f"/v1/kv/{bucket}/k"),
                         ("PUT", f"/v1/files/{bucket}/f"), ("GET", f"/v1/files/{bucket}/f")):
        resp = await _send(node, _raw(method, path.encode(), {header: b"\xff\xfe\x80"},
                                      b"v" if method == "PUT" else b""))
        assert resp.status < 500, (method, path, header, resp)


async def test_key_with_newline_is_stored_not_404_no_such_route(
        node: Edge) -> None:
    bucket = _bucket()
    target = f"/v1/kv/{bucket}/line1%0Aline2%0D".encode()
    put = await _send(node, _raw("PUT", target, body=b"multi-line key"))
    assert put.status == 204, put
    got = await _send(node, _raw("GET", target))
    assert got.status == 200 and got.body == b"multi-line key", got
    listed = await _send(node, _raw("GET", f"/v1/kv/{bucket}".encode()))
    assert listed.json()["keys"] == ["line1\nline2\r"]


async def test_key_with_nul_is_400_invalid_key(node: Edge) -> None:
    resp = await _send(node, _raw("PUT", f"/v1/kv/{_bucket()}/a%00b".encode(), body=b"v"))
    assert resp.status == 400 and resp.json()["type"].endswith("/invalid-key"), resp


async def test_invalid_utf8_percent_escapes_are_refused_not_stored_literally(
        node: Edge) -> None:
    bucket = _bucket()
    bad = await _send(node, _raw("PUT", f"/v1/kv/{bucket}/%ff%fe".encode(), body=b"one"))
    assert bad.status == 400 and bad.json()["type"].endswith("/invalid-key"), bad
    ok = await _send(node, _raw("PUT", f"/v1/kv/{bucket}/%25ff%25fe".encode(), body=b"two"))
    assert ok.status == 204, ok
    listed = await _send(node, _raw("GET", f"/v1/kv/{bucket}".encode()))
    assert listed.json()["keys"] == ["%ff%fe"]  # decoded once: the escape is the key's text
    files = await _send(node, _raw("PUT", f"/v1/files/{bucket}/%ff".encode(), body=b"x"))
    assert files.status == 400, files


async def test_cursor_aaaa_is_400(node: Edge) -> None:
    for path in (f"/v1/kv/{_bucket()}", f"/v1/files/{_bucket()}"):
        for cursor in ("AAAA", "YQ==", "YR", "a b"):
            resp = await _send(node, _raw("GET", f"{path}?cursor={quote(cursor)}".encode()))
            assert resp.status == 400, (path, cursor, resp)


@pytest.mark.parametrize("query", ["r=", "r=%D9%A1", "r=%C2%B2", "r=%EF%BC%91"])
async def test_empty_or_non_ascii_read_level_is_400(node: Edge,
                                                    query: str) -> None:
    resp = await _send(node, _raw("GET", f"/v1/kv/{_bucket()}/k?{query}".encode()))
    assert resp.status == 400, (query, resp)


@pytest.mark.parametrize("query", ["w=", "w=%D9%A1"])
async def test_empty_or_non_ascii_write_level_is_400(node: Edge,
                                                     query: str) -> None:
    resp = await _send(node, _raw("PUT", f"/v1/kv/{_bucket()}/k?{query}".encode(), body=b"v"))
    assert resp.status == 400, (query, resp)


async def test_gzip_chunked_transfer_encoding_is_refused_not_stored_undecoded(
        node: Edge) -> None:
    bucket = _bucket()
    body = b"3\r\nabc\r\n0\r\n\r\n"
    for target in (f"/v1/kv/{bucket}/k", f"/v1/files/{bucket}/f"):
        resp = await _send(node, _raw("PUT", target.encode(),
                                      {b"Transfer-Encoding": b"gzip, chunked"}, body))
        assert resp.status == 501, resp
        assert resp.json()["type"].endswith("/unsupported-transfer-coding")
    got = await _send(node, _raw("GET", f"/v1/kv/{bucket}/k".encode()))
    assert got.status == 404


async def test_te_header_does_not_change_what_is_stored(node: Edge) -> None:
    target = f"/v1/kv/{_bucket()}/k".encode()
    put = await _send(node, _raw("PUT", target, {b"TE": b"gzip, chunked"}, b"plain"))
    assert put.status == 204, put
    got = await _send(node, _raw("GET", target))
    assert got.status == 200 and got.body == b"plain"


async def test_http09_request_gets_no_http09_response(node: Edge) -> None:
    reader, writer = await asyncio.open_connection(node[0], node[1])
    try:
        writer.write(b"GET /health\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()  # the node closes the connection
    finally:
        writer.close()
    assert not data.startswith(b"HTTP/0.9"), data[:200]
    assert data.startswith(b"HTTP/1.1 505 "), data[:200]


async def test_http10_put_with_content_length_is_served(node: Edge) -> None:
    target = f"/v1/kv/{_bucket()}/k".encode()
    put = await _send(node, _raw("PUT", target, body=b"one-oh", version=b"HTTP/1.0"))
    assert put.status == 204, put
    got = await _send(node, _raw("GET", target, version=b"HTTP/1.0"))
    assert got.status == 200 and got.body == b"one-oh"




async def test_invalid_utf8_percent_escapes_in_the_query_are_refused_not_taken_literally(
        node: Edge) -> None:
    bucket = _bucket()
    ok = await _send(node, _raw("PUT", f"/v1/kv/{bucket}/%25ff-key".encode(), body=b"v"))
    assert ok.status == 204, ok
    for path in (f"/v1/kv/{bucket}?prefix=%ff", f"/v1/files/{bucket}?prefix=%ff"):
        resp = await _send(node, _raw("GET", path.encode()))
        assert resp.status == 400, (path, resp)
    listed = await _send(node, _raw("GET", f"/v1/kv/{bucket}?prefix=%25ff".encode()))
    assert listed.json()["keys"] == ["%ff-key"]
