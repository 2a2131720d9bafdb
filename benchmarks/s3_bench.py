"""S3 API throughput against the native files API, small-object ops/s and listing latency.

    python -m benchmarks.s3_bench                      # 256 MiB, 16 clients, 100 000 keys
    python -m benchmarks.s3_bench --size-mib 8 --small-ops 200 --list-objects 2000  # smoke

Starts a 3-node cluster of real nodes (auth on, fsync, N=3 R=2 W=2, S3 on every node) and, in
one run, so that the ratios compare like with like:

1. big object: one --size-mib object of random bytes PUT through node1 and read back through
   node3, over the native files API (benchmarks.files_bench's upload/download) and over S3
   with boto3's managed transfer (multipart: 8 MiB parts, 10 threads, its defaults); MiB/s
   of each and S3/native. The content is checked (SHA-256) both ways.
2. small objects: --small-ops PutObject then GetObject of 4 KiB at --clients concurrent
   clients; ops/s and latency percentiles. The clients are asyncio tasks sending requests
   signed with dfsring.core.sigv4.sign_headers over aiohttp, not boto3 threads: boto3 costs
   about a millisecond of CPU per call under the GIL, which on a 2-core box would measure the
   client. The generator's own CPU per op is printed, so that claim can be checked.
3. listing: --list-objects keys created with small PUTs at --fill-clients concurrency (the
   rate is printed), then ListObjectsV2 of one 1000-key page, from the start and from the
   middle (start-after), --list-repeats times each; milliseconds, median and best.

Prints one line per figure, then all figures as one JSON document (also written to --json).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.client import Config
from yarl import URL

from benchmarks.files_bench import download, upload
from benchmarks.hdr import Histogram
from dfsring.cli.launcher import LocalCluster
from dfsring.client.credentials import Credentials
from dfsring.core.sigv4 import sign_headers
from dfsring.testing.files import random_blocks

MIB = 1 << 20
SMALL = 4096
PAGE = 1000
FILL_RETRIES = 4  # 503s retried per PutObject while filling the listed bucket
REGION = "us-east-1"
START_TIMEOUT_S = 60.0
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class Endpoint:
    """An S3 endpoint and the key that signs for it."""

    url: str
    credentials: Credentials

    def boto3(self) -> Any:
        cfg = Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                     retries={"max_attempts": 1}, read_timeout=300, max_pool_connections=16)
        return boto3.session.Session().client(
            "s3", endpoint_url=self.url, region_name=REGION, config=cfg,
            aws_access_key_id=self.credentials.access_key,
            aws_secret_access_key=self.credentials.secret_key)


class _RandomReader:
    """A read()-able stream of `size` random bytes (random_blocks) hashing what it hands out,
    so boto3 uploads it without the object ever being whole in memory or on disk."""

    def __init__(self, size: int) -> None:
        self._blocks: Iterator[bytes] = random_blocks(size, seed=2)
        self._buffer = b""
        self._lock = threading.Lock()
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        with self._lock:
            while n < 0 or len(self._buffer) < n:
                block = next(self._blocks, None)
                if block is None:
                    break
                self._buffer += block
            cut = len(self._buffer) if n < 0 else n
            out, self._buffer = self._buffer[:cut], self._buffer[cut:]
            self.digest.update(out)
            return out


class _HashingSink:
    """A write()-able sink keeping only the SHA-256 and length of what it receives; boto3's
    download_fileobj writes parts in order when the sink is not seekable."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return len(data)


def s3_big(up: Endpoint, down: Endpoint, bucket: str, size: int) -> tuple[float, float, int]:
    """(PUT s, GET s, parts) of one object of `size` random bytes through boto3's managed
    transfer; the content read back is checked."""
    s3 = up.boto3()
    s3.create_bucket(Bucket=bucket)
    source = _RandomReader(size)
    started = time.perf_counter()
    s3.upload_fileobj(source, bucket, "big", Config=TransferConfig())
    put_s = time.perf_counter() - started
    etag = s3.head_object(Bucket=bucket, Key="big")["ETag"].strip('"')
    sink = _HashingSink()
    started = time.perf_counter()
    down.boto3().download_fileobj(bucket, "big", sink, Config=TransferConfig(max_concurrency=1))
    get_s = time.perf_counter() - started
    assert sink.size == size and sink.digest.digest() == source.digest.digest(), \
        "S3 object read back differs from the one sent"
    parts = int(etag.rpartition("-")[2]) if "-" in etag else 1
    return put_s, get_s, parts


class Signer:
    """Signed aiohttp requests to one S3 endpoint (path style, SigV4, unsigned payload)."""

    def __init__(self, endpoint: Endpoint, http: aiohttp.ClientSession) -> None:
        self.endpoint = endpoint
        self.http = http

    async def request(self, method: str, path: str, query: str = "", body: bytes = b""
                      ) -> tuple[int, bytes]:
        url = f"{self.endpoint.url}{path}" + (f"?{query}" if query else "")
        headers = {"Content-Length": str(len(body))} if method == "PUT" else {}
        creds = self.endpoint.credentials
        headers.update(sign_headers(method, url, headers, access_key=creds.access_key,
                                    secret_key=creds.secret_key, region=REGION,
                                    now_s=time.time()))
        async with self.http.request(method, URL(url, encoded=True), headers=headers,
                                     data=body if method == "PUT" else None) as resp:
            data = await resp.read()
            return resp.status, data


def _key_path(bucket: str, key: str) -> str:
    return f"/{bucket}/{quote(key, safe='/~')}"


async def _pool(count: int, clients: int, op: Any) -> Histogram:
    """Run op(i) for i in range(count) on `clients` tasks; latencies (ns) of each call."""
    hist = Histogram()
    next_index = iter(range(count))

    async def worker() -> None:
        for i in next_index:
            started = time.perf_counter_ns()
            await op(i)
            hist.record(time.perf_counter_ns() - started)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return hist


def _session(clients: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=120),
        connector=aiohttp.TCPConnector(limit=clients, force_close=False))


async def small_ops(endpoint: Endpoint, bucket: str, ops: int, clients: int
                    ) -> dict[str, dict[str, float]]:
    """PutObject then GetObject of `ops` 4 KiB objects at `clients` concurrency."""
    body = os.urandom(SMALL)
    figures: dict[str, dict[str, float]] = {}
    async with _session(clients) as http:
        s3 = Signer(endpoint, http)
        status, text = await s3.request("PUT", f"/{bucket}")
        assert status == 200, f"CreateBucket {bucket}: {status} {text[:300]!r}"

        async def put(i: int) -> None:
            status, text = await s3.request("PUT", _key_path(bucket, f"small/{i:07d}"),
                                            body=body)
            assert status == 200, f"PutObject small/{i:07d}: {status} {text[:300]!r}"

        async def get(i: int) -> None:
            status, data = await s3.request("GET", _key_path(bucket, f"small/{i:07d}"))
            assert status == 200 and data == body, f"GetObject small/{i:07d}: {status}"

        for name, op in (("put_4k", put), ("get_4k", get)):
            cpu0, started = time.process_time(), time.perf_counter()
            hist = await _pool(ops, clients, op)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
            figures[name] = {"ops_per_s": ops / wall,
                             "p50_ms": hist.percentile(50) / 1e6,
                             "p99_ms": hist.percentile(99) / 1e6,
                             "client_cpu_us_per_op": cpu / ops * 1e6}
    return figures


async def fill(endpoint: Endpoint, bucket: str, count: int, clients: int) -> float:
    """Create `count` 1-byte objects (keys in lexical order of their number); objects/s."""
    async with _session(clients) as http:
        s3 = Signer(endpoint, http)
        status, text = await s3.request("PUT", f"/{bucket}")
        assert status == 200, f"CreateBucket {bucket}: {status} {text[:300]!r}"

        retried = 0

        async def put(i: int) -> None:
            """A 503 (a quorum not met in time on a loaded machine) is retried, as every S3
            client retries it, at most FILL_RETRIES times with a growing pause."""
            nonlocal retried
            for attempt in range(FILL_RETRIES + 1):
                status, text = await s3.request("PUT", _key_path(bucket, f"obj/{i:07d}"),
                                                body=b"x")
                if status != 503 or attempt == FILL_RETRIES:
                    break
                retried += 1
                await asyncio.sleep(0.1 * 2 ** attempt)
            assert status == 200, f"PutObject obj/{i:07d}: {status} {text[:300]!r}"

        started = time.perf_counter()
        await _pool(count, clients, put)
        rate = count / (time.perf_counter() - started)
        if retried:
            print(f"fill: {retried} PutObject answers were 503 and retried", flush=True)
        return rate


async def list_pages(endpoint: Endpoint, bucket: str, count: int, repeats: int
                     ) -> dict[str, dict[str, float]]:
    """ms of ListObjectsV2 of one PAGE-key page, from the start and from the middle."""
    figures: dict[str, dict[str, float]] = {}
    middle = f"obj/{count // 2:07d}"
    expected = {"first_page": min(PAGE, count), "middle_page": min(PAGE, count - count // 2 - 1)}
    async with _session(1) as http:
        s3 = Signer(endpoint, http)
        for name, query in (("first_page", f"list-type=2&max-keys={PAGE}"),
                            ("middle_page", f"list-type=2&max-keys={PAGE}&start-after="
                                            f"{quote(middle, safe='')}")):
            times: list[float] = []
            for _ in range(repeats):
                started = time.perf_counter()
                status, data = await s3.request("GET", f"/{bucket}", query)
                times.append((time.perf_counter() - started) * 1e3)
                assert status == 200, f"ListObjectsV2 {query}: {status} {data[:300]!r}"
                keys = ET.fromstring(data).findall(f"{S3_NS}Contents")
                assert len(keys) == expected[name], \
                    f"{name}: {len(keys)} keys in the page, not {expected[name]}"
            figures[name] = {"median_ms": statistics.median(times), "best_ms": min(times)}
    return figures


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    size = args.size_mib * MIB
    results: dict[str, Any] = {"config": {k: v for k, v in vars(args).items()
                                          if k not in ("json",)}}
    with LocalCluster(3, base, n=3, r=2, w=2, s3=True,
                      extra_args=("--durability", args.durability)) as cluster:
        cluster.wait_converged(START_TIMEOUT_S)
        first, last = cluster.nodes[0], cluster.nodes[-1]
        up, down = (Endpoint(n.s3_url or "", cluster.credentials) for n in (first, last))

        put_s, sent, doc = asyncio.run(upload(first.url, "big", size, cluster.auth_headers))
        get_s, got_sha, got = asyncio.run(download(last.url, "big", cluster.auth_headers))
        assert got == size and got_sha == sent == doc["sha256"], "native: content differs"
        s3_put_s, s3_get_s, parts = s3_big(up, down, "bench-big", size)
        native = {"put_mib_s": args.size_mib / put_s, "get_mib_s": args.size_mib / get_s}
        s3 = {"put_mib_s": args.size_mib / s3_put_s, "get_mib_s": args.size_mib / s3_get_s,
              "parts": parts}
        results["big_object"] = {
            "size_mib": args.size_mib, "native": native, "s3": s3,
            "s3_vs_native": {k: s3[k] / native[k] for k in ("put_mib_s", "get_mib_s")}}
        _print_big(results["big_object"])

        results["small_objects"] = asyncio.run(
            small_ops(up, "bench-small", args.small_ops, args.clients))
        for name, fig in results["small_objects"].items():
            print(f"{name}  {args.clients} clients: {fig['ops_per_s']:8.0f} ops/s  p50 "
                  f"{fig['p50_ms']:6.1f} ms  p99 {fig['p99_ms']:6.1f} ms  client CPU "
                  f"{fig['client_cpu_us_per_op']:5.0f} us/op", flush=True)

        rate = asyncio.run(fill(up, "bench-list", args.list_objects, args.fill_clients))
        print(f"fill   {args.list_objects} objects: {rate:8.0f} objects/s", flush=True)
        pages = asyncio.run(list_pages(down, "bench-list", args.list_objects,
                                       args.list_repeats))
        results["listing"] = {"objects": args.list_objects, "fill_objects_per_s": rate,
                              **pages}
        for name, fig in pages.items():
            print(f"ListObjectsV2 {name} ({PAGE} of {args.list_objects}): median "
                  f"{fig['median_ms']:7.1f} ms  best {fig['best_ms']:7.1f} ms", flush=True)
    return results


def _print_big(big: dict[str, Any]) -> None:
    n, s, r = big["native"], big["s3"], big["s3_vs_native"]
    print(f"{big['size_mib']} MiB  native PUT {n['put_mib_s']:7.1f} MiB/s  GET "
          f"{n['get_mib_s']:7.1f} MiB/s", flush=True)
    print(f"{big['size_mib']} MiB  S3     PUT {s['put_mib_s']:7.1f} MiB/s  GET "
          f"{s['get_mib_s']:7.1f} MiB/s  ({s['parts']} parts)", flush=True)
    print(f"S3/native  PUT {r['put_mib_s']:5.2f}  GET {r['get_mib_s']:5.2f}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="big object size")
    parser.add_argument("--clients", type=int, default=16, help="small-object clients")
    parser.add_argument("--small-ops", type=int, default=4000,
                        help="4 KiB PutObject (then GetObject) calls")
    parser.add_argument("--list-objects", type=int, default=100_000,
                        help="objects in the listed bucket")
    parser.add_argument("--fill-clients", type=int, default=64,
                        help="concurrent PUTs creating the listed bucket")
    parser.add_argument("--list-repeats", type=int, default=5)
    parser.add_argument("--durability", default="fsync", choices=("fsync", "none"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the cluster's data here (default: a temporary dir, removed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if not (1 <= args.size_mib <= 4096 and 1 <= args.clients <= 256
            and 1 <= args.small_ops <= 1_000_000 and 1 <= args.list_objects <= 1_000_000
            and 1 <= args.fill_clients <= 256 and 1 <= args.list_repeats <= 100):
        parser.error("--size-mib 1..4096, --clients 1..256, --small-ops 1..1e6, "
                     "--list-objects 1..1e6, --fill-clients 1..256, --list-repeats 1..100")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="s3-bench-"))
    try:
        results = run(args, base)
    finally:
        if args.data_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    doc = json.dumps(results, indent=2, default=str)
    print(doc)
    if args.json is not None:
        args.json.write_text(doc)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
