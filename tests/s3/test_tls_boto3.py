"""boto3 over HTTPS with its default checksum behaviour (issue 19): since boto3 1.36 botocore
sends request bodies over TLS as aws-chunked with an unsigned payload and a trailing
x-amz-checksum-crc32, and multipart parts with per-part CRC32s. A 3-node TLS cluster (auth on,
N=3 R=2 W=2) must take all of it, answer the checksum back on GET, and return the bytes.
"""

from __future__ import annotations

import base64
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore
import pytest

from tests.s3.clientkit import MIB, Clients, Target, sha256_file
from tests.s3.conftest import ENDPOINT_ENV, Payload, s3_cluster, tls_files

STREAMING_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Clients, Clients]]:
    """(clients of node1, clients of node2) of a TLS cluster: https endpoints, our CA."""
    work = tmp_path_factory.mktemp("s3-tls")
    dev = os.environ.get(ENDPOINT_ENV, "")
    if dev:
        if not dev.startswith("https://") or "DFSRING_S3_SUITE_CA" not in os.environ:
            pytest.skip(f"{ENDPOINT_ENV} is set but not https with DFSRING_S3_SUITE_CA")
        target = Target(dev, "testing", "testing", ca=Path(os.environ["DFSRING_S3_SUITE_CA"]))
        yield Clients(target, work / "up"), Clients(target, work / "down")
        return
    tls = tls_files(work / "pki")
    with s3_cluster(work / "cluster", tls=tls) as cluster:
        creds = cluster.credentials
        up, down = (Target(cluster.node(n).s3_url or "", creds.access_key, creds.secret_key,
                           ca=tls.ca) for n in ("node1", "node2"))
        assert up.https and down.https, f"TLS cluster serves S3 over https: {up.url}"
        yield Clients(up, work / "up"), Clients(down, work / "down")


def _record_requests(s3: Any) -> list[tuple[str, dict[str, str]]]:
    """Every request the client sends, as (operation, headers), captured before sending."""
    seen: list[tuple[str, dict[str, str]]] = []

    def before_send(request: Any, event_name: str = "", **_: Any) -> None:
        headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v)
                   for k, v in request.headers.items()}
        seen.append((event_name.rpartition(".")[2], headers))

    s3.meta.events.register("before-send.s3", before_send)
    return seen


def _crc32_b64(path: Path) -> str:
    crc = 0
    with path.open("rb") as fh:
        while piece := fh.read(MIB):
            crc = zlib.crc32(piece, crc)
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def test_botocore_is_new_enough_to_send_default_checksums() -> None:
    version = tuple(int(x) for x in botocore.__version__.split(".")[:2])
    assert version >= (1, 36), f"botocore {botocore.__version__} predates default checksums"


def test_put_object_over_https_streams_aws_chunked_with_a_crc32_trailer(
        tls_site: tuple[Clients, Clients], payloads: dict[str, Payload],
        tmp_path: Path) -> None:
    up, down = tls_site
    s3 = up.new_boto3()
    seen = _record_requests(s3)
    bucket = "tls-put"
    s3.create_bucket(Bucket=bucket)
    reader = down.boto3()
    for name in ("0B", "2KiB", "5MiB"):
        p = payloads[name]
        with p.path.open("rb") as body:
            s3.put_object(Bucket=bucket, Key=f"obj {name}", Body=body)
        sent = [h for op, h in seen if op == "PutObject"][-1]
        assert sent.get("x-amz-content-sha256") == STREAMING_TRAILER, \
            f"boto3's PutObject over HTTPS is an unsigned streaming body with a trailer: {sent}"
        assert sent.get("x-amz-trailer") == "x-amz-checksum-crc32", \
            f"boto3's default trailer is a CRC32: {sent.get('x-amz-trailer')}"
        got = reader.get_object(Bucket=bucket, Key=f"obj {name}", ChecksumMode="ENABLED")
        assert got.get("ChecksumCRC32") == _crc32_b64(p.path), \
            f"CRC32 answered on GET of {name} vs the CRC32 of the bytes sent"
        out = tmp_path / name
        with out.open("wb") as fh:
            for piece in got["Body"].iter_chunks(MIB):
                fh.write(piece)
        assert sha256_file(out) == p.sha256, f"SHA-256 of {name} read back over HTTPS"


def test_multipart_upload_over_https_with_part_checksums_reads_back(
        tls_site: tuple[Clients, Clients], payloads: dict[str, Payload],
        tmp_path: Path) -> None:
    up, down = tls_site
    s3 = up.new_boto3()
    seen = _record_requests(s3)
    bucket = "tls-multipart"
    s3.create_bucket(Bucket=bucket)
    big = max(payloads.values(), key=lambda p: p.size)
    s3.upload_file(str(big.path), bucket, "big object")
    parts = [h for op, h in seen if op == "UploadPart"]
    assert len(parts) >= 2, f"upload_file of {big.name} went multipart: {len(parts)} parts"
    assert all(h.get("x-amz-trailer") == "x-amz-checksum-crc32" for h in parts), \
        "every UploadPart carried a CRC32 trailer"
    head = down.boto3().head_object(Bucket=bucket, Key="big object")
    assert head["ContentLength"] == big.size, "Content-Length of the multipart object"
    assert head["ETag"].strip('"').endswith(f"-{len(parts)}"), \
        f"ETag {head['ETag']} names the {len(parts)} parts"
    down.boto3().download_file(bucket, "big object", str(tmp_path / "big"))
    assert sha256_file(tmp_path / "big") == big.sha256, \
        f"SHA-256 of the {big.name} multipart object read back over HTTPS"
