"""SigV4 over a real socket: requests signed by botocore and by our own signer, sent by aiohttp's
client, are verified from what aiohttp's server hands a handler (raw_path, the raw query
string, the header list), so the unit tests' picture of "the bytes a server sees" holds.

The handler is the recipe for the node's middleware: ``raw_path=request.raw_path`` (it
carries the query too; verify ignores that tail), ``raw_query=request.rel_url.raw_query_string``
(not ``request.query_string``, which is decoded), ``headers=list(request.headers.items())``,
and ``request.query.items()`` for parse_credentials.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from unittest import mock

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from dfsring.core import sigv4
from dfsring.core.authparse import SigV4Credential, parse_credentials
from dfsring.foundation.errors import Unauthenticated

pytestmark = pytest.mark.component

ACCESS, SECRET, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1"
NOW = 1_790_000_000.0
TRICKY = "/b/a%20b/%E6%97%A5//./x/../~u/100%25/a+b?list-type=2&prefix=a%2Fb&empty=&flag&z=%7E"


async def verify_handler(request: web.Request) -> web.Response:
    try:
        cred = parse_credentials(request.headers, list(request.query.items()))
        if not isinstance(cred, SigV4Credential):
            raise Unauthenticated("no SigV4 credentials")
        payload = sigv4.verify(cred, method=request.method, raw_path=request.raw_path,
                               raw_query=request.rel_url.raw_query_string,
                               headers=list(request.headers.items()), secret_key=SECRET,
                               region=REGION, now_s=NOW)
    except Unauthenticated as exc:
        return web.Response(status=401, text=str(exc))
    body = await request.read()
    if payload != sigv4.UNSIGNED_PAYLOAD and payload != hashlib.sha256(body).hexdigest():
        return web.Response(status=400, text="body does not match x-amz-content-sha256")
    return web.Response(text="ok")


@pytest.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", verify_handler)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


async def send(method: str, url: str, headers: CIMultiDict[str], body: bytes = b""
               ) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.request(
            method, yarl.URL(url, encoded=True), headers=headers, data=body) as resp:
        return resp.status, await resp.text()


def botocore_signed(method: str, url: str, headers: list[tuple[str, str]], body: bytes,
                    presign: bool = False) -> AWSRequest:
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name] = value
    moment = datetime.fromtimestamp(NOW, UTC).replace(tzinfo=None)
    creds = Credentials(ACCESS, SECRET)
    with mock.patch("botocore.auth.get_current_datetime", lambda *a, **k: moment):
        signer = (S3SigV4QueryAuth(creds, "s3", REGION, expires=3600) if presign
                  else S3SigV4Auth(creds, "s3", REGION))
        signer.add_auth(request)
    return request


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_botocore_header_signed_request_verifies_on_a_real_server(base: str,
                                                                        method: str) -> None:
    body = b"hello" if method == "PUT" else b""
    request = botocore_signed(method, base + TRICKY, [("X-Amz-Meta-A", "  x   y "),
                                                      ("X-Amz-Meta-A", "z")], body)
    assert await send(method, request.url, CIMultiDict(request.headers.items()), body) == \
        (200, "ok")
    tampered = request.url.replace("/b/", "/c/", 1)
    assert await send(method, tampered, CIMultiDict(request.headers.items()), body) == \
        (401, sigv4.SIGNATURE_MISMATCH)


async def test_botocore_presigned_url_verifies_on_a_real_server(base: str) -> None:
    request = botocore_signed("GET", base + TRICKY.split("?")[0] + "?versionId=1", [], b"",
                              presign=True)
    assert await send("GET", request.url, CIMultiDict()) == (200, "ok")


async def test_our_signer_verifies_on_a_real_server(base: str) -> None:
    headers = {"X-Amz-Meta-A": "1", "Content-Type": "application/octet-stream"}
    body = b"payload"
    added = sigv4.sign_headers("PUT", base + TRICKY, headers, access_key=ACCESS,
                               secret_key=SECRET, region=REGION, now_s=NOW,
                               payload_sha256=hashlib.sha256(body).hexdigest())
    assert await send("PUT", base + TRICKY, CIMultiDict({**headers, **added}), body) == \
        (200, "ok")
    assert await send("PUT", base + TRICKY, CIMultiDict({**headers, **added}), b"other")  \
        == (400, "body does not match x-amz-content-sha256")
    url = sigv4.presign("GET", base + TRICKY, access_key=ACCESS, secret_key=SECRET,
                        region=REGION, now_s=NOW, expires_s=60)
    assert await send("GET", url, CIMultiDict()) == (200, "ok")
