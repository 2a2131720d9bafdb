"""Logging to stderr: human-readable lines by default, JSON lines with --log-json.

Structured fields are passed through `extra={"fields": {...}}` so both formats carry them; the
JSON form is for log shippers, the text form for people reading a terminal or a test log.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = getattr(record, "fields", None)
        extra = "".join(f" {k}={v}" for k, v in fields.items()) if fields else ""
        line = f"{ts}.{int(record.msecs):03d}Z {record.levelname:<7} {record.name}: "
        line += record.getMessage() + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
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
