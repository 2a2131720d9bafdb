"""Which S3 operation a request is, and what it needs of its caller: pure, no I/O.

S3 names an operation by the method, whether the path names a bucket and a key, and a few
query "sub-resources" (``?versioning``, ``?uploads``, ``?uploadId=``, ``?list-type=2``...).
Rules, from the S3 API reference and the pitfalls other servers hit (S3-PITFALLS.md):

- The bucket and key come from the RAW path (aiohttp's ``request.path`` is already decoded,
  and decoding twice turns a key's ``%2F`` into a separator), percent-decoded exactly once;
  ``+`` is a plus, not a space, in a path. Bytes that are not UTF-8 are refused (InvalidURI).
- Virtual-host style: with ``--s3-domain D``, a Host ``B.D[:port]`` names bucket B and the
  whole path is the key. A Host equal to D (or any other host) is path style.
- A sub-resource this server does not implement (``?acl``, ``?policy``, ``?lifecycle``,
  ``?tagging``...) is NotImplemented (501), never answered as if it were the plain
  operation: a GET ``?acl`` answered with the object's bytes would be a silent wrong answer.
  Unknown query parameters that are not sub-resources (``x-id``, ``response-*``...) are
  ignored, as S3 does.
- Every operation has one Need (dfsring.core.access); settings of a bucket need its owner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from dfsring.core.access import Need
from dfsring.s3.errors import S3Error

MAX_KEY_BYTES = 1024  # S3's bound on a key's UTF-8 length (KeyTooLongError)
# S3's bucket naming rules (3-63 of a-z 0-9 . -, letter or digit at both ends, no "..");
# ".." is also how dfsring names its system buckets, which S3 must never reach.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")

# Sub-resources S3 defines that this server does not implement (docs/S3.md says why).
UNSUPPORTED = frozenset({
    "accelerate", "acl", "analytics", "attributes", "encryption", "intelligent-tiering",
    "inventory", "legal-hold", "lifecycle", "logging", "metadataTable", "metrics",
    "notification", "object-lock", "ownershipControls", "policy", "policyStatus",
    "publicAccessBlock", "replication", "requestPayment", "restore", "retention", "select",
    "session", "tagging", "torrent", "website"})

_R, _W, _O, _N = Need.READ, Need.WRITE, Need.OWNER, Need.AUTHENTICATED
NEEDS: Mapping[str, Need] = {
    "ListBuckets": _N, "CreateBucket": _N, "HeadBucket": _R, "DeleteBucket": _O,
    "GetBucketLocation": _R, "GetBucketVersioning": _R, "PutBucketVersioning": _O,
    "GetBucketCors": _O, "PutBucketCors": _O, "DeleteBucketCors": _O,
    "ListObjects": _R, "ListObjectsV2": _R, "ListObjectVersions": _R,
    "ListMultipartUploads": _R, "DeleteObjects": _W,
    "GetObject": _R, "HeadObject": _R, "PutObject": _W, "CopyObject": _W,
    "DeleteObject": _W, "CreateMultipartUpload": _W, "UploadPart": _W,
    "UploadPartCopy": _W, "CompleteMultipartUpload": _W, "AbortMultipartUpload": _W,
    "ListParts": _R,
}


@dataclass(frozen=True)
class Target:
    """What the path names: no bucket (the service), a bucket, or an object."""

    bucket: str | None
    key: str | None  # None: no key (a bucket or the service); never ""


@dataclass(frozen=True)
class Route:
    op: str  # the S3 operation name (a key of NEEDS)
    bucket: str | None
    key: str | None

    @property
    def need(self) -> Need:
        return NEEDS[self.op]


def decode_once(raw: str, what: str) -> str:
    """A raw path segment percent-decoded once into UTF-8 text; InvalidURI otherwise.

    aiohttp hands the raw path over as str (undecodable bytes as surrogate escapes), so it
    is turned back into the bytes received first."""
    try:
        data = unquote_to_bytes(raw.encode("utf-8", "surrogateescape"))
        return data.decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise S3Error("InvalidURI", f"the {what} is not valid UTF-8 once percent-decoded"
                      ) from None


def host_bucket(host: str | None, domain: str) -> str | None:
    """The bucket a virtual-host-style Host names (``B.domain[:port]``), else None."""
    if not domain or not host:
        return None
    name = host.strip().lower()
    if not name.startswith("["):
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    suffix = "." + domain.lower().strip(".")
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return None


def parse_target(raw_path: str, host: str | None, domain: str) -> Target:
    """Bucket and key of a request from its raw path (a ``?query`` tail is ignored) and
    Host (module docstring)."""
    path = raw_path.split("?", 1)[0]
    if not path.startswith("/"):
        raise S3Error("InvalidURI", "the request path must start with /")
    vhost = host_bucket(host, domain)
    if vhost is not None:
        bucket, key_raw = vhost, path[1:]
    else:
        bucket_raw, _, key_raw = path[1:].partition("/")
        if not bucket_raw:
            return Target(None, None)
        bucket = decode_once(bucket_raw, "bucket name")
    check_bucket_name(bucket)
    if not key_raw:
        return Target(bucket, None)
    key = decode_once(key_raw, "key")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", f"keys are at most {MAX_KEY_BYTES} bytes of UTF-8",
                      resource=f"/{bucket}")
    return Target(bucket, key)


def check_bucket_name(bucket: str) -> None:
    """S3's naming rules; InvalidBucketName otherwise (also for reserved system buckets)."""
    if (not _BUCKET_RE.fullmatch(bucket) or ".." in bucket or ".-" in bucket
            or "-." in bucket or _IPV4_RE.fullmatch(bucket)):
        raise S3Error("InvalidBucketName", "bucket names are 3-63 characters of a-z, 0-9, "
                      "'.' and '-', starting and ending with a letter or digit",
                      resource=f"/{bucket[:80]}")


def resolve(method: str, target: Target, query: Mapping[str, str],
            headers: Mapping[str, str]) -> Route:
    """The operation of a request; NotImplemented for a sub-resource we do not serve,
    MethodNotAllowed for a method the resource has no operation for."""
    unsupported = sorted(UNSUPPORTED.intersection(query))
    if unsupported:
        raise S3Error("NotImplemented", f"the ?{unsupported[0]} sub-resource is not "
                      "implemented by dfsring (docs/S3.md)")
    if target.bucket is None:
        if method in ("GET", "HEAD"):
            return Route("ListBuckets", None, None)
        raise S3Error("MethodNotAllowed", "only GET is allowed on the service")
    if target.key is None:
        op = _bucket_op(method, query)
    else:
        op = _object_op(method, query, headers)
    return Route(op, target.bucket, target.key)


def _bucket_op(method: str, query: Mapping[str, str]) -> str:
    if method == "HEAD":
        return "HeadBucket"
    if method == "GET":
        return _bucket_get(query)
    if method == "PUT":
        if "versioning" in query:
            return "PutBucketVersioning"
        return "PutBucketCors" if "cors" in query else "CreateBucket"
    if method == "DELETE":
        return "DeleteBucketCors" if "cors" in query else "DeleteBucket"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "POST":
        raise S3Error("NotImplemented", "browser POST uploads are not implemented")
    raise S3Error("MethodNotAllowed", f"{method[:16]} is not allowed on a bucket")


_BUCKET_GETS = (("location", "GetBucketLocation"), ("versioning", "GetBucketVersioning"),
                ("cors", "GetBucketCors"), ("uploads", "ListMultipartUploads"),
                ("versions", "ListObjectVersions"))


def _bucket_get(query: Mapping[str, str]) -> str:
    for name, op in _BUCKET_GETS:
        if name in query:
            return op
    list_type = query.get("list-type")
    if list_type is None:
        return "ListObjects"
    if list_type == "2":
        return "ListObjectsV2"
    raise S3Error("InvalidArgument", "list-type must be 2")


def _object_op(method: str, query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    copy = "x-amz-copy-source" in {k.lower() for k in headers}
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "partNumber" in query or "uploadId" in query:
            if "partNumber" not in query or "uploadId" not in query:
                raise S3Error("InvalidRequest", "an upload part needs both partNumber and "
                              "uploadId")
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        raise S3Error("NotImplemented", "this POST on an object is not implemented")
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    raise S3Error("MethodNotAllowed", f"{method[:16]} is not allowed on an object")
