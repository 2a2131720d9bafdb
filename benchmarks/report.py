"""Turn a results document into ratios, a target verdict and a Markdown table.

Pure functions over the JSON the suite writes, so a stored result can be re-rendered or
re-judged (``python -c 'from benchmarks import report; ...'``) without running anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Results = dict[str, Any]
_RATIO_FIELDS = ("ops_per_s", "server_cpu_us_per_op")
_LATENCY_FIELDS = ("p50", "p99", "p99.9")


def add_ratios(results: Results) -> None:
    """Give every non-baseline KV row ``vs_baseline``, and every dfsring row ``vs_etcd`` when
    etcd ran: its figures divided by the reference's at the same mix and concurrency (ops/s
    0.35 = 35 % of the reference's throughput; p99 3.0 = three times its p99)."""
    for ref_setup, field in (("baseline", "vs_baseline"), ("etcd", "vs_etcd")):
        base = {(r["mix"], r["concurrency"]): r for r in results["kv"]
                if r["setup"] == ref_setup}
        for row in results["kv"]:
            ref = base.get((row["mix"], row["concurrency"]))
            if row["setup"] in ("baseline", ref_setup) or ref is None:
                continue
            ratios: dict[str, float | None] = {}
            for name in _RATIO_FIELDS:
                ratios[name] = _ratio(row.get(name), ref.get(name))
            for name in _LATENCY_FIELDS:
                ratios[name] = _ratio(row["latency_ms"].get(name), ref["latency_ms"].get(name))
            row[field] = ratios


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def clean(results: Results) -> bool:
    """Whether every measured run finished without errors (the exit status says so)."""
    rows = [*results["kv"], *results["files"].values()]
    if any(r.get("error_count") for r in rows):
        return False
    files = results["files"]
    if any(files.get(k, {}).get(ok) is False for k, ok in (("big_put", "sha256_ok"),
                                                           ("big_get", "content_ok"))):
        return False
    repair = results["repair"]
    return bool(repair.get("antientropy", {}).get("restored", True)
                and repair.get("handoff", {}).get("drained", True))


# --- targets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One goal from the benchmarks issue: ``measure`` finds the figure in a result (None if
    that run was not made), ``at_least`` says which side of ``goal`` is good."""

    name: str
    goal: float
    unit: str
    at_least: bool
    measure: Callable[[Results], float | None]
    applies: Callable[[Results], bool] = lambda results: True
    """Whether the run had the setup the goal is stated for (a --quick run's 16 MiB file
    says nothing about a goal for 256 MiB)."""


def _kv(setup: str, mix: str, clients: int, pick: Callable[[dict[str, Any]], Any]
        ) -> Callable[[Results], float | None]:
    def measure(results: Results) -> float | None:
        for row in results["kv"]:
            if (row["setup"], row["mix"], row["concurrency"]) == (setup, mix, clients):
                value = pick(row)
                return None if value is None else float(value)
        return None

    return measure


def _path(*keys: str) -> Callable[[Results], float | None]:
    def measure(results: Results) -> float | None:
        node: Any = results
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return None if node is None else float(node)

    return measure


def _max_rss(section: str, keys: tuple[str, ...], field: str | None
             ) -> Callable[[Results], float | None]:
    """The largest node's figure: ``results[section][key][field]`` for files rows, or
    ``results[section][key]`` (per node) for the idle figures."""
    def measure(results: Results) -> float | None:
        peaks: list[float] = []
        for key in keys:
            found = results.get(section, {}).get(key)
            if isinstance(found, dict) and field is not None:
                found = found.get(field)
            if isinstance(found, dict):
                peaks.extend(v for v in found.values() if isinstance(v, int | float))
        return max(peaks) if peaks else None

    return measure


def _default_cluster(results: Results) -> bool:
    cfg = results["config"]
    return bool(cfg.get("target") or (cfg["nodes"], cfg["n"], cfg["r"], cfg["w"]) == (3, 3, 2, 2))


def _big_file(results: Results) -> bool:
    return bool(results["files"].get("big_put", {}).get("bytes", 0) >= 256 << 20)


def _ae_keys(results: Results) -> bool:
    return bool(results["repair"].get("antientropy", {}).get("keys_expected", 0) >= 100_000)


def _vs_etcd(mix: str, clients: int, name: str) -> Callable[[Results], float | None]:
    return _kv("cluster", mix, clients, lambda r: r.get("vs_etcd", {}).get(name))


TARGETS = (
    # issue 17: ratios to etcd x3 measured in the same run by the same generator
    Target("KV writes, 16 clients, cluster vs etcd x3", 1.0, "x", True,
           _vs_etcd("put", 16, "ops_per_s"), _default_cluster),
    Target("KV writes, 64 clients, cluster vs etcd x3", 1.0, "x", True,
           _vs_etcd("put", 64, "ops_per_s"), _default_cluster),
    Target("KV write p99, 16 clients, cluster vs etcd x3", 1.0, "x", False,
           _vs_etcd("put", 16, "p99"), _default_cluster),
    Target("KV reads, 16 clients, cluster vs etcd x3", 1.0, "x", True,
           _vs_etcd("get", 16, "ops_per_s"), _default_cluster),
    Target("KV writes, 16 clients, cluster vs baseline", 0.35, "x", True,
           _kv("cluster", "put", 16, lambda r: r.get("vs_baseline", {}).get("ops_per_s")),
           _default_cluster),
    Target("KV writes, 16 clients, cluster p99", 10.0, "ms", False,
           _kv("cluster", "put", 16, lambda r: r["latency_ms"].get("p99")), _default_cluster),
    Target("KV reads (R=2), 16 clients, cluster vs baseline", 0.45, "x", True,
           _kv("cluster", "get", 16, lambda r: r.get("vs_baseline", {}).get("ops_per_s")),
           _default_cluster),
    Target("File PUT, replicated and fsynced", 100.0, "MiB/s", True,
           _path("files", "big_put", "mib_per_s"), _big_file),
    Target("File GET", 300.0, "MiB/s", True, _path("files", "big_get", "mib_per_s"), _big_file),
    Target("Node RSS idle (largest node)", 80.0, "MiB", False,
           _max_rss("idle_rss_mib", ("cluster",), None)),
    Target("Node RSS idle, anonymous only (LMDB's mapped pages excluded)", 80.0, "MiB", False,
           _max_rss("idle_anon_mib", ("cluster",), None)),
    Target("Node RSS while streaming files (largest node)", 250.0, "MiB", False,
           _max_rss("files", ("big_put", "big_get"), "peak_rss_mib"), _big_file),
    Target("Node RSS streaming files, anonymous only", 250.0, "MiB", False,
           _max_rss("files", ("big_put", "big_get"), "peak_anon_mib"), _big_file),
    Target("Wiped node's keys restored by anti-entropy", 60.0, "s", False,
           _path("repair", "antientropy", "seconds"), _ae_keys),
)


def evaluate_targets(results: Results) -> list[dict[str, Any]]:
    """Each target with the measured figure, met or not, and ``ratio`` = measured / goal
    (a floor is met at >= 1, a ceiling below 1)."""
    out = []
    for t in TARGETS:
        value = t.measure(results)
        row: dict[str, Any] = {"name": t.name, "goal": t.goal, "unit": t.unit,
                               "at_least": t.at_least, "measured": value}
        if value is not None and not t.applies(results):
            row.update(met=None, ratio=None, note="setup differs from the goal's")
        elif value is None:
            row.update(met=None, ratio=None)
        else:
            row.update(met=value >= t.goal if t.at_least else value < t.goal,
                       ratio=round(value / t.goal, 3))
        if t.name.startswith("Wiped") and value is not None:
            if not results["repair"]["antientropy"].get("restored", True):
                row["met"] = False  # timed out: the seconds are a lower bound
        out.append(row)
    return out


# --- Markdown ----------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rss(peaks: dict[str, float] | None, anon: dict[str, float] | None = None) -> str:
    """Per node, in node order: "VmRSS (RssAnon)" when both are known."""
    anon = anon or {}
    return " / ".join(_fmt(v, 0) + (f" ({_fmt(anon[k], 0)})" if k in anon else "")
                      for k, v in sorted((peaks or {}).items())) or "-"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def markdown(results: Results) -> str:
    """The whole result as Markdown: setup, KV table, files, repair, targets."""
    cfg, machine = results["config"], results["machine"]
    lines = [f"## dfsring benchmark, {results['started_at']}", ""]
    lines.append(
        f"{machine['cpus']} CPUs, load average {machine.get('loadavg_start')} at start, "
        f"{machine.get('loadavg_end')} at end; Python {machine['python']}, dfsring "
        f"{machine['dfsring']} ({machine.get('commit') or 'no git'}); {results.get('wall_s')} s.")
    target = f"target {', '.join(cfg['target'])}" if cfg.get("target") else (
        f"{cfg['nodes']} nodes, N={cfg['n']} R={cfg['r']} W={cfg['w']}"
        + (f", node flags `{' '.join(cfg['node_args'])}`" if cfg.get("node_args") else ""))
    lines.append(
        f"Cluster: {target}, durability {cfg['durability']}. KV: {cfg['value_size']} B values, "
        f"{cfg['keys']:,} keys, {cfg['duration_s']} s measured after {cfg['warmup_s']} s "
        f"warm-up per run, closed loop. Phases: {', '.join(cfg['phases'])}"
        + (" (quick)" if cfg.get("quick") else "") + ".")
    if results["skipped"]:
        lines.append("Skipped: " + "; ".join(f"{k} ({v})" for k, v in results["skipped"].items()))
    lines.append("")
    if results["kv"]:
        lines += ["### Key/value", "",
                  "ops/s and latency (ms) as the client saw them; x base: ratio to the baseline "
                  "dict server at the same mix and clients; x etcd: ratio to etcd x3 (same "
                  "run, same generator); CPU: server (all nodes) and "
                  "generator CPU µs per operation; RSS: peak VmRSS per node, MiB (in "
                  "brackets the anonymous part: without LMDB's mapped file pages).", ""]
        rows = []
        for r in results["kv"]:
            lat, vs = r["latency_ms"], r.get("vs_baseline", {})
            etcd = r.get("vs_etcd", {})
            rows.append([r["setup"], r["mix"], str(r["concurrency"]), _fmt(r["ops_per_s"], 0),
                         _fmt(vs.get("ops_per_s"), 2) if vs else "1",
                         _fmt(etcd.get("ops_per_s"), 2) if etcd else "-",
                         _fmt(lat.get("p50"), 2), _fmt(lat.get("p99"), 2),
                         _fmt(lat.get("p99.9"), 2), _fmt(vs.get("p99"), 1) if vs else "1",
                         _fmt(r["error_count"]), _fmt(r["server_cpu_us_per_op"], 0),
                         _fmt(r["generator_cpu_us_per_op"], 0),
                         _rss(r.get("peak_rss_mib"), r.get("peak_anon_mib"))])
        lines += _table(["setup", "mix", "clients", "ops/s", "x base", "x etcd", "p50", "p99",
                         "p99.9",
                         "p99 x base", "errors", "server CPU µs/op", "gen CPU µs/op",
                         "peak RSS MiB (anon)"], rows)
        lines.append("")
    idle, anon = results["idle_rss_mib"], results.get("idle_anon_mib", {})
    if idle:
        lines.append("Idle RSS, MiB (anonymous): " + "; ".join(
            f"{k} {_rss(v, anon.get(k))}" for k, v in idle.items()))
    if results["preload"]:
        lines.append("Preload: " + "; ".join(f"{k} {v['keys']:,} keys in {v['seconds']} s"
                                             for k, v in results["preload"].items()))
    if idle or results["preload"]:
        lines.append("")
    lines += _files_section(results["files"])
    lines += _repair_section(results["repair"])
    if results.get("targets"):
        lines += ["### Targets", ""]
        rows = []
        for t in results["targets"]:
            sign = "≥" if t["at_least"] else "<"
            of = "goal" if t["at_least"] else "limit"
            verdict = (t.get("note", "not measured") if t["met"] is None else
                       ("met" if t["met"] else "MISSED") + f" ({t['ratio']:.2f}x the {of})")
            rows.append([t["name"], f"{sign} {_fmt(t['goal'], 2)} {t['unit']}",
                         f"{_fmt(t['measured'], 2)} {t['unit']}" if t["measured"] is not None
                         else "-", verdict])
        lines += _table(["target", "goal", "measured", "verdict"], rows)
        lines.append("")
    return "\n".join(lines)


def _files_section(files: dict[str, Any]) -> list[str]:
    if not files:
        return []
    rows = []
    for key, label in (("big_put", "PUT large file"), ("big_get", "GET large file")):
        if key in files:
            f = files[key]
            ok = f.get("sha256_ok", f.get("content_ok"))
            rows.append([f"{label} ({f['bytes'] >> 20} MiB, via {f['via']})",
                         f"{_fmt(f['mib_per_s'])} MiB/s", f"{_fmt(f['seconds'], 2)} s",
                         " / ".join(_fmt(v, 2) for _, v in sorted(f["server_cpu_s"].items()))
                         or "-", _rss(f.get("peak_rss_mib"), f.get("peak_anon_mib")),
                         "ok" if ok else "BAD"])
    for key, label in (("small_put", "PUT 64 KiB files"), ("small_get", "GET 64 KiB files")):
        if key in files:
            f = files[key]
            rows.append([f"{label} ({f['ops']:,}, p50 {_fmt(f['latency_ms'].get('p50'), 1)} ms,"
                         f" p99 {_fmt(f['latency_ms'].get('p99'), 1)} ms)",
                         f"{_fmt(f['files_per_s'])} files/s", f"{_fmt(f['seconds'], 2)} s",
                         " / ".join(_fmt(v, 2) for _, v in sorted(f["server_cpu_s"].items()))
                         or "-", _rss(f.get("peak_rss_mib"), f.get("peak_anon_mib")),
                         "ok" if not f["error_count"] else f"errors {f['errors']}"])
    return ["### Files", "", *_table(["workload", "rate", "time", "server CPU s per node",
                                      "peak RSS MiB (anon) per node", "check"], rows), ""]


def _repair_section(repair: dict[str, Any]) -> list[str]:
    if not repair:
        return []
    rows = []
    if "antientropy" in repair:
        a = repair["antientropy"]
        rows.append([f"anti-entropy refills wiped {a['node']}",
                     f"{_fmt(a['keys_restored'])} / {_fmt(a['keys_expected'])} keys",
                     f"{_fmt(a['seconds'], 1)} s (boot {_fmt(a['boot_s'], 1)} s)",
                     f"{_fmt(a['keys_per_s'], 0)} keys/s",
                     _rss(a.get("peak_rss_mib"), a.get("peak_anon_mib"))])
    if "handoff" in repair:
        h = repair["handoff"]
        rows.append([f"hinted handoff to {h['node']} ({h['nodes']} nodes, "
                     f"{_fmt(h['keys_written'])} keys written while down)",
                     f"{_fmt(h['hints'])} hints, {_fmt(h['hints_left'])} left",
                     f"{_fmt(h['seconds'], 1)} s (boot {_fmt(h['boot_s'], 1)} s)",
                     f"{_fmt(h['hints_per_s'], 0)} hints/s",
                     _rss(h.get("peak_rss_mib"), h.get("peak_anon_mib"))])
    return ["### Repair", "", *_table(["what", "amount", "until done (from restart)", "rate",
                                       "peak RSS MiB (anon) per node"], rows), ""]
