"""RFC 9457 problem details, and the one translation of our exceptions into them."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from dfsring.foundation import errors

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
    """Translate a domain error by the attributes its class carries (dfsring.foundation.errors)."""
    shown = errors.public_class(exc)  # a peer-only error shows as 500 internal
    return problem(shown.status, shown.problem, shown.title, exc.public_detail(), request_id,
                   headers=exc.headers(), **exc.extra_fields())


def json_doc(doc: object, status: int = 200) -> web.Response:
    """A JSON answer (orjson: fast, and strict about what it can encode)."""
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")
