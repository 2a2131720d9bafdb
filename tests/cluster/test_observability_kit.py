"""The observability kit names only series a real node exports (issue 22 item 3: "every
metric they name exists in /metrics"): every series in deploy/prometheus/alerts.yml and in the
Grafana dashboard is a `# TYPE` family of a running node's /metrics (counters by their _total
name, histograms by _bucket/_sum/_count), or Prometheus's own `up`."""

from __future__ import annotations

import json
import urllib.request

from dfsring.cli.launcher import NodeProcess
from tests import deploykit as kit

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _exposed(node: NodeProcess) -> set[str]:
    with _HTTP.open(f"{node.url}/metrics", timeout=5) as resp:
        return kit.exposed_names(resp.read().decode())


def test_alerts_and_dashboard_name_only_series_a_node_exports(node1: NodeProcess) -> None:
    exposed = _exposed(node1) | kit.PROMETHEUS_OWN
    missing: dict[str, set[str]] = {}
    for rule in kit.alert_rules():
        names = kit.metric_names(rule["expr"])
        assert names, rule["alert"]
        if names - exposed:
            missing[f"alert {rule['alert']}"] = names - exposed
    dash = json.loads(kit.DASHBOARD.read_text())
    for expr in kit.dashboard_exprs(dash):
        names = kit.metric_names(expr)
        assert names, expr
        if names - exposed:
            missing[f"dashboard {expr}"] = names - exposed
    assert not missing


def test_operator_gauges_report_members_and_disk(node1: NodeProcess) -> None:
    with _HTTP.open(f"{node1.url}/metrics", timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in lines
              if line and not line.startswith("#")}
    assert values['dfsring_members{state="up"}'] == 1
    assert values['dfsring_members{state="down"}'] == 0
    assert 0 < values["dfsring_disk_free_bytes"] <= values["dfsring_disk_total_bytes"]
    assert values['dfsring_request_problems_total{problem="quorum-not-met"}'] == 0
