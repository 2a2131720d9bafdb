"""Which links a fault cuts, and seeded schedules of faults. Pure: no proxies, no clock.

Nodes are numbered 1..size (as in :class:`dfsring.cli.launcher.LocalCluster`); a link ``(i, j)``
is the directed path node i uses to reach node j (node i's requests to j and j's replies on
those connections). Cutting ``(i, j)`` and not ``(j, i)`` is a one-way partition: j can still
call i, i cannot call j.

Each partition is the complete set of cut links: applying one replaces the previous one
(Jepsen's partitioner style), so a schedule never accumulates cuts by accident.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

Link = tuple[int, int]
Group = int | Iterable[int]

PARTITION_KINDS = ("isolate", "split", "one-way", "bridge")


@dataclass(frozen=True)
class Partition:
    kind: str
    cut: frozenset[Link]
    label: str

    def __str__(self) -> str:
        return f"{self.kind} {self.label} ({len(self.cut)} links cut)"


def all_links(size: int) -> list[Link]:
    return [(i, j) for i in range(1, size + 1) for j in range(1, size + 1) if i != j]


def touching(size: int, nodes: Iterable[int]) -> frozenset[Link]:
    """Every link to or from any of `nodes` (both directions)."""
    chosen = frozenset(nodes)
    _check_nodes(size, chosen)
    return frozenset(link for link in all_links(size) if chosen & set(link))


def _group(g: Group) -> frozenset[int]:
    return frozenset([g]) if isinstance(g, int) else frozenset(g)


def _check_nodes(size: int, nodes: Iterable[int]) -> None:
    bad = sorted(n for n in nodes if not 1 <= n <= size)
    if bad:
        raise ValueError(f"no node(s) {bad} in a cluster of {size}")


def _names(group: Iterable[int]) -> str:
    return "{" + ",".join(f"n{i}" for i in sorted(group)) + "}"


def between(a: Group, b: Group) -> frozenset[Link]:
    """Every link from a node of `a` to a node of `b` and back."""
    ga, gb = _group(a), _group(b)
    if ga & gb:
        raise ValueError(f"groups overlap: {_names(ga & gb)}")
    return frozenset({(i, j) for i in ga for j in gb} | {(j, i) for i in ga for j in gb})


def isolate(size: int, node: int) -> Partition:
    _check_nodes(size, [node])
    rest = [i for i in range(1, size + 1) if i != node]
    return Partition("isolate", between(node, rest), f"n{node}")


def split(size: int, a: Group, b: Group) -> Partition:
    """`a` and `b` cannot reach each other; each side is intact inside, and nodes in neither
    group keep every link."""
    ga, gb = _group(a), _group(b)
    _check_nodes(size, ga | gb)
    return Partition("split", between(ga, gb), f"{_names(ga)}|{_names(gb)}")


def one_way(size: int, src: int, dst: int) -> Partition:
    """Only src -> dst is cut: src cannot call dst; dst still calls src."""
    _check_nodes(size, [src, dst])
    if src == dst:
        raise ValueError("a one-way cut needs two different nodes")
    return Partition("one-way", frozenset({(src, dst)}), f"n{src}->n{dst}")


def bridge(size: int, a: Group, b: Group, via: int) -> Partition:
    """`a` and `b` cannot reach each other, but both reach `via` (the bridge), which is in
    neither group (Jepsen's bridge: two halves joined by one node)."""
    ga, gb = _group(a), _group(b)
    _check_nodes(size, ga | gb | {via})
    if via in ga | gb:
        raise ValueError(f"the bridge n{via} must be in neither group")
    return Partition("bridge", between(ga, gb), f"{_names(ga)}<-n{via}->{_names(gb)}")


def random_partition(rng: random.Random, size: int, kind: str) -> Partition:
    """A partition of `kind` with random members (needs size >= 3; bridge and split halves
    as even as the size allows)."""
    nodes = list(range(1, size + 1))
    rng.shuffle(nodes)
    if kind == "isolate":
        return isolate(size, nodes[0])
    if kind == "split":
        half = size // 2
        return split(size, nodes[:half], nodes[half:])
    if kind == "one-way":
        return one_way(size, nodes[0], nodes[1])
    if kind == "bridge":
        rest = nodes[1:]
        half = len(rest) // 2
        return bridge(size, rest[:half], rest[half:], nodes[0])
    raise ValueError(f"unknown partition kind {kind!r}; known: {', '.join(PARTITION_KINDS)}")


def rotating_partitions(rng: random.Random, size: int,
                        kinds: Sequence[str] = PARTITION_KINDS) -> Iterator[Partition]:
    """An endless schedule cycling through `kinds`, members drawn from `rng`."""
    while True:
        for kind in kinds:
            yield random_partition(rng, size, kind)
