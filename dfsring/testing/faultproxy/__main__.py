"""``python -m dfsring.testing.faultproxy --host 127.0.0.1 --port 8474``: serve until signalled.

Runs the stand-in standalone, for a test process (or a person with curl) that wants it out of
process like a real ``toxiproxy-server``. SIGINT and SIGTERM stop it cleanly: API first, then
every proxy and connection.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from dfsring.foundation.logs import setup_logging
from dfsring.testing.faultproxy.server import DEFAULT_HOST, DEFAULT_PORT, FaultProxyServer


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dfsring.testing.faultproxy",
        description="A Toxiproxy-compatible fault proxy (stand-in for toxiproxy-server).",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="API address (default %(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="API port, 0 for any free one (default %(default)s)",
    )
    parser.add_argument("--log-level", default="info", help="default %(default)s")
    parser.add_argument("--log-json", action="store_true", help="JSON lines on stderr")
    return parser.parse_args(argv)


async def serve(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with FaultProxyServer(host, port) as server:
        print(f"fault proxy API on {server.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    setup_logging(json_lines=args.log_json, level=args.log_level)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
