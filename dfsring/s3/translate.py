"""Any exception raised below the S3 edge, as the S3 error a client is shown.

The node's errors (dfsring.foundation.errors) become HTTP codes only at an edge; this is
the S3 edge's table. Anything not named here is InternalError (500): the client sees the
request id, the node log has the rest, never a traceback on the wire.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dfsring.foundation import errors
from dfsring.s3.errors import S3Error

# Most specific first: the first class the error is an instance of wins.
_TABLE: tuple[tuple[type[errors.DfsError], str], ...] = (
    (errors.FileTooLarge, "EntityTooLarge"),
    (errors.PayloadTooLarge, "EntityTooLarge"),
    (errors.InvalidKey, "InvalidArgument"),
    (errors.BadRequest, "InvalidArgument"),
    (errors.RangeNotSatisfiable, "InvalidRange"),
    (errors.RequestTimeout, "RequestTimeout"),
    (errors.NotImplementedCoding, "NotImplemented"),
    (errors.NotFound, "NoSuchKey"),
    (errors.Unauthenticated, "AccessDenied"),
    (errors.Forbidden, "AccessDenied"),
    (errors.TooManyRequests, "SlowDown"),
    (errors.TooManySiblings, "SlowDown"),
    (errors.QuorumNotMet, "ServiceUnavailable"),
    (errors.NotReady, "ServiceUnavailable"),
    (errors.StorageClosed, "ServiceUnavailable"),
    (errors.PeerUnavailable, "ServiceUnavailable"),
    (errors.Conflict, "InvalidRequest"),
)
_HTTP = {408: "RequestTimeout", 413: "EntityTooLarge", 411: "MissingContentLength",
         501: "NotImplemented", 503: "ServiceUnavailable"}
_GENERIC = "We encountered an internal error. Please try again."


def to_s3_error(exc: BaseException, request_id: str) -> S3Error:
    """The S3Error for ``exc`` (itself if it is one)."""
    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, errors.DfsError):
        return _from_dfs(exc, request_id)
    if isinstance(exc, web.HTTPException):
        code = _HTTP.get(exc.status, "InvalidRequest" if exc.status < 500 else "InternalError")
        return S3Error(code, (exc.text or exc.reason or code)[:300])
    if isinstance(exc, HttpProcessingError | ConnectionResetError):
        return S3Error("IncompleteBody", "the request body is malformed or was cut short")
    return S3Error("InternalError", f"{_GENERIC} (request id {request_id})")


def _from_dfs(exc: errors.DfsError, request_id: str) -> S3Error:
    for cls, code in _TABLE:
        if isinstance(exc, cls):
            if code == "InvalidArgument" and "key" in str(exc) and "1024" in str(exc):
                code = "KeyTooLongError"
            message = str(exc)[:300]
            if code in ("ServiceUnavailable", "SlowDown"):
                message = f"Please retry: {message[:200]}"
            retry = exc.headers().get("Retry-After")
            return S3Error(code, message, headers={"Retry-After": retry} if retry else None)
    return S3Error("InternalError", f"{_GENERIC} (request id {request_id})")
