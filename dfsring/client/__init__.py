"""A client for the dfsring key/value API: asyncio (`DfsClient`) and blocking (`SyncDfsClient`).

The client is deliberately thin: it speaks the HTTP API of docs/API.md and turns its answers into
records and exceptions, nothing more. The one piece of policy it adds is *failover*: given several
base URLs it sticks to the one that last answered and moves on to the next only when it cannot
get an answer, and only where moving on cannot apply a write twice:

- a connection that could not be opened never carried the request, so any request fails over;
- a request that was sent and then lost its answer (timeout, reset) fails over only if it is a
  read; a write raises `OutcomeUnknown`, because a blind retry of a PUT would store a second,
  concurrent version of the value (a sibling) if the first one landed.

The loop itself is dfsring.client.failover's, which the CLI's transports share.

Errors raised here (defined in dfsring.client.errors) are the *client's* view of the wire, so
they are separate from the node's `dfsring.foundation.errors` (which become HTTP statuses at the
node's
edge and come back as problem documents). Every one carries ``status``, ``problem_type``,
``title``, ``detail`` and ``request_id`` (None where the node never answered):

    DfsClientError                 base of everything raised here on purpose
    ├── TransportError             no HTTP answer
    │   ├── ConnectionFailed       no base URL gave an answer (for a write: none accepted it)
    │   └── OutcomeUnknown         a write was sent but its answer was lost; it may have landed
    ├── SiblingsError              one value was asked for, but the key has concurrent versions
    ├── UnexpectedResponse         a success the API does not document (wrong server?)
    └── ProblemError               the node answered 4xx/5xx (RFC 9457 problem+json)
        ├── BadRequestError        400: invalid-key, invalid-context, bad-request, ...
        ├── NotFoundError          404 where absence is an error (get() returns None instead)
        ├── PayloadTooLargeError   413: above the inline value limit
        ├── QuorumNotMetError      503 quorum-not-met, with needed / acked / replicas
        └── UnavailableError       503 otherwise (the node is stopping)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import ssl as _ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from dfsring.client.credentials import (
    Credentials,
    auth_headers,
    discover,
    discovered_ca_context,
)
from dfsring.client.errors import (
    PROBLEM_BASE,
    REQUEST_ID,
    BadRequestError,
    ConnectionFailed,
    DfsClientError,
    NotFoundError,
    OutcomeUnknown,
    PayloadTooLargeError,
    ProblemError,
    QuorumNotMetError,
    SiblingsError,
    TransportError,
    UnavailableError,
    UnexpectedResponse,
    problem_error,
)
from dfsring.client.failover import Lost, first_answer
from dfsring.core import sigv4

__all__ = [
    "BadRequestError",
    "ConnectionFailed",
    "DfsClient",
    "DfsClientError",
    "GetResult",
    "NotFoundError",
    "OutcomeUnknown",
    "PayloadTooLargeError",
    "ProblemError",
    "QuorumNotMetError",
    "Sibling",
    "SiblingsError",
    "SyncDfsClient",
    "TransportError",
    "UnavailableError",
    "UnexpectedResponse",
    "WriteResult",
]

T = TypeVar("T")
Level = int | str  # an integer 1..N or "one" / "quorum" / "all"
CONTEXT = "Dfs-Context"
DEFAULT_URL = "http://127.0.0.1:7070"
OCTET_STREAM = "application/octet-stream"


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sibling:
    """One live version of a value."""

    value: bytes
    content_type: str
    modified: datetime | None


@dataclass(frozen=True, slots=True)
class GetResult:
    """A read: one value, or several concurrent ones, and the context that saw them all.

    Writing back with ``context`` replaces exactly these versions (resolving the siblings).
    """

    values: list[Sibling]
    context: str

    @property
    def has_siblings(self) -> bool:
        return len(self.values) > 1

    @property
    def value(self) -> bytes:
        """The value; SiblingsError if there are several (resolve them, see DfsClient.update)."""
        return self.single().value

    @property
    def content_type(self) -> str:
        return self.single().content_type

    def single(self) -> Sibling:
        if len(self.values) != 1:
            raise SiblingsError(
                f"the key has {len(self.values)} concurrent values; resolve them and write "
                "back with this result's context"
            )
        return self.values[0]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a PUT or DELETE achieved: the new context, acks out of N, acks from fallbacks."""

    context: str
    acks: int
    n: int
    hinted: int


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


# --- decoding ----------------------------------------------------------------------------------


def _problem_error(reply: _Reply) -> ProblemError:
    return problem_error(reply.status, reply.body, reply.headers.get(REQUEST_ID))


def _unexpected(reply: _Reply, what: str) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"{what} (status {reply.status})",
        status=reply.status,
        request_id=reply.headers.get(REQUEST_ID),
    )


def _expect(reply: _Reply, expected: int = 204) -> _Reply:
    """The reply if it has the expected status; the problem it reports otherwise."""
    if reply.status >= 400:
        raise _problem_error(reply)
    if reply.status != expected:
        raise _unexpected(reply, f"expected status {expected}")
    return reply


def _write_result(reply: _Reply) -> WriteResult:
    if reply.status != 204:
        raise _unexpected(reply, "a write answered neither 204 nor an error")
    acked, _, n = reply.headers.get("Dfs-Acks", "0/0").partition("/")
    try:
        return WriteResult(
            reply.headers.get(CONTEXT, ""), int(acked), int(n), int(reply.headers["Dfs-Hinted"])
        )
    except (KeyError, ValueError) as exc:
        raise _unexpected(reply, f"a write answered without valid Dfs-Acks/Hinted: {exc}") from None


def _http_date(raw: str | None) -> datetime | None:
    try:
        return parsedate_to_datetime(raw) if raw else None
    except (TypeError, ValueError):
        return None


def _rfc3339(raw: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _one_value(reply: _Reply) -> GetResult:
    sibling = Sibling(
        reply.body,
        reply.headers.get("Content-Type", OCTET_STREAM),
        _http_date(reply.headers.get("Last-Modified")),
    )
    return GetResult([sibling], reply.headers.get(CONTEXT, ""))


def _siblings(reply: _Reply) -> GetResult:
    try:
        doc = json.loads(reply.body)
        values = [
            Sibling(base64.b64decode(s["value_b64"]), s["content_type"], _rfc3339(s["modified"]))
            for s in doc["siblings"]
        ]
        return GetResult(values, str(doc["context"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise _unexpected(reply, f"a 300 answer that is not a siblings document: {exc}") from None


def _json_object(reply: _Reply) -> dict[str, Any]:
    if reply.status >= 400:
        raise _problem_error(reply)
    try:
        doc = json.loads(reply.body)
    except ValueError:
        doc = None
    if reply.status != 200 or not isinstance(doc, dict):
        raise _unexpected(reply, "expected a JSON object")
    return doc


# --- requests ----------------------------------------------------------------------------------


def _base_urls(base_urls: str | Sequence[str]) -> list[str]:
    """Accept one URL, a comma-separated list or a sequence; ``host:port`` means http://."""
    items = [base_urls] if isinstance(base_urls, str) else list(base_urls)
    urls = [part.strip() for item in items for part in item.split(",") if part.strip()]
    if not urls:
        raise ValueError("at least one base URL is needed")
    return [_checked_url(u if "://" in u else f"http://{u}") for u in urls]


def _checked_url(raw: str) -> str:
    """Refuse a malformed base URL here rather than as a connection failure later."""
    try:
        url = URL(raw)
    except ValueError as exc:
        raise ValueError(f"bad base URL {raw!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"bad base URL {raw!r}: need http(s)://HOST[:PORT]")
    return raw.rstrip("/")


def _kv_path(bucket: str, key: str | None = None) -> str:
    """Percent-encode names; ``/`` stays literal in keys (the API allows it in a key)."""
    path = f"/v1/kv/{quote(bucket, safe='')}"
    return path if key is None else f"{path}/{quote(key, safe='/')}"


def _params(**knobs: Level | bool | str | None) -> dict[str, str]:
    """Query parameters for the knobs that are set; booleans as the API spells them."""
    out: dict[str, str] = {}
    for name, value in knobs.items():
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif value is not None:
            out[name] = str(value)
    return out


def _headers(context: str | None, consistency: str | None) -> dict[str, str]:
    headers = {CONTEXT: context} if context else {}
    if consistency is not None:
        headers["Dfs-Consistency"] = consistency
    return headers


class DfsClient:
    """asyncio client over one pooled keep-alive aiohttp session (see the module docstring).

    Use as ``async with DfsClient(urls) as db:`` or call close(). A session passed in is used
    as is and not closed. ``timeout`` bounds each attempt against one node, in seconds, and
    ``connect_timeout`` the connecting part of it, so an unreachable node costs little before
    the next one is tried. ``ssl`` verifies https:// nodes (dfsring.transport.tls
    .client_context_for(CA file)); without it the CA is looked up as credentials are
    (dfsring.client.credentials.discover_ca: DFSRING_CA, ./dfsring-data/pki/ca/ca.pem,
    ~/.config/dfsring/ca.pem) unless ``discover_ca`` is False, else the system's trust store
    verifies them.
    """

    def __init__(
        self,
        base_urls: str | Sequence[str] = DEFAULT_URL,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = 100,
        credentials: Credentials | None = None,
        discover_credentials: bool = True,
        ssl: _ssl.SSLContext | None = None,
        sign: bool = False,
        region: str = "us-east-1",
        discover_ca: bool = True,
    ) -> None:
        """Without `credentials`, they are looked up as dfsring.client.credentials says
        (environment, then credentials files) unless `discover_credentials` is False; a
        source that exists but is unusable raises CredentialsError (a ValueError) here. So
        does a CA file found for https:// URLs (without `ssl`, unless `discover_ca` is
        False) that does not load.

        `sign=True` signs every request with AWS Signature V4 (for `region`, the node's
        --s3-region) instead of sending the secret in a Bearer header: the secret never
        crosses the wire, and a captured write cannot be replayed."""
        self.base_urls = _base_urls(base_urls)
        if credentials is None and discover_credentials:
            credentials = discover()
        self._signing = (credentials, region) if sign and credentials is not None else None
        self._auth = auth_headers(credentials) if self._signing is None else {}
        if ssl is None and discover_ca:
            ssl = discovered_ca_context(self.base_urls)
        self._ssl = ssl
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(connect_timeout, timeout))
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._current = 0  # index of the base URL that answered last

    async def __aenter__(self) -> DfsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    @property
    def url(self) -> str:
        """The base URL in use: the one that answered last."""
        return self.base_urls[self._current]

    # -- keys and values --

    async def put(
        self,
        bucket: str,
        key: str,
        value: bytes,
        *,
        context: str | None = None,
        content_type: str = OCTET_STREAM,
        w: Level | None = None,
        consistency: str | None = None,
        sloppy: bool | None = None,
    ) -> WriteResult:
        """Store ``value``. With the ``context`` of a read it replaces exactly what that read
        saw; without one it is concurrent with whatever is stored (it may become a sibling)."""
        headers = _headers(context, consistency) | {"Content-Type": content_type}
        reply = await self._request(
            "PUT", _kv_path(bucket, key), _params(w=w, sloppy=sloppy), headers, bytes(value)
        )
        return _write_result(_expect(reply))

    async def get(
        self, bucket: str, key: str, *, r: Level | None = None, consistency: str | None = None
    ) -> GetResult | None:
        """The value(s) under the key, or None if it is absent or deleted."""
        result, _ = await self.get_with_context(bucket, key, r=r, consistency=consistency)
        return result

    async def get_with_context(
        self, bucket: str, key: str, *, r: Level | None = None, consistency: str | None = None
    ) -> tuple[GetResult | None, str | None]:
        """Like get(), plus the context even when the key is deleted: writing with a
        tombstone's context supersedes the delete instead of racing it."""
        path, params = _kv_path(bucket, key), _params(r=r)
        reply = await self._request("GET", path, params, _headers(None, consistency))
        if reply.status == 404 and _is_missing_key(reply):
            return None, reply.headers.get(CONTEXT)
        result = _one_value(reply) if reply.status == 200 else _siblings(_expect(reply, 300))
        return result, result.context

    async def delete(
        self,
        bucket: str,
        key: str,
        *,
        context: str | None = None,
        w: Level | None = None,
        consistency: str | None = None,
        sloppy: bool | None = None,
    ) -> WriteResult:
        """Write a tombstone; with ``context`` it supersedes exactly the versions read."""
        path, params = _kv_path(bucket, key), _params(w=w, sloppy=sloppy)
        reply = await self._request("DELETE", path, params, _headers(context, consistency))
        return _write_result(_expect(reply))

    async def list_page(
        self, bucket: str, prefix: str = "", limit: int = 1000, cursor: str | None = None
    ) -> tuple[list[str], str | None]:
        """One page of live keys in byte order and the cursor of the next (None: the end)."""
        params = _params(prefix=prefix or None, limit=limit, cursor=cursor)
        doc = _json_object(await self._request("GET", _kv_path(bucket), params))
        return [str(k) for k in doc.get("keys", [])], doc.get("cursor")

    async def list_keys(
        self, bucket: str, prefix: str = "", limit: int = 1000, *, max_keys: int | None = None
    ) -> AsyncIterator[str]:
        """Every live key with ``prefix``, following cursors ``limit`` keys per request;
        stops after ``max_keys`` keys if given."""
        cursor: str | None = None
        left = max_keys
        while left is None or left > 0:
            page_size = limit if left is None else min(limit, left)
            keys, cursor = await self.list_page(bucket, prefix, page_size, cursor)
            for key in keys:
                yield key
            left = None if left is None else left - len(keys)
            if cursor is None or not keys:
                return

    async def update(
        self,
        bucket: str,
        key: str,
        fn: Callable[[list[bytes]], bytes],
        *,
        resolve: Callable[[list[bytes]], bytes] | None = None,
        retries: int = 3,
        content_type: str | None = None,
        r: Level | None = None,
        w: Level | None = None,
    ) -> WriteResult:
        """Read-modify-write with the read's context, so the write replaces what was read.

        ``fn`` gets ``[]`` for an absent key, else ``[value]``; siblings are first merged into
        one by ``resolve`` (without a resolver, siblings raise SiblingsError). A writer racing
        us still wins nothing silently: its write and ours become siblings for the next reader.

        ``retries`` bounds extra attempts of the read on any transient failure, and of the
        write only when no node accepted it (ConnectionFailed); a write that may have landed
        (QuorumNotMetError, OutcomeUnknown) is raised, never re-applied blindly.
        """
        found, context = await _retrying(
            lambda: self.get_with_context(bucket, key, r=r), retries, _TRANSIENT
        )
        values = _resolved(found, resolve)
        new_value = fn([v.value for v in values])
        ctype = content_type or (values[0].content_type if values else OCTET_STREAM)
        return await _retrying(
            lambda: self.put(bucket, key, new_value, context=context, content_type=ctype, w=w),
            retries,
            (ConnectionFailed,),
        )

    # -- node --

    async def health(self) -> dict[str, Any]:
        """GET /health of the node in use."""
        return _json_object(await self._request("GET", "/health"))

    async def stats(self) -> dict[str, Any]:
        """GET /v1/node/stats of the node in use."""
        return _json_object(await self._request("GET", "/v1/node/stats"))

    # -- plumbing --

    def _session_now(self) -> aiohttp.ClientSession:
        """Made lazily so that it belongs to the loop that runs the requests."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl or True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
            self._owns_session = True
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> _Reply:
        """Send to the current base URL, failing over as the module docstring says."""

        async def send(base: str) -> _Reply:
            return await self._send(method, URL(base + path, encoded=True), params, headers, data)

        self._current, reply = await first_answer(
            self.base_urls, send, lost=Lost(method, path), start=self._current)
        return reply

    async def _send(
        self,
        method: str,
        url: URL,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        data: bytes | None,
    ) -> _Reply:
        session = self._session_now()
        sent = {**self._auth, **(headers or {})}
        if self._signing is not None:
            url = URL(str(url.update_query(params) if params else url), encoded=True)
            params = None
            creds, region = self._signing
            sent.update(sigv4.sign_headers(
                method, str(url), sent, access_key=creds.access_key,
                secret_key=creds.secret_key, region=region, now_s=time.time(),
                payload_sha256=hashlib.sha256(data or b"").hexdigest()))
        async with session.request(
            method,
            url,
            params=params,
            headers=sent,
            data=data,
            allow_redirects=False,
            timeout=self._timeout,
        ) as resp:
            return _Reply(resp.status, resp.headers, await resp.read())


def _is_missing_key(reply: _Reply) -> bool:
    """A 404 about the key (get() returns None), not about the route (a wrong base URL)."""
    try:
        doc = json.loads(reply.body)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("type") == PROBLEM_BASE + "not-found"


def _resolved(
    found: GetResult | None, resolve: Callable[[list[bytes]], bytes] | None
) -> list[Sibling]:
    if found is None:
        return []
    if resolve is None or not found.has_siblings:
        return [found.single()]  # SiblingsError explains what to do if there are several
    first = found.values[0]
    return [Sibling(resolve([v.value for v in found.values]), first.content_type, None)]


_TRANSIENT = (ConnectionFailed, QuorumNotMetError, UnavailableError)


async def _retrying(
    attempt: Callable[[], Awaitable[T]],
    retries: int,
    retry_on: tuple[type[DfsClientError], ...],
) -> T:
    """Run ``attempt`` up to ``retries + 1`` times, backing off 50 ms, 100 ms, ... up to 1 s."""
    for number in range(retries):
        try:
            return await attempt()
        except retry_on:
            await asyncio.sleep(min(0.05 * 2**number, 1.0))
    return await attempt()


# --- blocking facade ---------------------------------------------------------------------------


class SyncDfsClient:
    """Blocking wrapper for scripts and the CLI: a private event loop in a daemon thread runs a
    DfsClient, so the pooled keep-alive session lives across calls (``asyncio.run`` per call
    would reconnect every time). Not for use from inside a running event loop: that loop would
    stall for the whole request, so it raises RuntimeError; use DfsClient there.
    """

    def __init__(
        self,
        base_urls: str | Sequence[str] = DEFAULT_URL,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        credentials: Credentials | None = None,
        discover_credentials: bool = True,
        ssl: _ssl.SSLContext | None = None,
        sign: bool = False,
        region: str = "us-east-1",
        discover_ca: bool = True,
    ) -> None:
        self.client = DfsClient(base_urls, timeout=timeout, connect_timeout=connect_timeout,
                                credentials=credentials,
                                discover_credentials=discover_credentials, ssl=ssl,
                                sign=sign, region=region, discover_ca=discover_ca)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="dfsring-client", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> SyncDfsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError("SyncDfsClient blocks; inside an event loop use DfsClient")
        return self._call(coro)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("this SyncDfsClient is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Close the session and stop the loop thread; idempotent, and allowed anywhere (it
        does not wait on the network)."""
        if self._loop.is_closed():
            return
        self._call(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def put(self, bucket: str, key: str, value: bytes, **kwargs: Any) -> WriteResult:
        return self._run(self.client.put(bucket, key, value, **kwargs))

    def get(self, bucket: str, key: str, **kwargs: Any) -> GetResult | None:
        return self._run(self.client.get(bucket, key, **kwargs))

    def get_with_context(
        self, bucket: str, key: str, **kwargs: Any
    ) -> tuple[GetResult | None, str | None]:
        return self._run(self.client.get_with_context(bucket, key, **kwargs))

    def delete(self, bucket: str, key: str, **kwargs: Any) -> WriteResult:
        return self._run(self.client.delete(bucket, key, **kwargs))

    def update(
        self, bucket: str, key: str, fn: Callable[[list[bytes]], bytes], **kwargs: Any
    ) -> WriteResult:
        return self._run(self.client.update(bucket, key, fn, **kwargs))

    def list_keys(
        self, bucket: str, prefix: str = "", limit: int = 1000, *, max_keys: int | None = None
    ) -> Iterator[str]:
        """Every live key with ``prefix``; pages are fetched as the iteration reaches them."""
        keys = self.client.list_keys(bucket, prefix, limit, max_keys=max_keys)
        try:
            while True:
                try:
                    yield self._run(anext(keys))
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(keys.aclose())

    def health(self) -> dict[str, Any]:
        return self._run(self.client.health())

    def stats(self) -> dict[str, Any]:
        return self._run(self.client.stats())
