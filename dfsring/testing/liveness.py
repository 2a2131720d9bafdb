"""Watch every node's view of its peers while something heavy runs: max phi, any accusation,
and how long /health takes to answer (the event loop's lag, seen from outside).

Why: a node whose event loop is held by a long synchronous piece of work (a partition scan,
a batch hashed in one go) sends no heartbeat and answers no heartbeat request, so its peers'
phi accrual detectors (dfsring.core.failure) climb and, past the threshold, mark it down although
it never crashed. Issue 15 part 7 pins that repair work never does this; the cluster test
and the repair benchmark watch it with this sampler.

Threads, not tasks: the caller may be synchronous (the benchmark suite) or an asyncio test
whose own loop must not be what is measured. One thread per node, so a node that stalls does
not hide what the others think of it meanwhile. Bounded: each polls every ``every_s`` until
stopped, each request with a timeout, and at most ``MAX_EVENTS`` accusations are kept.

A watch started right after a node restarts counts an observer's view only from the first
sample in which it saw every member up (until then its peers have not heard the new process
yet): a stall in the node's first repair round, a second later, is still seen.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

MAX_EVENTS = 200


@dataclass
class LivenessReport:
    """What the watch saw. ``accusations``: (seconds since start, observer, member, status,
    phi) for every sample where an observer did not see a peer as up."""

    samples: int = 0
    max_phi: dict[str, float] = field(default_factory=dict)  # observer -> max phi of its peers
    max_phi_of: dict[str, float] = field(default_factory=dict)  # member -> max phi seen of it
    max_health_s: dict[str, float] = field(default_factory=dict)  # node -> slowest /health
    accusations: list[tuple[float, str, str, str, float]] = field(default_factory=list)
    unanswered: dict[str, int] = field(default_factory=dict)  # node -> polls with no answer

    @property
    def worst_phi(self) -> float:
        return max(self.max_phi.values(), default=0.0)

    @property
    def worst_health_s(self) -> float:
        return max(self.max_health_s.values(), default=0.0)

    def summary(self) -> dict[str, object]:
        return {"samples": self.samples, "max_phi": round(self.worst_phi, 2),
                "max_phi_by_observer": {k: round(v, 2) for k, v in self.max_phi.items()},
                "max_phi_of_member": {k: round(v, 2) for k, v in self.max_phi_of.items()},
                "max_health_ms_by_node": {k: round(v * 1000, 1)
                                          for k, v in self.max_health_s.items()},
                "max_health_ms": round(self.worst_health_s * 1000, 1),
                "accusations": len(self.accusations), "first_accusations": self.accusations[:5],
                "unanswered": self.unanswered}


class LivenessWatch:
    """``with LivenessWatch(urls, headers) as watch: ...`` then ``watch.report``; `headers`
    authenticate the members list calls (the cluster's credentials)."""

    def __init__(self, urls: Sequence[str], headers: Mapping[str, str] | None = None,
                 every_s: float = 0.1, timeout_s: float = 5.0,
                 threshold_status: Sequence[str] = ("suspect", "down")) -> None:
        self.urls = list(urls)
        self.headers = dict(headers or {})
        self.every_s = every_s
        self.timeout_s = timeout_s
        self.bad = frozenset(threshold_status)
        self.report = LivenessReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._settled: set[str] = set()  # observers that have seen every member up once
        self._threads = [threading.Thread(target=self._run, args=(url,), daemon=True,
                                          name=f"liveness-watch-{i}")
                         for i, url in enumerate(self.urls)]
        self._started = 0.0

    def __enter__(self) -> LivenessWatch:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> LivenessReport:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(self.timeout_s * 2 + 5)
        return self.report

    def _run(self, url: str) -> None:
        while not self._stop.is_set():
            self._sample(url)
            self._stop.wait(self.every_s)

    def _get(self, url: str) -> object:
        request = urllib.request.Request(url, headers=self.headers)
        with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
            return json.loads(resp.read())

    def _sample(self, url: str) -> None:
        try:
            started = time.monotonic()
            health = self._get(f"{url}/health")
            took = time.monotonic() - started
            rows = self._get(f"{url}/v1/cluster/members")
        except (OSError, ValueError):
            with self._lock:
                self.report.unanswered[url] = self.report.unanswered.get(url, 0) + 1
            return
        with self._lock:
            self._record(url, health, took, rows)

    def _record(self, url: str, health: object, took: float, rows: object) -> None:
        rep = self.report
        rep.samples += 1
        me = health.get("node_id", url) if isinstance(health, dict) else url
        rep.max_health_s[me] = max(rep.max_health_s.get(me, 0.0), took)
        peers = [r for r in rows if isinstance(r, dict) and not r.get("self")] \
            if isinstance(rows, list) else []
        if me not in self._settled:
            if not all(r.get("status") == "up" for r in peers):
                return
            self._settled.add(me)
        for row in peers:
            phi = float(row.get("phi", 0.0))
            rep.max_phi[me] = max(rep.max_phi.get(me, 0.0), phi)
            member = str(row.get("node_id"))
            rep.max_phi_of[member] = max(rep.max_phi_of.get(member, 0.0), phi)
            status = str(row.get("status"))
            if status in self.bad and len(rep.accusations) < MAX_EVENTS:
                rep.accusations.append((round(time.monotonic() - self._started, 2), me,
                                        member, status, phi))
