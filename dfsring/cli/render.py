"""What the cluster administration commands show, and when their waits are over. Pure.

Every function here takes the JSON documents of the HTTP API (docs/API.md: ``/v1/cluster/members``,
``/v1/cluster/ring``, ``/v1/cluster/transfers``, ``/v1/node/stats``) as plain values and returns
text or a small record; dfsring.cli.admin fetches the documents and prints the results. Keeping
the two apart lets the tables, the progress bar and the wait conditions be tested exhaustively
without a server (functional core, imperative shell).

A document may lack a field (an older node, a member that did not answer): that cell shows
``-`` rather than failing, because a status display must survive a partly broken cluster.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Doc = Mapping[str, Any]
MISSING = "-"
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
STATUS_HEADER = (
    "NODE",
    "ADDRESS",
    "ZONE",
    "STATUS",
    "PARTITIONS",
    "KEYS",
    "DISK",
    "HINTS",
    "REPAIRED",
    "CORRUPT",
    "AE-AGE",
    "TRANSFERS",
)
_STATUS_ALIGN = "llllrrrrrrrl"


# --- units -------------------------------------------------------------------------------------


def human_bytes(count: float | None) -> str:
    """Decimal units (kB = 1000 B) as `df -H` and transfer rates use; one decimal above bytes."""
    if count is None or count < 0:
        return MISSING
    value, unit = float(count), 0
    while value >= 999.95 and unit < len(_UNITS) - 1:  # 999 999 B is 1.0 MB, not 1000.0 kB
        value, unit = value / 1000, unit + 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def human_eta(seconds: float | None) -> str:
    """Rounded up, so that work still pending never reads as 0 s."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "unknown"
    if math.isinf(seconds):
        return "never"
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


# --- tables and bars -----------------------------------------------------------------------------


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    """Columns two spaces apart; ``align`` has one ``l`` or ``r`` per column (default ``l``).
    Trailing blanks are stripped so that the output diffs and greps cleanly."""
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [
            cell.rjust(width) if align[i : i + 1] == "r" else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def render_bar(
    done: float,
    total: float,
    width: int,
    label: str,
    rate_bps: float | None,
    eta_s: float | None,
) -> str:
    """``[#########.........]  45%  18/40 partitions  3.2 MB/s  ETA 14 s``.

    The bar and the percentage round down, so they show full only when the work is done;
    nothing to do (``total`` 0) shows an empty bar. Rate and ETA are left out when unknown.
    """
    fraction = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
    width = max(width, 0)
    filled = math.floor(fraction * width)
    percent = f"{math.floor(fraction * 100)}%".rjust(4)
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] {percent}"]
    parts.append(f"{_number(done)}/{_number(total)} {label}")
    if rate_bps is not None:
        parts.append(f"{human_bytes(rate_bps)}/s")
    if eta_s is not None:
        parts.append(f"ETA {human_eta(eta_s)}")
    return "  ".join(parts)


# --- transfers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """Incoming partition transfers summed over the nodes that are in transition."""

    done: int = 0
    total: int = 0
    bytes_done: int = 0
    rate_bps: float | None = None
    eta_s: float | None = None

    def bar(self, width: int = 20) -> str:
        return render_bar(self.done, self.total, width, "partitions", self.rate_bps, self.eta_s)


def in_transition(transfers: Doc | None) -> bool:
    """Whether a node reports transfers under way: its flag, or incoming work not yet done."""
    if not transfers:
        return False
    incoming = transfers.get("incoming") or {}
    pending = int(incoming.get("partitions_done", 0)) < int(incoming.get("partitions_total", 0))
    return bool(transfers.get("in_transition")) or pending


def progress_of(documents: Iterable[Doc | None]) -> Progress:
    """Sum the nodes' incoming transfers. Rates add up (they run in parallel); the ETA is the
    slowest node's, since the ring change is over only when every node is done."""
    done = total = size = 0
    rates: list[float] = []
    etas: list[float] = []
    for doc in documents:
        if not in_transition(doc):
            continue
        incoming = (doc or {}).get("incoming") or {}
        done += int(incoming.get("partitions_done", 0))
        total += int(incoming.get("partitions_total", 0))
        size += int(incoming.get("bytes_done", 0))
        if incoming.get("bytes_per_s") is not None:
            rates.append(float(incoming["bytes_per_s"]))
        if incoming.get("eta_s") is not None:
            etas.append(float(incoming["eta_s"]))
    return Progress(done, total, size, sum(rates) if rates else None, max(etas, default=None))


def transfers_cell(transfers: Doc | None) -> str:
    if transfers is None or not in_transition(transfers):
        return MISSING
    incoming = transfers.get("incoming") or {}
    total = int(incoming.get("partitions_total", 0))
    return f"{incoming.get('partitions_done', 0)}/{total} parts" if total else MISSING


# --- dfsring status ------------------------------------------------------------------------------


def _cell(doc: Doc | None, field: str) -> str:
    value = None if doc is None else doc.get(field)
    return MISSING if value is None or value == "" else str(value)


def _ae_age(stats: Doc | None) -> str:
    """How long ago the least recently exchanged partition was compared with a replica."""
    ae = None if stats is None else stats.get("antientropy")
    age = None if not isinstance(ae, Mapping) else ae.get("oldest_unexchanged_s")
    return MISSING if not isinstance(age, int | float) else f"{age:.0f}s"


def status_row(member: Doc, stats: Doc | None, transfers: Doc | None) -> list[str]:
    disk = None if stats is None else stats.get("bytes")
    return [
        _cell(member, "node_id"),
        _cell(member, "address"),
        _cell(member, "zone"),
        _cell(member, "status"),
        _cell(member, "partitions"),
        _cell(stats, "keys"),
        MISSING if disk is None else human_bytes(float(disk)),
        _cell(stats, "hints_pending"),
        _cell(stats, "repaired_keys"),
        _cell(stats, "corrupt_found"),
        _ae_age(stats),
        transfers_cell(transfers),
    ]


def render_status(
    members: Sequence[Doc],
    ring: Doc,
    stats: Mapping[str, Doc | None],
    transfers: Mapping[str, Doc | None],
) -> str:
    """The member table, the ring line and, while data moves, a transfers line.

    ``stats`` and ``transfers`` map node ids to their documents, None for a member that did
    not answer (its cells show ``-``).
    """
    rows = []
    for member in members:
        node = str(member.get("node_id"))
        rows.append(status_row(member, stats.get(node), transfers.get(node)))
    lines = [render_table(STATUS_HEADER, rows, _STATUS_ALIGN), ring_line(ring)]
    refilling = refill_line(stats)
    if refilling:
        lines.append(refilling)
    lines.extend(worker_lines(stats))
    if any(in_transition(doc) for doc in transfers.values()):
        progress = progress_of(transfers.values())
        lines.append(
            f"transfers in progress: {progress.done}/{progress.total} partitions, "
            f"{human_bytes(progress.bytes_done)}, ETA {human_eta(progress.eta_s)}"
        )
    return "\n".join(lines)


def refill_line(stats: Mapping[str, Doc | None]) -> str:
    """Members that rejoined without their data and are still being refilled by their peers
    (anti-entropy exchanges done / needed), or "" when there are none."""
    parts = []
    for node, doc in stats.items():
        if doc and doc.get("refilling") is True:
            refill = doc.get("refill") if isinstance(doc.get("refill"), dict) else {}
            parts.append(f"{node} ({_cell(refill, 'exchanges_done')}/"
                         f"{_cell(refill, 'exchanges_total')} exchanges)")
    return f"refilling (rejoined without its data): {', '.join(parts)}" if parts else ""


def worker_lines(stats: Mapping[str, Doc | None]) -> list[str]:
    """One line per node with background workers that are busy or failed (last error shown);
    idle and finished workers are the normal case and stay out of the way."""
    lines = []
    for node, doc in stats.items():
        workers = doc.get("workers") if doc else None
        if not isinstance(workers, Mapping):
            continue
        notable = [f"{name} {w.get('state')}" + (f" ({w.get('last_error')})"
                                                if w.get("state") == "failed" else "")
                   for name, w in sorted(workers.items())
                   if isinstance(w, Mapping) and w.get("state") in ("busy", "failed")]
        if notable:
            lines.append(f"{node} workers: {', '.join(notable)}")
    return lines


def ring_line(ring: Doc) -> str:
    count = len(ring.get("members") or ())
    return f"ring epoch {_cell(ring, 'epoch')} hash {_cell(ring, 'hash')} ({count} members)"


# --- dfsring ring --------------------------------------------------------------------------------


def ring_ids(ring: Doc) -> list[str]:
    return [str(m.get("node_id")) for m in ring.get("members") or ()]


def ownership(owners: Mapping[str, Sequence[str]]) -> dict[str, tuple[int, int]]:
    """node id -> (partitions it replicates, partitions it is the primary of, i.e. first in the
    preference list). A node listed twice for one partition counts once."""
    counts: dict[str, list[int]] = {}
    for nodes in owners.values():
        for node in dict.fromkeys(nodes):
            counts.setdefault(node, [0, 0])[0] += 1
        if nodes:
            counts.setdefault(nodes[0], [0, 0])[1] += 1
    return {node: (held, primary) for node, (held, primary) in counts.items()}


def render_ring(ring: Doc) -> str:
    """The ring's summary, then per node its partitions and its share of primaries."""
    owners: Mapping[str, Sequence[str]] = ring.get("owners") or {}
    shares = ownership(owners)
    zones = {str(m.get("node_id")): _cell(m, "zone") for m in ring.get("members") or ()}
    nodes = list(zones) + sorted(set(shares) - set(zones))  # owners not (or no longer) members
    previous = len(ring.get("previous") or ())
    moving = f"yes ({previous} earlier rings still consulted)" if previous else "yes"
    facts = [
        ("cluster", _cell(ring, "cluster")),
        ("epoch", _cell(ring, "epoch")),
        ("hash", _cell(ring, "hash")),
        ("partitions", _cell(ring, "partitions")),
        ("replicas", _cell(ring, "replicas")),
        ("members", str(len(zones))),
        ("in transition", moving if ring.get("in_transition") else "no"),
    ]
    rows = []
    for node in nodes:
        held, primary = shares.get(node, (0, 0))
        share = f"{100 * primary / len(owners):.1f}%" if owners else MISSING
        rows.append([node, zones.get(node, MISSING), str(held), str(primary), share])
    table = render_table(("NODE", "ZONE", "PARTITIONS", "PRIMARIES", "SHARE"), rows, "llrrr")
    width = max(len(name) for name, _ in facts)
    summary = [f"{name.ljust(width)}  {value}" for name, value in facts]
    return "\n".join([*summary, "", table])


class ProgressLine:
    """What to write so that a progress line reads well where it goes, sans I/O (the caller
    writes, and passes the time in). On a terminal the line is redrawn in place with ``\\r``;
    elsewhere (a log file, CI) a whole line is written at most every ``every`` seconds, so the
    log stays readable."""

    def __init__(self, tty: bool, every: float) -> None:
        self.tty = tty
        self.every = every
        self._drawn = 0  # length of the line now on the terminal
        self._last: float | None = None

    def show(self, text: str, now: float) -> str:
        """The text to write for this update at time ``now`` ("" for nothing)."""
        if self.tty:
            frame = "\r" + text.ljust(self._drawn)  # blanks over the rest of a longer line
            self._drawn = len(text)
            return frame
        if self._last is not None and now - self._last < self.every:
            return ""
        self._last = now
        return text + "\n"

    def end(self) -> str:
        """Ends the terminal line, so that what follows starts on a line of its own."""
        drawn, self._drawn = self._drawn, 0
        return "\n" if self.tty and drawn else ""


# --- waits ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WaitState:
    """One poll's verdict: over or not, the transfers to show, and what is still awaited
    (shown beside the bar and in the message when the wait times out)."""

    done: bool
    progress: Progress
    pending: str = ""


def self_entry(members: Iterable[Doc]) -> Doc | None:
    return next((m for m in members if m.get("self") is True), None)


def _verdict(pending: list[str], progress: Progress) -> WaitState:
    return WaitState(not pending, progress, ", ".join(pending))


def join_state(members: Sequence[Doc], ring: Doc, transfers: Doc) -> WaitState:
    """A join is over when the node calls itself up, the ring has it, and its transfers ended."""
    me = self_entry(members)
    if me is None:
        return _verdict(["the node does not list itself"], progress_of([transfers]))
    pending = []
    if me.get("status") != "up":
        pending.append(f"status {_cell(me, 'status')}")
    if str(me.get("node_id")) not in ring_ids(ring):
        pending.append("not in the ring yet")
    if transfers.get("in_transition"):
        pending.append("transfers in progress")
    return _verdict(pending, progress_of([transfers]))


def leave_state(members: Sequence[Doc], transfers: Mapping[str, Doc | None]) -> WaitState:
    """A leave is over when the node calls itself left; progress is what the others receive."""
    me = self_entry(members)
    if me is None:
        return _verdict(["the node does not list itself"], progress_of(transfers.values()))
    status = me.get("status")
    pending = [] if status == "left" else [f"status {_cell(me, 'status')}"]
    return _verdict(pending, progress_of(transfers.values()))


def remove_state(node: str, ring: Doc, transfers: Mapping[str, Doc | None]) -> WaitState:
    """A removal is over when the ring no longer has the node and every remaining member
    answered that it is not in transition (one that does not answer cannot confirm it)."""
    pending = [f"{node} still in the ring"] if node in ring_ids(ring) else []
    silent = sorted(n for n, doc in transfers.items() if doc is None)
    moving = sorted(n for n, doc in transfers.items() if doc and doc.get("in_transition"))
    if moving:
        pending.append(f"transfers in progress on {', '.join(moving)}")
    if silent:
        pending.append(f"no answer from {', '.join(silent)}")
    return _verdict(pending, progress_of(transfers.values()))
