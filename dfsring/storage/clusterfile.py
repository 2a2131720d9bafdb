"""This node's durable membership state: `cluster.json` in the data dir.

What must survive a restart to keep the cluster's promises: the incarnation (it only grows,
so peers can tell a restarted node's news from stale gossip about its previous life), its
own status (a leaving node keeps leaving), the ring epoch it adopted and whether that epoch's
transfers were settled (so it never drops data it might still be the only holder of), the
removed set, and the peers it knew (so a restart does not depend on the seeds being up).

Written with write-to-temp, fsync, rename, fsync-directory, so a crash leaves the old or the
new file and never half of one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from dfsring.core.membership import MemberState, Status
from dfsring.core.ringstate import RingState

log = logging.getLogger("dfsring.core.membership")
FORMAT = 1


@dataclass(frozen=True)
class ClusterFile:
    incarnation: int
    status: Status
    synced_epoch: int
    settled_epoch: int
    ring: RingState
    removed: frozenset[str] = frozenset()
    peers: tuple[MemberState, ...] = field(default=())
    refilling: bool = False
    """Rejoined as itself without its data (issue 15): peers are still refilling it."""
    removed_at: Mapping[str, float] = field(default_factory=dict)
    """When this node first held each removal mark (wall clock, seconds): marks expire after
    a grace period (dfsring.core.removals). A file from before has none: stamped at load."""


def load(path: Path) -> ClusterFile | None:
    """The saved state, or None for a node that never saved one. A file that exists but
    cannot be read is an error, not a fresh start: starting over would forget the ring."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc: dict[str, Any] = orjson.loads(raw)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown format {doc.get('format')!r}")
        return ClusterFile(
            incarnation=int(doc["incarnation"]),
            status=Status(doc["status"]),
            synced_epoch=int(doc["synced_epoch"]),
            settled_epoch=int(doc["settled_epoch"]),
            ring=RingState.from_wire(doc["ring"]),
            removed=frozenset(str(x) for x in doc["removed"]),
            peers=tuple(MemberState.from_wire(p) for p in doc["peers"]),
            refilling=bool(doc.get("refilling", False)),
            removed_at=_removed_at(doc.get("removed_at", {})),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is damaged ({exc}); restore it or wipe the data dir") from exc


def _removed_at(raw: Any) -> dict[str, float]:
    """id -> seconds; TypeError/ValueError for anything else (a damaged file)."""
    if not isinstance(raw, dict):
        raise TypeError("removed_at is an object")
    out = {}
    for node_id, at in raw.items():
        if not isinstance(node_id, str) or type(at) not in (int, float) or not at >= 0:
            raise ValueError(f"removed_at[{node_id!r}] is not a time")
        out[node_id] = float(at)
    return out


def save(path: Path, state: ClusterFile) -> None:
    doc = {
        "format": FORMAT,
        "incarnation": state.incarnation,
        "status": str(state.status),
        "synced_epoch": state.synced_epoch,
        "settled_epoch": state.settled_epoch,
        "ring": state.ring.to_wire(),
        "removed": sorted(state.removed),
        "peers": [p.to_wire() for p in state.peers],
        "refilling": state.refilling,
        "removed_at": {k: state.removed_at[k] for k in sorted(state.removed_at)},
    }
    write_atomic(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
