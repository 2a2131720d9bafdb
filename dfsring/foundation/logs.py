"""Logging to stderr: human-readable lines by default, JSON lines with --log-json.

Structured fields are passed through `extra={"fields": {...}}` so both formats carry them; the
JSON form is for log shippers, the text form for people reading a terminal or a test log.

Text mode writes one record per physical line, whatever a client put in a key or a header:
control characters (C0, DEL, C1 and the Unicode line separators) in the message, field names
and field values are escaped (`\\r`, `\\n`, `\\t`, `\\xNN`, `\\uNNNN`), and a field value
with a space, `"`, `=` or `\\` is quoted logfmt-style, so a key can neither start a line of its
own nor pose as another field. A traceback keeps its lines for the reader, each one escaped and
prefixed with "  | ", which no record starts with. Before this, CR/LF and NUL in a key forged
whole records (issue 23). JSON mode needs none of this: orjson escapes control characters.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES = {c: _SHORT.get(chr(c), f"\\x{c:02x}")
            for c in (*range(0x20), *range(0x7f, 0xa0))}
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})
_QUOTED = {**_ESCAPES, ord('"'): '\\"', ord("\\"): "\\\\"}
_NEEDS_QUOTES = frozenset(' "=\\')
CONTINUATION = "  | "


def escape(text: str) -> str:
    """`text` with every control character escaped: it cannot end or start a line."""
    return text.translate(_ESCAPES)


def _value(value: object) -> str:
    text = str(value)
    if text and text.isprintable() and not _NEEDS_QUOTES.intersection(text):
        return text
    return '"' + text.translate(_QUOTED) + '"'


def _fields(fields: dict[str, object]) -> str:
    return "".join(f" {escape(str(k)).replace(' ', '_')}={_value(v)}"
                   for k, v in fields.items())


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = getattr(record, "fields", None)
        line = f"{ts}.{int(record.msecs):03d}Z {record.levelname:<7} {escape(record.name)}: "
        line += escape(record.getMessage()) + (_fields(fields) if fields else "")
        if record.exc_info:
            trace = self.formatException(record.exc_info)
            line += "".join(f"\n{CONTINUATION}{escape(ln)}" for ln in trace.split("\n"))
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(*, json_lines: bool, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if json_lines else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would double every request line; our middleware logs what matters.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
