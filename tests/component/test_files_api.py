"""The files HTTP API and the file commands of the CLI against one real node (N=1).

The node cuts files into 64 KiB chunks (on average) so that multi-chunk files stay small.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from dfsring.cli.launcher import LocalCluster
from dfsring.files.versions import MAX_PATH_BYTES
from dfsring.testing.wait import async_wait_until

pytestmark = pytest.mark.component
MAIN = "import sys; from dfsring.cli.main import main; sys.exit(main())"


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    args = ("--chunk-size", "65536", "--file-retention-versions", "3")
    with LocalCluster(1, tmp_path_factory.mktemp("files"), n=1, r=1, w=1,
                      extra_args=args) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def url(one_node: LocalCluster) -> Iterator[str]:
    """The node's URL; the CLI runs this module starts find the node's root credentials in
    their environment, as a user's shell would have them."""
    creds = one_node.credentials
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DFSRING_ACCESS_KEY", creds.access_key)
        env.setenv("DFSRING_SECRET_KEY", creds.secret_key)
        yield one_node.urls[0]


@pytest.fixture
async def http(one_node: LocalCluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60),
                                     headers=one_node.auth_headers) as session:
        yield session


@pytest.fixture
def bucket() -> str:
    return f"f-{secrets.token_hex(4)}"


async def put(http: aiohttp.ClientSession, url: str, path: str, data: bytes,
              **headers: str) -> dict[str, object]:
    async with http.put(f"{url}/v1/files/{path}", data=data, headers=headers) as r:
        doc = await r.json()
        assert r.status == 201, doc
        return doc  # type: ignore[no-any-return]


async def test_round_trips_of_every_size(url: str, http: aiohttp.ClientSession,
                                         bucket: str) -> None:
    for size in (0, 1, 65_536, 65_537, 700_000):
        data = os.urandom(size)
        doc = await put(http, url, f"{bucket}/s{size}", data, **{"Content-Type": "text/x"})
        assert doc["size"] == size and doc["sha256"] == hashlib.sha256(data).hexdigest()
        assert (doc["chunks"] == 0) == (size <= 65_536)  # small files live in the manifest
        async with http.get(f"{url}/v1/files/{bucket}/s{size}") as r:
            assert r.status == 200 and await r.read() == data
            assert r.headers["Content-Type"] == "text/x"
            assert r.headers["ETag"] == f'"{doc["sha256"]}"'
            assert r.headers["Dfs-Version"] == doc["version"]
            assert r.headers["Accept-Ranges"] == "bytes" and "Last-Modified" in r.headers


async def test_chunked_transfer_encoding_and_metadata(url: str, http: aiohttp.ClientSession,
                                                      bucket: str) -> None:
    data = os.urandom(300_000)

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 7_000):
            yield data[start:start + 7_000]

    async with http.put(f"{url}/v1/files/{bucket}/dir/streamed", data=body(),
                        headers={"Dfs-Meta-Owner": "Ann", "dfs-meta-tag": "x y"}) as r:
        assert r.status == 201 and "Content-Length" not in r.request_info.headers
    async with http.head(f"{url}/v1/files/{bucket}/dir/streamed") as r:
        assert r.status == 200 and await r.read() == b""
        assert r.headers["Content-Length"] == str(len(data))
        assert r.headers["Dfs-Meta-owner"] == "Ann" and r.headers["Dfs-Meta-tag"] == "x y"
        assert r.headers["Content-Type"] == "application/octet-stream"
    async with http.get(f"{url}/v1/files/{bucket}/dir/streamed") as r:
        assert await r.read() == data


async def test_ranges(url: str, http: aiohttp.ClientSession, bucket: str) -> None:
    data = os.urandom(400_000)
    await put(http, url, f"{bucket}/r", data)
    cases = {"bytes=0-0": (0, 0), "bytes=100000-250000": (100_000, 250_000),
             "bytes=-10": (399_990, 399_999), "bytes=399999-": (399_999, 399_999),
             "bytes=390000-999999": (390_000, 399_999)}
    for header, (start, end) in cases.items():
        async with http.get(f"{url}/v1/files/{bucket}/r", headers={"Range": header}) as r:
            assert r.status == 206, header
            assert r.headers["Content-Range"] == f"bytes {start}-{end}/400000"
            assert await r.read() == data[start:end + 1]
    async with http.get(f"{url}/v1/files/{bucket}/r", headers={"Range": "bytes=0-1,5-6"}) as r:
        assert r.status == 200 and len(await r.read()) == 400_000  # several ranges: ignored
    async with http.get(f"{url}/v1/files/{bucket}/r", headers={"Range": "bytes=400000-"}) as r:
        assert r.status == 416 and r.headers["Content-Range"] == "bytes */400000"
        assert (await r.json())["type"].endswith("/range-not-satisfiable")


async def test_etag_revalidation(url: str, http: aiohttp.ClientSession, bucket: str) -> None:
    doc = await put(http, url, f"{bucket}/e", b"same bytes")
    etag = f'"{doc["sha256"]}"'
    async with http.get(f"{url}/v1/files/{bucket}/e", headers={"If-None-Match": etag}) as r:
        assert r.status == 304 and await r.read() == b""
    async with http.get(f"{url}/v1/files/{bucket}/e", headers={"If-None-Match": '"x"'}) as r:
        assert r.status == 200


async def test_versions_delete_and_retention(url: str, http: aiohttp.ClientSession,
                                             bucket: str) -> None:
    docs = [await put(http, url, f"{bucket}/v", f"v{i}".encode() * 40_000) for i in range(5)]
    path = f"{url}/v1/files/{bucket}/v"

    async def kept() -> list[dict[str, object]]:
        async with http.get(path, params={"versions": ""}) as r:
            assert r.status == 200
            return list((await r.json())["versions"])

    # --file-retention-versions 3: the node prunes after each upload, in the background
    await async_wait_until(lambda: _count_is(kept, 3), timeout=10, message="3 versions kept")
    listed = await kept()
    assert [v["version"] for v in listed] == [d["version"] for d in docs[:1:-1]]
    assert listed[0]["current"] and not any(v["current"] for v in listed[1:])
    async with http.get(path, params={"version": str(docs[3]["version"])}) as r:
        assert await r.read() == b"v3" * 40_000
    async with http.get(path, params={"version": str(docs[0]["version"])}) as r:
        assert r.status == 404  # pruned
    async with http.delete(path) as r:
        assert r.status == 204
        marker = r.headers["Dfs-Version"]
    async with http.get(path) as r:
        assert r.status == 404
    async with http.delete(path) as r:
        assert r.status == 404  # nothing left to delete
    listed = await kept()
    assert listed[0]["version"] == marker and listed[0]["deleted"]
    async with http.get(path, params={"version": str(docs[4]["version"])}) as r:
        assert r.status == 200  # older versions stay readable
    async with http.delete(path, params={"version": str(docs[4]["version"])}) as r:
        assert r.status == 204  # removed for good
    assert str(docs[4]["version"]) not in {v["version"] for v in await kept()}
    await put(http, url, f"{bucket}/v", b"back")
    async with http.get(path) as r:
        assert await r.read() == b"back"


async def _count_is(kept: object, n: int) -> bool:
    return len(await kept()) == n  # type: ignore[operator]


async def test_listing_pages_and_skips_deleted_files(url: str, http: aiohttp.ClientSession,
                                                     bucket: str) -> None:
    names = ["a", "a/b", "a/c", "b", "c/d", "c/e"]
    for name in names:
        await put(http, url, f"{bucket}/{name}", name.encode())
        await put(http, url, f"{bucket}/{name}", name.encode() * 2)  # two versions each
    async with http.delete(f"{url}/v1/files/{bucket}/b") as r:
        assert r.status == 204
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        async with http.get(f"{url}/v1/files/{bucket}", params=params) as r:
            doc = await r.json()
        seen += [f["path"] for f in doc["files"]]
        assert all(f["size"] == 2 * len(f["path"]) for f in doc["files"])
        cursor = doc["cursor"]
        if cursor is None:
            break
    assert seen == ["a", "a/b", "a/c", "c/d", "c/e"]
    async with http.get(f"{url}/v1/files/{bucket}", params={"prefix": "a/"}) as r:
        assert [f["path"] for f in (await r.json())["files"]] == ["a/b", "a/c"]


@pytest.mark.parametrize(("method", "path", "headers", "status", "slug"), [
    ("PUT", "/v1/files/dfs..files/x", {}, 400, "invalid-key"),
    ("PUT", "/v1/kv/dfs..files/x", {}, 400, "invalid-key"),
    ("GET", "/v1/files/Bad/x", {}, 400, "invalid-key"),
    ("PUT", "/v1/files/b/" + "x" * (MAX_PATH_BYTES + 1), {}, 400, "invalid-key"),
    ("PUT", "/v1/files/b/a%00b", {}, 400, "invalid-key"),
    ("PUT", "/v1/files/b/", {}, 400, "invalid-key"),
    ("PUT", "/v1/files/b/x?w=2", {}, 400, "bad-request"),
    ("GET", "/v1/files/b/x?version=1&versions", {}, 400, "bad-request"),
    ("PUT", "/v1/files/b/x", {"Dfs-Meta-_x": "v"}, 400, "bad-request"),
    ("PUT", "/v1/files/b/x", {"Content-Length": str(10**13)}, 413, "payload-too-large"),
    ("GET", "/v1/files/b/never", {}, 404, "not-found"),
    ("GET", "/v1/files/b/x?version=nonsense", {}, 404, "not-found"),
    ("GET", "/v1/files/b?cursor=!!", {}, 400, "bad-request"),
])
async def test_bad_requests(url: str, http: aiohttp.ClientSession, method: str, path: str,
                            headers: dict[str, str], status: int, slug: str) -> None:
    data = None if "Content-Length" in headers else b"x"
    async with http.request(method, f"{url}{path}", headers=headers, data=data) as r:
        assert r.status == status, await r.text()
        doc = await r.json()
        assert doc["type"].endswith("/" + slug) and doc["request_id"]


async def test_a_client_that_stops_sending_leaves_no_version(url: str,
                                                             http: aiohttp.ClientSession,
                                                             bucket: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"PUT /v1/files/{bucket}/cut HTTP/1.1\r\nHost: x\r\n"
                 f"Content-Length: 5000000\r\n\r\n".encode() + os.urandom(1_500_000))
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    await writer.wait_closed()
    async with http.get(f"{url}/v1/files/{bucket}/cut", params={"versions": ""}) as r:
        assert r.status == 404
    async with http.get(f"{url}/v1/node/chunks") as r:
        stats = await r.json()
    assert stats["chunks"] >= 1 and "last_gc" in stats
    async with http.post(f"{url}/v1/node/gc") as r:
        report = await r.json()
    assert r.status == 200 and report["deleted"] == 0  # younger than the grace period


# --- the CLI ---------------------------------------------------------------------------------


def dfsring(*args: str, url: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", MAIN, *args, "--url", url],
                          capture_output=True, timeout=120, check=False)


def test_cli_upload_download_ls(url: str, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "data.txt"
    source.write_bytes(os.urandom(2_000_000))
    up = dfsring("upload", str(source), f"{bucket}/docs/data.txt", "--meta", "k=v", url=url)
    assert up.returncode == 0, up.stderr
    assert b"100%" in up.stderr and b"MB/s" in up.stderr  # the progress bar's last state
    assert b'"size": 2000000' in up.stdout
    out = tmp_path / "copy.bin"
    down = dfsring("download", f"{bucket}/docs/data.txt", str(out), "--part-mib", "1",
                   "--parallel", "3", url=url)
    assert down.returncode == 0, down.stderr
    assert out.read_bytes() == source.read_bytes()
    assert not (tmp_path / "copy.bin.part").exists()
    piped = dfsring("download", f"{bucket}/docs/data.txt", "-", url=url)
    assert piped.stdout == source.read_bytes()
    listed = dfsring("ls", "--files", f"{bucket}/docs/", url=url)
    assert listed.stdout.decode().splitlines() == ["docs/data.txt"]
    long = dfsring("ls", "--files", "-l", bucket, url=url)
    assert "2000000" in long.stdout.decode() and "docs/data.txt" in long.stdout.decode()
    keys = dfsring("ls", bucket, url=url)
    assert keys.returncode == 0 and keys.stdout == b""  # files are not keys
    missing = dfsring("download", f"{bucket}/nope", str(tmp_path / "x"), url=url)
    assert missing.returncode == 4 and b"not found" in missing.stderr
    bad = dfsring("upload", str(tmp_path / "absent"), f"{bucket}/x", url=url)
    assert bad.returncode == 1 and b"Traceback" not in bad.stderr
