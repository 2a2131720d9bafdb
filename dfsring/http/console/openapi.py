"""The OpenAPI 3.1 document of the native API (GET /v1/openapi.json) and Swagger UI (/v1/docs).

The document is written by hand, as a table (OPERATIONS), not generated from the router: the
router is the truth the table is checked against (tests/component/test_console_openapi.py
asserts that every route the app serves is documented and every documented route exists), so
a new route without documentation, or documentation of a removed route, fails the build.
GET routes answer HEAD too (aiohttp's allow_head), so every GET is documented with its HEAD.

Both are public: the API's shape is no secret (docs/API.md says the same), and Swagger UI's
"Try it out" sends the caller's own credentials. Swagger UI comes from the PyPI package
``swagger-ui-bundle-v2`` (Apache-2.0, its licence inside the package): nothing from a CDN.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web

from dfsring import __version__
from dfsring.http.console.assets import SECURITY_HEADERS, read_asset
from dfsring.http.problems import json_doc

OPENAPI_PATH = "/v1/openapi.json"
DOCS_PATH = "/v1/docs"
DOCS_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})
_PARAM = re.compile(r"{([a-z_]+)}")


@dataclass(frozen=True)
class Op:
    method: str  # "*": any method (a route that only ever refuses)
    path: str
    tag: str
    summary: str
    need: str  # public, authenticated, read, write, owner, admin
    query: tuple[str, ...] = ()
    body: str = ""  # "", "json", "bytes"


_KV, _FILES = "/v1/kv/{bucket}/{key}", "/v1/files/{bucket}/{path}"
OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/health", "node", "Whether this node can serve (503 while joining/stopping)",
       "public"),
    Op("GET", "/metrics", "node", "Prometheus metrics (admin with --metrics-auth)", "public"),
    Op("GET", "/v1/node/stats", "node", "This node's keys, bytes, hints, repairs, workers",
       "authenticated"),
    Op("GET", "/v1/node/figures", "node", "This node's dashboard figures and chart series",
       "authenticated"),
    Op("GET", "/v1/node/local/kv/{bucket}/{key}", "node",
       "The versions of a key stored on this node only", "admin"),
    Op("GET", "/v1/node/local/kv/{bucket}", "node", "Live keys of a bucket on this node only",
       "admin", ("limit", "cursor")),
    Op("POST", "/v1/node/gc", "node", "Run the chunk garbage collector now", "admin"),
    Op("GET", "/v1/node/chunks", "node", "Chunk store statistics", "admin"),
    Op("GET", "/v1/cluster/members", "cluster", "Members with this node's view of liveness",
       "authenticated"),
    Op("GET", "/v1/cluster/ring", "cluster", "The ring: epoch, partitions, transition",
       "authenticated"),
    Op("GET", "/v1/cluster/transfers", "cluster", "Incoming transfers and hints of this node",
       "authenticated"),
    Op("GET", "/v1/cluster/dashboard", "cluster",
       "Every member's figures in one document, aggregated by the node asked",
       "authenticated"),
    Op("POST", "/v1/cluster/leave", "cluster", "Ask this node to leave the ring (202)",
       "admin"),
    Op("POST", "/v1/cluster/remove/{node_id}", "cluster", "Remove a down member (202)",
       "admin"),
    Op("POST", "/v1/cluster/join", "cluster", "Join the cluster of a seed (202)", "admin",
       ("seed",)),
    Op("GET", _KV, "kv", "Read a key: one value, or 300 with its siblings", "read",
       ("r", "sloppy")),
    Op("PUT", _KV, "kv", "Write a key (X-Dfs-Context: the context read)", "write",
       ("w", "sloppy"), "bytes"),
    Op("DELETE", _KV, "kv", "Delete a key (a tombstone)", "write", ("w", "sloppy")),
    Op("GET", "/v1/kv/{bucket}", "kv", "List keys by prefix, paginated", "read",
       ("prefix", "limit", "cursor")),
    Op("*", "/v1/kv/{bucket}/", "kv", "An empty key: always 400", "read"),
    Op("GET", _FILES, "files", "Download a file (Range supported), or list its versions",
       "read", ("version", "versions")),
    Op("PUT", _FILES, "files", "Upload a file (streamed, chunked, versioned)", "write", (),
       "bytes"),
    Op("DELETE", _FILES, "files", "Delete a file, or one version of it", "write",
       ("version",)),
    Op("GET", "/v1/files/{bucket}", "files", "List files by prefix, paginated", "read",
       ("prefix", "limit", "cursor")),
    Op("*", "/v1/files/{bucket}/", "files", "An empty path: always 400", "read"),
    Op("POST", "/v1/admin/keys", "admin", "Create an API key (its secret is shown once)",
       "admin", (), "json"),
    Op("GET", "/v1/admin/keys", "admin", "List API keys", "admin"),
    Op("GET", "/v1/admin/keys/{access_key}", "admin", "Show an API key and its grants",
       "admin"),
    Op("DELETE", "/v1/admin/keys/{access_key}", "admin", "Delete an API key", "admin"),
    Op("POST", "/v1/admin/keys/{access_key}/{action}", "admin",
       "enable, disable, rotate (new secret) or limits of a key", "admin", (), "json"),
    Op("POST", "/v1/admin/tls/reload", "admin", "Reload this node's TLS certificates",
       "admin"),
    Op("PUT", "/v1/buckets/{bucket}", "buckets", "Create a bucket", "admin", (), "json"),
    Op("GET", "/v1/buckets/{bucket}", "buckets", "Show a bucket, its owner and grants",
       "owner"),
    Op("PUT", "/v1/buckets/{bucket}/settings", "buckets", "Change public_read", "owner", (),
       "json"),
    Op("PUT", "/v1/buckets/{bucket}/grants/{access_key}", "buckets",
       "Grant a key a role on the bucket", "owner", (), "json"),
    Op("DELETE", "/v1/buckets/{bucket}/grants/{access_key}", "buckets",
       "Revoke a key's role on the bucket", "owner"),
    Op("GET", "/v1/buckets/{bucket}/cors", "buckets", "The bucket's CORS rules", "owner"),
    Op("PUT", "/v1/buckets/{bucket}/cors", "buckets", "Replace the CORS rules", "owner", (),
       "json"),
    Op("DELETE", "/v1/buckets/{bucket}/cors", "buckets", "Remove the CORS rules", "owner"),
    Op("POST", "/v1/console/login", "console",
       "Log in with an API key: sets the HttpOnly session cookie and the CSRF cookie",
       "public", (), "json"),
    Op("POST", "/v1/console/logout", "console", "End the session", "authenticated"),
    Op("GET", "/v1/console/session", "console", "Who the session is and what it may do",
       "authenticated"),
    Op("GET", "/v1/console/buckets", "console", "The buckets this key may see", "authenticated"),
    Op("GET", "/v1/console/chunks/{bucket}/{path}", "console",
       "A file version's chunk map: chunks, their owners, and health as this node sees it",
       "read", ("version", "offset", "limit")),
    Op("GET", "/ui", "console", "The web console (HTML)", "public"),
    Op("GET", "/ui/{asset}", "console", "The console's static assets", "public"),
    Op("GET", OPENAPI_PATH, "docs", "This document", "public"),
    Op("GET", DOCS_PATH, "docs", "Swagger UI over this document", "public"),
    Op("GET", DOCS_PATH + "/{asset}", "docs", "Swagger UI's static assets", "public"),
)

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "public": [],
    "any": [{"bearer": []}, {"apiKey": []}, {"session": []}, {"sigv4": []}],
}
_ANY_METHODS = ("get", "put", "post", "delete", "patch")


def documented_routes() -> set[tuple[str, str]]:
    """(method, path) pairs the document covers, in the router's terms (GET implies HEAD)."""
    out: set[tuple[str, str]] = set()
    for op in OPERATIONS:
        out.add((op.method, op.path))
        if op.method == "GET":
            out.add(("HEAD", op.path))
    return out


def _operation(op: Op) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(op.path)]
    params += [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
               for name in op.query]
    doc: dict[str, Any] = {
        "tags": [op.tag], "summary": op.summary,
        "description": f"Access: **{op.need}**.",
        "operationId": _op_id(op), "parameters": params,
        "security": _SECURITY["public" if op.need == "public" else "any"],
        "responses": {"2XX": {"description": "done"},
                      "default": {"description": "a problem document (RFC 9457)",
                                  "content": {"application/problem+json": {
                                      "schema": {"$ref": "#/components/schemas/Problem"}}}}}}
    if op.body == "json":
        doc["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
    elif op.body == "bytes":
        doc["requestBody"] = {"content": {"application/octet-stream": {
            "schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}}
    return doc


def _op_id(op: Op) -> str:
    words = re.sub(r"[^a-zA-Z0-9]+", "_", op.path).strip("_")
    return f"{'any' if op.method == '*' else op.method.lower()}_{words or 'root'}"


@cache
def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        item = paths.setdefault(op.path, {})
        for method in (_ANY_METHODS if op.method == "*" else (op.method.lower(),)):
            one = _operation(op)
            if op.method == "*":
                one["operationId"] += f"_{method}"
            item[method] = one
    return {
        "openapi": "3.1.0",
        "info": {"title": "dfsring native API", "version": __version__,
                 "description": "Key/value, files, cluster, node and access administration. "
                                "See docs/API.md. Errors are problem+json documents."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "ACCESS_KEY:SECRET_KEY"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                           "description": "ACCESS_KEY:SECRET_KEY"},
                "session": {"type": "apiKey", "in": "cookie", "name": "dfs_session",
                            "description": "the console's session (non-GET also needs the "
                                           "X-Csrf-Token header equal to the dfs_csrf cookie)"},
                "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "AWS Signature V4, service s3"}},
            "schemas": {"Problem": {"type": "object", "properties": {
                "type": {"type": "string"}, "title": {"type": "string"},
                "status": {"type": "integer"}, "detail": {"type": "string"},
                "request_id": {"type": "string"}}}}},
    }


def setup(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi_json)
    app.router.add_get(DOCS_PATH, docs_page)
    app.router.add_get(DOCS_PATH + "/{asset}", docs_asset)


async def openapi_json(request: web.Request) -> web.Response:
    return json_doc(document())


async def docs_page(request: web.Request) -> web.Response:
    return web.Response(body=read_asset("docs.html"), content_type="text/html",
                        charset="utf-8", headers=SECURITY_HEADERS)


@cache
def _swagger_dir() -> Path:
    import swagger_ui_bundle  # type: ignore[import-untyped]  # PyPI: swagger-ui-bundle-v2

    return Path(str(swagger_ui_bundle.swagger_ui_path))


async def docs_asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name == "docs.js":
        body, kind = read_asset("docs.js"), "text/javascript"
    elif name in DOCS_ASSETS:
        body = (_swagger_dir() / name).read_bytes()
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    else:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type=kind,
                        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})
