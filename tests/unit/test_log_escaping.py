"""Text-mode log lines cannot be forged by what a client sends (issue 23, part 5).

CR/LF and NUL bytes in a key reached the text log raw: a key ending in
"\\r\\n2026-01-01T00:00:00.000Z INFO    dfsring.node: node ready" printed a second, forged record.
The rule pinned here: one record is one physical line, plus continuation lines that start with
"  | " (a traceback), whatever the message, field names and field values contain.
"""

from __future__ import annotations

import logging
import re

from hypothesis import given
from hypothesis import strategies as st

from dfsring.foundation.logs import _TextFormatter

RECORD_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
FORGED = "\r\n2026-01-01T00:00:00.000Z INFO    dfsring.node: node ready\x00\x1b[2J"


def _record(msg: str, fields: dict[str, object], *, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(FORGED)
        except ValueError as err:
            exc_info = (type(err), err, err.__traceback__)
    record = logging.LogRecord("dfsring.http", logging.INFO, __file__, 1, msg, None, exc_info)
    record.fields = fields
    return record


def _assert_one_record(text: str) -> None:
    lines = text.split("\n")
    assert RECORD_START.match(lines[0]), lines[0]
    for line in lines[1:]:
        assert line.startswith("  | "), f"forged line: {line!r}"
    for line in lines:
        assert not re.search(r"[\x00-\x1f\x7f\x85\u2028\u2029]", line), repr(line)


def test_crlf_and_nul_in_a_logged_key_forge_no_log_line() -> None:
    text = _TextFormatter().format(_record("request rejected",
                                           {"path": "/v1/kv/b/k" + FORGED, "status": 400}))
    _assert_one_record(text)
    assert "\\r\\n2026-01-01T00:00:00.000Z" in text  # kept, escaped, for the reader
    assert "\\x00" in text


def test_control_characters_in_message_and_field_names_are_escaped() -> None:
    _assert_one_record(_TextFormatter().format(_record("m" + FORGED, {"k" + FORGED: 1})))


def test_an_exception_message_with_crlf_stays_inside_its_record() -> None:
    _assert_one_record(_TextFormatter().format(_record("failed", {}, exc=True)))


def test_field_values_with_spaces_or_equals_are_quoted_so_fields_cannot_be_forged() -> None:
    text = _TextFormatter().format(_record("m", {"path": "/x status=200", "peer": ""}))
    assert 'path="/x status=200"' in text
    assert 'peer=""' in text


@given(st.text(), st.dictionaries(st.text(max_size=8), st.text(), max_size=4))
def test_any_text_makes_one_record(msg: str, fields: dict[str, object]) -> None:
    _assert_one_record(_TextFormatter().format(_record(msg, fields)))
