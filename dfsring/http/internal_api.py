"""Internal (node-to-node) endpoints: POST /internal/v1/{kind} with a msgpack message.

Every call must carry the cluster secret (401 otherwise). Bodies are size-bounded and decoded
against the typed catalogue; a malformed message is a 400 ErrorReply and a log line, and the
node keeps serving. Domain errors travel back as ErrorReply so the caller can re-raise them.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from dfsring import errors, keys, messages, vclock
from dfsring.gossip import Member
from dfsring.http.appkeys import CONFIG, COORDINATOR, MEMBERSHIP, METRICS, STORE
from dfsring.http.body import read_body
from dfsring.http.middleware import REQUEST_ID
from dfsring.messages import (
    Ack,
    CoordinateWrite,
    ErrorReply,
    Hello,
    ListKeys,
    ListKeysReply,
    Message,
    ReplicaRead,
    ReplicaReadReply,
    ReplicaWrite,
    WriteReply,
)
from dfsring.rpc import MSGPACK, RPC_PATH, SECRET_HEADER

log = logging.getLogger("dfsring.internal")
MAX_SIBLINGS_CARRIED = 64


def setup(app: web.Application) -> None:
    app.router.add_post(RPC_PATH + "{kind}", dispatch)


def _reply(msg: Message, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msg.encode(), content_type=MSGPACK)


def _error(status: int, code: str, detail: str, needed: int = 0, acked: int = 0) -> web.Response:
    return _reply(ErrorReply(code, detail[:500], needed, acked), status)


async def dispatch(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), cfg.cluster_secret.encode()):
        log.warning("internal call without the cluster secret", extra={"fields": {
            "peer": request.remote, "request_id": request[REQUEST_ID]}})
        return _error(401, "unauthorized", "missing or wrong cluster secret")
    kind = messages.kind_of(request.match_info["kind"])
    handler = _HANDLERS.get(kind) if kind is not None else None
    if handler is None:
        return _error(404, "no-such-route", f"unknown message kind {request.match_info['kind']}")
    try:
        raw = await read_body(request, cfg.max_value_size * MAX_SIBLINGS_CARRIED + (1 << 16),
                              cfg.request_timeout)
        msg = messages.decode(raw, kind)
        return _reply(await handler(request, msg))
    except (messages.MessageError, ValueError) as exc:
        log.warning("malformed peer message", extra={"fields": {
            "peer": request.remote, "kind": kind.KIND, "error": str(exc)[:300]}})
        return _error(400, "bad-request", f"malformed {kind.KIND} message: {exc}")
    except errors.QuorumNotMet as exc:
        return _error(503, "quorum-not-met", str(exc), exc.needed, exc.acked)
    except errors.CorruptValue as exc:
        request.app[METRICS].count_corrupt()
        return _error(500, "corrupt-value", str(exc))
    except errors.InvalidKey as exc:
        return _error(400, "invalid-key", str(exc))
    except errors.BadRequest as exc:
        return _error(400, "bad-request", str(exc))
    except errors.DfsError as exc:
        return _error(500, "internal", str(exc))


def _name(bucket: bytes, key: bytes) -> keys.ObjectName:
    try:
        return keys.object_name(bucket.decode("ascii"), key.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise errors.InvalidKey("bucket or key is not valid text") from exc


async def _hello(request: web.Request, msg: Hello) -> Message:
    membership = request.app[MEMBERSHIP]
    membership.learn(Member(msg.node_id, msg.address, msg.zone))
    me = membership.me
    return Hello(me.node_id, me.address, me.zone)


async def _replica_write(request: web.Request, msg: ReplicaWrite) -> Message:
    incoming = vclock.decode_versions(msg.versions)
    stored = await request.app[STORE].merge(_name(msg.bucket, msg.key), incoming,
                                            overwrite_corrupt=True)
    return Ack(stored.changed)


async def _replica_read(request: web.Request, msg: ReplicaRead) -> Message:
    versions = request.app[STORE].get(_name(msg.bucket, msg.key))
    return ReplicaReadReply(vclock.encode_versions(versions) if versions.siblings else None)


async def _coordinate_write(request: web.Request, msg: CoordinateWrite) -> Message:
    coord = request.app[COORDINATOR]
    if not 1 <= msg.w <= coord.n:
        raise errors.BadRequest(f"w must be 1..{coord.n}")
    result = await coord.put(_name(msg.bucket, msg.key), vclock.decode_context(msg.context),
                             msg.value, msg.content_type, w=msg.w, sloppy=msg.sloppy,
                             forward=False)
    return WriteReply(vclock.encode_versions(result.versions), result.acks, result.n,
                      result.hinted)


async def _list_keys(request: web.Request, msg: ListKeys) -> Message:
    bucket = keys.validate_bucket(msg.bucket.decode("ascii", "replace"))
    limit = max(1, min(msg.limit, 10_001))
    items = request.app[STORE].list_live(bucket, msg.prefix, msg.after, limit)
    return ListKeysReply(tuple(items))


_HANDLERS = {
    Hello: _hello,
    ReplicaWrite: _replica_write,
    ReplicaRead: _replica_read,
    CoordinateWrite: _coordinate_write,
    ListKeys: _list_keys,
}
