"""RFC 9457 problem details, and the one mapping from our exceptions to HTTP statuses."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from dfsring import errors

PROBLEM_TYPE_BASE = "https://dfsring.dev/problems/"
REQUEST_ID_HEADER = "Dfs-Request-Id"


def problem(status: int, slug: str, title: str, detail: str, request_id: str,
            headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    body = {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status,
            "detail": detail, "request_id": request_id, **extra}
    hdrs = {REQUEST_ID_HEADER: request_id, **(headers or {})}
    return web.Response(status=status, body=orjson.dumps(body), headers=hdrs,
                        content_type="application/problem+json")


def from_error(exc: errors.DfsError, request_id: str) -> web.Response:
    """Translate a domain error; anything unexpected is the caller's 500."""
    match exc:
        case errors.InvalidKey():
            return problem(400, "invalid-key", "Invalid bucket or key", str(exc), request_id)
        case errors.InvalidContext():
            return problem(400, "invalid-context", "Invalid Dfs-Context", str(exc), request_id)
        case errors.BadRequest():
            return problem(400, "bad-request", "Bad request", str(exc), request_id)
        case errors.PayloadTooLarge():
            return problem(413, "payload-too-large", "Value too large", str(exc), request_id,
                           limit=exc.limit)
        case errors.NotFound():
            return problem(404, "not-found", "Not found", str(exc), request_id)
        case errors.RequestTimeout():
            return problem(408, "request-timeout", "Request body timed out", str(exc),
                           request_id)
        case errors.RangeNotSatisfiable():
            return problem(416, "range-not-satisfiable", "Range not satisfiable", str(exc),
                           request_id, headers={"Content-Range": f"bytes */{exc.size}"})
        case errors.Unauthorized():
            return problem(401, "unauthorized", "Unauthorized", str(exc), request_id)
        case errors.QuorumNotMet():
            return problem(503, "quorum-not-met", "Quorum not met", str(exc), request_id,
                           needed=exc.needed, acked=exc.acked, replicas=exc.outcomes)
        case errors.CorruptValue():
            return problem(500, "corrupt-value", "Stored value is corrupt",
                           "the stored value failed its checksum and was not served",
                           request_id)
        case errors.NotReady():
            return problem(503, "not-ready", "Node not ready", str(exc), request_id)
        case errors.TooManySiblings():
            return problem(409, "too-many-siblings", "Too many siblings", str(exc), request_id,
                           siblings=exc.siblings, limit=exc.limit)
        case errors.Conflict():
            return problem(409, "conflict", "Conflict with the cluster's state", str(exc),
                           request_id)
        case errors.StorageClosed():
            return problem(503, "unavailable", "Node is stopping", str(exc), request_id)
        case _:
            return problem(500, "internal", "Internal error", str(exc), request_id)


def json_doc(doc: object, status: int = 200) -> web.Response:
    """A JSON answer (orjson: fast, and strict about what it can encode)."""
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")
