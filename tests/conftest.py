"""Shared test wiring: tier markers from the directory, and real-process cluster fixtures.

A test's tier is where it lives (tests/unit, tests/component, tests/cluster), so ``-m unit``
selects by the same rule a reader sees in the tree and no test can forget its marker.

Cluster fixtures start real ``python -m dfsring.node`` processes through dfsring.cli.launcher,
with data and logs under the test's tmp_path. Every cluster a test made is stopped in teardown
whether the test passed or not; when a test fails, the tail of every node log is attached to
its report, so CI output shows what the nodes were doing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from dfsring.cli.launcher import LocalCluster, NodeProcess

# No per-example deadline: CI runs these beside the chaos suite on two cores, where a
# 200 ms example deadline failed on load alone (DeadlineExceeded in test_merkle). Speed
# targets live in benchmarks/, not in timed unit tests.
settings.register_profile("dfsring", deadline=None)
settings.load_profile("dfsring")

TIERS = ("unit", "component", "cluster")
LOG_TAIL_LINES = 50
START_TIMEOUT = 30.0

_TESTS_DIR = Path(__file__).resolve().parent
_CLUSTERS = pytest.StashKey[list[LocalCluster]]()

ClusterFactory = Callable[..., LocalCluster]


def _tier(path: Path) -> str | None:
    try:
        parts = path.resolve().relative_to(_TESTS_DIR).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = _tier(item.path)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach node log tails to a failed setup or call, while the nodes are still up."""
    report: pytest.TestReport = yield
    if report.failed and report.when in ("setup", "call"):
        for cluster in item.stash.get(_CLUSTERS, []):
            for node in cluster:
                title = f"dfsring {node.node_id} log, last {LOG_TAIL_LINES} lines: {node.log_path}"
                report.sections.append((title, node.log_tail(LOG_TAIL_LINES)))
    return report


def _stop_all(clusters: list[LocalCluster]) -> None:
    """Stop every cluster even if stopping one fails; then report the first failure."""
    errors: list[BaseException] = []
    for cluster in clusters:
        try:
            cluster.stop()
        except BaseException as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def cluster_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClusterFactory]:
    """``make(size=3, *, start_timeout=30, **LocalCluster kwargs)``: a started, ready cluster.

    Each cluster gets its own directory under tmp_path (cluster1, cluster2...), so a test may
    make several. The cluster is registered before it starts, so even a failed start is
    stopped and its logs reported.
    """
    clusters: list[LocalCluster] = []
    request.node.stash[_CLUSTERS] = clusters

    def make(size: int = 3, *, start_timeout: float = START_TIMEOUT, **kwargs: Any) -> LocalCluster:
        cluster = LocalCluster(size, tmp_path / f"cluster{len(clusters) + 1}", **kwargs)
        clusters.append(cluster)
        cluster.start(start_timeout)
        return cluster

    try:
        yield make
    finally:
        _stop_all(clusters)


@pytest.fixture
def cluster3(cluster_factory: ClusterFactory) -> LocalCluster:
    """Three nodes with the contract's defaults (N=3, R=2, W=2)."""
    return cluster_factory(3)


@pytest.fixture
def node1(cluster_factory: ClusterFactory) -> NodeProcess:
    """A single node that is a whole cluster by itself (N=1, R=1, W=1)."""
    return cluster_factory(1, n=1, r=1, w=1).nodes[0]
