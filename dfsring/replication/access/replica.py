"""The peer side of the access layer: ``access-changed`` drops a record from this node's
cache (dfsring.replication.access.service says why and what bound holds without it)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from dfsring.core import accessrecords as ar
from dfsring.core.keys import validate_bucket
from dfsring.foundation import errors
from dfsring.transport import Handler, Pieces
from dfsring.transport.messages import AccessChanged, Ack, Message

TABLES = ("keys", "buckets")


def handlers(invalidate: Callable[[str, str], None]) -> dict[type[Message], Handler]:
    return {AccessChanged: functools.partial(access_changed, invalidate)}


async def access_changed(invalidate: Callable[[str, str], None], msg: AccessChanged,
                         _: Pieces) -> Message:
    if msg.table not in TABLES:
        raise errors.BadRequest(f"access-changed: no table {msg.table[:40]!r}")
    try:
        if msg.table == "keys":
            ar.validate_access_key(msg.name)
        else:
            validate_bucket(msg.name)
    except (ValueError, errors.InvalidKey) as exc:
        raise errors.BadRequest(f"access-changed: {exc}") from exc
    invalidate(msg.table, msg.name)
    return Ack(True)
