"""Helpers for the access tests over real node processes: a LocalCluster whose nodes hold
root credentials (through the environment, as operators give them), and a plain HTTP call
that shows every answer, refusals included.

In this branch LocalCluster does not send credentials yet (the listeners branch adds them),
so AuthCluster polls the ring with the root credentials itself."""

from __future__ import annotations

import http.client
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
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
    def __init__(self, size: int, base_dir: Path, **kwargs: Any) -> None:
        self.root = ("ROOTADMIN" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24))
        env = {"DFSRING_ADMIN_ACCESS_KEY": self.root[0],
               "DFSRING_ADMIN_SECRET_KEY": self.root[1], **kwargs.pop("node_env", {})}
        super().__init__(size, base_dir, node_env=env, **kwargs)

    @property
    def root_headers(self) -> dict[str, str]:
        return bearer(*self.root)

    def ring_views(self, nodes: Any = None) -> dict[str, Any]:
        views: dict[str, Any] = {}
        for node in nodes if nodes is not None else self.nodes:
            if node.running:
                try:
                    got = call(node.url, "GET", "/v1/cluster/ring", headers=self.root_headers,
                               timeout=2.0)
                    views[node.node_id] = got.doc if got.status == 200 else f"{got.status}"
                except (OSError, ValueError) as exc:
                    views[node.node_id] = f"{type(exc).__name__}: {exc}"
        return views

    def as_root(self, node: NodeProcess, method: str, path: str, **kwargs: Any) -> Resp:
        return call(node.url, method, path, headers=self.root_headers, **kwargs)
