"""Gauges computed when /metrics is scraped: what an operator alerts on but no service counts.

Why at scrape time: a member's liveness and the data dir's free space are facts of the moment,
read from the gossip view and the file system; pushing them on every change would mean a hook
in the gossip service and a timer for the disk. So `/metrics` takes a `OpsSnapshot` (the I/O:
`snapshot`) and renders it with the pure `families`; `joined` lays them beside the node's
registry without registering anything (a registry is per node, a snapshot per scrape).

Series (deploy/prometheus/alerts.yml and the Grafana dashboard use them):

- ``dfsring_members{state}``: ring members by liveness in this node's view (up, suspect,
  down; this node counts itself up). A peer that died cannot report itself, so "node down"
  is alerted from the survivors' view, beside Prometheus's own ``up``.
- ``dfsring_disk_total_bytes`` / ``dfsring_disk_free_bytes``: the file system holding the
  data dir, as the node's user sees it (free: available to unprivileged writers).
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric

from dfsring.core.failure import Liveness


@dataclass(frozen=True)
class OpsSnapshot:
    """What one scrape reports: liveness of every ring member, and the data dir's disk."""

    liveness: tuple[Liveness, ...]
    disk_total: int
    disk_free: int


class _Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


def families(snap: OpsSnapshot) -> list[Metric]:
    """The scrape-time families of `snap`; every liveness state is present (0 included), so
    an alert on ``state="down"`` sees 0 rather than no series."""
    members = GaugeMetricFamily("dfsring_members",
                                "ring members by liveness in this node's view", labels=["state"])
    counts = Counter(snap.liveness)
    for state in Liveness:
        members.add_metric([state.value], counts.get(state, 0))
    total = GaugeMetricFamily("dfsring_disk_total_bytes",
                              "size of the file system holding the data dir",
                              value=snap.disk_total)
    free = GaugeMetricFamily("dfsring_disk_free_bytes",
                             "bytes free for the node on the file system holding the data dir",
                             value=snap.disk_free)
    return [members, total, free]


class _Joined:
    """A collector of the registry's families followed by `extra` (read by generate_latest)."""

    def __init__(self, registry: _Collector, extra: list[Metric]) -> None:
        self._registry = registry
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()
        yield from self._extra


def joined(registry: _Collector, snap: OpsSnapshot) -> _Joined:
    return _Joined(registry, families(snap))


def snapshot(liveness: Iterable[Liveness], data_dir: Path) -> OpsSnapshot:
    """The I/O half: the disk of `data_dir` (0/0 if it cannot be read, never an error)."""
    try:
        usage = shutil.disk_usage(data_dir)
        total, free = usage.total, usage.free
    except OSError:
        total = free = 0
    return OpsSnapshot(tuple(liveness), total, free)
