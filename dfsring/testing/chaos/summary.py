"""One line per chaos scenario, and the table of them printed at the end of a run. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dfsring.testing.chaos.checker import Report
from dfsring.testing.chaos.collect import Convergence


@dataclass(frozen=True)
class ScenarioSummary:
    name: str
    seed: str
    wall_s: float
    ok: int
    failed: int
    indeterminate: int
    lost: int
    lost_updates: int
    convergence_s: float | None  # None: did not converge within its deadline
    max_siblings: int
    failed_checks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, name: str, seed: str, wall_s: float, report: Report, conv: Convergence,
           notes: Iterable[str] = ()) -> ScenarioSummary:
        out = report.outcomes
        return cls(name, seed, wall_s, out.get("ok", 0), out.get("failed", 0),
                   out.get("indeterminate", 0), report.lost, report.lost_updates,
                   conv.seconds if conv.converged else None, report.max_siblings,
                   tuple(report.failed_checks()), tuple(notes))

    @property
    def passed(self) -> bool:
        return not self.failed_checks

    def line(self) -> str:
        conv = "not converged" if self.convergence_s is None else f"{self.convergence_s:.1f}s"
        verdict = "PASS" if self.passed else f"FAIL ({', '.join(self.failed_checks)})"
        return (f"{self.name} [seed {self.seed}, {self.wall_s:.0f}s]: ok {self.ok}, failed "
                f"{self.failed}, indeterminate {self.indeterminate}; lost {self.lost}, lost "
                f"updates {self.lost_updates}; converged {conv}; max siblings "
                f"{self.max_siblings}; {verdict}")


_COLUMNS = ("scenario", "wall", "ok", "failed", "indet", "lost", "lost upd", "converge",
            "max sib", "verdict")


def _row(s: ScenarioSummary) -> tuple[str, ...]:
    conv = "-" if s.convergence_s is None else f"{s.convergence_s:.1f}s"
    verdict = "PASS" if s.passed else "FAIL: " + ",".join(s.failed_checks)
    return (s.name, f"{s.wall_s:.0f}s", str(s.ok), str(s.failed), str(s.indeterminate),
            str(s.lost), str(s.lost_updates), conv, str(s.max_siblings), verdict)


def table(summaries: Sequence[ScenarioSummary]) -> str:
    """A fixed-width table, one row per scenario, with each scenario's notes below it."""
    rows = [_COLUMNS, *(_row(s) for s in summaries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    seeds = sorted({s.seed for s in summaries})
    for s in summaries:
        lines.extend(f"  {s.name}: {note}" for note in s.notes)
    lines.append(f"seed(s): {', '.join(seeds)}; rerun with DFSRING_CHAOS_SEED=<seed>")
    return "\n".join(lines)
