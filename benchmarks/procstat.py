"""What /proc says about the server processes a benchmark measures: CPU time and memory.

Throughput alone hides what an operation costs; CPU seconds per operation (from
``/proc/PID/stat``) and resident memory (``/proc/PID/status``) tell whether a figure is bounded
by the CPU, by waiting (fsync, the network), or by memory. Linux only: elsewhere every reading
is None and the report leaves those columns empty.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (fields 14 and 15 of /proc/PID/stat);
    None if it is gone or there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


_MEMORY_FIELDS = (b"VmRSS:", b"VmHWM:", b"RssAnon:", b"RssFile:")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now), VmHWM (peak resident), RssAnon and RssFile in KiB; empty if the
    process is gone.

    VmRSS = RssAnon + RssFile (+ RssShmem). For a node, RssFile is mostly LMDB's memory map:
    pages of the data file the process has touched, which are the kernel's page cache
    (shared, dropped under memory pressure), not memory the node allocated. RssAnon is what
    it allocated (the Python heap, buffers). Both are reported so a reader can tell which grew.
    """
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(_MEMORY_FIELDS):
                    name, _, rest = line.partition(b":")
                    out[name.decode()] = int(rest.split()[0])
    except OSError:
        return {}
    return out


def rss_mib(pid: int, field: str = "VmRSS") -> float | None:
    kib = memory_kib(pid).get(field)
    return None if kib is None else round(kib / 1024, 1)


class RssSampler:
    """Samples VmRSS and RssAnon of named processes every ``interval`` seconds in a thread;
    ``stop`` returns each one's peak VmRSS in MiB, ``anon_peaks`` the peak RssAnon.

    VmHWM alone is the peak over the process's whole life, so it cannot say which phase the
    peak belonged to; sampling VmRSS gives a peak per phase. ``pids`` is called at each
    sample, so a node restarted during the phase (new PID) is followed. The thread reads
    a few small /proc files per sample; its cost to the generator sharing the process is
    negligible (well under 1 % of a core at 100 ms).
    """

    def __init__(self, pids: Callable[[], Mapping[str, int | None]],
                 interval: float = 0.1) -> None:
        self._pids = pids
        self._interval = interval
        self._peaks: dict[str, int] = {}
        self._anon: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _sample(self) -> None:
        for name, pid in self._pids().items():
            if pid is None:
                continue
            memory = memory_kib(pid)
            for field, peaks in (("VmRSS", self._peaks), ("RssAnon", self._anon)):
                kib = memory.get(field)
                if kib is not None and kib > peaks.get(name, 0):
                    peaks[name] = kib

    def _loop(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self._interval):
                return

    def stop(self) -> dict[str, float]:
        """Stop sampling (idempotent) and return the peak VmRSS of each process, MiB."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self._sample()
        return self.peaks()

    def peaks(self) -> dict[str, float]:
        return {name: round(kib / 1024, 1) for name, kib in sorted(self._peaks.items())}

    def anon_peaks(self) -> dict[str, float]:
        return {name: round(kib / 1024, 1) for name, kib in sorted(self._anon.items())}
