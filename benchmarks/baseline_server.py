"""The baseline every KV figure is divided by: a minimal aiohttp + uvloop server over a dict.

    python benchmarks/baseline_server.py --port 18000 --prefill 100000 --value-size 1024

Same URL shape as a node (``PUT``/``GET /v1/kv/{bucket}/{key}``: 204, 200 with the body, 404),
same stack (aiohttp on uvloop, one process, no access log), none of the work a node does:
no replication, no version vectors, no storage, no fsync. So "0.35x the baseline" reads as
"the node keeps 35 % of what this Python HTTP stack can do on this machine", which stays
meaningful on a faster or a slower machine, where absolute ops/s do not.

``--prefill N`` stores the keys ``{read_prefix}00000000`` .. before listening, the same
names the suite preloads into the nodes, so GETs hit. Standalone on purpose (aiohttp and
uvloop only): it is started by file path, so it runs whether or not ``benchmarks`` is
importable as a package. ``GET /health`` answers ``{"status": "ok"}`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import uvloop
from aiohttp import web

STORE = web.AppKey("store", dict)


async def put_value(request: web.Request) -> web.Response:
    key = (request.match_info["bucket"], request.match_info["key"])
    request.app[STORE][key] = (await request.read(), request.content_type)
    return web.Response(status=204)


async def get_value(request: web.Request) -> web.Response:
    found = request.app[STORE].get((request.match_info["bucket"], request.match_info["key"]))
    if found is None:
        return web.Response(status=404)
    return web.Response(body=found[0], content_type=found[1])


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node_id": "baseline", "pid": os.getpid()})


def build_app(args: argparse.Namespace) -> web.Application:
    app = web.Application(client_max_size=args.max_value_size)
    value = os.urandom(args.value_size)
    app[STORE] = {(args.bucket, f"{args.read_prefix}{i:08d}"): (value, "application/octet-stream")
                  for i in range(args.prefill)}
    app.router.add_put("/v1/kv/{bucket}/{key}", put_value)
    app.router.add_get("/v1/kv/{bucket}/{key}", get_value)
    app.router.add_get("/health", health)
    return app


async def serve(args: argparse.Namespace) -> None:
    runner = web.AppRunner(build_app(args), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--prefill", type=int, default=0, help="keys stored before listening (0)")
    p.add_argument("--value-size", type=int, default=1024, help="bytes per prefilled value")
    p.add_argument("--bucket", default="bench")
    p.add_argument("--read-prefix", default="r", help="prefix of the prefilled key names")
    p.add_argument("--max-value-size", type=int, default=1 << 20, help="as a node's default")
    uvloop.run(serve(p.parse_args(argv)))


if __name__ == "__main__":
    main()
