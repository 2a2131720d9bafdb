"""Registers the console's routes on the client app (dfsring.node.build_app calls ``setup``)."""

from __future__ import annotations

from aiohttp import web

from dfsring.http.console import chunkmap, dashboard, openapi, ui
from dfsring.http.console.sampler import ByteCounter, bytes_middleware
from dfsring.http.console.sessions import SessionTable

__all__ = ["ByteCounter", "SessionTable", "bytes_middleware", "setup"]


def setup(app: web.Application, counter: ByteCounter, sessions: SessionTable) -> None:
    dashboard.setup(app, counter)
    openapi.setup(app)
    ui.setup(app, sessions)
    chunkmap.setup(app)
