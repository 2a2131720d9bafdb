"""Every API operation on the set of proxies, with Toxiproxy's checks in Toxiproxy's order.

The HTTP layer (``api.py``) only routes and renders; this is where the behaviour of
``api.go`` / ``proxy_collection.go`` / ``toxic_collection.go`` lives. Operations are serialised
by one lock, as Toxiproxy's collection lock does, so a reader never sees a half-applied change.
Each returns JSON-ready data or raises :class:`~dfsring.testing.faultproxy.wire.ApiError`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from dfsring.testing.faultproxy.chain import settle
from dfsring.testing.faultproxy.proxy import Proxy
from dfsring.testing.faultproxy.spec import (
    ProxyInput,
    parse_new_toxic,
    parse_proxy_fields,
    parse_toxic_update,
)
from dfsring.testing.faultproxy.wire import (
    BAD_REQUEST_BODY,
    MISSING_FIELD,
    PROXY_EXISTS,
    PROXY_NOT_FOUND,
    TOXIC_NOT_FOUND,
    ApiError,
    decode_body,
    json_type,
)

Json = dict[str, object]

log = logging.getLogger("dfsring.faultproxy")


@dataclass
class PopulateResult:
    """/populate answers its status with the proxies made so far, even on failure."""

    status: int
    proxies: list[Json] = field(default_factory=list)
    error: ApiError | None = None

    def to_json(self) -> Json:
        body: Json = self.error.to_json() if self.error is not None else {}
        body["proxies"] = self.proxies
        return body


def _required(value: ProxyInput, suffix: str = "") -> tuple[str, str]:
    if not value.name:
        raise MISSING_FIELD.joined(f"name{suffix}")
    if not value.upstream:
        raise MISSING_FIELD.joined(f"upstream{suffix}")
    return value.name, value.upstream


class ProxyCollection:
    """All proxies by name (Toxiproxy's ``ProxyCollection`` plus the API handlers' logic)."""

    def __init__(self) -> None:
        self._proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()

    def _get(self, name: str) -> Proxy:
        proxy = self._proxies.get(name)
        if proxy is None:
            raise PROXY_NOT_FOUND
        return proxy

    async def index(self) -> Json:
        async with self._lock:
            return {name: self._proxies[name].to_json() for name in sorted(self._proxies)}

    async def create(self, raw: bytes) -> Json:
        """POST /proxies: enabled by default; a failed bind leaves no proxy behind."""
        value = parse_proxy_fields(decode_body(raw))
        name, upstream = _required(value)
        async with self._lock:
            if name in self._proxies:
                raise PROXY_EXISTS
            proxy = Proxy(name, value.listen or "", upstream)
            if value.enabled is not False:
                await proxy.start()
            self._proxies[name] = proxy
            return proxy.to_json()

    async def populate(self, raw: bytes) -> PopulateResult:
        """POST /populate: validate all, then keep unchanged proxies and replace the others."""
        try:
            entries = self._validate_population(decode_body(raw))
        except ApiError as exc:
            return PopulateResult(exc.status, error=exc)
        result = PopulateResult(201)
        async with self._lock:
            for entry in entries:
                try:
                    result.proxies.append(await self._add_or_replace(entry))
                except ApiError as exc:
                    result.status, result.error = exc.status, exc
                    break
        return result

    @staticmethod
    def _validate_population(body: object) -> list[ProxyInput]:
        if not isinstance(body, list):
            raise BAD_REQUEST_BODY.joined(
                f"json: cannot unmarshal {json_type(body)} into Go value of type "
                '[]struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
            )
        entries = [parse_proxy_fields(item) for item in body]
        seen: set[str] = set()
        for number, entry in enumerate(entries, start=1):
            name, _upstream = _required(entry, f" at proxy {number}")
            if name in seen:
                raise ApiError(f'duplicate proxy name "{name}"', 500)
            seen.add(name)
        return entries

    async def _add_or_replace(self, entry: ProxyInput) -> Json:
        assert entry.name is not None and entry.upstream is not None
        listen = entry.listen or ""
        existing = self._proxies.get(entry.name)
        if existing is not None:
            if existing.listen == listen and existing.upstream == entry.upstream:
                return existing.to_json()
            await existing.stop()
            del self._proxies[entry.name]
        proxy = Proxy(entry.name, listen, entry.upstream)
        if entry.enabled is not False:
            await proxy.start()
        self._proxies[entry.name] = proxy
        return proxy.to_json()

    async def show(self, name: str) -> Json:
        async with self._lock:
            return self._get(name).to_json()

    async def update(self, name: str, raw: bytes) -> Json:
        """POST/PATCH /proxies/{p}: fields not given keep their current values."""
        async with self._lock:
            proxy = self._get(name)
            await proxy.update(parse_proxy_fields(decode_body(raw)))
            return proxy.to_json()

    async def delete(self, name: str) -> None:
        async with self._lock:
            proxy = self._get(name)
            await proxy.stop()
            del self._proxies[name]

    async def toxics(self, name: str) -> list[Json]:
        async with self._lock:
            return [t.to_json() for t in self._get(name).toxics.all()]

    async def create_toxic(self, name: str, raw: bytes) -> Json:
        async with self._lock:
            toxics = self._get(name).toxics
            toxic = parse_new_toxic(raw, lambda candidate: toxics.find(candidate) is not None)
            await settle(toxics.add(toxic))
            return toxic.to_json()

    async def show_toxic(self, name: str, toxic_name: str) -> Json:
        async with self._lock:
            toxic = self._get(name).toxics.find(toxic_name)
            if toxic is None:
                raise TOXIC_NOT_FOUND
            return toxic.to_json()

    async def update_toxic(self, name: str, toxic_name: str, raw: bytes) -> Json:
        async with self._lock:
            toxics = self._get(name).toxics
            current = toxics.find(toxic_name)
            if current is None:
                raise TOXIC_NOT_FOUND
            toxic = parse_toxic_update(raw, current)
            await settle(toxics.update(toxic))
            return toxic.to_json()

    async def delete_toxic(self, name: str, toxic_name: str) -> None:
        async with self._lock:
            toxics = self._get(name).toxics
            toxic = toxics.find(toxic_name)
            if toxic is None:
                raise TOXIC_NOT_FOUND
            await settle(toxics.remove(toxic))

    async def reset(self) -> None:
        """POST /reset: start every disabled proxy (stop at the first bind failure, a 500)
        and remove every toxic."""
        async with self._lock:
            acks: list[asyncio.Future[None]] = []
            try:
                for name in sorted(self._proxies):
                    proxy = self._proxies[name]
                    await proxy.start()
                    acks += proxy.toxics.clear()
            finally:
                await settle(acks)

    async def stats(self) -> Json:
        async with self._lock:
            return {name: self._proxies[name].stats.to_json() for name in sorted(self._proxies)}

    async def close(self) -> None:
        """Stop every proxy (server shutdown); the proxies are forgotten."""
        async with self._lock:
            for proxy in self._proxies.values():
                try:
                    await proxy.stop()
                except Exception:
                    log.exception("stopping %s failed", proxy.name)
            self._proxies.clear()
