"""Chaos suite wiring: the ``chaos`` marker, seed and scale, the cluster fixture, and the
summary table printed at the end of the session.

The suite is long (minutes) and CPU-hungry, so it runs only when asked for: with a marker
expression naming it (``pytest -m chaos``) or by giving its path (``pytest tests/chaos``).
A plain ``pytest`` skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dfsring.testing.chaos.settings import scale_from_env, seed_from_env
from dfsring.testing.chaos.summary import ScenarioSummary, table
from dfsring.testing.chaos.wiring import ChaosCluster

LOG_TAIL_LINES = 40
_SUMMARIES = pytest.StashKey[list[ScenarioSummary]]()
_SEED = pytest.StashKey[str]()
_CLUSTERS = pytest.StashKey[list[ChaosCluster]]()
_HERE = Path(__file__).resolve().parent

ChaosFactory = Callable[..., ChaosCluster]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault-injection scenarios on a 5-node cluster (run with -m chaos)")
    config.stash[_SUMMARIES] = []
    config.stash[_SEED] = seed_from_env()


def _asked_for(config: pytest.Config) -> bool:
    markexpr = config.getoption("markexpr", "") or ""
    return "chaos" in markexpr or any("chaos" in str(arg) for arg in config.args)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    skip = pytest.mark.skip(reason="chaos suite: run it with -m chaos (or pytest tests/chaos)")
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def chaos_seed(pytestconfig: pytest.Config) -> str:
    return pytestconfig.stash[_SEED]


@pytest.fixture(scope="session")
def chaos_scale() -> float:
    return scale_from_env()


@pytest.fixture
def chaos_summary(pytestconfig: pytest.Config) -> Callable[[ScenarioSummary], None]:
    """Add a scenario's summary to the table printed at the end of the session."""
    return pytestconfig.stash[_SUMMARIES].append


@pytest.fixture
def chaos_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChaosFactory]:
    """``make(size=5, **ChaosCluster kwargs)``: a started chaos cluster, stopped (nodes and
    proxy server) in teardown whatever happened."""
    clusters: list[ChaosCluster] = []
    request.node.stash[_CLUSTERS] = clusters

    def make(size: int = 5, **kwargs: Any) -> ChaosCluster:
        cluster = ChaosCluster(size, tmp_path / f"cluster{len(clusters) + 1}", **kwargs)
        clusters.append(cluster)
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        errors: list[BaseException] = []
        for cluster in clusters:
            try:
                cluster.stop()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure: the fault timeline, the seed, and the tail of every node's log."""
    report: pytest.TestReport = yield
    if report.failed and report.when in ("setup", "call"):
        seed = item.config.stash.get(_SEED, "?")
        for cluster in item.stash.get(_CLUSTERS, []):
            report.sections.append((f"chaos timeline (seed {seed})", cluster.timeline()))
            for node in cluster.nodes:
                title = f"dfsring {node.node_id} log, last {LOG_TAIL_LINES} lines: {node.log_path}"
                report.sections.append((title, node.log_tail(LOG_TAIL_LINES)))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    summaries = config.stash.get(_SUMMARIES, [])
    if summaries:
        terminalreporter.write_sep("=", "chaos summary")
        terminalreporter.write_line(table(summaries))
