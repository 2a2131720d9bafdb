"""Toxic and proxy definitions as the API sees them: types, attributes, validation, JSON shapes.

Pure: nothing here touches a socket or an event loop. The data plane (``toxics.py``) reads a
:class:`ToxicSpec`; the API (``collection.py``) builds and renders them.

Shapes and rules follow Toxiproxy 2.x (``toxic_collection.go``, ``toxics/*.go``):

- a toxic is ``{"attributes", "name", "type", "stream", "toxicity"}`` with every attribute of its
  type present (0 when not given), name defaulting to ``<type>_<stream>``, stream to
  ``downstream`` (parsed case-insensitively) and toxicity to 1.0;
- creation checks run in Toxiproxy's order: decode the body, the stream, default the name, the
  type, a duplicate name, then the attributes;
- an update merges attributes into the old ones and keeps the toxicity unless one is given;
  name, type and stream never change.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from dfsring.testing.faultproxy.wire import (
    BAD_REQUEST_BODY,
    INVALID_STREAM,
    INVALID_TOXIC_TYPE,
    TOXIC_EXISTS,
    as_bool,
    as_float,
    as_int64,
    as_str,
    decode_body,
    expect_object,
    json_type,
    pick_fields,
)

UPSTREAM, DOWNSTREAM = "upstream", "downstream"
DIRECTIONS = (UPSTREAM, DOWNSTREAM)
LATENCY_BUFFER_CHUNKS = 1024  # Toxiproxy's LatencyToxic.GetBufferSize()


@dataclass(frozen=True)
class ToxicType:
    """One kind of toxic: its attributes in Go's field order and how the data plane treats it."""

    name: str
    attributes: tuple[str, ...]
    buffer_size: int = 0  # input buffer in chunks; 0 = hand-over (Go's unbuffered channel)
    closes_on_removal: bool = False  # Go's CleanupToxic: removing it ends the connection


TOXIC_TYPES: Mapping[str, ToxicType] = {
    t.name: t
    for t in (
        ToxicType("latency", ("latency", "jitter"), buffer_size=LATENCY_BUFFER_CHUNKS),
        ToxicType("bandwidth", ("rate",)),
        ToxicType("slow_close", ("delay",)),
        ToxicType("timeout", ("timeout",), closes_on_removal=True),
        ToxicType("reset_peer", ("timeout",)),
        ToxicType("slicer", ("average_size", "size_variation", "delay")),
        ToxicType("limit_data", ("bytes",)),
        ToxicType("noop", ()),
    )
}

_TOXIC_FIELDS = ("name", "type", "stream", "toxicity", "attributes")


def _float32(value: float, where: str) -> float:
    """Round to float32, as Toxiproxy stores toxicity; out of range is Go's decode error."""
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except OverflowError:
        raise BAD_REQUEST_BODY.joined(
            f"json: cannot unmarshal number {value!r} into Go struct field {where} of type float32"
        ) from None


def render_float32(value: float) -> float | int:
    """The shortest decimal that reads back as the same float32, as Go prints it (1.0 -> 1)."""
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if _float32(float(text), "toxicity") == value:
            return float(text)
    return value


@dataclass(frozen=True)
class ToxicSpec:
    """One toxic as configured through the API; immutable, so an update is a new object."""

    name: str
    type: str
    stream: str  # as the client spelled it; ``direction`` is the parsed form
    direction: str
    toxicity: float
    attributes: tuple[tuple[str, int], ...]

    @property
    def kind(self) -> ToxicType:
        return TOXIC_TYPES[self.type]

    def attr(self, key: str) -> int:
        return dict(self.attributes)[key]

    def to_json(self) -> dict[str, object]:
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": render_float32(self.toxicity),
        }


def parse_direction(stream: str) -> str:
    """Toxiproxy's ``stream.ParseDirection``: case-insensitive, anything else is a 400."""
    direction = stream.lower()
    if direction not in DIRECTIONS:
        raise INVALID_STREAM
    return direction


def _decode_attributes(
    kind: ToxicType, raw: object, base: Mapping[str, int]
) -> tuple[tuple[str, int], ...]:
    values = dict(base)
    picked = pick_fields(expect_object(raw, f"toxics.{kind.name}"), kind.attributes)
    for key, value in picked.items():
        values[key] = as_int64(value, f"{kind.name}.attributes.{key}")
    return tuple((key, values.get(key, 0)) for key in kind.attributes)


def _attributes_object(raw: object, where: str) -> object:
    """Before the type is known Go decodes attributes into a struct: only an object fits."""
    if raw is not None and not isinstance(raw, dict):
        raise BAD_REQUEST_BODY.joined(
            f"json: cannot unmarshal {json_type(raw)} into Go struct field {where} "
            "of type toxics.Toxic"
        )
    return raw


def parse_new_toxic(raw: bytes, name_taken: Callable[[str], bool]) -> ToxicSpec:
    """A toxic from a creation body, checked in Toxiproxy's order (see the module docstring)."""
    obj = expect_object(decode_body(raw), "toxics.ToxicWrapper")
    fields = pick_fields(obj, _TOXIC_FIELDS)
    where = "ToxicWrapper."
    name = as_str(fields.get("name", ""), where + "name")
    type_name = as_str(fields.get("type", ""), where + "type")
    stream = as_str(fields.get("stream", DOWNSTREAM), where + "stream")
    toxicity = _float32(as_float(fields.get("toxicity", 1.0), where + "toxicity"), "toxicity")
    attributes = _attributes_object(fields.get("attributes"), where + "attributes")

    direction = parse_direction(stream)
    name = name or f"{type_name}_{stream}"
    kind = TOXIC_TYPES.get(type_name)
    if kind is None:
        raise INVALID_TOXIC_TYPE
    if name_taken(name):
        raise TOXIC_EXISTS
    return ToxicSpec(
        name=name,
        type=type_name,
        stream=stream,
        direction=direction,
        toxicity=toxicity,
        attributes=_decode_attributes(kind, attributes, {}),
    )


def parse_toxic_update(raw: bytes, current: ToxicSpec) -> ToxicSpec:
    """The toxic after an update body: attributes merged, toxicity kept unless given."""
    obj = expect_object(decode_body(raw), "struct")
    fields = pick_fields(obj, ("attributes", "toxicity"))
    toxicity = current.toxicity
    if "toxicity" in fields:
        toxicity = _float32(as_float(fields["toxicity"], "toxicity"), "toxicity")
    old = dict(current.attributes)
    attributes = _decode_attributes(current.kind, fields.get("attributes"), old)
    return replace(current, toxicity=toxicity, attributes=attributes)


@dataclass(frozen=True)
class ProxyInput:
    """The fields of a proxy body; ``None`` where the body did not set one."""

    name: str | None = None
    listen: str | None = None
    upstream: str | None = None
    enabled: bool | None = None


def parse_proxy_fields(value: object) -> ProxyInput:
    """Decode one proxy object (POST /proxies, an update, or a /populate entry)."""
    fields: dict[str, Any] = pick_fields(
        expect_object(value, "toxiproxy.Proxy"), ("name", "listen", "upstream", "enabled")
    )
    return ProxyInput(
        name=as_str(fields["name"], "Proxy.name") if "name" in fields else None,
        listen=as_str(fields["listen"], "Proxy.listen") if "listen" in fields else None,
        upstream=as_str(fields["upstream"], "Proxy.upstream") if "upstream" in fields else None,
        enabled=as_bool(fields["enabled"], "Proxy.enabled") if "enabled" in fields else None,
    )
