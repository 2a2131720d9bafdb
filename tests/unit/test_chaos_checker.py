"""The chaos checker passes a correct run and fails each kind of broken one (issue: chaos
suite, part 3). Histories and final states are built by hand: the checker is pure."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest

from dfsring.testing.chaos.checker import (
    CheckOptions,
    KeyRead,
    NodeView,
    Observed,
    Report,
    acknowledged,
    check,
)
from dfsring.testing.chaos.history import (
    OpKind,
    OpRecord,
    Outcome,
    decode_set,
    decode_value,
    encode_set,
    encode_value,
    read_jsonl,
    sha256,
    write_jsonl,
)

pytestmark = pytest.mark.unit

B = "chaos"
NODES = ("node1", "node2", "node3", "node4")
RING = (3, "ab" * 16)
SHARED = (B, "rmw-0")


def _put(i: int, key: str, outcome: Outcome = Outcome.OK) -> tuple[OpRecord, bytes]:
    value = encode_value(f"w{i}", f"payload of {key}".encode())
    rec = OpRecord(id=i, client=0, op=OpKind.PUT, bucket=B, key=key, node="node1",
                   start=float(i), end=i + 0.1, outcome=outcome,
                   status=204 if outcome is Outcome.OK else 503, write_id=f"w{i}",
                   value_hash=sha256(value))
    return rec, value


def _rmw(i: int, elements: set[str], added: str,
         outcome: Outcome = Outcome.OK) -> tuple[OpRecord, bytes]:
    value = encode_set(f"w{i}", elements | {added})
    rec = OpRecord(id=i, client=1, op=OpKind.RMW, bucket=B, key=SHARED[1], node="node2",
                   start=float(i), end=i + 0.1, outcome=outcome, status=204, write_id=f"w{i}",
                   value_hash=sha256(value), element=added, read_status=200, siblings=1)
    return rec, value


class Run:
    """A small correct run: three unique keys (one write failed), two rmw updates, and a final
    state where every node returns everything, every owner holds everything."""

    def __init__(self) -> None:
        self.history: list[OpRecord] = []
        self.final: dict[tuple[str, str], tuple[bytes, ...]] = {}
        for i, (key, outcome) in enumerate([("u-1", Outcome.OK), ("u-2", Outcome.OK),
                                            ("u-3", Outcome.INDETERMINATE)]):
            rec, value = _put(i, key, outcome)
            self.history.append(rec)
            if outcome is Outcome.OK:
                self.final[(B, key)] = (value,)
        first, _ = _rmw(10, set(), "c1-1")
        second, last = _rmw(11, {"c1-1"}, "c1-2")
        self.history += [first, second]
        self.final[SHARED] = (last,)
        read = OpRecord(id=12, client=2, op=OpKind.GET, bucket=B, key="u-1", node="node3",
                        start=5.0, end=5.1, outcome=Outcome.OK, status=200, siblings=1,
                        read_hashes=(self.history[0].value_hash or "",))
        self.history.append(read)
        self.owners = {key: NODES[:3] for key in self.final}
        self.views = {n: NodeView(ring=RING, hints_pending=0, transfers_pending=0,
                                  local_keys=frozenset(self.final) if n in NODES[:3]
                                  else frozenset())
                      for n in NODES}

    def observed(self, reads: dict[str, dict[tuple[str, str], KeyRead]] | None = None
                 ) -> Observed:
        if reads is None:
            reads = {n: {k: KeyRead(_status(v), v) for k, v in self.final.items()}
                     for n in NODES}
        return Observed(reads=reads, nodes=self.views, owners=self.owners)

    def check(self, options: CheckOptions | None = None, **kwargs: object) -> Report:
        return check(self.history, self.observed(**kwargs), options)  # type: ignore[arg-type]


def _status(values: tuple[bytes, ...]) -> int:
    return 404 if not values else 200 if len(values) == 1 else 300


def _failed(report: Report) -> list[str]:
    return report.failed_checks()


def test_a_correct_run_passes() -> None:
    report = Run().check()
    assert report.ok, report.describe()
    assert (report.lost, report.lost_updates, report.phantoms, report.corrupt) == (0, 0, 0, 0)
    assert report.outcomes == {"ok": 5, "indeterminate": 1}
    assert report.max_siblings == 1


def test_a_dropped_acknowledged_write_fails_lost() -> None:
    run = Run()
    run.final[(B, "u-2")] = ()  # a test double of a store that dropped it: 404 everywhere
    report = run.check()
    assert _failed(report) == ["lost"]
    assert report.lost == 1
    assert any("u-2 LOST through node1" in f for f in report.result("lost").findings)


def test_a_write_dropped_on_one_node_only_is_still_lost() -> None:
    run = Run()
    reads = run.observed().reads
    reads = {**reads, "node4": {**reads["node4"], (B, "u-1"): KeyRead(404)}}
    report = run.check(reads=reads)
    assert _failed(report) == ["lost"] and report.lost == 1


def test_an_unanswered_final_read_fails_lost_as_unreadable() -> None:
    run = Run()
    reads = run.observed().reads
    reads = {**reads, "node2": {**reads["node2"], (B, "u-1"): KeyRead(None, error="timeout")}}
    report = run.check(reads=reads)
    assert _failed(report) == ["lost"]
    assert (report.lost, report.unreadable) == (0, 1)


def test_an_indeterminate_write_may_be_present_or_absent() -> None:
    run = Run()
    _, value = _put(2, "u-3", Outcome.INDETERMINATE)
    run.final[(B, "u-3")] = (value,)
    assert run.check().ok


def test_a_value_never_written_fails_phantom() -> None:
    run = Run()
    run.final[(B, "u-1")] = (encode_value("w99", b"made up"),)
    report = run.check()
    assert "phantom" in _failed(report)
    assert report.phantoms == len(NODES)


def test_a_value_of_another_key_fails_phantom() -> None:
    run = Run()
    _, other = _put(1, "u-2")
    run.final[(B, "u-1")] = (run.final[(B, "u-1")][0], other)
    assert "phantom" in _failed(run.check())


def test_an_element_never_added_fails_phantom() -> None:
    run = Run()
    run.final[SHARED] = (encode_set("w11", {"c1-1", "c1-2", "c9-9"}),)
    report = run.check()
    # w11 was written with different bytes, so it is also a hash mismatch
    assert {"phantom", "integrity"} <= set(_failed(report))
    assert any("c9-9" in f for f in report.result("phantom").findings)


def test_a_flipped_byte_fails_integrity() -> None:
    run = Run()
    good = bytearray(run.final[(B, "u-1")][0])
    good[-1] ^= 0x01
    run.final[(B, "u-1")] = (bytes(good),)
    report = run.check()
    assert "integrity" in _failed(report) and "phantom" not in _failed(report)
    assert report.corrupt == len(NODES)


def test_a_corrupt_read_during_the_run_fails_integrity() -> None:
    run = Run()
    run.history[-1] = replace(run.history[-1], read_hashes=(sha256(b"garbage"),))
    report = run.check()
    assert _failed(report) == ["integrity"]
    assert "read #12" in report.result("integrity").findings[0]


def test_a_lost_update_fails_lost_updates() -> None:
    run = Run()
    run.final[SHARED] = (run.final[SHARED][0],)
    # the second update overwrote the first without having seen it: c1-1 is gone
    stale = encode_set("w11", {"c1-2"})
    run.history[4] = replace(run.history[4], value_hash=sha256(stale))
    run.final[SHARED] = (stale,)
    report = run.check()
    assert _failed(report) == ["lost_updates"]
    assert report.lost_updates == 1


def test_siblings_that_together_cover_every_update_pass() -> None:
    run = Run()
    concurrent, value = _rmw(13, set(), "c2-1")
    run.history.append(concurrent)
    run.final[SHARED] = (run.final[SHARED][0], value)
    report = run.check()
    assert report.ok, report.describe()
    assert report.max_siblings == 2


def test_an_unacknowledged_update_may_be_missing() -> None:
    run = Run()
    failed, _ = _rmw(13, {"c1-1", "c1-2"}, "c2-1", Outcome.FAILED)
    run.history.append(failed)
    assert run.check().ok


def test_a_hint_queue_not_empty_fails_queues() -> None:
    run = Run()
    run.views["node2"] = replace(run.views["node2"], hints_pending=3)
    report = run.check()
    assert _failed(report) == ["queues"]
    assert "node2: hints_pending = 3" in report.result("queues").findings


def test_a_transfer_still_pending_fails_queues() -> None:
    run = Run()
    run.views["node4"] = replace(run.views["node4"], transfers_pending=1)
    assert _failed(run.check()) == ["queues"]


def test_ring_disagreement_fails_ring() -> None:
    run = Run()
    run.views["node3"] = replace(run.views["node3"], ring=(4, "cd" * 16))
    report = run.check()
    assert _failed(report) == ["ring"]
    assert "disagree" in report.result("ring").findings[0]


def test_a_node_in_transition_or_silent_fails_ring() -> None:
    run = Run()
    run.views["node1"] = replace(run.views["node1"], in_transition=True)
    run.views["node4"] = NodeView(error="connection refused")
    findings = run.check().result("ring").findings
    assert len(findings) == 2


def test_a_missing_replica_fails_replicas_only_when_required() -> None:
    run = Run()
    run.views["node3"] = replace(run.views["node3"], local_keys=frozenset({SHARED}))
    strict = run.check()
    assert _failed(strict) == ["replicas"]
    relaxed = run.check(CheckOptions(require_all_owners=False, why_relaxed="no handoff yet"))
    assert relaxed.ok
    replicas = relaxed.result("replicas")
    assert not replicas.passed and not replicas.enforced
    assert "no handoff yet" in replicas.line()


def test_history_round_trips_through_json_lines() -> None:
    run = Run()
    out = io.StringIO()
    for rec in run.history:
        write_jsonl(out, rec)
    assert list(read_jsonl(out.getvalue().splitlines())) == run.history


def test_values_verify_themselves() -> None:
    value = encode_set("w7", {"b", "a"})
    assert decode_value(value).write_id == "w7" and decode_value(value).intact
    assert decode_set(value) == {"a", "b"}
    assert not decode_value(value[:-1]).intact
    assert decode_value(b"not ours").write_id is None
    assert decode_set(encode_value("w8", b"{not json")) is None


def _file(i: int, path: str, outcome: Outcome = Outcome.OK) -> tuple[OpRecord, bytes]:
    value = encode_value(f"w{i}", f"file body of {path}".encode() * 100)
    rec = OpRecord(id=i, client=3, op=OpKind.FILE, bucket="chaosfiles", key=path,
                   node="node2", start=float(i), end=i + 0.5, outcome=outcome,
                   status=201 if outcome is Outcome.OK else 503, write_id=f"w{i}",
                   value_hash=sha256(value))
    return rec, value


def _with_file(run: Run, value: bytes | None) -> Run:
    rec, body = _file(20, "f-1")
    run.history.append(rec)
    run.final[("chaosfiles", "f-1")] = (body,) if value is None else (value,)
    return run


def test_an_acknowledged_file_read_back_whole_passes_without_owner_checks() -> None:
    run = _with_file(Run(), None)
    run.owners.pop(("chaosfiles", "f-1"), None)  # files are not keys: no local listing
    report = run.check()
    assert report.ok, report.describe()
    assert ("chaosfiles", "f-1") not in acknowledged(run.history)


def test_a_lost_file_fails_lost() -> None:
    run = _with_file(Run(), None)
    run.final[("chaosfiles", "f-1")] = ()
    report = run.check()
    assert _failed(report) == ["lost"]
    assert any("chaosfiles/f-1 LOST" in f for f in report.result("lost").findings)


def test_a_file_with_a_flipped_byte_fails_integrity() -> None:
    _, body = _file(20, "f-1")
    rotten = body[:-10] + bytes([body[-10] ^ 1]) + body[-9:]
    report = _with_file(Run(), rotten).check()
    assert "integrity" in _failed(report)


# --- cluster lineage and server errors (issue 15: "disk replaced", "ownership moves") ------

CLUSTER = "c0ffee"


def _in_cluster(run: Run, cluster: str = CLUSTER) -> Run:
    for node in NODES:
        run.views[node] = replace(run.views[node], cluster=cluster, members=frozenset(NODES))
    return run


def _expecting(cluster: str = CLUSTER) -> CheckOptions:
    return CheckOptions(expect_cluster=cluster, expect_members=frozenset(NODES))


def test_every_node_in_the_cluster_the_run_began_in_passes() -> None:
    report = _in_cluster(Run()).check(_expecting())
    assert report.ok, report.describe()


def test_a_replaced_founder_in_a_one_node_cluster_of_its_own_fails_cluster() -> None:
    """What the landed code did: node1, its data dir gone, founded a new cluster alone. Its
    ring epoch and hash differ too, but `cluster` names the split for what it is."""
    run = _in_cluster(Run())
    run.views["node1"] = replace(run.views["node1"], ring=(1, "ef" * 16), cluster="deadbeef",
                                 members=frozenset({"node1"}))
    report = run.check(_expecting())
    assert _failed(report) == ["ring", "cluster"]
    findings = report.result("cluster").findings
    assert any("2 different clusters" in f for f in findings)
    assert any(f.startswith("node1: in cluster deadbeef, not c0ffee") for f in findings)
    assert any("node1: ring members ['node1']" in f for f in findings)


def test_the_whole_cluster_refounded_elsewhere_fails_cluster_even_in_agreement() -> None:
    run = _in_cluster(Run(), cluster="deadbeef")
    report = run.check(_expecting())
    assert _failed(report) == ["cluster"]
    assert len(report.result("cluster").findings) == len(NODES)


def test_a_member_missing_from_the_ring_fails_cluster() -> None:
    run = _in_cluster(Run())
    fewer = frozenset(NODES) - {"node4"}
    for node in NODES:
        run.views[node] = replace(run.views[node], members=fewer)
    report = run.check(_expecting())
    assert _failed(report) == ["cluster"]
    assert "missing ['node4']" in report.result("cluster").findings[0]


def test_an_uncollected_cluster_id_fails_only_when_one_is_expected() -> None:
    run = Run()  # views without cluster ids, as older nodes report
    assert run.check().ok
    assert _failed(run.check(_expecting())) == ["cluster"]


STRICT = CheckOptions(strict_statuses=True)


@pytest.mark.parametrize("status", [500, 400, 409])
def test_a_write_answered_outside_2xx_and_503_fails_bad_status_when_strict(status: int) -> None:
    run = Run()
    rec, _ = _put(20, "u-20", Outcome.FAILED)
    run.history.append(replace(rec, status=status, error='{"title":"Internal error"}'))
    lenient = run.check()
    assert lenient.ok and not lenient.result("bad_status").passed
    strict = run.check(STRICT)
    assert _failed(strict) == ["bad_status"]
    assert f"HTTP {status}" in strict.result("bad_status").findings[0]


def test_a_503_and_a_404_are_documented_but_a_500_read_is_not() -> None:
    run = Run()  # u-3's write was answered 503 (see _put)
    run.history.append(OpRecord(id=30, client=2, op=OpKind.GET, bucket=B, key="u-9",
                                node="node1", start=6.0, end=6.1, outcome=Outcome.OK,
                                status=404))
    assert run.check(STRICT).ok
    rmw, _ = _rmw(21, set(), "c1-21", Outcome.FAILED)
    run.history.append(replace(rmw, status=None, read_status=500, value_hash=None))
    assert _failed(run.check(STRICT)) == ["bad_status"]
