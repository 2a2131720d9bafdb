"""An HDR-style latency histogram: every value kept, in bounded memory, with a bounded error.

A benchmark that keeps a sample of its latencies (or only a mean) cannot report p99.9
honestly, and one that keeps every value in a list pays memory and a sort per report. This is
the log-linear bucketing of HdrHistogram (Gil Tene): recording is O(1) and allocation-free
once the bucket list has grown to the largest value, merging two histograms is adding counts,
and a percentile is one pass over the buckets.

Values below ``2**sub_bits`` get a bucket each (exact). Above, each power-of-two range
``[2**k, 2**(k+1))`` is split into ``2**(sub_bits-1)`` equal buckets, so a reported value is at
most ``2**-(sub_bits-1)`` above the true one (0.78 % for the default 8) and never below it.
Values are non-negative integers (the load generator records nanoseconds).

Pure: no I/O, no clock, no dependency beyond the standard library.
"""

from __future__ import annotations

import math

DEFAULT_SUB_BITS = 8


class Histogram:
    """Counts of non-negative integers in log-linear buckets (see the module docstring)."""

    __slots__ = ("_exact", "_half", "count", "counts", "max", "min", "sub_bits", "total")

    def __init__(self, sub_bits: int = DEFAULT_SUB_BITS) -> None:
        if not 1 <= sub_bits <= 20:
            raise ValueError(f"sub_bits must be 1..20, not {sub_bits}")
        self.sub_bits = sub_bits
        self._exact = 1 << sub_bits  # values below this have a bucket of their own
        self._half = self._exact >> 1  # buckets per power of two above
        self.counts: list[int] = []
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    @property
    def relative_error(self) -> float:
        """The most a reported percentile can exceed the true one, relative to it."""
        return 2.0 ** -(self.sub_bits - 1)

    def index(self, value: int) -> int:
        """The bucket ``value`` lands in."""
        if value < self._exact:
            return value
        shift = value.bit_length() - self.sub_bits
        return self._exact + (shift - 1) * self._half + (value >> shift) - self._half

    def bucket_range(self, index: int) -> tuple[int, int]:
        """The lowest and highest value that land in bucket ``index``."""
        if index < self._exact:
            return index, index
        shift, offset = divmod(index - self._exact, self._half)
        mantissa = offset + self._half
        return mantissa << (shift + 1), ((mantissa + 1) << (shift + 1)) - 1

    def record(self, value: int) -> None:
        """Count one value; ValueError if it is negative (a clock that went backwards)."""
        if value < 0:
            raise ValueError(f"cannot record a negative value ({value})")
        index = self.index(value)
        counts = self.counts
        if index >= len(counts):
            counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += 1
        self.count += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts to this one, as if every value had been recorded here."""
        if other.sub_bits != self.sub_bits:
            raise ValueError("cannot merge histograms of different precision")
        if len(other.counts) > len(self.counts):
            self.counts.extend([0] * (len(other.counts) - len(self.counts)))
        for index, n in enumerate(other.counts):
            if n:
                self.counts[index] += n
        self.count += other.count
        self.total += other.total
        for bound in (other.min, other.max):
            if bound is not None:
                self.min = bound if self.min is None else min(self.min, bound)
                self.max = bound if self.max is None else max(self.max, bound)

    def percentile(self, q: float) -> int:
        """The value at or below which ``q`` percent of the recorded values lie.

        Nearest rank, reported as the bucket's highest equivalent value capped at the largest
        value recorded: never below the true percentile, at most ``relative_error`` above it.
        """
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be within 0..100, not {q}")
        if self.max is None or self.min is None:
            raise ValueError("no values recorded")
        rank = max(1, math.ceil(self.count * q / 100))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return max(self.min, min(self.bucket_range(index)[1], self.max))
        return self.max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary(self, scale: float = 1e-6, digits: int = 3) -> dict[str, float]:
        """p50/p90/p99/p99.9, mean and max multiplied by ``scale`` (default: ns to ms);
        empty when nothing was recorded, so a report never shows made-up zeros."""
        if not self.count:
            return {}
        points = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
        out = {name: round(self.percentile(q) * scale, digits) for name, q in points.items()}
        out["mean"] = round(self.mean * scale, digits)
        out["max"] = round((self.max or 0) * scale, digits)
        return out
