"""The chaos history: one record per client operation, and self-verifying values.

Pure (no I/O besides the JSON-lines helpers at the bottom, which take an open file).

Every operation the workload makes becomes an :class:`OpRecord`, whatever happened to it:

- ``ok``: the node acknowledged it (2xx for a write; 200 / 300 / 404 for a read);
- ``failed``: the node answered with an error (4xx / 5xx), or the connection was refused
  before anything was sent. A failed *write* may still have reached some replicas (a 503
  ``quorum-not-met`` is documented as indeterminate in effect), so the checker treats its value
  as "may or may not exist", never as "must not exist";
- ``indeterminate``: no answer (a client-side timeout, a connection lost mid-request).

Values are self-verifying (Jepsen style): each carries the id of the write that made it and a
digest of its body, so the checker can tell a flipped byte (corrupt) from a value that was
never written (phantom) without trusting the store::

    dfschaos1 <write-id> <sha256(body)[:32]>\\n<body>

For read-modify-write keys the body is a JSON list of the set's elements, sorted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import IO, Any

MAGIC = b"dfschaos1"
_DIGEST_CHARS = 32


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    INDETERMINATE = "indeterminate"


class OpKind(StrEnum):
    PUT = "put"  # a unique-key write: each key is written once, with a unique value
    GET = "get"  # a read of a key written before (unique or shared)
    RMW = "rmw"  # read a shared key's set, add one element, write back with the read's context
    FILE = "file"  # a unique file path uploaded once through the files API (chunked)


@dataclass(frozen=True)
class OpRecord:
    """One client operation. Times are seconds on the workload's monotonic clock (0 = start).

    ``value_hash`` is the sha256 of the exact bytes written (put / rmw); ``read_hashes`` those
    of every live sibling a read returned (get, and the read half of rmw). For an rmw the
    outcome, status and node are those of the write; ``read_status`` is the read's, and a
    failed read means nothing was written (``value_hash`` is then None).
    """

    id: int
    client: int
    op: OpKind
    bucket: str
    key: str
    node: str
    start: float
    end: float
    outcome: Outcome
    status: int | None = None
    write_id: str | None = None
    value_hash: str | None = None
    element: str | None = None
    context: str | None = None
    siblings: int = 0
    read_status: int | None = None
    read_hashes: tuple[str, ...] = field(default=())
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def is_write(self) -> bool:
        return self.value_hash is not None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["op"], doc["outcome"] = str(self.op), str(self.outcome)
        doc["read_hashes"] = list(self.read_hashes)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> OpRecord:
        return cls(**{**doc, "op": OpKind(doc["op"]), "outcome": Outcome(doc["outcome"]),
                      "read_hashes": tuple(doc.get("read_hashes", ()))})


# --- values ------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_value(write_id: str, body: bytes) -> bytes:
    """The stored bytes of a write: a header naming the write and its body's digest."""
    if " " in write_id or "\n" in write_id:
        raise ValueError(f"write id {write_id!r} must not contain spaces or newlines")
    digest = sha256(body)[:_DIGEST_CHARS]
    return MAGIC + b" " + write_id.encode() + b" " + digest.encode() + b"\n" + body


@dataclass(frozen=True)
class Decoded:
    """A value as read back: which write it claims to be, and whether its bytes are intact."""

    write_id: str | None
    body: bytes
    intact: bool


def decode_value(data: bytes) -> Decoded:
    head, sep, body = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != MAGIC:
        return Decoded(None, data, False)
    try:
        write_id = parts[1].decode()
    except UnicodeDecodeError:
        return Decoded(None, data, False)
    return Decoded(write_id, body, sha256(body)[:_DIGEST_CHARS].encode() == parts[2])


def encode_set(write_id: str, elements: Iterable[str]) -> bytes:
    return encode_value(write_id, json.dumps(sorted(set(elements))).encode())


def decode_set(data: bytes) -> frozenset[str] | None:
    """The elements of a read-modify-write value; None if it is not an intact set value."""
    decoded = decode_value(data)
    if not decoded.intact:
        return None
    try:
        items = json.loads(decoded.body)
    except ValueError:
        return None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        return None
    return frozenset(items)


# --- JSON lines --------------------------------------------------------------------------


def write_jsonl(out: IO[str], record: OpRecord) -> None:
    out.write(json.dumps(record.to_json(), separators=(",", ":")) + "\n")


def read_jsonl(lines: Iterable[str]) -> Iterator[OpRecord]:
    for line in lines:
        if line.strip():
            yield OpRecord.from_json(json.loads(line))
