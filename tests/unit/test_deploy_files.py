"""The deployment files, read as their tools read them (issue 22 items 1-3): the Dockerfile's
rules, docker-compose.yml against the Compose Specification's schema, the alert rules and the
Grafana dashboard's structure. The files are checked against a real node in
tests/cluster/test_image_entrypoint.py and tests/cluster/test_observability_kit.py, and the
Kubernetes overlays are rendered and validated in tests/component/test_deploy_manifests.py."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from tests import deploykit as kit

# --- Dockerfile -------------------------------------------------------------------------------


def test_runtime_stage_is_slim_python_non_root_with_a_data_volume() -> None:
    stage = kit.runtime()
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", stage.base), stage.base
    user = stage.last("USER")
    assert user is not None and user.split(":")[0] not in ("0", "root"), user
    assert stage.all("VOLUME") == ['["/data"]']
    assert kit.env_of(stage)["DFSRING_DATA_DIR"] == "/data"


def test_every_dfsring_variable_of_the_image_is_a_node_option() -> None:
    env = kit.env_of(kit.runtime())
    unknown = {k for k in env if k.startswith("DFSRING_")} - kit.NODE_ENV
    assert not unknown, f"the node does not read {unknown}"
    assert not {"DFSRING_CLUSTER_SECRET", "DFSRING_ADMIN_SECRET_KEY"} & set(env), \
        "secrets are never baked into the image"


def test_entrypoint_runs_the_node_and_healthcheck_probes_health() -> None:
    stage = kit.runtime()
    entry = stage.last("ENTRYPOINT")
    assert entry is not None
    assert kit.exec_form(entry) == ["python", "-m", "dfsring.node"]
    assert stage.last("CMD") is None, "options come from DFSRING_* variables, not CMD"
    assert kit.healthcheck_command(stage) == ["python", "-m", "dfsring.cli.healthcheck"]
    exposed = " ".join(stage.all("EXPOSE")).split()
    env = kit.env_of(stage)
    assert {env["DFSRING_PORT"], env["DFSRING_PEER_PORT"], env["DFSRING_S3_PORT"]} == set(exposed)


def test_dockerignore_keeps_only_what_the_build_copies() -> None:
    lines = [ln for ln in (kit.ROOT / ".dockerignore").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    copied = {arg.split()[0] for stage in kit.dockerfile_stages(kit.DOCKERFILE.read_text())
              for arg in stage.all("COPY") if not arg.startswith("--from")}
    for src in copied:
        assert f"!{src.rstrip('/')}" in {ln.rstrip("/") for ln in lines}, src


def test_dockerfile_reader_joins_continuations_and_keeps_stages_apart() -> None:
    text = 'FROM a AS b\n# c\nRUN x \\\n  y\nFROM d\nENV A=1 \\\n B="2"\n'
    stages = kit.dockerfile_stages(text)
    assert [s.base for s in stages] == ["a", "d"]
    assert stages[0].all("RUN") == ["x y"]
    assert kit.env_of(stages[1]) == {"A": "1", "B": "2"}
    with pytest.raises(ValueError):
        kit.exec_form("python -m x")


# --- Compose ----------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(kit.COMPOSE_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in validator(schema).iter_errors(kit.compose())]
    assert not errors


def test_compose_schema_check_catches_a_wrong_file() -> None:
    """The check above is not vacuous: a misspelt key fails it."""
    schema = json.loads(kit.COMPOSE_SCHEMA.read_text())
    doc = kit.compose()
    doc["services"]["node1"]["enviroment"] = {}
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(doc))


def test_compose_nodes_seed_each_other_and_prometheus_scrapes_them_all() -> None:
    doc = kit.compose()
    env = kit.read_env_file(kit.COMPOSE_ENV_EXAMPLE)
    nodes = kit.node_services(doc)
    assert len(nodes) == 3
    advertised = set()
    zones = set()
    for name, svc in nodes.items():
        node_env = kit.service_env(svc, env)
        unknown = set(node_env) - kit.NODE_ENV - kit.CLI_ENV
        assert not unknown, f"neither the node nor the CLI reads {unknown}"
        assert node_env["DFSRING_ADVERTISE"] == f"{svc['hostname']}:7170"
        assert node_env["DFSRING_ADVERTISE_API"] == f"{svc['hostname']}:7070"
        assert node_env["DFSRING_BOOTSTRAP_EXPECT"] == str(len(nodes))
        advertised.add(node_env["DFSRING_ADVERTISE"])
        zones.add(node_env["DFSRING_ZONE"])
        assert any(v.endswith(":/data") for v in svc["volumes"]), name
    for svc in nodes.values():
        assert set(kit.service_env(svc, env)["DFSRING_SEEDS"].split(",")) == advertised
    assert len(zones) == 3, "one zone per node, so replicas spread over all three"
    prom = yaml.safe_load(kit.PROMETHEUS.read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    assert targets == {f"{svc['hostname']}:7070" for svc in nodes.values()}


def test_compose_secrets_are_required_from_the_environment() -> None:
    node = kit.node_services(kit.compose())["node1"]
    with pytest.raises(KeyError, match="DFSRING_CLUSTER_SECRET"):
        kit.service_env(node, {})


def test_compose_mounts_exist_in_the_repository() -> None:
    for svc in kit.compose()["services"].values():
        for volume in svc.get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("./"):
                assert (kit.ROOT / src).exists(), src


# --- observability kit ------------------------------------------------------------------------

REQUIRED_ALERTS = {  # issue 22 item 3: the conditions every deployment must be alerted on
    "node down": "DfsringNodeDown",
    "quorum failures": "DfsringQuorumFailures",
    "hints growing": "DfsringHintsGrowing",
    "anti-entropy divergence": "DfsringAntiEntropyDivergence",
    "disk almost full": "DfsringDiskAlmostFull",
    "scrub errors": "DfsringScrubErrors",
}


def test_alert_rules_cover_the_issue_and_each_names_its_runbook() -> None:
    rules = kit.alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    assert set(REQUIRED_ALERTS.values()) <= set(names)
    anchors = kit.runbook_anchors()
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/OPERATIONS.md" and anchor in anchors, (rule["alert"], url)
        assert kit.metric_names(rule["expr"]), rule["alert"]


def test_every_required_alert_has_a_runbook_section_of_its_name() -> None:
    anchors = kit.runbook_anchors()
    for alert in REQUIRED_ALERTS.values():
        assert alert.lower() in anchors, alert


def test_dashboard_parses_and_every_panel_queries_the_datasource_variable() -> None:
    dash = json.loads(kit.DASHBOARD.read_text())
    assert dash["uid"] == "dfsring" and dash["title"]
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    exprs = kit.dashboard_exprs(dash)
    named = set().union(*(kit.metric_names(e) for e in exprs))
    for wanted in ("dfsring_members", "dfsring_disk_free_bytes", "dfsring_hints_pending_bytes",
                   "dfsring_http_request_seconds_bucket", "dfsring_ae_keys_repaired_total"):
        assert wanted in named


def test_metric_names_ignore_labels_functions_and_grouping() -> None:
    expr = ('sum by (instance, dfsring_fake) (rate(dfsring_http_requests_total'
            '{status=~"5..", route="dfsring_not_a_metric"}[5m])) / on(instance) '
            'dfsring_connections_max > 0 or up{job="dfsring"} == 0')
    assert kit.metric_names(expr) == {"dfsring_http_requests_total", "dfsring_connections_max",
                                      "up"}


def test_exposed_names_expand_histograms_and_keep_counters_total() -> None:
    text = ("# HELP a_total x\n# TYPE a_total counter\na_total 1\n"
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# TYPE g gauge\n")
    assert kit.exposed_names(text) == {"a_total", "h", "h_bucket", "h_sum", "h_count", "g"}


def test_dashboard_panels_do_not_overlap_on_the_grid() -> None:
    dash = json.loads(kit.DASHBOARD.read_text())
    cells: dict[tuple[int, int], str] = {}
    for panel in dash["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_prometheus_loads_the_rules_from_where_compose_mounts_them() -> None:
    prom = yaml.safe_load(kit.PROMETHEUS.read_text())
    mounts = dict(v.split(":")[:2] for v in kit.compose()["services"]["prometheus"]["volumes"])
    in_container = {mounts["./deploy/prometheus"] + "/" + p.name
                    for p in kit.PROMETHEUS.parent.glob("*.yml")}
    assert set(prom["rule_files"]) <= in_container
    grafana = kit.compose()["services"]["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.endswith("/" + kit.DASHBOARD.name)
