"""The S3 edge (dfsring.s3.app) on loopback, over an in-memory ObjectLayer (s3_memory) and
the real AccessService of an in-process one-node cluster with root credentials.

Requests are signed with botocore's S3SigV4Auth, the oracle (S3-PITFALLS "Oracle"), and
sent with the path exactly as signed (yarl encoded=True). What is shown here: routing,
refusals in S3 codes, the error document's shape, HEAD without a body, Expect:
100-continue refused before the body, raw-path keys, the consistency header, re-sent requests.
The real clients against real processes are tests/s3.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import aiohttp
import pytest
import yarl
from aiohttp.test_utils import TestServer
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from dfsring.core import sigv4
from dfsring.core.access import Role
from dfsring.foundation import errors
from dfsring.s3.app import build_s3_app
from dfsring.testing.localcluster import InProcessCluster, start_cluster

from .s3_memory import MemoryLayer

pytestmark = pytest.mark.component
ROOT = ("ROOTKEY", "root-secret-value-0123456789")
REGION = "us-east-1"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: CIMultiDict[str]  # case-insensitive, as HTTP

    def code(self) -> str | None:
        """The <Code> of an S3 error document (namespace-agnostic)."""
        root = ElementTree.fromstring(self.body)
        found = [el.text for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Code"]
        return found[0] if found else None

    def field(self, name: str) -> str | None:
        root = ElementTree.fromstring(self.body)
        found = [el.text for el in root.iter() if el.tag.rsplit("}", 1)[-1] == name]
        return found[0] if found else None


@dataclass
class S3:
    base: str  # http://127.0.0.1:PORT
    port: int
    http: aiohttp.ClientSession
    layer: MemoryLayer
    cluster: InProcessCluster

    async def raw(self, method: str, path: str, headers: dict[str, str] | None = None,
                  body: bytes = b"") -> Reply:
        """Send ``path`` (already percent-encoded, with its query) exactly as given."""
        url = yarl.URL(self.base + path, encoded=True)
        async with self.http.request(method, url, headers=headers or {}, data=body) as resp:
            return Reply(resp.status, await resp.read(), resp.headers.copy())

    async def signed(self, method: str, path: str, body: bytes = b"",
                     headers: dict[str, str] | None = None,
                     creds: tuple[str, str] = ROOT) -> Reply:
        return await self.raw(method, path, sign(method, self.base + path, body, headers,
                                                 creds), body)


def sign(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None,
         creds: tuple[str, str] = ROOT, region: str = REGION) -> dict[str, str]:
    """botocore's own SigV4 headers for this request (payload hash signed: plain HTTP)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    S3SigV4Auth(Credentials(*creds), "s3", region).add_auth(request)
    return dict(request.headers.items())


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    cluster = await start_cluster(tmp_path, 1, n=1, r=1, w=1, admin_access_key=ROOT[0],
                                  admin_secret_key=ROOT[1], cluster_secret="s" * 16)
    try:
        yield cluster
    finally:
        await cluster.stop()


async def serve(cluster: InProcessCluster, **cfg_changes: Any) -> tuple[TestServer,
                                                                        MemoryLayer]:
    local = cluster.nodes[0]
    layer = MemoryLayer(local.svc.access)
    app = build_s3_app(replace(local.cfg, **cfg_changes), layer, local.svc.access)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, layer


@pytest.fixture
async def s3(cluster: InProcessCluster) -> AsyncIterator[S3]:
    server, layer = await serve(cluster)
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            port = server.port
            assert port is not None
            yield S3(f"http://127.0.0.1:{port}", port, http, layer, cluster)
    finally:
        await server.close()


async def bucket_with(s3: S3, name: str = "bkt") -> None:
    reply = await s3.signed("PUT", f"/{name}")
    assert reply.status == 200, reply.body


# --- errors and routing ----------------------------------------------------------------------


async def test_an_anonymous_request_is_access_denied_as_an_s3_error_document(s3: S3) -> None:
    reply = await s3.raw("GET", "/bkt/key")
    assert reply.status == 403
    assert reply.headers["Content-Type"].startswith("application/xml")
    assert reply.code() == "AccessDenied"
    request_id = reply.headers["x-amz-request-id"]
    assert reply.field("RequestId") == request_id
    assert reply.field("Resource") == "/bkt/key"
    assert reply.field("Message")


async def test_head_errors_have_no_body_and_the_code_is_in_the_status(s3: S3) -> None:
    await bucket_with(s3)
    reply = await s3.signed("HEAD", "/bkt/missing")
    assert reply.status == 404
    assert reply.body == b""
    assert reply.headers["x-amz-request-id"]


async def test_every_success_carries_a_request_id(s3: S3) -> None:
    reply = await s3.signed("GET", "/")
    assert reply.status == 200
    assert len(reply.headers["x-amz-request-id"]) >= 8


@pytest.mark.parametrize("query", ["acl", "policy", "lifecycle", "tagging", "website"])
async def test_sub_resources_we_do_not_serve_are_not_implemented_never_a_wrong_answer(
        s3: S3, query: str) -> None:
    await bucket_with(s3)
    for path in (f"/bkt?{query}", f"/bkt/key?{query}"):
        reply = await s3.signed("GET", path)
        assert reply.status == 501, path
        assert reply.code() == "NotImplemented"


async def test_a_method_the_resource_has_no_operation_for_is_method_not_allowed(s3: S3) -> None:
    reply = await s3.signed("PATCH", "/bkt/key")
    assert reply.status == 405
    assert reply.code() == "MethodNotAllowed"


async def test_health_is_not_served_on_the_s3_port(s3: S3) -> None:
    reply = await s3.raw("GET", "/health")
    assert reply.status == 403  # a bucket named "health", refused to the anonymous
    assert reply.code() == "AccessDenied"


async def test_an_unexpected_layer_error_is_an_internal_error_without_a_traceback(
        s3: S3) -> None:
    await bucket_with(s3)
    s3.layer.fail_with = RuntimeError("secret internals /etc/passwd")
    reply = await s3.signed("GET", "/bkt/key")
    assert reply.status == 500
    assert reply.code() == "InternalError"
    assert b"passwd" not in reply.body and b"Traceback" not in reply.body
    assert reply.headers["x-amz-request-id"].encode() in reply.body


async def test_node_errors_are_translated_to_s3_codes(s3: S3) -> None:
    await bucket_with(s3)
    s3.layer.fail_with = errors.QuorumNotMet(2, 1)
    reply = await s3.signed("GET", "/bkt/key")
    assert (reply.status, reply.code()) == (503, "ServiceUnavailable")
    s3.layer.fail_with = errors.NotFound("gone")
    reply = await s3.signed("GET", "/bkt/key")
    assert (reply.status, reply.code()) == (404, "NoSuchKey")


# --- keys from the raw path ------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "key"), [
    ("dir%2Ffile", "dir/file"),
    ("100%25", "100%"),
    ("a+b", "a+b"),
    ("a%2Bb", "a+b"),
    ("sp%20ace/%C3%A9t%C3%A9", "sp ace/été"),
    ("deep/a/b/../c//d", "deep/a/b/../c//d"),
    ("~tilde", "~tilde"),
])
async def test_keys_are_the_raw_path_decoded_exactly_once(s3: S3, raw: str, key: str) -> None:
    await bucket_with(s3)
    reply = await s3.signed("PUT", f"/bkt/{raw}", b"data")
    assert reply.status == 200, reply.body
    assert ("bkt", key) in s3.layer.objects
    got = await s3.signed("GET", f"/bkt/{raw}")
    assert (got.status, got.body) == (200, b"data")


async def test_a_key_that_is_not_utf8_is_refused(s3: S3) -> None:
    await bucket_with(s3)
    reply = await s3.signed("PUT", "/bkt/%FF%FE", b"x")
    assert reply.status == 400
    assert reply.code() == "InvalidURI"


async def test_a_key_over_1024_bytes_is_key_too_long(s3: S3) -> None:
    await bucket_with(s3)
    reply = await s3.signed("PUT", "/bkt/" + "k" * 1025, b"x")
    assert (reply.status, reply.code()) == (400, "KeyTooLongError")


async def test_virtual_host_style_names_the_bucket_in_the_host(cluster: InProcessCluster
                                                               ) -> None:
    server, layer = await serve(cluster, s3_domain="s3.test")
    try:
        port = server.port
        url = f"http://bkt.s3.test:{port}/a%2Fb"
        async with aiohttp.ClientSession() as http:
            created = sign("PUT", f"http://127.0.0.1:{port}/bkt")
            async with http.put(f"http://127.0.0.1:{port}/bkt", headers=created) as resp:
                assert resp.status == 200
            headers = sign("PUT", url, b"v", {"Host": f"bkt.s3.test:{port}"})
            target = yarl.URL(f"http://127.0.0.1:{port}/a%2Fb", encoded=True)
            async with http.put(target, headers=headers, data=b"v") as resp:
                assert resp.status == 200, await resp.read()
        assert ("bkt", "a/b") in layer.objects
    finally:
        await server.close()


# --- authentication --------------------------------------------------------------------------


async def test_a_wrong_secret_is_signature_does_not_match(s3: S3) -> None:
    reply = await s3.signed("GET", "/", creds=(ROOT[0], "wrong-secret-0000000000"))
    assert (reply.status, reply.code()) == (403, "SignatureDoesNotMatch")


async def test_an_unknown_key_is_invalid_access_key_id(s3: S3) -> None:
    reply = await s3.signed("GET", "/", creds=("NOSUCHKEY", "whatever-secret-000000"))
    assert (reply.status, reply.code()) == (403, "InvalidAccessKeyId")


async def test_a_request_signed_an_hour_ago_is_too_skewed(s3: S3) -> None:
    url = s3.base + "/"
    headers = sigv4.sign_headers("GET", url, {}, access_key=ROOT[0], secret_key=ROOT[1],
                                 region=REGION, now_s=time.time() - 3600,
                                 payload_sha256=hashlib.sha256(b"").hexdigest())
    reply = await s3.raw("GET", "/", headers)
    assert (reply.status, reply.code()) == (403, "RequestTimeTooSkewed")


async def test_an_expired_presigned_url_is_access_denied_request_has_expired(s3: S3) -> None:
    await bucket_with(s3)
    assert (await s3.signed("PUT", "/bkt/k", b"v")).status == 200
    expired = sigv4.presign("GET", s3.base + "/bkt/k", access_key=ROOT[0],
                            secret_key=ROOT[1], region=REGION, now_s=time.time() - 120,
                            expires_s=60)
    reply = await s3.raw("GET", expired[len(s3.base):])
    assert (reply.status, reply.code()) == (403, "AccessDenied")
    assert reply.field("Message") == "Request has expired"
    fresh = sigv4.presign("GET", s3.base + "/bkt/k", access_key=ROOT[0], secret_key=ROOT[1],
                          region=REGION, now_s=time.time(), expires_s=60)
    reply = await s3.raw("GET", fresh[len(s3.base):])
    assert (reply.status, reply.body) == (200, b"v")


async def test_signature_version_2_is_refused_naming_s3v4(s3: S3) -> None:
    reply = await s3.raw("GET", "/", {"Authorization": f"AWS {ROOT[0]}:c2lnbmF0dXJl",
                                      "Date": "Thu, 03 Dec 2026 12:00:00 GMT"})
    assert (reply.status, reply.code()) == (400, "InvalidRequest")
    assert "AWS4-HMAC-SHA256" in (reply.field("Message") or "")
    query = await s3.raw("GET", f"/bkt/k?AWSAccessKeyId={ROOT[0]}&Expires=1&Signature=x")
    assert (query.status, query.code()) == (400, "InvalidRequest")


async def test_a_body_that_is_not_the_signed_one_never_becomes_an_object(s3: S3) -> None:
    await bucket_with(s3)
    headers = sign("PUT", s3.base + "/bkt/k", b"signed body")
    reply = await s3.raw("PUT", "/bkt/k", headers, b"other body!")
    assert reply.status == 400
    assert reply.code() == "XAmzContentSHA256Mismatch"
    assert ("bkt", "k") not in s3.layer.objects


async def test_a_succeeded_put_sent_again_with_its_signature_is_not_refused_as_a_replay(
        s3: S3) -> None:
    """rclone (Go's HTTP transport) re-sent a PUT that had got its 200, and a replay cache
    refused it with 403: the S3 port accepts a signature again within its window, as AWS."""
    headers = sign("PUT", s3.base + "/bkt/k", b"v")
    failed = await s3.raw("PUT", "/bkt/k", headers, b"v")  # the bucket does not exist yet
    assert failed.code() == "NoSuchBucket"
    await bucket_with(s3)
    assert (await s3.raw("PUT", "/bkt/k", headers, b"v")).status == 200
    again = await s3.raw("PUT", "/bkt/k", headers, b"v")
    assert again.status == 200, again.code()


# --- authorization ---------------------------------------------------------------------------


async def new_key(s3: S3) -> tuple[str, str]:
    made = await s3.cluster.nodes[0].svc.access.create_key(name="t", expires_in_s=None,
                                                           admin=False)
    return made.record.access_key, made.secret


async def test_list_buckets_shows_a_key_only_the_buckets_it_holds_a_grant_on(s3: S3) -> None:
    await bucket_with(s3, "mine")
    await bucket_with(s3, "theirs")
    key = await new_key(s3)
    await s3.cluster.nodes[0].svc.access.set_grant("mine", key[0], Role.READ)
    reply = await s3.signed("GET", "/", creds=key)
    assert reply.status == 200
    assert b"mine" in reply.body and b"theirs" not in reply.body
    root = await s3.signed("GET", "/")
    assert b"mine" in root.body and b"theirs" in root.body


async def test_a_reader_may_not_write_nor_change_bucket_settings(s3: S3) -> None:
    await bucket_with(s3)
    key = await new_key(s3)
    await s3.cluster.nodes[0].svc.access.set_grant("bkt", key[0], Role.READ)
    for method, path in (("PUT", "/bkt/k"), ("PUT", "/bkt?versioning"),
                         ("DELETE", "/bkt?cors"), ("DELETE", "/bkt")):
        reply = await s3.signed(method, path, creds=key)
        assert (reply.status, reply.code()) == (403, "AccessDenied"), (method, path)


async def test_a_key_creating_a_bucket_owns_it(s3: S3) -> None:
    key = await new_key(s3)
    assert (await s3.signed("PUT", "/newb", creds=key)).status == 200
    s3.cluster.nodes[0].svc.access.invalidate("keys", key[0])
    assert (await s3.signed("PUT", "/newb/k", b"v", creds=key)).status == 200


async def test_a_location_constraint_other_than_our_region_is_refused(s3: S3) -> None:
    body = (b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<LocationConstraint>eu-west-3</LocationConstraint></CreateBucketConfiguration>")
    reply = await s3.signed("PUT", "/bkt", body)
    assert (reply.status, reply.code()) == (400, "InvalidLocationConstraint")


async def test_a_malformed_bucket_name_is_invalid_bucket_name(s3: S3) -> None:
    for name in ("dfs..files", "UPPER", "ab", "-dash"):
        reply = await s3.signed("PUT", f"/{name}")
        assert (reply.status, reply.code()) == (400, "InvalidBucketName"), name


# --- consistency -----------------------------------------------------------------------------


async def test_the_consistency_header_reaches_the_layer_and_is_validated(s3: S3) -> None:
    await bucket_with(s3)
    await s3.signed("PUT", "/bkt/k", b"v")
    s3.layer.consistency_seen.clear()
    for level in ("strong", "eventual"):
        reply = await s3.signed("GET", "/bkt/k", headers={"X-Consistency-Level": level})
        assert reply.status == 200
    reply = await s3.signed("GET", "/bkt?list-type=2", headers={
        "X-Consistency-Level": "eventual"})
    assert reply.status == 200
    assert await s3.signed("HEAD", "/bkt/k") is not None
    assert s3.layer.consistency_seen == ["strong", "eventual", "eventual", "quorum"]
    bad = await s3.signed("GET", "/bkt/k", headers={"X-Consistency-Level": "maybe"})
    assert (bad.status, bad.code()) == (400, "InvalidArgument")


# --- Expect: 100-continue --------------------------------------------------------------------


async def _exchange(port: int, head: bytes, body: bytes | None = None) -> bytes:
    """Send a request head; then, only if the server said 100 Continue, the body; the
    server's bytes up to the end of its final answer's head (and a bounded body read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if first.startswith(b"HTTP/1.1 100") and body is not None:
            writer.write(body)
            await writer.drain()
            first += await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        rest = await asyncio.wait_for(reader.read(4096), 5)
        return first + rest
    finally:
        writer.close()


async def test_expect_100_continue_is_refused_before_the_body_without_credentials(
        s3: S3) -> None:
    head = (b"PUT /bkt/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n")
    answer = await _exchange(s3.port, head)  # the body is never sent
    assert not answer.startswith(b"HTTP/1.1 100")
    assert answer.startswith(b"HTTP/1.1 403")
    assert b"<Code>AccessDenied</Code>" in answer
    assert ("bkt", "k") not in s3.layer.objects


async def test_expect_100_continue_is_answered_once_the_request_is_admitted(s3: S3) -> None:
    await bucket_with(s3)
    headers = sign("PUT", s3.base + "/bkt/k", b"hello")
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (f"PUT /bkt/k HTTP/1.1\r\nHost: 127.0.0.1:{s3.port}\r\nContent-Length: 5\r\n"
            f"Connection: close\r\nExpect: 100-continue\r\n{lines}\r\n").encode()
    answer = await _exchange(s3.port, head, b"hello")
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
    assert s3.layer.objects[("bkt", "k")].data == b"hello"


# --- objects ---------------------------------------------------------------------------------


async def test_range_get_is_206_with_content_range(s3: S3) -> None:
    await bucket_with(s3)
    await s3.signed("PUT", "/bkt/k", b"0123456789")
    reply = await s3.signed("GET", "/bkt/k", headers={"Range": "bytes=2-5"})
    assert (reply.status, reply.body) == (206, b"2345")
    assert reply.headers["Content-Range"] == "bytes 2-5/10"


async def test_put_answers_the_md5_etag_and_head_has_the_length(s3: S3) -> None:
    await bucket_with(s3)
    reply = await s3.signed("PUT", "/bkt/k", b"abc")
    assert reply.status == 200, reply.headers
    assert reply.headers["ETag"] == f'"{hashlib.md5(b"abc").hexdigest()}"'
    head = await s3.signed("HEAD", "/bkt/k")
    assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", "3")


async def test_delete_objects_needs_a_digest_header(s3: S3) -> None:
    await bucket_with(s3)
    body = b"<Delete><Object><Key>k</Key></Object></Delete>"
    reply = await s3.signed("POST", "/bkt?delete", body)
    assert (reply.status, reply.code()) == (400, "InvalidRequest")


async def test_copy_onto_itself_without_replace_is_invalid_request(s3: S3) -> None:
    await bucket_with(s3)
    await s3.signed("PUT", "/bkt/k", b"v")
    reply = await s3.signed("PUT", "/bkt/k", headers={"x-amz-copy-source": "/bkt/k"})
    assert (reply.status, reply.code()) == (400, "InvalidRequest")
    replaced = await s3.signed("PUT", "/bkt/k", headers={
        "x-amz-copy-source": "/bkt/k", "x-amz-metadata-directive": "REPLACE"})
    assert replaced.status == 200, replaced.body


async def test_an_xml_body_over_one_mebibyte_is_refused(s3: S3) -> None:
    await bucket_with(s3)
    body = b"<Delete>" + b" " * (1 << 20) + b"</Delete>"
    reply = await s3.signed("POST", "/bkt?delete", body, headers={
        "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="})
    assert (reply.status, reply.code()) == (400, "MaxMessageLengthExceeded")


async def test_cors_preflight_is_answered_from_the_bucket_rules_before_auth(s3: S3) -> None:
    await bucket_with(s3)
    refused = await s3.raw("OPTIONS", "/bkt/k", {"Origin": "https://app.example",
                                                  "Access-Control-Request-Method": "GET"})
    assert (refused.status, refused.code()) == (403, "AccessDenied")
    from dfsring.core.cors import make_rule
    await s3.cluster.nodes[0].svc.access.set_cors(
        "bkt", (make_rule(["https://app.example"], ["GET"]),), ROOT[0])
    allowed = await s3.raw("OPTIONS", "/bkt/k", {"Origin": "https://app.example",
                                                  "Access-Control-Request-Method": "GET"})
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"


async def test_an_upload_without_a_length_is_missing_content_length(s3: S3) -> None:
    await bucket_with(s3)
    headers = sign("PUT", s3.base + "/bkt/k")
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (f"PUT /bkt/k HTTP/1.1\r\nHost: 127.0.0.1:{s3.port}\r\nConnection: close\r\n"
            f"{lines}\r\n").encode()
    answer = await _exchange(s3.port, head)
    assert answer.startswith(b"HTTP/1.1 411")
    assert b"<Code>MissingContentLength</Code>" in answer
    assert ("bkt", "k") not in s3.layer.objects


async def test_part_one_of_a_single_part_object_is_the_object(s3: S3) -> None:
    await bucket_with(s3)
    await s3.signed("PUT", "/bkt/k", b"whole")
    reply = await s3.signed("GET", "/bkt/k?partNumber=1")
    assert (reply.status, reply.body) == (200, b"whole")
    other = await s3.signed("GET", "/bkt/k?partNumber=2")
    assert (other.status, other.code()) == (416, "InvalidPartNumber")


# --- aws-chunked bodies ----------------------------------------------------------------------

STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def signed_chunks(pieces: list[bytes], headers: dict[str, str], tamper: bool = False) -> bytes:
    """An aws-chunked body whose chunk signatures chain from the request's (AWS "Signature
    Calculations for the Authorization Header: Transferring Payload in Multiple Chunks")."""
    amz_date = headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    previous = headers["Authorization"].rsplit("Signature=", 1)[1]
    key = sigv4.signing_key(ROOT[1], amz_date[:8], REGION, "s3")
    out = b""
    for piece in [*pieces, b""]:
        to_sign = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous,
                             EMPTY_SHA256, hashlib.sha256(piece).hexdigest()))
        previous = hmac.new(key, to_sign.encode(), "sha256").hexdigest()
        sent = piece[:-1] + b"X" if tamper and piece else piece
        out += f"{len(piece):x};chunk-signature={previous}\r\n".encode() + sent + b"\r\n"
    return out


def streaming_headers(s3: S3, path: str, pieces: list[bytes], encoded: int) -> dict[str, str]:
    given = {"Content-Encoding": "aws-chunked",
             "x-amz-decoded-content-length": str(sum(len(p) for p in pieces)),
             "Content-Length": str(encoded)}
    signed = sigv4.sign_headers("PUT", s3.base + path, given, access_key=ROOT[0],
                                secret_key=ROOT[1], region=REGION, now_s=time.time(),
                                payload_sha256=STREAMING)
    return {**given, **signed}


async def test_a_signed_aws_chunked_body_is_stored_decoded(s3: S3) -> None:
    await bucket_with(s3)
    pieces = [b"a" * 8192, b"b" * 100]
    probe = signed_chunks(pieces, {"X-Amz-Date": "20260101T000000Z",
                                   "Authorization": "Signature=" + "0" * 64})
    headers = streaming_headers(s3, "/bkt/k", pieces, len(probe))
    reply = await s3.raw("PUT", "/bkt/k", headers, signed_chunks(pieces, headers))
    assert reply.status == 200, reply.body
    stored = s3.layer.objects[("bkt", "k")]
    assert stored.data == b"".join(pieces)
    assert "content-encoding" not in stored.version.meta.headers  # aws-chunked stripped


async def test_a_chunk_that_does_not_match_its_signature_is_refused(s3: S3) -> None:
    await bucket_with(s3)
    pieces = [b"a" * 8192, b"b" * 100]
    probe = signed_chunks(pieces, {"X-Amz-Date": "20260101T000000Z",
                                   "Authorization": "Signature=" + "0" * 64})
    headers = streaming_headers(s3, "/bkt/k", pieces, len(probe))
    reply = await s3.raw("PUT", "/bkt/k", headers, signed_chunks(pieces, headers, tamper=True))
    assert (reply.status, reply.code()) == (403, "SignatureDoesNotMatch")
    assert ("bkt", "k") not in s3.layer.objects


async def test_an_unsigned_chunked_body_with_a_checksum_trailer_is_stored_decoded(
        s3: S3) -> None:
    await bucket_with(s3)
    data = b"hello world"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    body = (f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n"
            + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode())
    given = {"Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
             "x-amz-decoded-content-length": str(len(data)),
             "x-amz-sdk-checksum-algorithm": "CRC32"}
    signed = sigv4.sign_headers("PUT", s3.base + "/bkt/t", given, access_key=ROOT[0],
                                secret_key=ROOT[1], region=REGION, now_s=time.time(),
                                payload_sha256=sigv4.STREAMING_UNSIGNED_TRAILER)
    reply = await s3.raw("PUT", "/bkt/t", {**given, **signed}, body)
    assert reply.status == 200, reply.body
    assert s3.layer.objects[("bkt", "t")].data == data


# --- audit -----------------------------------------------------------------------------------


def audit_fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.__dict__["fields"] for r in caplog.records if r.name == "dfsring.audit"]


async def test_refusals_and_owner_actions_are_audited_without_secrets(
        s3: S3, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dfsring.audit")
    await bucket_with(s3)
    await s3.raw("GET", "/bkt/k")
    await s3.signed("GET", "/", creds=(ROOT[0], "wrong-secret-0000000000"))
    body = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
    await s3.signed("PUT", "/bkt?versioning", body)
    lines = audit_fields(caplog)
    assert any(f["decision"] == "refused" and f["who"] == "anonymous" for f in lines)
    assert any(f["reason"] == "bad_credentials" and f["claimed"] == ROOT[0] for f in lines)
    owner = [f for f in lines if f["route"] == "s3:PutBucketVersioning"]
    assert owner and owner[0]["decision"] == "allowed" and owner[0]["who"] == ROOT[0]
    assert all(ROOT[1] not in str(f) for f in lines)


# --- hostile input ---------------------------------------------------------------------------

HOSTILE: list[tuple[str, str, dict[str, str], bool]] = [
    ("GET", "/", {"Authorization": "AWS4-HMAC-SHA256 garbage"}, False),
    ("GET", "/", {"Authorization": "Bearer nocolon"}, False),
    ("GET", "/", {"Authorization": "Negotiate abc"}, False),
    ("GET", "/", {"Authorization": "Bearer a:b", "X-Api-Key": "a:b"}, False),
    ("GET", "/bkt/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x", {}, False),
    ("PUT", "/bkt/k", {"x-amz-content-sha256": "nothex"}, True),
    ("PUT", "/bkt/k", {"Content-MD5": "not base64!!"}, True),
    ("PUT", "/bkt/k", {"Content-MD5": "AAAA"}, True),
    ("GET", "/bkt/k", {"Range": "bytes=9999-"}, True),
    ("GET", "/bkt/k?partNumber=abc", {}, True),
    ("GET", "/bkt?max-keys=-1", {}, True),
    ("GET", "/bkt?list-type=2&continuation-token=%00%FF", {}, True),
    ("PUT", "/bkt/k?partNumber=0&uploadId=u", {}, True),
    ("PUT", "/bkt/k?partNumber=1&uploadId=u", {"x-amz-copy-source": "nobucket"}, True),
    ("PUT", "/bkt/k", {"x-amz-copy-source": "/bkt/k", "x-amz-copy-source-range": "x"}, True),
    ("POST", "/bkt?delete", {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, True),
    ("POST", "/bkt/k?uploadId=u", {}, True),
    ("PUT", "/bkt?versioning", {}, True),
    ("PUT", "/bkt?cors", {}, True),
    ("PUT", "/bkt/k", {"x-amz-decoded-content-length": "x",
                       "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}, True),
    ("GET", "/bkt/k", {"x-amz-checksum-mode": "ENABLED", "If-Match": "\"\u00e9\""}, True),
    ("PUT", "/bkt/k", {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                       "x-amz-decoded-content-length": "10"}, True),
]


@pytest.mark.parametrize(("method", "path", "headers", "signed"), HOSTILE)
async def test_hostile_requests_are_s3_errors_never_a_500(
        s3: S3, method: str, path: str, headers: dict[str, str], signed: bool) -> None:
    await bucket_with(s3)
    await s3.signed("PUT", "/bkt/k", b"0123456789")
    body = b"<not-xml" if method in ("PUT", "POST") else b""
    payload = headers.get("x-amz-content-sha256")
    if signed and payload is not None:  # botocore would replace it: sign it as it is
        given = {k: v for k, v in headers.items() if k != "x-amz-content-sha256"}
        own = sigv4.sign_headers(method, s3.base + path, given, access_key=ROOT[0],
                                 secret_key=ROOT[1], region=REGION, now_s=time.time(),
                                 payload_sha256=payload)
        reply = await s3.raw(method, path, {**given, **own}, body)
    elif signed:
        reply = await s3.signed(method, path, body, headers)
    else:
        reply = await s3.raw(method, path, headers, body)
    assert 400 <= reply.status < 500 or reply.status == 501, (reply.status, reply.body)
    if method != "HEAD":
        assert reply.code(), reply.body


# --- public buckets and --insecure -----------------------------------------------------------


async def test_anonymous_reads_only_on_a_public_read_bucket(s3: S3) -> None:
    await bucket_with(s3)
    await s3.signed("PUT", "/bkt/k", b"open")
    assert (await s3.raw("GET", "/bkt/k")).status == 403
    await s3.cluster.nodes[0].svc.access.set_public("bkt", True, ROOT[0])
    reply = await s3.raw("GET", "/bkt/k")
    assert (reply.status, reply.body) == (200, b"open")
    assert (await s3.raw("HEAD", "/bkt/k")).status == 200
    assert (await s3.raw("GET", "/bkt?list-type=2")).status == 200
    for method, path in (("PUT", "/bkt/k2"), ("DELETE", "/bkt/k"), ("PUT", "/bkt?cors"),
                         ("GET", "/")):
        refused = await s3.raw(method, path, body=b"x" if method == "PUT" else b"")
        assert (refused.status, refused.code()) == (403, "AccessDenied"), (method, path)


async def test_insecure_nodes_let_anyone_in_and_still_check_good_signatures(
        cluster: InProcessCluster) -> None:
    server, layer = await serve(cluster, insecure=True)
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.put(base + "/open") as resp:
                assert resp.status == 200
            async with http.put(base + "/open/k", data=b"v") as resp:
                assert resp.status == 200
            headers = sign("PUT", base + "/open/s", b"signed")
            async with http.put(base + "/open/s", data=b"tampered", headers=headers) as resp:
                assert resp.status == 400  # a signature that verifies binds its payload
        assert layer.objects[("open", "k")].data == b"v"
        assert ("open", "s") not in layer.objects
    finally:
        await server.close()


async def test_requests_and_refusals_are_counted_on_the_node_registry(
        cluster: InProcessCluster) -> None:
    local = cluster.nodes[0]
    registry = local.svc.metrics.registry
    for _ in range(2):  # a second app on the same registry shares the counters
        app = build_s3_app(local.cfg, MemoryLayer(local.svc.access), local.svc.access,
                           metrics=local.svc.metrics)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(base + "/") as resp:
            assert resp.status == 403
        async with http.get(base + "/", headers=sign("GET", base + "/")) as resp:
            assert resp.status == 200
    refused = registry.get_sample_value("dfsring_s3_auth_refusals_total", {"reason": "missing"})
    assert refused is not None and refused >= 1
    listed = registry.get_sample_value("dfsring_http_requests_total", {
        "route": "s3:ListBuckets", "method": "GET", "status": "200"})
    assert listed == 1


async def test_a_bucket_created_public_read_is_readable_anonymously(s3: S3) -> None:
    created = await s3.signed("PUT", "/pub", headers={"x-amz-acl": "public-read"})
    assert created.status == 200, created.body
    await s3.signed("PUT", "/pub/k", b"v", headers={"x-amz-acl": "private"})
    assert (await s3.raw("GET", "/pub/k")).body == b"v"
    refused = await s3.signed("PUT", "/pub/k2", b"v", headers={"x-amz-acl": "public-read"})
    assert (refused.status, refused.code()) == (501, "NotImplemented")
    assert ("pub", "k2") not in s3.layer.objects
