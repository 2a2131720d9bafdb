"""The pure parts of the chaos toolkit besides the checker: which links a partition cuts,
seeded schedules, latency selection and the summary table."""

from __future__ import annotations

import itertools
import random

import pytest

from dfsring.testing.chaos import nemesis
from dfsring.testing.chaos.checker import CheckResult, Report
from dfsring.testing.chaos.collect import Convergence
from dfsring.testing.chaos.history import OpKind, OpRecord, Outcome
from dfsring.testing.chaos.latency import away_from, involving, percentile
from dfsring.testing.chaos.summary import ScenarioSummary, table

pytestmark = pytest.mark.unit

SIZE = 5


def _connected(cut: frozenset[tuple[int, int]], i: int, j: int) -> bool:
    return (i, j) not in cut and (j, i) not in cut


def test_isolate_cuts_every_link_of_one_node_both_ways() -> None:
    part = nemesis.isolate(SIZE, 3)
    assert len(part.cut) == 2 * (SIZE - 1)
    assert all(3 in link for link in part.cut)


def test_split_keeps_each_side_whole_and_cuts_across() -> None:
    cut = nemesis.split(SIZE, [1, 2], [3, 4, 5]).cut
    assert all(_connected(cut, i, j) for i, j in [(1, 2), (3, 4), (4, 5), (3, 5)])
    assert all((i, j) in cut and (j, i) in cut for i in (1, 2) for j in (3, 4, 5))


def test_one_way_cuts_a_single_direction() -> None:
    assert nemesis.one_way(SIZE, 2, 4).cut == {(2, 4)}


def test_bridge_node_reaches_both_halves_which_do_not_reach_each_other() -> None:
    cut = nemesis.bridge(SIZE, [1, 2], [4, 5], via=3).cut
    assert all(_connected(cut, 3, j) for j in (1, 2, 4, 5))
    assert all(not _connected(cut, i, j) for i in (1, 2) for j in (4, 5))


@pytest.mark.parametrize("make", [
    lambda: nemesis.isolate(SIZE, 6),
    lambda: nemesis.split(SIZE, [1, 2], [2, 3]),
    lambda: nemesis.one_way(SIZE, 1, 1),
    lambda: nemesis.bridge(SIZE, [1], [2], via=1),
    lambda: nemesis.random_partition(random.Random(1), SIZE, "meteor"),
])
def test_impossible_partitions_are_refused(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        make()


def test_the_rotating_schedule_cycles_kinds_and_is_seeded() -> None:
    first = list(itertools.islice(nemesis.rotating_partitions(random.Random("s"), SIZE), 8))
    again = list(itertools.islice(nemesis.rotating_partitions(random.Random("s"), SIZE), 8))
    assert first == again
    assert [p.kind for p in first] == list(nemesis.PARTITION_KINDS) * 2
    assert all(p.cut <= set(nemesis.all_links(SIZE)) for p in first)


def _op(i: int, node: str, key: str, latency: float) -> OpRecord:
    return OpRecord(id=i, client=0, op=OpKind.GET, bucket="b", key=key, node=node,
                    start=float(i), end=i + latency, outcome=Outcome.OK, status=200)


def test_latencies_away_from_a_node_exclude_its_requests_and_its_keys() -> None:
    owners = {("b", "mine"): ("n1", "n2", "n3"), ("b", "other"): ("n2", "n3", "n4")}
    ops = [_op(0, "n2", "other", 0.1), _op(1, "n1", "other", 0.2),
           _op(2, "n2", "mine", 0.3), _op(3, "n2", "unknown", 0.4), _op(9, "n2", "other", 0.5)]
    assert away_from(ops, "n1", owners, 0.0, 5.0) == [pytest.approx(0.1)]
    assert involving(ops, "n1", owners, 0.0, 5.0) == [pytest.approx(0.2), pytest.approx(0.3)]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0, 99.0, 100.0)
    assert percentile([7.0], 99) == 7.0


def test_the_summary_table_has_a_row_per_scenario_and_the_seed() -> None:
    report = Report(results=(CheckResult("lost", ("k LOST",)),), outcomes={"ok": 9, "failed": 1},
                    lost=1, unreadable=0, lost_updates=0, phantoms=0, corrupt=0,
                    max_siblings=2, stale_reads=0)
    bad = ScenarioSummary.of("bad", "42", 12.0, report, Convergence(False, 60.0), ["a note"])
    text = table([bad])
    assert "FAIL: lost" in text and "a note" in text and "DFSRING_CHAOS_SEED" in text
    assert bad.line().startswith("bad [seed 42, 12s]: ok 9, failed 1, indeterminate 0; lost 1")


def test_touching_is_every_link_to_or_from_the_nodes_both_ways() -> None:
    links = nemesis.touching(7, [6, 7])
    assert links == {link for link in nemesis.all_links(7) if 6 in link or 7 in link}
    assert len(links) == 2 * (2 * 5) + 2  # each to and from the 5 others, and 6<->7
    assert nemesis.touching(7, []) == frozenset()
    with pytest.raises(ValueError):
        nemesis.touching(5, [6])
