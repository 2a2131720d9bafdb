"""The per-bucket sorted index over real node processes (issue 19, object layer): every
version key of a bucket sits in one partition, listed by its owners (the ListPartition peer
message over the real peer transport). Writes through one node, listings, reads and version
lookups through another, with a node that is not an owner of the bucket's partition
killed: nothing about a bucket needs a non-owner any more."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
import pytest

from dfsring.cli.launcher import LocalCluster
from dfsring.core import keys
from dfsring.files import versions as fv

pytestmark = pytest.mark.timeout(180)
TIMEOUT = aiohttp.ClientTimeout(total=60)
BUCKET = "idx"


async def test_a_bucket_lists_and_reads_through_another_node_with_a_non_owner_down(
        tmp_path: Path) -> None:
    with LocalCluster(4, tmp_path, n=3, r=2, w=2) as cluster:
        async with aiohttp.ClientSession(headers=cluster.auth_headers, timeout=TIMEOUT) as http:
            async with http.get(f"{cluster.nodes[0].url}/v1/cluster/ring") as r:
                ring = await r.json()
            part = keys.group_partition(keys.FILES_BUCKET, BUCKET,
                                        ring["partitions"].bit_length() - 1)
            owners = set(ring["owners"][str(part)])
            writer, reader = [n for n in cluster.nodes if n.node_id in owners][:2]
            outsider = next(n for n in cluster.nodes if n.node_id not in owners)
            outsider.kill()
            bodies = {f"dir/{i:02d}.txt": b"body %d" % i for i in range(12)}
            for path, data in bodies.items():
                async with http.put(f"{writer.url}/v1/files/{BUCKET}/{path}", data=data) as r:
                    assert r.status == 201, await r.text()
            async with http.put(f"{writer.url}/v1/files/{BUCKET}/dir/00.txt",
                                data=b"second") as r:
                assert r.status == 201
            async with http.get(f"{reader.url}/v1/files/{BUCKET}",
                                params={"prefix": "dir/", "limit": "5"}) as r:
                doc = await r.json()
                assert r.status == 200, doc
            assert [f["path"] for f in doc["files"]] == sorted(bodies)[:5]
            async with http.get(f"{reader.url}/v1/files/{BUCKET}/dir/00.txt",
                                params={"versions": ""}) as r:
                assert len((await r.json())["versions"]) == 2
            async with http.get(f"{reader.url}/v1/files/{BUCKET}/dir/00.txt") as r:
                assert hashlib.sha256(await r.read()).digest() == \
                    hashlib.sha256(b"second").digest()
    assert fv.SYSTEM_BUCKET.encode() in keys.GROUPED_BUCKETS
