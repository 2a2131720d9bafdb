"""AWS Signature V4 on the native API over real node processes (issue 18, "Must show"): a
request botocore signs is served; a bad signature, an expired presigned URL, a replayed
request, a skewed clock and a body that is not the one signed are each refused, and an
unknown key is refused exactly like a wrong secret."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from dfsring.client import DfsClient
from dfsring.client.credentials import Credentials
from dfsring.core import sigv4
from tests.cluster.accesskit import AuthCluster, Resp, call

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]
REGION = "us-east-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthCluster]:
    with AuthCluster(3, tmp_path_factory.mktemp("sigv4")) as cluster:
        yield cluster


def _signed(cluster: AuthCluster, node: int, method: str, path: str, body: bytes = b"", *,
            secret: str | None = None, access: str | None = None, now: float | None = None,
            payload: str | None = None) -> tuple[str, dict[str, str]]:
    url = cluster.nodes[node].url + path
    root_access, root_secret = cluster.root
    headers = sigv4.sign_headers(method, url, {}, access_key=access or root_access,
                                 secret_key=secret or root_secret, region=REGION,
                                 now_s=now if now is not None else time.time(),
                                 payload_sha256=payload or hashlib.sha256(body).hexdigest())
    return url, headers


def _send(cluster: AuthCluster, node: int, method: str, path: str, body: bytes = b"",
          **kwargs: object) -> Resp:
    _url, headers = _signed(cluster, node, method, path, body, **kwargs)  # type: ignore[arg-type]
    return call(cluster.nodes[node].url, method, path, headers=headers,
                body=body if method in ("PUT", "POST") else None)


def _key() -> str:
    return f"/v1/kv/sig/k-{secrets.token_hex(4)}"


def test_a_request_botocore_signs_is_served(cluster: AuthCluster) -> None:
    path = _key()
    url = cluster.nodes[0].url + path
    request = AWSRequest(method="PUT", url=url, data=b"signed by botocore")
    S3SigV4Auth(BotoCredentials(*cluster.root), "s3", REGION).add_auth(request)
    prepared = request.prepare()
    got = call(cluster.nodes[0].url, "PUT", path, headers=dict(prepared.headers),
               body=b"signed by botocore")
    assert got.status == 204, got.body
    read = _send(cluster, 1, "GET", path)
    assert read.status == 200 and read.body == b"signed by botocore"


def test_a_bad_signature_is_refused_like_an_unknown_key(cluster: AuthCluster) -> None:
    path = _key()
    _, headers = _signed(cluster, 0, "GET", path)
    auth = headers["Authorization"]
    flipped = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    bad = call(cluster.nodes[0].url, "GET", path, headers={**headers, "Authorization": flipped})
    assert bad.status == 401 and bad.doc["detail"] == "signature does not match"
    wrong = _send(cluster, 0, "GET", path, secret="not-the-secret")
    unknown = _send(cluster, 0, "GET", path, access="DKNOSUCHKEY0000000000")
    assert (wrong.status, wrong.doc["detail"]) == (unknown.status, unknown.doc["detail"]) \
        == (401, "signature does not match")


def test_an_expired_presigned_url_is_refused_and_a_fresh_one_served(
        cluster: AuthCluster) -> None:
    path = _key()
    assert _send(cluster, 0, "PUT", path, b"shared").status == 204
    node = cluster.nodes[2]
    access, secret = cluster.root
    fresh = sigv4.presign("GET", node.url + path, access_key=access, secret_key=secret,
                          region=REGION, now_s=time.time(), expires_s=60)
    got = call(node.url, "GET", fresh.removeprefix(node.url))
    assert got.status == 200 and got.body == b"shared"
    old = sigv4.presign("GET", node.url + path, access_key=access, secret_key=secret,
                        region=REGION, now_s=time.time() - 120, expires_s=60)
    expired = call(node.url, "GET", old.removeprefix(node.url))
    assert expired.status == 401 and "expired" in expired.doc["detail"]
    tampered = fresh.replace(path, path + "x")
    assert call(node.url, "GET", tampered.removeprefix(node.url)).status == 401


def test_a_replayed_write_is_refused(cluster: AuthCluster) -> None:
    path = _key()
    _url, headers = _signed(cluster, 0, "PUT", path, b"once")
    first = call(cluster.nodes[0].url, "PUT", path, headers=headers, body=b"once")
    assert first.status == 204
    again = call(cluster.nodes[0].url, "PUT", path, headers=headers, body=b"once")
    assert again.status == 401 and "replayed" in again.doc["detail"]


def test_a_skewed_clock_is_refused(cluster: AuthCluster) -> None:
    got = _send(cluster, 0, "GET", _key(), now=time.time() - 3600)
    assert got.status == 401 and "skew" in got.doc["detail"]


def test_a_body_other_than_the_signed_one_stores_nothing(cluster: AuthCluster) -> None:
    path = _key()
    _, headers = _signed(cluster, 0, "PUT", path, b"what was signed")
    got = call(cluster.nodes[0].url, "PUT", path, headers=headers, body=b"something else!")
    assert got.status == 400 and "x-amz-content-sha256" in got.doc["detail"]
    assert _send(cluster, 0, "GET", path).status == 404
    files = f"/v1/files/sig/f-{secrets.token_hex(4)}"
    _, headers = _signed(cluster, 0, "PUT", files, b"a file body")
    got = call(cluster.nodes[0].url, "PUT", files, headers=headers, body=b"another body")
    assert got.status == 400
    assert _send(cluster, 0, "GET", files).status == 404


async def test_the_python_client_signs_its_requests(cluster: AuthCluster) -> None:
    creds = Credentials(*cluster.root)
    async with DfsClient(cluster.urls, credentials=creds, sign=True) as client:
        await client.put("sig", "client-signed", b"no secret on the wire")
        got = await client.get("sig", "client-signed")
        assert got is not None and got.value == b"no secret on the wire"
        keys, _ = await client.list_page("sig", prefix="client-")
        assert "client-signed" in keys
    wrong = Credentials(cluster.root[0], "wrong-secret")
    async with DfsClient(cluster.urls, credentials=wrong, sign=True) as client:
        with pytest.raises(Exception, match="signature does not match"):
            await client.get("sig", "client-signed")
