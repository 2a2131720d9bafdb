"""GET /v1/console/chunks/{bucket}/{path}: a file version's chunk map (issue 20 part 4).

Which chunks a version is made of, where each lives (its owners under the current ring,
dfsring.files.placement, primary first), and its health as this node can tell without asking
anyone: how many of its owners this node holds up, and whether this node has a copy. Asking
every owner whether it really holds each chunk is chunk anti-entropy's job
(dfsring.files.chunksync), not a page view's. Paginated (``offset``, ``limit`` at most
MAX_CHUNKS): a large file has thousands of chunks.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dfsring.core.failure import Liveness
from dfsring.files import placement
from dfsring.files import versions as fv
from dfsring.http import params
from dfsring.http.appkeys import MEMBERSHIP
from dfsring.http.files_api import FILES, PATH_ROUTE
from dfsring.http.kv_api import rfc3339
from dfsring.http.problems import json_doc

PREFIX = "/v1/console/chunks/"
MAX_CHUNKS = 1000
_QUERY = frozenset({"version", "offset", "limit"})


def setup(app: web.Application) -> None:
    app.router.add_get(PREFIX + "{bucket}/" + PATH_ROUTE, chunk_map)


def _int(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    return default if raw is None else params.ascii_int(raw, name, 0, high)


async def chunk_map(request: web.Request) -> web.Response:
    params.check_query(request, _QUERY)
    bucket, path = params.path_tail(request, PREFIX)
    fv.validate_path(path)
    offset = _int(request, "offset", 0, 1 << 40)
    limit = _int(request, "limit", MAX_CHUNKS, MAX_CHUNKS)
    node = request.app[FILES]
    m = await node.service.manifest(bucket, path, request.query.get("version"))
    view = request.app[MEMBERSHIP].cluster_view()
    me = view.node_id

    def up(node_id: str) -> bool:
        return node_id == me or view.liveness_of(node_id) is Liveness.UP

    rows: list[dict[str, Any]] = []
    at = sum(c.size for c in m.chunks[:offset])
    for index, chunk in enumerate(m.chunks[offset:offset + limit], start=offset):
        owners = placement.owners(view.ring, chunk.digest)
        rows.append({"index": index, "digest": chunk.digest.hex(), "offset": at,
                     "size": chunk.size, "owners": list(owners),
                     "owners_up": sum(1 for o in owners if up(o)),
                     "here": node.store.has(chunk.digest)})
        at += chunk.size
    return json_doc({"bucket": bucket, "path": path, "version": m.version, "size": m.size,
                     "sha256": m.sha256, "content_type": m.content_type,
                     "metadata": dict(m.metadata), "modified": rfc3339(m.created_ms),
                     "inline": m.inline is not None, "chunks_total": len(m.chunks),
                     "offset": offset, "chunks": rows,
                     "replicas": view.ring.replicas})
