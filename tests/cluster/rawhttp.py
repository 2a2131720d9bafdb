"""A deliberately dumb HTTP/1.1 client over a raw socket, so tests can send what no polite
client library would: truncated bodies, garbled request lines, monstrous headers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        return orjson.loads(self.body)


async def send(host: str, port: int, payload: bytes, *, half_close: bool = False,
               wait_s: float = 10.0) -> RawResponse:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        if half_close and writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(wait_s):
            return await _read_response(reader)
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> RawResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RawResponse(status, headers, body)


def with_headers(payload: bytes, headers: dict[str, str]) -> bytes:
    """`payload` with these header lines added right after its request line, whatever else
    it carries (how a raw test that means to reach a handler authenticates)."""
    line, sep, rest = payload.partition(b"\r\n")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
    return line + sep + extra + rest if sep else payload


def request(method: str, path: str, *, headers: dict[str, str] | None = None,
            body: bytes = b"", content_length: int | None = None) -> bytes:
    hdrs = {"Host": "localhost", "Connection": "close", **(headers or {})}
    if body or content_length is not None:
        hdrs.setdefault("Content-Length", str(len(body) if content_length is None
                                               else content_length))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return head.encode("latin-1") + b"\r\n" + body
