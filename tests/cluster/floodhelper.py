"""Holds idle TCP connections to a node for the connection-flood test, in a process of its own
so that the flood is not bounded by the test process's descriptor limit.

`python -m tests.cluster.floodhelper PORT FIRST COUNT PER_SOURCE`: opens COUNT connections that
never send, from source addresses 127.0.x.y numbered from FIRST (PER_SOURCE connections each),
prints "opened N" (N < COUNT if it hit a limit or DEADLINE_S: it says why on stderr), then
holds them until its stdin closes.
"""

from __future__ import annotations

import resource
import socket
import sys
import time

BIND_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # port chosen at connect: fast
DEADLINE_S = 150.0  # stop opening after this long and report what is open


def source(index: int) -> str:
    return f"127.0.{index // 250}.{2 + index % 250}"


def main(port: int, first: int, count: int, per_source: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks: list[socket.socket] = []
    deadline = time.monotonic() + DEADLINE_S
    for i in range(count):
        if time.monotonic() > deadline:
            print(f"floodhelper: stopped at {i}: deadline", file=sys.stderr)
            break
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            print(f"floodhelper: stopped at {i}: {exc}", file=sys.stderr)
            break
        socks.append(s)
        s.setsockopt(socket.IPPROTO_IP, BIND_NO_PORT, 1)
        s.settimeout(10)
        s.bind((source(first + i // per_source), 0))
        try:
            s.connect(("127.0.0.1", port))
        except OSError as exc:
            print(f"floodhelper: stopped at {i}: {exc}", file=sys.stderr)
            break
    print(f"opened {len(socks)}", flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:5]))
