"""The object layer's errors in S3's vocabulary: every DfsError from the files layer, the
coordinator or the access service becomes the S3Error a client can branch on (never a 500
for a condition the store knows)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dfsring.foundation import errors
from dfsring.s3.errors import S3Error


def to_s3(exc: errors.DfsError, resource: str = "") -> S3Error:
    """The S3 error for a store error (the message says what the store saw)."""
    detail = str(exc)[:300]
    if isinstance(exc, errors.FileTooLarge):
        return S3Error("EntityTooLarge", detail, resource=resource)
    if isinstance(exc, errors.RequestTimeout):
        return S3Error("RequestTimeout", detail, resource=resource)
    if isinstance(exc, errors.QuorumNotMet | errors.NotReady | errors.StorageClosed
                  | errors.RpcError | errors.HintsFull | errors.StaleRing):
        return S3Error("ServiceUnavailable", f"not enough replicas answered: {detail}",
                       resource=resource)
    if isinstance(exc, errors.TooManyRequests):
        return S3Error("SlowDown", detail, resource=resource)
    if isinstance(exc, errors.NotFound):
        return S3Error("NoSuchKey", "The specified key does not exist.", resource=resource)
    if isinstance(exc, errors.BadRequest):
        return S3Error("InvalidArgument", detail, resource=resource)
    return S3Error("InternalError", f"the store failed: {detail}", resource=resource)


@contextmanager
def s3_errors(resource: str = "") -> Iterator[None]:
    """Run a block whose store errors are raised as S3Errors (S3Errors pass through)."""
    try:
        yield
    except S3Error:
        raise
    except errors.DfsError as exc:
        raise to_s3(exc, resource) from exc
