"""One object transfer (bucket creation, upload, download) done the way each real client does
it, so a scenario can be written once and run through every client.

A `Transfer` is the client's own command line (or boto3 call) for each step: awscli's high
level `aws s3` and low level `aws s3api`, boto3's managed transfers, s3cmd, rclone, and curl
with URLs presigned (SigV4) by boto3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.s3.clientkit import Clients

PRESIGN_EXPIRES_S = 600
BULK_WORKERS = 32  # bounded; the nodes' fsyncs, not the client, set the pace


@dataclass(frozen=True)
class Transfer:
    """How one client creates a bucket, uploads a file and downloads an object."""

    name: str
    multipart: bool  # a 100 MiB upload goes multipart (the ETag then ends with -N)
    make_bucket: Callable[[Clients, str], None]
    put: Callable[[Clients, Path, str, str], None]  # (clients, file, bucket, key)
    get: Callable[[Clients, str, str, Path], None]  # (clients, bucket, key, file)


def _s3_uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


def _aws_mb(c: Clients, bucket: str) -> None:
    c.aws("s3", "mb", _s3_uri(bucket))


def _aws_put(c: Clients, src: Path, bucket: str, key: str) -> None:
    c.aws("s3", "cp", "--only-show-errors", str(src), _s3_uri(bucket, key))


def _aws_get(c: Clients, bucket: str, key: str, dst: Path) -> None:
    c.aws("s3", "cp", "--only-show-errors", _s3_uri(bucket, key), str(dst))


def _s3api_mb(c: Clients, bucket: str) -> None:
    c.aws("s3api", "create-bucket", "--bucket", bucket)


def _s3api_put(c: Clients, src: Path, bucket: str, key: str) -> None:
    c.aws("s3api", "put-object", "--bucket", bucket, "--key", key, "--body", str(src))


def _s3api_get(c: Clients, bucket: str, key: str, dst: Path) -> None:
    c.aws("s3api", "get-object", "--bucket", bucket, "--key", key, str(dst))


def _boto_mb(c: Clients, bucket: str) -> None:
    c.boto3().create_bucket(Bucket=bucket)


def _boto_put(c: Clients, src: Path, bucket: str, key: str) -> None:
    c.boto3().upload_file(str(src), bucket, key)


def _boto_get(c: Clients, bucket: str, key: str, dst: Path) -> None:
    c.boto3().download_file(bucket, key, str(dst))


def _s3cmd_mb(c: Clients, bucket: str) -> None:
    c.s3cmd("mb", _s3_uri(bucket))


def _s3cmd_put(c: Clients, src: Path, bucket: str, key: str) -> None:
    c.s3cmd("put", str(src), _s3_uri(bucket, key))


def _s3cmd_get(c: Clients, bucket: str, key: str, dst: Path) -> None:
    c.s3cmd("get", "--force", _s3_uri(bucket, key), str(dst))


def _rclone_mb(c: Clients, bucket: str) -> None:
    c.rclone("mkdir", f"dfs:{bucket}")


def _rclone_put(c: Clients, src: Path, bucket: str, key: str) -> None:
    c.rclone("copyto", str(src), f"dfs:{bucket}/{key}")


def _rclone_get(c: Clients, bucket: str, key: str, dst: Path) -> None:
    c.rclone("copyto", f"dfs:{bucket}/{key}", str(dst))


def _curl_put(c: Clients, src: Path, bucket: str, key: str) -> None:
    url = c.boto3().generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_EXPIRES_S)
    c.curl("-o", "/dev/null", "-T", str(src), url)


def _curl_get(c: Clients, bucket: str, key: str, dst: Path) -> None:
    url = c.boto3().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_EXPIRES_S)
    c.curl("-o", str(dst), url)


TRANSFERS = {t.name: t for t in (
    Transfer("aws-s3", True, _aws_mb, _aws_put, _aws_get),
    Transfer("aws-s3api", False, _s3api_mb, _s3api_put, _s3api_get),
    Transfer("boto3", True, _boto_mb, _boto_put, _boto_get),
    Transfer("s3cmd", True, _s3cmd_mb, _s3cmd_put, _s3cmd_get),
    Transfer("rclone", True, _rclone_mb, _rclone_put, _rclone_get),
    Transfer("curl-presigned", False, _boto_mb, _curl_put, _curl_get),
)}


def put_many(s3: Any, bucket: str, keys: Iterable[str], body: bytes = b"x") -> int:
    """PutObject of every key with a bounded thread pool (one boto3 client is thread safe);
    returns how many were written (every failure propagates)."""
    with ThreadPoolExecutor(BULK_WORKERS) as pool:
        done = list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=body), keys))
    return len(done)


def list_all(s3: Any, bucket: str, *, v1: bool = False, page_size: int = 1000, **params: Any
             ) -> tuple[list[str], list[str], int]:
    """(keys, common prefixes, pages) of a whole listing through boto3's paginator
    (ListObjectsV2, or V1 with `v1`; `page_size` as MaxKeys), in the order the server gave
    them."""
    paginator = s3.get_paginator("list_objects" if v1 else "list_objects_v2")
    keys: list[str] = []
    prefixes: list[str] = []
    pages = 0
    config = {"MaxItems": 100_000, "PageSize": page_size}
    for page in paginator.paginate(Bucket=bucket, PaginationConfig=config, **params):
        pages += 1
        keys.extend(o["Key"] for o in page.get("Contents", []))
        prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return keys, prefixes, pages
