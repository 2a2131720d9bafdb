"""One dfsring node: `python -m dfsring.node --data-dir DIR ...` (CONTRACT.md).

Wires the layers together: data dir and engine, local store, coordinator, HTTP edge. Shutdown
on SIGTERM/SIGINT is ordered so nothing acknowledged is lost: report "stopping" on /health,
stop accepting connections, let in-flight requests finish (bounded), then close the engine,
which commits and fsyncs every queued write before it returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence

import uvloop
from aiohttp import web

from dfsring import __version__
from dfsring.config import ConfigError, NodeConfig, load_config
from dfsring.coordinator import LocalCoordinator
from dfsring.datadir import DataDir, DataDirError, open_data_dir
from dfsring.http import kv_api, node_api
from dfsring.http.appkeys import CONFIG, COORDINATOR, METRICS, STATE, STORE, NodeState
from dfsring.http.middleware import make_middleware
from dfsring.http.server import ProblemAppRunner
from dfsring.localstore import TABLES, LocalStore
from dfsring.logs import setup_logging
from dfsring.metrics import NodeMetrics
from dfsring.storage import LmdbEngine

log = logging.getLogger("dfsring.node")
SHUTDOWN_GRACE_S = 3.0
MAX_HEADER_FIELD = 8190
MAX_HEADERS = 100


def build_app(cfg: NodeConfig, store: LocalStore, metrics: NodeMetrics,
              state: NodeState) -> web.Application:
    app = web.Application(middlewares=[make_middleware(metrics)],
                          client_max_size=cfg.max_value_size,
                          handler_args={"max_field_size": MAX_HEADER_FIELD,
                                        "max_headers": MAX_HEADERS})
    app[CONFIG] = cfg
    app[STORE] = store
    app[METRICS] = metrics
    app[STATE] = state
    app[COORDINATOR] = LocalCoordinator(store, metrics)
    kv_api.setup(app)
    node_api.setup(app)
    return app


async def serve(cfg: NodeConfig, data_dir: DataDir) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = LmdbEngine(data_dir.db_path, TABLES, durable=cfg.durable)
    try:
        store = LocalStore(engine, data_dir.node_id, cfg.partition_bits)
        await store.open()
        metrics = NodeMetrics()
        metrics.bind_store(lambda: store.stats.keys, lambda: store.stats.bytes)
        state = NodeState(node_id=data_dir.node_id, started_at=time.monotonic())
        app = build_app(cfg, store, metrics, state)
        runner = ProblemAppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True).start()
        except OSError as exc:
            await runner.cleanup()
            print(f"dfsring: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}",
                  file=sys.stderr)
            return 2
        log.info("node ready", extra={"fields": {
            "node_id": state.node_id, "listen": f"{cfg.host}:{cfg.port}",
            "advertise": cfg.advertise, "durability": cfg.durability, "version": __version__}})
        await stop.wait()
        state.stopping = True
        log.info("stopping: draining requests", extra={"fields": {"node_id": state.node_id}})
        await runner.cleanup()
    finally:
        await engine.close()
    log.info("stopped", extra={"fields": {"node_id": data_dir.node_id}})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = load_config(argv)
    except ConfigError as exc:
        print(f"dfsring: {exc}", file=sys.stderr)
        return 2
    setup_logging(json_lines=cfg.log_json, level=cfg.log_level)
    try:
        data_dir = open_data_dir(cfg.data_dir, cfg.node_id)
    except DataDirError as exc:
        print(f"dfsring: {exc}", file=sys.stderr)
        return 3
    try:
        return uvloop.run(serve(cfg, data_dir))
    finally:
        data_dir.release()


if __name__ == "__main__":
    sys.exit(main())
