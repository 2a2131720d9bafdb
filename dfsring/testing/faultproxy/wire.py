"""What crosses the API boundary: Toxiproxy's error catalogue, Go-style JSON decoding, addresses.

Pure functions only (no asyncio, no sockets), so the exact wire behaviour of the real server
(Shopify/toxiproxy 2.x, ``api.go``) is pinned in one place:

- errors are ``{"error": msg, "status": code}`` and their messages are Toxiproxy's own
  (``ErrBadRequestBody``, ``ErrMissingField``...), because clients such as toxiproxy-python map
  status codes to exceptions and tests compare the text;
- bodies are read the way Go's ``json.NewDecoder(body).Decode(&v)`` reads them: the first JSON
  value counts, keys match struct fields exactly or case-insensitively (last one wins), ``null``
  leaves a field at its default, unknown keys are ignored and a value of the wrong JSON type is a
  400;
- addresses follow Go's ``net.SplitHostPort`` and ``Addr.String()`` (``127.0.0.1:80``,
  ``[::1]:80``), so a proxy's ``listen`` reads exactly as the real server reports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ApiError(Exception):
    """An error answered as ``{"error": message, "status": status}`` (Toxiproxy's ApiError)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def joined(self, detail: str) -> ApiError:
        """Go's ``joinError``: the same status with ``": detail"`` appended to the message."""
        return ApiError(f"{self.message}: {detail}", self.status)

    def to_json(self) -> dict[str, object]:
        return {"error": self.message, "status": self.status}


BAD_REQUEST_BODY = ApiError("bad request body", 400)
MISSING_FIELD = ApiError("missing required field", 400)
PROXY_NOT_FOUND = ApiError("proxy not found", 404)
PROXY_EXISTS = ApiError("proxy already exists", 409)
INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
INVALID_TOXIC_TYPE = ApiError("invalid toxic type", 400)
TOXIC_EXISTS = ApiError("toxic already exists", 409)
TOXIC_NOT_FOUND = ApiError("toxic not found", 404)


def _reject_constant(name: str) -> object:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_body(raw: bytes) -> Any:
    """The first JSON value of a request body; trailing bytes are ignored, as Go's Decoder does.

    An empty body is Go's ``io.EOF``, so the message is ``bad request body: EOF``.
    """
    text = raw.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise BAD_REQUEST_BODY.joined("EOF")
    try:
        value, _end = _DECODER.raw_decode(text)
    except ValueError as exc:
        raise BAD_REQUEST_BODY.joined(str(exc)) from None
    return value


def json_type(value: object) -> str:
    """The JSON type name Go's decoder uses in its "cannot unmarshal" messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _type_error(value: object, where: str, go_type: str) -> ApiError:
    return BAD_REQUEST_BODY.joined(
        f"json: cannot unmarshal {json_type(value)} into Go struct field {where} of type {go_type}"
    )


def expect_object(value: object, go_type: str) -> Mapping[str, Any]:
    """The body must be a JSON object (``null`` decodes to an empty one, as in Go)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BAD_REQUEST_BODY.joined(
            f"json: cannot unmarshal {json_type(value)} into Go value of type {go_type}"
        )
    return value


def pick_fields(obj: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The values of the named fields, matched as Go's encoding/json matches struct fields.

    A key matches a field exactly or case-insensitively; when several keys match one field the
    last one in the document wins; ``null`` leaves the field unset; other keys are ignored.
    """
    wanted = {name.lower(): name for name in names}
    found: dict[str, Any] = {}
    for key, value in obj.items():
        field = wanted.get(key.lower())
        if field is not None and value is not None:
            found[field] = value
    return found


def as_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _type_error(value, where, "string")
    return value


def as_bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error(value, where, "bool")
    return value


def as_float(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(value, where, "float32")
    return float(value)


def as_int64(value: object, where: str) -> int:
    """An integer field: Go refuses ``1.5`` and ``1.0`` alike for an int64, and out-of-range."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float):
            raise BAD_REQUEST_BODY.joined(
                f"json: cannot unmarshal number {value!r} into Go struct field {where} "
                "of type int64"
            )
        raise _type_error(value, where, "int64")
    if not INT64_MIN <= value <= INT64_MAX:
        raise BAD_REQUEST_BODY.joined(
            f"json: cannot unmarshal number {value} into Go struct field {where} of type int64"
        )
    return value


def split_host_port(address: str) -> tuple[str, int]:
    """Go's ``net.SplitHostPort`` plus a numeric port; an empty port means 0, as in Go.

    Raises ValueError with Go's wording (``missing port in address``...).
    """
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f"address {address}: missing ']' in address")
        host, rest = address[1:end], address[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"address {address}: missing port in address")
        port_text = rest[1:]
    else:
        colon = address.rfind(":")
        if colon < 0:
            raise ValueError(f"address {address}: missing port in address")
        host, port_text = address[:colon], address[colon + 1 :]
        if ":" in host:
            raise ValueError(f"address {address}: too many colons in address")
    if port_text == "":
        return host, 0
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"address {address}: invalid port")
    return host, int(port_text)


def format_address(ip: str, port: int) -> str:
    """Go's ``TCPAddr.String()``: IPv6 literals in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
