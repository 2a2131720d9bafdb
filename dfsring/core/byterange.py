"""HTTP Range requests for one byte range (RFC 9110 §14): parse ``Range``, build ``Content-Range``.

Pure: no I/O.

Decisions, each allowed by RFC 9110 §14.2 ("a server MAY ignore the Range header field"):

* Only a single range is served. A range set with several ranges is ignored (``None``: serve
  the whole body with 200), as is a header with another unit, bad syntax (including a last-pos
  below the first-pos, §14.1.1) or more than ``MAX_HEADER_LEN`` characters. Multipart
  byteranges responses cost a lot of code for a use (many small pieces of one file) that a
  client can serve itself with several requests. Empty list elements are skipped (§5.6.1),
  so ``bytes=0-9,`` is the single range 0-9.
* A syntactically valid single range that selects no byte of the representation raises
  ``RangeNotSatisfiable`` (-> 416 with ``Content-Range: bytes */size``, §15.5.17): a first-pos
  at or past the end, or a suffix of length 0.
* A suffix range of an empty representation (``bytes=-5`` of 0 bytes) is satisfiable by the
  RFC's definition (§14.1.3) but selects nothing a Content-Range can name; it gets ``None``
  (200 with the empty body), as nginx does.

Numbers are ASCII digits only: Python's ``int`` would also accept "٣", "1_0" and " 7".
"""

from __future__ import annotations

import re

from dfsring.foundation.errors import RangeNotSatisfiable

__all__ = ["RangeNotSatisfiable", "content_range", "parse_range", "unsatisfied_content_range"]

MAX_HEADER_LEN = 1024  # longer Range headers are ignored: no single range needs that
_SPEC_RE = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)
_UNIT_RE = re.compile(r"bytes=", re.ASCII | re.IGNORECASE)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range ``(start, end_inclusive)`` a Range header asks of ``size`` bytes.

    None means "ignore the header, serve the whole body" (no header or one we ignore, see the
    module docstring). Raises RangeNotSatisfiable for a range selecting no byte. ``end`` is
    clamped to the last byte and a suffix longer than the body selects all of it (§14.1.2).
    """
    if type(size) is not int or size < 0:
        raise ValueError(f"size must be a non-negative integer, got {size!r}")
    if header is None or len(header) > MAX_HEADER_LEN or not _UNIT_RE.match(header):
        return None
    specs = [s.strip(" \t") for s in header[len("bytes=") :].split(",")]
    specs = [s for s in specs if s]
    if len(specs) != 1:
        return None
    match = _SPEC_RE.fullmatch(specs[0])
    if match is None:
        return None
    first, last = match[1], match[2]
    if not first:
        return _suffix(specs[0], last, size)
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None  # invalid range-spec (§14.1.1): ignored like any syntax error
    if start >= size:
        raise RangeNotSatisfiable(specs[0], size)
    return start, size - 1 if end is None else min(end, size - 1)


def _suffix(spec: str, digits: str, size: int) -> tuple[int, int] | None:
    """``bytes=-n``: the last n bytes (all of them if n >= size)."""
    if not digits:
        return None  # "-" alone is not a range-spec
    length = int(digits)
    if length == 0:
        raise RangeNotSatisfiable(spec, size)
    if size == 0:
        return None
    return max(0, size - length), size - 1


def content_range(start: int, end_inclusive: int, size: int) -> str:
    """The Content-Range value of a 206 response: ``bytes start-end/size`` (§14.4)."""
    if not 0 <= start <= end_inclusive < size:
        raise ValueError(f"range {start}-{end_inclusive} is not within 0..{size - 1}")
    return f"bytes {start}-{end_inclusive}/{size}"


def unsatisfied_content_range(size: int) -> str:
    """The Content-Range value of a 416 response: ``bytes */size`` (§14.4, §15.5.17)."""
    if size < 0:
        raise ValueError("size must be non-negative")
    return f"bytes */{size}"
