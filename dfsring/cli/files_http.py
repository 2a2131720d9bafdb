"""The files API over HTTP for the file commands (dfsring.cli.files): streamed upload, HEAD,
byte ranges of a pinned version, and the listing, with the failover rules of dfsring.client
(a request never sent goes to the next base URL; an upload whose answer was lost is
OutcomeUnknown, never retried blindly)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from dfsring.cli.http import decoded
from dfsring.client.errors import (
    REQUEST_ID,
    DfsClientError,
    OutcomeUnknown,
    UnexpectedResponse,
)
from dfsring.client.failover import first_answer

BLOCK = 1 << 20


class NotFound(DfsClientError):
    """The file (or version) does not exist: exit 4, as `dfsring get` of a missing key."""


class Meter(Protocol):
    """Told how many bytes moved (dfsring.cli.files draws the progress bar)."""

    def add(self, count: int) -> None: ...

    @property
    def total(self) -> int: ...


def _file_url(base: str, bucket: str, path: str) -> str:
    return f"{base}/v1/files/{quote(bucket, safe='')}/{quote(path, safe='/')}"


class FilesHttp:
    def __init__(self, session: aiohttp.ClientSession, bases: list[str]) -> None:
        self.session = session
        self.bases = bases

    async def _request(self, method: str, url_of: Callable[[str], str],
                       **kwargs: Any) -> tuple[aiohttp.ClientResponse, str]:
        """The first node that takes the request (a failed connection moves on). A lost
        answer is left to the caller: an upload words its OutcomeUnknown itself."""

        async def send(base: str) -> aiohttp.ClientResponse:
            return await self.session.request(method, url_of(base), **kwargs)

        index, resp = await first_answer(self.bases, send, lost=None,
                                         describe=lambda exc: f"cannot connect: {exc}")
        return resp, self.bases[index]

    async def upload(self, source: Path, bucket: str, path: str, headers: dict[str, str],
                     meter: Meter) -> dict[str, Any]:
        size = meter.total

        async def body() -> AsyncIterator[bytes]:
            with source.open("rb") as fh:
                while block := await asyncio.to_thread(fh.read, BLOCK):
                    meter.add(len(block))
                    yield block

        url_of = lambda base: _file_url(base, bucket, path)  # noqa: E731
        try:
            resp, _ = await self._request("PUT", url_of, data=body(), headers={
                **headers, "Content-Length": str(size)})
            async with resp:
                raw = await resp.read()
                if resp.status != 201:
                    decoded(resp.status, raw, resp.headers.get(REQUEST_ID))
                    raise UnexpectedResponse(f"upload answered {resp.status}",
                                             status=resp.status)
                doc = json.loads(raw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OutcomeUnknown(f"the upload was sent but its answer was lost ({exc}); it "
                                 "may have been stored: check ?versions") from exc
        return dict(doc)

    async def head(self, bucket: str, path: str, version: str | None) -> tuple[int, str, str]:
        """(size, version, sha256) of the file's current version or of ``version``."""
        params = {"version": version} if version else {}
        resp, _ = await self._request("HEAD", lambda b: _file_url(b, bucket, path),
                                      params=params)
        async with resp:
            if resp.status == 404:
                what = f"version {version} of {bucket}/{path}" if version else f"{bucket}/{path}"
                raise NotFound(f"{what}: not found")
            if resp.status != 200:  # HEAD has no body: ask again with GET for the problem
                resp2, _ = await self._request("GET", lambda b: _file_url(b, bucket, path),
                                               params=params, headers={"Range": "bytes=0-0"})
                async with resp2:
                    decoded(resp2.status, await resp2.read(), resp2.headers.get(REQUEST_ID))
                raise UnexpectedResponse(f"HEAD answered {resp.status}", status=resp.status)
            etag = resp.headers.get("ETag", "").strip('"')
            return int(resp.headers["Content-Length"]), resp.headers["Dfs-Version"], etag

    async def fetch(self, bucket: str, path: str, version: str, span: tuple[int, int],
                    sink: Callable[[int, bytes], None], meter: Meter) -> None:
        """Bytes ``span`` of that version, handed to ``sink(offset, data)`` as they come."""
        headers = {"Range": f"bytes={span[0]}-{span[1]}"}
        resp, _ = await self._request("GET", lambda b: _file_url(b, bucket, path),
                                      params={"version": version}, headers=headers)
        async with resp:
            if resp.status not in (200, 206):
                decoded(resp.status, await resp.read(), resp.headers.get(REQUEST_ID))
            offset = span[0]
            async for piece in resp.content.iter_chunked(BLOCK):
                await asyncio.to_thread(sink, offset, piece)
                offset += len(piece)
                meter.add(len(piece))
            if offset != span[1] + 1:
                raise UnexpectedResponse(f"range {span[0]}-{span[1]} ended at {offset}")

    async def list_files(self, bucket: str, prefix: str,
                         limit: int | None) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        shown = 0
        while True:
            params = {"prefix": prefix, "limit": "1000", **({"cursor": cursor} if cursor else {})}
            resp, _ = await self._request(
                "GET", lambda b: f"{b}/v1/files/{quote(bucket, safe='')}", params=params)
            async with resp:
                doc = decoded(resp.status, await resp.read(), resp.headers.get(REQUEST_ID))
            for item in doc["files"]:
                yield item
                shown += 1
                if limit is not None and shown >= limit:
                    return
            cursor = doc.get("cursor")
            if not cursor:
                return


