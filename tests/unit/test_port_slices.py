"""Test workers running side by side draw node ports from disjoint slices (launcher)."""

from __future__ import annotations

import pytest

from dfsring.cli.launcher import _worker_slice


def test_no_worker_means_the_whole_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert _worker_slice(10_000, 32_768) == (10_000, 32_768)


def test_workers_get_disjoint_slices_covering_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    slices = []
    for i in range(3):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{i}")
        slices.append(_worker_slice(10_000, 31_000))
    assert slices == [(10_000, 17_000), (17_000, 24_000), (24_000, 31_000)]


@pytest.mark.parametrize(("worker", "count"), [("gw5", "2"), ("master", "2"), ("gw0", "x")])
def test_odd_worker_names_fall_back_to_the_whole_range(monkeypatch: pytest.MonkeyPatch,
                                                       worker: str, count: str) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", count)
    assert _worker_slice(10_000, 32_768) == (10_000, 32_768)
