"""What the deployment tests share: reading the Dockerfile, Compose file, Kubernetes overlays
and observability kit exactly as the tools would, so a test checks the files users run.

Pure readers (no processes) except `render_overlay`, which runs the real kustomize built into
kubectl (offline; it is on every machine image of this project), and `metric_families`,
which parses a node's /metrics text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dfsring.foundation.config import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
COMPOSE_SCHEMA = ROOT / "deploy" / "schema" / "compose-spec.json"
K8S = ROOT / "deploy" / "k8s"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "dfsring.json"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"
K8S_VERSION = "1.35.0"  # the schemas the manifests are validated against (kubernetes-validate)

NODE_ENV = frozenset(o.env for o in OPTIONS)
"""Every DFSRING_* variable the node reads (dfsring.foundation.config.OPTIONS)."""
CLI_ENV = frozenset({"DFSRING_URL", "DFSRING_ACCESS_KEY", "DFSRING_SECRET_KEY"})
"""Variables the dfsring CLI reads (set in the pods for `kubectl exec ... dfsring`)."""


# --- Dockerfile --------------------------------------------------------------------------------


@dataclass
class Stage:
    """One build stage: its base image and its instructions (keyword, argument text)."""

    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_stages(text: str) -> list[Stage]:
    """The stages of a Dockerfile: continuation lines joined, comments and blanks dropped."""
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, arg = line.partition(" ")
        keyword, arg = keyword.upper(), arg.strip()
        if keyword == "FROM":
            stages.append(Stage(arg.split()[0]))
        elif not stages:
            raise ValueError(f"{keyword} before the first FROM")
        else:
            stages[-1].instructions.append((keyword, arg))
    return stages


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        yield (pending + stripped).strip()
        pending = ""
    if pending:
        yield pending.strip()


def env_of(stage: Stage) -> dict[str, str]:
    """ENV instructions of a stage (KEY=VALUE pairs, unquoted)."""
    env: dict[str, str] = {}
    for arg in stage.all("ENV"):
        for pair in re.findall(r'(\w+)=("[^"]*"|\S+)', arg):
            env[pair[0]] = pair[1].strip('"')
    return env


def exec_form(arg: str) -> list[str]:
    """An ENTRYPOINT/CMD/HEALTHCHECK CMD in exec (JSON) form; shell form is refused."""
    value = json.loads(arg)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"not an exec-form command: {arg}")
    return value


def healthcheck_command(stage: Stage) -> list[str]:
    arg = stage.last("HEALTHCHECK")
    if arg is None:
        raise ValueError("no HEALTHCHECK")
    _, _, cmd = arg.partition("CMD ")
    return exec_form(cmd.strip())


def runtime() -> Stage:
    return dockerfile_stages(DOCKERFILE.read_text())[-1]


# --- Compose -----------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (the forms this repo uses)."""

    def one(m: re.Match[str]) -> str:
        name, text = m.group(1), m.group(0)
        if name in env:
            return env[name]
        if ":-" in text:
            return text.split(":-", 1)[1][:-1]
        raise KeyError(f"{name} is required ({text})")

    return _INTERPOLATION.sub(one, value)


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def service_env(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    raw = service.get("environment") or {}
    assert isinstance(raw, dict), "environment as a mapping"
    return {k: interpolate(str(v), env) for k, v in raw.items()}


def node_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the dfsring image."""
    return {name: svc for name, svc in doc["services"].items()
            if svc.get("image", "").startswith("dfsring")}


# --- Kubernetes --------------------------------------------------------------------------------


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise RuntimeError("kubectl (with its built-in kustomize) is needed to render "
                           "deploy/k8s; it ships with this project's machine image")
    return path


def render_overlay(name: str, workdir: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of deploy/k8s/overlays/NAME, in a copy under `workdir` where the
    prod overlay's uncommitted secrets.env is made from its example."""
    tree = workdir / "k8s"
    shutil.copytree(K8S, tree, dirs_exist_ok=True)
    example = tree / "overlays" / name / "secrets.env.example"
    if example.exists():
        shutil.copy(example, example.with_name("secrets.env"))
    out = subprocess.run([kubectl(), "kustomize", str(tree / "overlays" / name)],
                         capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kustomize {name}: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in the render"
    return found[0]


# --- observability -----------------------------------------------------------------------------

PROMETHEUS_OWN = frozenset({"up"})
"""Series Prometheus makes itself (not in any /metrics): allowed in rules and dashboards."""

_METRIC = re.compile(r"\b(dfsring_[a-z0-9_]+|up)\b")


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads: dfsring_* names and Prometheus's `up`.
    Label names and values are not names: text inside {...} and quotes is removed first."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "{}", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    return set(_METRIC.findall(bare))


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs(dash: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets (rows included) and the
    templating queries."""
    exprs: list[str] = []

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for panel in panels(dash.get("panels", [])):
        exprs += [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", text))
    return exprs


def exposed_names(exposition: str) -> set[str]:
    """The series names a /metrics text can carry: every `# TYPE` family, histograms and
    summaries with their _bucket/_sum/_count (counters are typed with their _total name)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            name, kind = parts[2], parts[3]
            names.add(name)
            if kind in ("histogram", "summary"):
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def runbook_anchors() -> set[str]:
    """GitHub-style anchors of docs/OPERATIONS.md's headings."""
    anchors = set()
    for line in OPERATIONS.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors
