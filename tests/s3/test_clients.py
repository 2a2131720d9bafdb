"""Real S3 clients against a 3-node cluster with auth on (issue 19 "Must show"), once with
every node up and once with node3 killed (N=3 W=2: writes and reads still reach a quorum).

Every client uploads through node1 and reads back through node2, byte for byte (SHA-256 of
the files, never 100 MiB held twice in memory), under key names that need escaping.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.s3.clientkit import make_file, sha256_file
from tests.s3.conftest import Payload, Site
from tests.s3.transfers import TRANSFERS, list_all, put_many

# Names that need escaping in URLs, SigV4 canonical requests, XML and form-encoded listings.
WEIRD = '&+-é"/ a'
# Few, each covering several cases: every client run costs seconds (awscli starts slowly).
KEY_NAMES = (WEIRD, "100% sure  two spaces", "ünïcödé/日本語/ключ",
             "deep/a/b/c/d/e/f/g/h/i/leaf", "~tilde*star=eq+plus&amp'q\"q")


def _big(payloads: dict[str, Payload]) -> Payload:
    return max(payloads.values(), key=lambda p: p.size)


@pytest.mark.timeout(600)  # 2 x 100 MiB and 26 client runs on a loaded 2-core box
@pytest.mark.parametrize("client", sorted(TRANSFERS))
def test_client_round_trips_every_size_and_awkward_key(
        s3_site: Site, payloads: dict[str, Payload], client: str, tmp_path: Path) -> None:
    t = TRANSFERS[client]
    bucket = s3_site.bucket(client)
    t.make_bucket(s3_site.up, bucket)
    expected: dict[str, str] = {}
    for p in payloads.values():
        key = f"sizes/{p.name}/{WEIRD}"
        t.put(s3_site.up, p.path, bucket, key)
        expected[key] = p.sha256
        back = tmp_path / f"back-{p.name}"
        t.get(s3_site.down, bucket, key, back)
        assert back.stat().st_size == p.size, f"{client}: size of {p.name} read back"
        assert sha256_file(back) == p.sha256, f"{client}: SHA-256 of {p.name} read back"
        back.unlink()
    small = payloads["2KiB"]
    for key in KEY_NAMES:
        t.put(s3_site.up, small.path, bucket, key)
        expected[key] = small.sha256
        back = tmp_path / "back-name"
        t.get(s3_site.down, bucket, key, back)
        assert sha256_file(back) == small.sha256, f"{client}: SHA-256 of {key!r} read back"

    s3 = s3_site.down.boto3()
    keys, _, _ = list_all(s3, bucket)
    assert keys == sorted(expected, key=lambda k: k.encode()), \
        f"{client}: ListObjectsV2 keys vs the keys uploaded, in UTF-8 byte order"
    for p in payloads.values():
        head = s3.head_object(Bucket=bucket, Key=f"sizes/{p.name}/{WEIRD}")
        assert head["ContentLength"] == p.size, f"{client}: HEAD Content-Length of {p.name}"
    big = _big(payloads)
    etag = s3.head_object(Bucket=bucket, Key=f"sizes/{big.name}/{WEIRD}")["ETag"].strip('"')
    if t.multipart:
        parts = etag.rpartition("-")[2]
        assert "-" in etag and parts.isdigit() and int(parts) >= 2, \
            f"{client}: ETag {etag} of the {big.name} object names its parts (multipart)"
    else:
        assert etag == _md5(big.path), f"{client}: single-PUT ETag {etag} vs the MD5 sent"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while piece := fh.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _make_tree(root: Path) -> dict[str, str]:
    """~40 files over nested directories, names needing escaping, sizes 0 B to 300 KiB."""
    for i in range(40):
        sub = ["", "a", "a/b", f"d {i % 3}", f"ü+&/{WEIRD}"][i % 5]
        make_file(root / sub / f"file {i}+%.bin", (i * 7919) % (300 << 10) if i % 9 else 0, i)
    return _tree(root)


def test_aws_s3_sync_of_a_tree_up_and_back_is_byte_for_byte(
        s3_site: Site, tmp_path: Path) -> None:
    bucket = s3_site.bucket("sync")
    s3_site.up.aws("s3", "mb", f"s3://{bucket}")
    sent = _make_tree(tmp_path / "up")
    s3_site.up.aws("s3", "sync", "--only-show-errors", str(tmp_path / "up"),
                   f"s3://{bucket}/tree")
    s3_site.down.aws("s3", "sync", "--only-show-errors", f"s3://{bucket}/tree",
                     str(tmp_path / "down"))
    assert _tree(tmp_path / "down") == sent, "tree synced back vs tree synced up"
    again = s3_site.up.aws("s3", "sync", str(tmp_path / "up"), f"s3://{bucket}/tree")
    assert again.strip() == "", f"a second sync of an unchanged tree uploads nothing: {again}"


def test_rclone_copy_then_check_finds_no_difference(s3_site: Site, tmp_path: Path) -> None:
    bucket = s3_site.bucket("rclone")
    s3_site.up.rclone("mkdir", f"dfs:{bucket}")
    sent = _make_tree(tmp_path / "up")
    s3_site.up.rclone("copy", str(tmp_path / "up"), f"dfs:{bucket}/tree")
    s3_site.down.rclone("check", str(tmp_path / "up"), f"dfs:{bucket}/tree")
    s3_site.down.rclone("copy", f"dfs:{bucket}/tree", str(tmp_path / "down"))
    assert _tree(tmp_path / "down") == sent, "tree copied back by rclone vs tree copied up"


def test_awscli_presign_is_sigv4_and_curl_reads_with_it(
        s3_site: Site, payloads: dict[str, Payload], tmp_path: Path) -> None:
    bucket = s3_site.bucket("presign")
    s3 = s3_site.up.boto3()
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(payloads["5MiB"].path), bucket, WEIRD)
    url = s3_site.down.aws("s3", "presign", f"s3://{bucket}/{WEIRD}",
                           "--expires-in", "600").strip()
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url, f"awscli presigned with SigV4: {url}"
    s3_site.down.curl("-o", str(tmp_path / "got"), url)
    assert sha256_file(tmp_path / "got") == payloads["5MiB"].sha256, \
        "object read with awscli's presigned URL vs the object uploaded"


def test_versioned_overwrite_delete_marker_and_old_version_read(
        s3_site: Site, tmp_path: Path) -> None:
    bucket = s3_site.bucket("versions")
    up, down = s3_site.up.boto3(), s3_site.down.boto3()
    up.create_bucket(Bucket=bucket)
    up.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert down.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled", \
        "versioning status read back through another node"
    v1 = up.put_object(Bucket=bucket, Key=WEIRD, Body=b"first")["VersionId"]
    v2 = up.put_object(Bucket=bucket, Key=WEIRD, Body=b"second")["VersionId"]
    assert v1 and v2 and v1 != v2, f"two PUTs give two version ids: {v1} {v2}"
    assert down.get_object(Bucket=bucket, Key=WEIRD)["Body"].read() == b"second", \
        "latest version's body"
    old = down.get_object(Bucket=bucket, Key=WEIRD, VersionId=v1)
    assert old["Body"].read() == b"first" and old["VersionId"] == v1, "old version's body"

    deleted = up.delete_object(Bucket=bucket, Key=WEIRD)
    assert deleted.get("DeleteMarker") is True and deleted.get("VersionId"), \
        f"DELETE in a versioned bucket makes a delete marker: {deleted}"
    with pytest.raises(down.exceptions.NoSuchKey):
        down.get_object(Bucket=bucket, Key=WEIRD)
    listing = down.list_object_versions(Bucket=bucket, Prefix=WEIRD)
    versions = [(v["VersionId"], v["IsLatest"]) for v in listing.get("Versions", [])]
    markers = [(m["VersionId"], m["IsLatest"]) for m in listing.get("DeleteMarkers", [])]
    assert sorted(versions) == sorted([(v1, False), (v2, False)]), \
        f"ListObjectVersions versions vs the two PUTs: {versions}"
    assert markers == [(deleted["VersionId"], True)], f"one latest delete marker: {markers}"

    # The same reads through awscli's low-level commands.
    out = tmp_path / "v2"
    s3_site.down.aws("s3api", "get-object", "--bucket", bucket, "--key", WEIRD,
                     "--version-id", v2, str(out))
    assert out.read_bytes() == b"second", "aws s3api get-object --version-id of v2"
    listed = s3_site.down.aws("s3api", "list-object-versions", "--bucket", bucket,
                              "--output", "json")
    assert v1 in listed and v2 in listed and deleted["VersionId"] in listed, \
        f"aws s3api list-object-versions names both versions and the marker: {listed}"
    up.delete_object(Bucket=bucket, Key=WEIRD, VersionId=deleted["VersionId"])
    assert down.get_object(Bucket=bucket, Key=WEIRD)["Body"].read() == b"second", \
        "removing the delete marker brings the latest version back"


def test_delete_objects_of_1000_keys_and_aws_s3_rm_recursive(s3_site: Site) -> None:
    bucket = s3_site.bucket("bulkdelete")
    s3 = s3_site.up.boto3()
    s3.create_bucket(Bucket=bucket)
    keys = [f"batch/{i:04d} {WEIRD}" for i in range(1000)]
    put_many(s3, bucket, keys)
    answer = s3.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": k} for k in keys], "Quiet": False})
    assert not answer.get("Errors"), f"DeleteObjects errors: {answer.get('Errors', [])[:5]}"
    assert sorted(d["Key"] for d in answer.get("Deleted", [])) == sorted(keys), \
        "DeleteObjects reports every key of the 1000 deleted"
    left, _, _ = list_all(s3_site.down.boto3(), bucket, Prefix="batch/")
    assert left == [], f"keys left after DeleteObjects: {left[:5]}"

    rm_keys = [f"rm/{i % 10}/{i:04d}" for i in range(1000)]
    put_many(s3, bucket, rm_keys)
    s3_site.down.aws("s3", "rm", "--recursive", "--only-show-errors", f"s3://{bucket}/rm/")
    left, _, _ = list_all(s3_site.down.boto3(), bucket, Prefix="rm/")
    assert left == [], f"keys left after aws s3 rm --recursive: {left[:5]}"


LIST_KEYS = {"all-up": 10_000, "node3-killed": 2_500}
"""10 000 keys as issue 19 asks; with a node down fewer (still several pages), since creating
them dominates the suite's wall time on a 2-core box."""


def _listing_keys(count: int) -> list[str]:
    """`count` keys: 40 top-level files and the rest under 20 x 7 two-level prefixes."""
    keys = [f"top-{i:02d}" for i in range(40)]
    keys += [f"dir{i % 20:02d}/sub {i % 7}/k{i:05d}{'+é' if i % 13 == 0 else ''}"
             for i in range(count - 40)]
    return keys


def _model(keys: list[str], prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
    """What S3 lists: keys under `prefix` with no delimiter after it, and the common
    prefixes, each in UTF-8 byte order."""
    contents, prefixes = [], set()
    for key in keys:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            prefixes.add(prefix + rest[:rest.index(delimiter) + len(delimiter)])
        else:
            contents.append(key)
    return (sorted(contents, key=lambda k: k.encode()),
            sorted(prefixes, key=lambda k: k.encode()))


@pytest.mark.timeout(600)  # 10 000 PUTs, then 12 whole listings
def test_listing_10000_keys_with_delimiter_matches_the_model(s3_site: Site) -> None:
    bucket = s3_site.bucket("list")
    s3 = s3_site.up.boto3()
    s3.create_bucket(Bucket=bucket)
    count = LIST_KEYS[s3_site.variant]
    keys = _listing_keys(count)
    assert put_many(s3, bucket, keys) == count, f"PUTs of the {count} keys to list"
    reader = s3_site.down.boto3()

    everything, none, pages = list_all(reader, bucket)
    assert everything == sorted(keys, key=lambda k: k.encode()) and none == [], \
        f"ListObjectsV2 of the whole bucket vs the {count} keys written"
    assert pages == -(-count // 1000), f"pages of at most 1000 keys: {pages}"
    for prefix, delimiter in (("", "/"), ("dir03/", "/"), ("dir03/sub 4/", "/"), ("dir1", "/"),
                              ("", "sub ")):
        want = _model(keys, prefix, delimiter)
        for v1 in (False, True):
            got_keys, got_prefixes, _ = list_all(reader, bucket, v1=v1, Prefix=prefix,
                                                 Delimiter=delimiter)
            api = "ListObjects (V1)" if v1 else "ListObjectsV2"
            assert (got_keys, got_prefixes) == want, \
                f"{api} prefix={prefix!r} delimiter={delimiter!r}: keys and prefixes vs model"
    small, prefixes, pages = list_all(reader, bucket, Delimiter="/", page_size=7)
    assert (small, prefixes) == _model(keys, "", "/"), "V2 pages of 7 with a delimiter vs model"
    assert pages == -(-(40 + 20) // 7), f"60 entries in pages of 7: {pages} pages"
