"""dfsring.s3.conditions against RFC 9110 §13.2.2 and the combinations S3 documents, checked
exhaustively against a small model of the rule; fuzzed with hypothesis."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.s3.conditions import check_copy_source, check_read, write_conditions
from dfsring.s3.errors import S3Error
from dfsring.s3.headers import http_date
from dfsring.s3.model import Conditions, ObjectMeta, ObjectVersion

pytestmark = pytest.mark.unit

SURROGATES = st.binary(max_size=40).map(lambda raw: raw.decode("utf-8", "surrogateescape"))

MODIFIED_MS = 1_700_000_000_500  # Tue, 14 Nov 2023 22:13:20 GMT (+ 500 ms)
OBJ = ObjectVersion(bucket="b", key="k", version_id="v", size=1, etag="abc",
                    last_modified_ms=MODIFIED_MS, meta=ObjectMeta())
BEFORE = http_date(MODIFIED_MS - 1000)
AT = http_date(MODIFIED_MS)  # the same second: not modified since, not modified after
AFTER = http_date(MODIFIED_MS + 1000)


def outcome(headers: dict[str, str]) -> int:
    try:
        check_read(OBJ, headers)
    except S3Error as err:
        return err.status
    return 200


def copy_outcome(headers: dict[str, str]) -> int:
    try:
        check_copy_source(OBJ, {f"x-amz-copy-source-{k}": v for k, v in headers.items()})
    except S3Error as err:
        return err.status
    return 200


def test_s3_documented_combinations() -> None:
    # GetObject: If-Match true + If-Unmodified-Since false -> 200 with the data.
    assert outcome({"If-Match": '"abc"', "If-Unmodified-Since": BEFORE}) == 200
    # GetObject: If-None-Match false + If-Modified-Since true -> 304.
    assert outcome({"If-None-Match": '"abc"', "If-Modified-Since": BEFORE}) == 304
    # CopyObject: the same two: 200 (copy) and 412.
    assert copy_outcome({"if-match": '"abc"', "if-unmodified-since": BEFORE}) == 200
    assert copy_outcome({"if-none-match": '"abc"', "if-modified-since": BEFORE}) == 412


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 200),
    ({"If-Match": '"abc"'}, 200), ({"If-Match": "abc"}, 200), ({"If-Match": 'W/"abc"'}, 200),
    ({"If-Match": '"x", "abc"'}, 200), ({"If-Match": "*"}, 200), ({"If-Match": '"x"'}, 412),
    ({"If-None-Match": '"abc"'}, 304), ({"If-None-Match": "*"}, 304),
    ({"If-None-Match": '"x", "y"'}, 200),
    ({"If-Modified-Since": BEFORE}, 200), ({"If-Modified-Since": AT}, 304),
    ({"If-Modified-Since": AFTER}, 304),
    ({"If-Unmodified-Since": BEFORE}, 412), ({"If-Unmodified-Since": AT}, 200),
    ({"If-Unmodified-Since": AFTER}, 200),
    ({"If-Modified-Since": "garbage"}, 200), ({"If-Unmodified-Since": "garbage"}, 200),
    ({"If-Match": '"x"', "If-None-Match": '"abc"'}, 412),  # 412 is evaluated first
    ({"if-none-match": '"abc"'}, 304),  # header names are case-insensitive
])
def test_read_conditions(headers: dict[str, str], status: int) -> None:
    assert outcome(headers) == status


def test_not_modified_carries_etag_and_last_modified() -> None:
    with pytest.raises(S3Error) as err:
        check_read(OBJ, {"If-None-Match": "*"})
    assert err.value.code == "NotModified"
    assert err.value.headers == {"ETag": '"abc"', "Last-Modified": AT}


# Exhaustive check against the rule written as a table: for each header, absent / true / false.
CASES = {
    "If-Match": {True: '"abc"', False: '"zzz"'},
    "If-Unmodified-Since": {True: AFTER, False: BEFORE},
    "If-None-Match": {True: '"zzz"', False: '"abc"'},
    "If-Modified-Since": {True: BEFORE, False: AFTER},
}


def model(state: dict[str, bool | None], *, copy: bool) -> int:
    if state["If-Match"] is False:
        return 412
    if state["If-Match"] is None and state["If-Unmodified-Since"] is False:
        return 412
    if state["If-None-Match"] is False:
        return 412 if copy else 304
    if state["If-None-Match"] is None and state["If-Modified-Since"] is False:
        return 412 if copy else 304
    return 200


@pytest.mark.parametrize("combo", list(itertools.product([None, True, False], repeat=4)))
def test_all_combinations_follow_rfc_9110_order(combo: tuple[bool | None, ...]) -> None:
    state = dict(zip(CASES, combo, strict=True))
    headers = {name: CASES[name][value] for name, value in state.items() if value is not None}
    assert outcome(headers) == model(state, copy=False)
    assert copy_outcome({k.lower(): v for k, v in headers.items()}) == model(state, copy=True)


@settings(max_examples=400)
@given(st.dictionaries(st.sampled_from(["If-Match", "If-None-Match", "If-Modified-Since",
                                        "If-Unmodified-Since"]),
                       st.one_of(st.text(max_size=40), SURROGATES,
                                 st.sampled_from(['"abc"', "*", AT]))))
def test_fuzz_read_conditions(headers: dict[str, str]) -> None:
    assert outcome(headers) in (200, 304, 412, 400)


def test_overlong_conditions_are_refused() -> None:
    assert outcome({"If-Match": ",".join(['"x"'] * 200)}) == 400
    assert outcome({"If-Match": "x" * 9000}) == 400


# --- writes ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "expected"), [
    ({}, Conditions()),
    ({"If-None-Match": "*"}, Conditions(if_none_match="*")),
    ({"If-Match": '"abc"'}, Conditions(if_match="abc")),
    ({"If-Match": "*"}, Conditions(if_match="*")),
    ({"if-match": 'W/"abc"', "if-none-match": " * "},
     Conditions(if_match="abc", if_none_match="*")),
])
def test_write_conditions(headers: dict[str, str], expected: Conditions) -> None:
    assert write_conditions(headers) == expected


@pytest.mark.parametrize("headers", [
    {"If-None-Match": '"abc"'}, {"If-None-Match": "*, *"}, {"If-None-Match": ""},
    {"If-Match": '"a", "b"'}, {"If-Match": ""}, {"If-Match": '""'},
])
def test_write_conditions_not_guaranteed_are_not_implemented(headers: dict[str, str]) -> None:
    with pytest.raises(S3Error) as err:
        write_conditions(headers)
    assert err.value.code == "NotImplemented" and err.value.status == 501


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["If-Match", "If-None-Match"]),
                       st.one_of(st.text(max_size=40), SURROGATES)))
def test_fuzz_write_conditions(headers: dict[str, str]) -> None:
    try:
        write_conditions(headers)
    except S3Error as err:
        assert err.code in ("NotImplemented", "InvalidArgument")
