"""dfsring.core.byterange against RFC 9110 §14 (Range, Content-Range) and the decisions it
documents."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core.byterange import (
    MAX_HEADER_LEN,
    RangeNotSatisfiable,
    content_range,
    parse_range,
    unsatisfied_content_range,
)
from dfsring.foundation.errors import DfsError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-499", 10_000, (0, 499)),  # RFC 9110 §14.1.2 examples
        ("bytes=500-999", 10_000, (500, 999)),
        ("bytes=-500", 10_000, (9_500, 9_999)),
        ("bytes=9500-", 10_000, (9_500, 9_999)),
        ("bytes=0-0", 10_000, (0, 0)),
        ("bytes=-1", 10_000, (9_999, 9_999)),
        ("bytes=0-99999", 10_000, (0, 9_999)),  # last-pos clamped
        ("bytes=-20000", 10_000, (0, 9_999)),  # suffix longer than the body: all of it
        ("bytes=5-5", 6, (5, 5)),
        ("Bytes=1-2", 10, (1, 2)),  # range units are case-insensitive
        ("BYTES=1-", 10, (1, 9)),
        ("bytes=0-9,", 10, (0, 9)),  # empty list elements are skipped (§5.6.1)
        ("bytes= 3-4 ", 10, (3, 4)),  # OWS around list elements
        ("bytes=007-008", 10, (7, 8)),
        ("bytes=0-" + "9" * 40, 10, (0, 9)),
        ("bytes=-" + "9" * 40, 10, (0, 9)),
        ("bytes=-5", 0, None),  # satisfiable, but selects nothing: whole (empty) body
    ],
)
def test_single_ranges(header: str, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=0-1,5-6",  # several ranges: served whole, not as multipart
        "bytes=0-1, -5",
        "items=0-1",
        "bytes 0-1",
        "bytes=",
        "bytes=-",
        "bytes=,",
        "bytes=abc",
        "bytes=1",
        "bytes=5-4",  # last-pos < first-pos: invalid, ignored (§14.1.1)
        "bytes=1-2-3",
        "bytes=0 - 1",
        "bytes=+1-2",
        "bytes=1_0-20",
        "bytes=\u0663-5",  # a non-ASCII digit
        "bytes=0x1-2",
        "bytes=0-1" + " " * MAX_HEADER_LEN,
    ],
)
def test_ignored_headers(header: str | None) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=100-", 100),
        ("bytes=100-200", 100),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-0", 100),
        ("bytes=" + "9" * 40 + "-", 100),
    ],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.size == size
    assert isinstance(info.value, DfsError)
    assert unsatisfied_content_range(info.value.size) == f"bytes */{size}"


@given(st.text(max_size=60), st.integers(0, 10**6))
def test_any_header_gives_a_valid_range_none_or_416(header: str, size: int) -> None:
    try:
        got = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if got is not None:
        start, end = got
        assert 0 <= start <= end < size
        assert content_range(start, end, size) == f"bytes {start}-{end}/{size}"


@given(st.integers(0, 1000), st.integers(0, 1000), st.integers(1, 1000))
def test_int_ranges_select_their_bytes(a: int, b: int, size: int) -> None:
    first, last = min(a, b), max(a, b)
    body = bytes(i % 251 for i in range(size))
    try:
        got = parse_range(f"bytes={first}-{last}", size)
    except RangeNotSatisfiable:
        assert first >= size
        return
    assert got is not None
    assert body[got[0] : got[1] + 1] == body[first : last + 1]


@given(st.integers(1, 2000), st.integers(1, 1000))
def test_suffix_ranges_select_the_last_bytes(n: int, size: int) -> None:
    body = bytes(i % 251 for i in range(size))
    got = parse_range(f"bytes=-{n}", size)
    assert got is not None
    assert body[got[0] : got[1] + 1] == body[-n:]


def test_content_range_values() -> None:
    assert content_range(0, 499, 1234) == "bytes 0-499/1234"
    assert unsatisfied_content_range(1234) == "bytes */1234"
    for bad in ((5, 4, 10), (0, 10, 10), (-1, 2, 10)):
        with pytest.raises(ValueError):
            content_range(*bad)
    with pytest.raises(ValueError):
        unsatisfied_content_range(-1)
    with pytest.raises(ValueError):
        parse_range("bytes=0-1", -1)
