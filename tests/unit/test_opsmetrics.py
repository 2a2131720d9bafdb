"""Scrape-time operator gauges (dfsring.http.opsmetrics): every liveness state is always
present, counts add up to the members, and the disk gauges carry what the snapshot says."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest

from dfsring.core.failure import Liveness
from dfsring.http import opsmetrics
from dfsring.http.opsmetrics import OpsSnapshot


def _samples(snap: OpsSnapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in opsmetrics.families(snap) for s in fam.samples}


@given(st.lists(st.sampled_from(list(Liveness)), max_size=50),
       st.integers(0, 2**50), st.integers(0, 2**50))
def test_members_by_state_count_every_member_once(states: list[Liveness], total: int,
                                                  free: int) -> None:
    got = _samples(OpsSnapshot(tuple(states), total, free))
    members = {labels[0][1]: v for (name, labels), v in got.items() if name == "dfsring_members"}
    assert set(members) == {s.value for s in Liveness}
    assert sum(members.values()) == len(states)
    for state in Liveness:
        assert members[state.value] == states.count(state)
    assert got[("dfsring_disk_total_bytes", ())] == total
    assert got[("dfsring_disk_free_bytes", ())] == free


def test_joined_exposition_keeps_the_registry_and_adds_the_gauges() -> None:
    registry = CollectorRegistry()
    Counter("dfsring_example", "x", registry=registry).inc()
    text = generate_latest(opsmetrics.joined(  # type: ignore[arg-type]
        registry, OpsSnapshot((Liveness.UP,), 10, 5))).decode()
    assert "dfsring_example_total 1.0" in text
    assert 'dfsring_members{state="up"} 1.0' in text
    assert "dfsring_disk_free_bytes 5.0" in text


def test_snapshot_of_a_missing_dir_reports_zero_instead_of_failing(tmp_path: Path) -> None:
    snap = opsmetrics.snapshot([Liveness.DOWN], tmp_path / "absent")
    assert (snap.disk_total, snap.disk_free) == (0, 0)
    assert opsmetrics.snapshot([], tmp_path).disk_total > 0
