"""JSON over HTTP for the cluster administration commands (dfsring.cli.admin).

Why not DfsClient: it is a key/value client whose requests go to one of its base URLs, while
``dfsring status`` must also ask every member by its own address, and the admin routes answer
JSON lists as well as objects. What it does share with DfsClient is the wire discipline, so the
commands behave like the key/value ones:

- a request that was never sent (no connection) fails over to the next base URL;
- a POST whose answer was lost is not sent elsewhere: it may have been applied
  (OutcomeUnknown);
- errors are dfsring.client's exceptions (ProblemError for a problem+json answer,
  ConnectionFailed, OutcomeUnknown, UnexpectedResponse), so they read and map to exit
  statuses the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import aiohttp
from yarl import URL

from dfsring.client.errors import (
    REQUEST_ID,
    ConnectionFailed,
    DfsClientError,
    TransportError,
    UnexpectedResponse,
    problem_error,
)
from dfsring.client.failover import Lost, describe, first_answer

Doc = dict[str, Any]

class BadUrl(ValueError):
    """A --url that cannot name a node: a usage error, not a connection failure later."""


def base_urls(raw: Sequence[str]) -> list[str]:
    """--url as the key/value commands read it: repeated or comma-separated; HOST:PORT means
    http://HOST:PORT."""
    urls = [part.strip() for item in raw for part in item.split(",") if part.strip()]
    if not urls:
        raise BadUrl("give a node URL with --url")
    return [_base_url(url) for url in urls]


def _base_url(raw: str) -> str:
    full = raw if "://" in raw else f"http://{raw}"
    try:
        url: URL | None = URL(full)
    except ValueError:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise BadUrl(f"bad URL {raw!r}: need http(s)://HOST[:PORT]")
    return full.rstrip("/")


class Http:
    """JSON over one session. Failures are dfsring.client's exceptions, so that they read (and
    map to exit statuses) exactly like the key/value commands' failures."""

    def __init__(self, session: aiohttp.ClientSession, timeout: float) -> None:
        self.session = session
        self.timeout = timeout
        self.scheme = "http"  # members are asked at SCHEME://ADDRESS: that of the --url used

    async def call(
        self, bases: Sequence[str], method: str, path: str, params: Mapping[str, str] | None = None
    ) -> tuple[str, Any]:
        """The first base URL that answers, and its JSON. As in DfsClient, a request that was
        never sent moves on to the next URL, but a POST whose answer was lost does not: it may
        have been applied, and a second node must not be asked to apply it again. ``path`` is
        sent as given, so names in it must be percent-encoded already."""

        async def send(base: str) -> tuple[int, bytes, str | None]:
            async with self.session.request(
                method, URL(base + path, encoded=True), params=params, allow_redirects=False
            ) as resp:
                return resp.status, await resp.read(), resp.headers.get(REQUEST_ID)

        lost = Lost(method, path, resend=("GET",), note="; it may have been applied")
        index, (status, body, rid) = await first_answer(bases, send, lost=lost,
                                                        describe=self._describe)
        self.scheme = URL(bases[index]).scheme
        return bases[index], decoded(status, body, rid)

    async def object(self, base: str, path: str) -> Doc:
        return shaped((await self.call([base], "GET", path))[1], dict, path)

    async def objects(self, base: str, path: str) -> list[Doc]:
        docs = shaped((await self.call([base], "GET", path))[1], list, path)
        return [shaped(doc, dict, path) for doc in docs]

    async def try_object(self, base: str, path: str) -> tuple[Doc | None, str | None]:
        """The document, or None and why not: for views that one silent node must not end."""
        try:
            return await self.object(base, path), None
        except DfsClientError as exc:
            return None, reason(exc)

    def _describe(self, exc: BaseException) -> str:
        return describe(exc, self.timeout)


async def gather_all(*calls: Awaitable[Any]) -> list[Any]:
    """asyncio.gather, but the first failure cancels and awaits the other calls before it is
    raised, so that no request outlives the command (plain gather leaves them running)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def decoded(status: int, body: bytes, request_id: str | None) -> Any:
    """The JSON of a 200/202 answer; the problem document of an error as a ProblemError."""
    if status >= 400:
        raise problem_error(status, body, request_id)
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if status not in (200, 202) or doc is None:
        raise UnexpectedResponse(f"expected JSON (status {status})", status=status)
    return doc


def shaped(doc: Any, kind: type, what: str) -> Any:
    if not isinstance(doc, kind):
        raise UnexpectedResponse(f"{what}: expected a JSON {'list' if kind is list else 'object'}")
    return doc


def reason(exc: DfsClientError) -> str:
    """ConnectionFailed's per-URL reasons without its preamble, for one member's note."""
    if isinstance(exc, ConnectionFailed):
        return "; ".join(exc.failures.values())
    return str(exc)


def transient(exc: DfsClientError) -> bool:
    """Worth polling again: no answer, or a 5xx (the node is busy or restarting)."""
    return isinstance(exc, TransportError) or (exc.status or 0) >= 500


def member_url(member: Mapping[str, Any], scheme: str = "http") -> str:
    """The member's client API: `api_address` (its peer `address` serves no client route)."""
    address = str(member.get("api_address") or member.get("address") or "")
    return address if "://" in address else f"{scheme}://{address}"
