"""Helpers for the access tests over real node processes: a LocalCluster with its root
credentials at hand, and a plain HTTP call that shows every answer, refusals included."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dfsring.cli.launcher import LocalCluster, NodeProcess


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def doc(self) -> Any:
        return json.loads(self.body) if self.body else None


def bearer(access_key: str, secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_key}:{secret}"}


def call(url: str, method: str, path: str, *, headers: dict[str, str] | None = None,
         body: bytes | dict[str, Any] | None = None, timeout: float = 10.0) -> Resp:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                      timeout=timeout)
    hdrs = dict(headers or {})
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    if isinstance(body, dict):
        hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=raw, headers=hdrs)
        resp = conn.getresponse()
        return Resp(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


class AuthCluster(LocalCluster):
    """A LocalCluster (root credentials through the environment, its own calls
    authenticated) with the root credentials at hand as a pair and a header."""

    @property
    def root(self) -> tuple[str, str]:
        return self.credentials.access_key, self.credentials.secret_key

    @property
    def root_headers(self) -> dict[str, str]:
        return bearer(*self.root)

    def as_root(self, node: NodeProcess, method: str, path: str, **kwargs: Any) -> Resp:
        return call(node.url, method, path, headers=self.root_headers, **kwargs)
