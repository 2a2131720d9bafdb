"""Names and their place: validation of bucket/key names, key hashing, storage key layout.

Pure. A key's partition comes from the top bits of its 128-bit mmh3 hash and never changes;
only partition -> node assignments change (Swift's ring, Dynamo §4.2). The storage key puts the
partition first so one partition's keys are one contiguous, ordered range of the engine
(anti-entropy and handoff scan a partition at a time):

    storage_key = partition (2 bytes, big endian) | bucket (ASCII) | 0x00 | key (UTF-8)

Buckets never contain 0x00, so the separator is unambiguous and, within a partition, keys of a
bucket sort in byte order.

Reserved buckets. Bucket names containing ".." are valid to the storage layer but refused at
the public edges (``validate_user_bucket``): the system keeps its own data in them (the file
versions of dfsring.files live in "dfs..files"), so no user bucket can collide with it. S3
forbids ".." in bucket names too, so no user loses a name they could have used elsewhere.

LMDB caps keys at 511 bytes, and user keys may be 1024. A key too long for the budget left after
partition and bucket is stored under its first bytes plus a 32-byte BLAKE2b digest of the whole
key, and the full key is kept in the record (see dfsring.storage.localstore). Short keys are always
shorter than the budget and long ones exactly the budget, so the two can never collide; the
only cost is that keys sharing their first ~400 bytes list in digest order, not byte order.

Placement of the grouped system tables (``GROUPED_BUCKETS``). The version keys of the files
layer (``dfs..files``: ``{bucket}/{path} NUL ...``, dfsring.files.versions) and the multipart
records of the S3 layer (``dfs..uploads``) are placed by the hash of (system bucket, the file
bucket: the text before the first "/") rather than of the whole key. All keys of one user
bucket then sit in ONE partition, contiguous and sorted by the engine: a sorted per-bucket
index, so finding a path's versions or listing a page of a bucket asks only that
partition's owners and costs in proportion to the page, not to the cluster (Garage's object
table, partitioned by bucket and sorted by key, is the model). The cost: one bucket's whole
index lives on the N owners of one partition (its size and its write load are not spread);
a later change can shard a bucket by key prefix. Every other bucket keeps the plain rule.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import mmh3

from dfsring.foundation.errors import InvalidKey

MAX_KEY_BYTES = 1024
MAX_PARTITION_BITS = 16
DEFAULT_PARTITION_BITS = 10  # 1024 partitions
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_SEP = b"\x00"
MAX_STORAGE_KEY = 511  # LMDB's compiled-in key limit
_DIGEST = 32
FILES_BUCKET = b"dfs..files"  # dfsring.files.versions.SYSTEM_BUCKET
UPLOADS_BUCKET = b"dfs..uploads"  # dfsring.s3.multipart: multipart uploads and their parts
GROUPED_BUCKETS = frozenset({FILES_BUCKET, UPLOADS_BUCKET})


@dataclass(frozen=True, slots=True)
class ObjectName:
    """A validated (bucket, key) pair in its byte form."""

    bucket: str
    key: str
    bucket_bytes: bytes
    key_bytes: bytes


def validate_bucket(bucket: str) -> bytes:
    """Buckets are DNS-label-like so they are safe in paths, logs and the storage layout."""
    if not _BUCKET_RE.fullmatch(bucket):
        raise InvalidKey(
            "bucket must be 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return bucket.encode("ascii")


def is_reserved(bucket: str) -> bool:
    """A bucket the system keeps for itself (see the module docstring)."""
    return ".." in bucket


def validate_user_bucket(bucket: str) -> bytes:
    """``validate_bucket`` for names given by users, which may not be reserved ones."""
    raw = validate_bucket(bucket)
    if is_reserved(bucket):
        raise InvalidKey("bucket names with '..' are reserved for the system")
    return raw


def validate_key(key: str) -> bytes:
    """Keys are any UTF-8 text of 1..1024 bytes."""
    return utf8_name(key, "key", MAX_KEY_BYTES)


def utf8_name(text: str, what: str, limit: int) -> bytes:
    """``text`` as 1..``limit`` bytes of UTF-8, or InvalidKey naming ``what`` it is (a key,
    a file path) and why not."""
    if not text:
        raise InvalidKey(f"{what} must not be empty")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKey(f"{what} is not valid UTF-8") from exc
    if len(raw) > limit:
        raise InvalidKey(f"{what} is {len(raw)} bytes in UTF-8; the limit is {limit}")
    return raw


def object_name(bucket: str, key: str) -> ObjectName:
    return ObjectName(bucket, key, validate_bucket(bucket), validate_key(key))


def key_hash(bucket: bytes, key: bytes) -> int:
    """Unsigned 128-bit mmh3 hash of the full name; its top bits select the partition."""
    return mmh3.hash128(bucket + _SEP + key, 0, True, signed=False)


def placement_key(bucket: bytes, key: bytes) -> bytes:
    """The part of ``key`` its partition is hashed from: the whole key, or for a grouped
    system table (module docstring) the user bucket it indexes (the text before "/")."""
    if bucket in GROUPED_BUCKETS:
        return key.split(b"/", 1)[0]
    return key


def partition_of(bucket: bytes, key: bytes, partition_bits: int = DEFAULT_PARTITION_BITS) -> int:
    """The partition of a key: the top bits of the hash of its placement key."""
    if not 1 <= partition_bits <= MAX_PARTITION_BITS:
        raise ValueError(f"partition_bits must be in 1..{MAX_PARTITION_BITS}")
    return key_hash(bucket, placement_key(bucket, key)) >> (128 - partition_bits)


def group_partition(bucket: bytes, group: str,
                    partition_bits: int = DEFAULT_PARTITION_BITS) -> int:
    """The one partition holding every key of a grouped system table for user bucket
    ``group``."""
    if bucket not in GROUPED_BUCKETS:
        raise ValueError(f"{bucket!r} is not a grouped system table")
    return partition_of(bucket, group.encode("ascii") + b"/", partition_bits)


def name_partition(name: ObjectName, partition_bits: int = DEFAULT_PARTITION_BITS) -> int:
    """The partition of a validated name: the one rule the store, the ring view and the
    replica checks share."""
    return partition_of(name.bucket_bytes, name.key_bytes, partition_bits)


def storage_key(partition: int, bucket: bytes, key: bytes) -> bytes:
    return partition.to_bytes(2, "big") + bucket + _SEP + key_suffix(bucket, key)


def key_suffix(bucket: bytes, key: bytes) -> bytes:
    """The key's part of its storage key: the key itself, or prefix + digest when too long."""
    budget = MAX_STORAGE_KEY - 3 - len(bucket)
    if len(key) < budget:
        return key
    return key[: budget - _DIGEST] + hashlib.blake2b(key, digest_size=_DIGEST).digest()


def is_abbreviated(bucket: bytes, suffix: bytes) -> bool:
    """Whether a storage key's suffix stands for a longer key (kept in the record)."""
    return len(suffix) >= MAX_STORAGE_KEY - 3 - len(bucket)


def bucket_prefix(partition: int, bucket: bytes) -> bytes:
    """The range of one bucket inside one partition."""
    return partition.to_bytes(2, "big") + bucket + _SEP


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with prefix (None: no bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
