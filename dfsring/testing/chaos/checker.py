"""The chaos checker: a pure function from (history, observed final state) to a report.

No I/O, no clock: :mod:`dfsring.testing.chaos.collect` gathers the observed state from the
nodes, this module judges it, so every rule is unit-tested with hand-made histories
(tests/unit/test_chaos_checker.py), including broken ones it must fail.

Checks (each one a :class:`CheckResult`; "enforced" ones decide :attr:`Report.ok`):

``lost``        every acknowledged unique-key write and file upload is readable, with its exact
                value, through every node (a node that does not answer counts too:
                "unreadable").
``phantom``     no value read at the end is one that was never written: its embedded write id
                and digest are intact but match no write attempted on that key, or a
                read-modify-write set holds an element nobody tried to add.
``integrity``   every byte read matches its write-time hash: final values whose embedded digest
                fails (a flipped byte), and values read during the run whose sha256 matches no
                write attempted on that key.
``lost_updates`` for each read-modify-write key, the union of the final siblings' sets (read
                through every node) holds every acknowledged element (Dynamo §4.4: a write
                with the context it read supersedes exactly what it saw, never a concurrent
                update).
``replicas``    every acknowledged key is stored locally on all its owners (optional: needs
                hinted handoff / anti-entropy, or read repair after the final reads).
``ring``        every node answered and all report one ring (epoch and hash), none in
                transition.
``cluster``     every node reports the same cluster id and ring members, and (when the run
                says which) the cluster the run started in and the members it must end with:
                a node that lost its data dir and founded a cluster of its own, or that the
                others forgot, is a split, not a slow convergence (issue 15, "disk replaced").
``bad_status``  no operation was answered outside its documented statuses (writes: 2xx or
                503 ``quorum-not-met``; reads: 200, 300, 404 or 503): the workload's requests
                are well-formed, so a 500 or a 400 says nothing of whether a write committed
                (optional).
``queues``      every node's hints_pending and transfers_pending are 0 (optional).

Outcomes are read conservatively (see :mod:`dfsring.testing.chaos.history`): only ``ok``
writes must survive; any attempted write, whatever its outcome, may legitimately appear.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dfsring.testing.chaos.history import (
    OpKind,
    OpRecord,
    Outcome,
    decode_set,
    decode_value,
    sha256,
)

Key = tuple[str, str]  # (bucket, key)
MAX_FINDINGS = 200  # per check, so a disaster still gives a readable report


@dataclass(frozen=True)
class KeyRead:
    """One key read through one node at the end: status None means no answer."""

    status: int | None
    values: tuple[bytes, ...] = ()  # the live siblings' bytes (one for a 200)
    error: str | None = None


@dataclass(frozen=True)
class NodeView:
    """What one node says of itself at the end; None fields were not collected."""

    ring: tuple[int, str] | None = None  # (epoch, hash)
    in_transition: bool = False
    hints_pending: int | None = None
    transfers_pending: int | None = None
    local_keys: frozenset[Key] | None = None
    error: str | None = None
    cluster: str | None = None  # the cluster id its ring belongs to
    members: frozenset[str] | None = None  # the node ids of its ring


@dataclass(frozen=True)
class Observed:
    """The final state: reads through every node, each node's view, the agreed owners."""

    reads: Mapping[str, Mapping[Key, KeyRead]]
    nodes: Mapping[str, NodeView]
    owners: Mapping[Key, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckOptions:
    require_all_owners: bool = True
    require_empty_queues: bool = True
    why_relaxed: str = ""  # printed next to a check that is reported but not enforced
    expect_cluster: str | None = None  # the cluster id every node must still be in
    expect_members: frozenset[str] | None = None  # the ring members the run must end with
    strict_statuses: bool = False  # enforce the bad_status check


@dataclass(frozen=True)
class CheckResult:
    name: str
    findings: tuple[str, ...]
    enforced: bool = True
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.findings

    def line(self) -> str:
        state = "ok" if self.passed else ("FAIL" if self.enforced else "not enforced")
        note = f" ({self.note})" if self.note else ""
        return f"{self.name}: {state}, {len(self.findings)} finding(s){note}"


@dataclass(frozen=True)
class Report:
    results: tuple[CheckResult, ...]
    outcomes: Mapping[str, int]  # ok / failed / indeterminate over every operation
    lost: int  # acknowledged unique keys missing (not just unreadable) through some node
    unreadable: int  # (key, node) final reads that got no answer
    lost_updates: int  # (key, element) acknowledged but missing from some node's final union
    phantoms: int
    corrupt: int
    max_siblings: int
    stale_reads: int  # informational: a 404 for a key acknowledged before the read started

    @property
    def ok(self) -> bool:
        return all(r.passed or not r.enforced for r in self.results)

    def failed_checks(self) -> list[str]:
        return [r.name for r in self.results if r.enforced and not r.passed]

    def result(self, name: str) -> CheckResult:
        return next(r for r in self.results if r.name == name)

    def describe(self, per_check: int = 10) -> str:
        lines = [r.line() + "".join(f"\n    - {f}" for f in r.findings[:per_check])
                 for r in self.results]
        return "\n".join(lines)


# --- the history, indexed ----------------------------------------------------------------


@dataclass
class _Index:
    hashes: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))
    write_hash: dict[tuple[Key, str], str] = field(default_factory=dict)  # (key, write id)
    acked_puts: dict[Key, str] = field(default_factory=dict)  # key -> hash
    acked_puts_end: dict[Key, float] = field(default_factory=dict)
    acked_files: dict[Key, str] = field(default_factory=dict)  # path -> hash
    elements: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))
    acked_elements: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))


def _index(history: Iterable[OpRecord]) -> _Index:
    idx = _Index()
    for rec in history:
        if rec.value_hash is None:
            continue
        key = (rec.bucket, rec.key)
        idx.hashes[key].add(rec.value_hash)
        if rec.write_id is not None:
            idx.write_hash[(key, rec.write_id)] = rec.value_hash
        if rec.op is OpKind.RMW and rec.element is not None:
            idx.elements[key].add(rec.element)
            if rec.outcome is Outcome.OK:
                idx.acked_elements[key].add(rec.element)
        elif rec.op is OpKind.PUT and rec.outcome is Outcome.OK:
            idx.acked_puts[key] = rec.value_hash
            idx.acked_puts_end[key] = rec.end
        elif rec.op is OpKind.FILE and rec.outcome is Outcome.OK:
            idx.acked_files[key] = rec.value_hash
    return idx


def _name(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


def _capped(findings: list[str]) -> tuple[str, ...]:
    if len(findings) <= MAX_FINDINGS:
        return tuple(findings)
    return (*findings[:MAX_FINDINGS], f"... and {len(findings) - MAX_FINDINGS} more")


def acknowledged(history: Iterable[OpRecord]) -> set[Key]:
    """Keys with at least one acknowledged write: what must end up on all owners. (Files
    are not keys: their manifests and chunks are placed under system names.)"""
    return {(r.bucket, r.key) for r in history
            if r.is_write and r.outcome is Outcome.OK and r.op is not OpKind.FILE}


# --- the checks --------------------------------------------------------------------------


def _check_lost(idx: _Index, obs: Observed) -> tuple[CheckResult, int, int]:
    findings: list[str] = []
    lost: set[Key] = set()
    unreadable = 0
    wanted = {**idx.acked_puts, **idx.acked_files}
    if not obs.reads and wanted:
        findings.append("no final reads were collected")
    for node, reads in sorted(obs.reads.items()):
        for key, want in sorted(wanted.items()):
            got = reads.get(key)
            if got is None or got.status is None:
                unreadable += 1
                why = "not read" if got is None else f"no answer ({got.error})"
                findings.append(f"{_name(key)} unreadable through {node}: {why}")
            elif want not in {sha256(v) for v in got.values}:
                lost.add(key)
                findings.append(f"{_name(key)} LOST through {node}: acknowledged value "
                                f"{want[:12]} absent (status {got.status}, "
                                f"{len(got.values)} value(s))")
    return CheckResult("lost", _capped(findings)), len(lost), unreadable


def _final_values(obs: Observed) -> Iterable[tuple[str, Key, bytes]]:
    for node, reads in sorted(obs.reads.items()):
        for key, got in sorted(reads.items()):
            for value in got.values:
                yield node, key, value


def _phantoms_and_corruption(idx: _Index, obs: Observed,
                             history: Sequence[OpRecord]) -> tuple[list[str], list[str]]:
    phantom: list[str] = []
    corrupt: list[str] = []
    for node, key, value in _final_values(obs):
        decoded = decode_value(value)
        if not decoded.intact:
            corrupt.append(f"{_name(key)} through {node}: {len(value)} bytes fail their "
                           f"embedded digest (write {decoded.write_id})")
            continue
        digest = sha256(value)
        recorded = idx.write_hash.get((key, decoded.write_id or ""))
        if recorded is None and digest not in idx.hashes.get(key, ()):
            phantom.append(f"{_name(key)} through {node}: value of write {decoded.write_id}, "
                           "never written to this key")
        elif recorded is not None and recorded != digest:
            corrupt.append(f"{_name(key)} through {node}: write {decoded.write_id} reads back "
                           f"with sha256 {digest[:12]}, written as {recorded[:12]}")
        phantom.extend(_phantom_elements(idx, key, node, value))
    for rec in history:
        known = idx.hashes.get((rec.bucket, rec.key), set())
        for digest in rec.read_hashes:
            if digest not in known:
                corrupt.append(f"{rec.bucket}/{rec.key} read #{rec.id} through {rec.node} at "
                               f"{rec.start:.2f}s: sha256 {digest[:12]} matches no write")
    return phantom, corrupt


def _phantom_elements(idx: _Index, key: Key, node: str, value: bytes) -> list[str]:
    if key not in idx.elements:
        return []
    items = decode_set(value) or frozenset()
    return [f"{_name(key)} through {node}: element {e!r} was never added"
            for e in sorted(items - idx.elements[key])]


def _union(got: KeyRead) -> set[str]:
    out: set[str] = set()
    for value in got.values:
        out |= decode_set(value) or frozenset()
    return out


def _check_lost_updates(idx: _Index, obs: Observed) -> tuple[CheckResult, int]:
    findings: list[str] = []
    lost: set[tuple[Key, str]] = set()
    for node, reads in sorted(obs.reads.items()):
        for key, acked in sorted(idx.acked_elements.items()):
            got = reads.get(key)
            if got is None or got.status is None:
                findings.append(f"{_name(key)} unreadable through {node}")
                continue
            missing = sorted(acked - _union(got))
            lost.update((key, e) for e in missing)
            if missing:
                findings.append(f"{_name(key)} through {node}: {len(missing)} acknowledged "
                                f"element(s) missing from {len(got.values)} sibling(s), e.g. "
                                f"{missing[:5]}")
    return CheckResult("lost_updates", _capped(findings)), len(lost)


def _check_replicas(idx: _Index, obs: Observed, opts: CheckOptions) -> CheckResult:
    findings: list[str] = []
    wanted = sorted(set(idx.acked_puts) | {k for k, v in idx.acked_elements.items() if v})
    for key in wanted:
        owners = obs.owners.get(key)
        if not owners:
            findings.append(f"{_name(key)}: owners unknown")
            continue
        for owner in owners:
            local = obs.nodes.get(owner, NodeView()).local_keys
            if local is None:
                findings.append(f"{_name(key)}: local keys of owner {owner} not collected")
            elif key not in local:
                findings.append(f"{_name(key)} missing on owner {owner}")
    note = "" if opts.require_all_owners else opts.why_relaxed or "require_all_owners=False"
    return CheckResult("replicas", _capped(findings), opts.require_all_owners, note)


def _check_ring(obs: Observed) -> CheckResult:
    findings: list[str] = []
    rings: dict[tuple[int, str], list[str]] = defaultdict(list)
    for node, view in sorted(obs.nodes.items()):
        if view.ring is None:
            findings.append(f"{node}: no ring ({view.error or 'not collected'})")
            continue
        rings[view.ring].append(node)
        if view.in_transition:
            findings.append(f"{node}: ring epoch {view.ring[0]} still in transition")
    if not obs.nodes:
        findings.append("no node was observed")
    if len(rings) > 1:
        seen = "; ".join(f"epoch {e} hash {h[:12]}: {', '.join(ns)}"
                         for (e, h), ns in sorted(rings.items()))
        findings.append(f"nodes disagree on the ring: {seen}")
    return CheckResult("ring", tuple(findings))


def _check_queues(obs: Observed, opts: CheckOptions) -> CheckResult:
    findings: list[str] = []
    for node, view in sorted(obs.nodes.items()):
        for name, value in (("hints_pending", view.hints_pending),
                            ("transfers_pending", view.transfers_pending)):
            if value is None:
                findings.append(f"{node}: {name} not collected ({view.error or 'no stats'})")
            elif value:
                findings.append(f"{node}: {name} = {value}")
    note = "" if opts.require_empty_queues else opts.why_relaxed or "require_empty_queues=False"
    return CheckResult("queues", tuple(findings), opts.require_empty_queues, note)


def _check_cluster(obs: Observed, opts: CheckOptions) -> CheckResult:
    findings: list[str] = []
    clusters: dict[str, list[str]] = defaultdict(list)
    for node, view in sorted(obs.nodes.items()):
        if view.cluster is not None:
            clusters[view.cluster].append(node)
        elif opts.expect_cluster is not None and view.ring is not None:
            findings.append(f"{node}: cluster id not collected")
        if view.members is not None and opts.expect_members is not None \
                and view.members != opts.expect_members:
            missing = sorted(opts.expect_members - view.members)
            extra = sorted(view.members - opts.expect_members)
            findings.append(f"{node}: ring members {sorted(view.members)} (missing {missing}, "
                            f"unexpected {extra})")
    if len(clusters) > 1:
        seen = "; ".join(f"{c}: {', '.join(ns)}" for c, ns in sorted(clusters.items()))
        findings.append(f"nodes are in {len(clusters)} different clusters: {seen}")
    want = opts.expect_cluster
    if want is not None:
        findings.extend(f"{node}: in cluster {c}, not {want} (the one the run started in)"
                        for c, ns in sorted(clusters.items()) if c != want for node in ns)
    return CheckResult("cluster", _capped(findings))


READ_STATUSES = frozenset({200, 300, 404, 503})


def _bad_write(status: int | None) -> bool:
    return status is not None and not 200 <= status < 300 and status != 503


def _bad_read(status: int | None) -> bool:
    return status is not None and status not in READ_STATUSES


def _bad_status(rec: OpRecord) -> bool:
    if rec.op is OpKind.GET:
        return _bad_read(rec.status)
    return _bad_write(rec.status) or _bad_read(rec.read_status)


def _check_statuses(history: Sequence[OpRecord], opts: CheckOptions) -> CheckResult:
    findings = [f"{rec.op} {rec.bucket}/{rec.key} #{rec.id} through {rec.node} at "
                f"{rec.start:.2f}s: HTTP {rec.status} (read: {rec.read_status}) "
                f"{(rec.error or '')[:120]}"
                for rec in history if _bad_status(rec)]
    note = "" if opts.strict_statuses else "strict_statuses=False"
    return CheckResult("bad_status", _capped(findings), opts.strict_statuses, note)


def _stale_reads(idx: _Index, history: Sequence[OpRecord]) -> int:
    return sum(1 for rec in history
               if rec.op is OpKind.GET and rec.outcome is Outcome.OK and rec.status == 404
               and idx.acked_puts_end.get((rec.bucket, rec.key), rec.start) < rec.start)


def _max_siblings(history: Sequence[OpRecord], obs: Observed) -> int:
    seen = [rec.siblings for rec in history]
    seen += [len(got.values) for reads in obs.reads.values() for got in reads.values()]
    return max(seen, default=0)


def check(history: Iterable[OpRecord], observed: Observed,
          options: CheckOptions | None = None) -> Report:
    """Judge a run: see the module docstring for what each check means."""
    opts = options or CheckOptions()
    records = list(history)
    idx = _index(records)
    lost, n_lost, unreadable = _check_lost(idx, observed)
    phantoms, corrupt = _phantoms_and_corruption(idx, observed, records)
    updates, n_updates = _check_lost_updates(idx, observed)
    results = (lost, CheckResult("phantom", _capped(phantoms)),
               CheckResult("integrity", _capped(corrupt)), updates,
               _check_replicas(idx, observed, opts),
               _check_ring(observed), _check_cluster(observed, opts),
               _check_queues(observed, opts), _check_statuses(records, opts))
    return Report(results=results,
                  outcomes=Counter(str(rec.outcome) for rec in records),
                  lost=n_lost, unreadable=unreadable, lost_updates=n_updates,
                  phantoms=len(phantoms), corrupt=len(corrupt),
                  max_siblings=_max_siblings(records, observed),
                  stale_reads=_stale_reads(idx, records))
