"""``python -m dfsring.cli.healthcheck``: exit 0 when this node's ``/health`` says "ok".

The container image's HEALTHCHECK (Dockerfile) and Compose run it inside the node's own
container, so it reads the node's own settings from the same ``DFSRING_*`` environment the
node does: the client port (``DFSRING_PORT``, default 7070) and, when ``DFSRING_TLS_CERT`` is
set, HTTPS (verified against ``DFSRING_TLS_CA`` when given; the probe dials loopback, where
the certificate's names cannot match, so host names are not checked). A node that is joining
or stopping answers 503 and fails the check, as it should: it cannot serve yet.

Standard library only and one bounded request (``--timeout``, 3 s), so a wedged node fails the
check instead of hanging it. Exit codes: 0 healthy, 1 not (the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

DEFAULT_PORT = 7070


def health_url(env: Mapping[str, str]) -> str:
    """The loopback /health URL of the node configured by `env`."""
    scheme = "https" if env.get("DFSRING_TLS_CERT") else "http"
    port = int(env.get("DFSRING_PORT") or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise ValueError(f"DFSRING_PORT {port} is not a TCP port")
    return f"{scheme}://127.0.0.1:{port}/health"


def _context(env: Mapping[str, str]) -> ssl.SSLContext | None:
    if not env.get("DFSRING_TLS_CERT"):
        return None
    ca = env.get("DFSRING_TLS_CA")
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    ctx.check_hostname = False
    if not ca:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check(env: Mapping[str, str], timeout: float) -> str | None:
    """None when healthy, else why not."""
    try:
        url = health_url(env)
    except ValueError as exc:
        return str(exc)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=_context(env)))
    try:
        with opener.open(url, timeout=timeout) as resp:
            doc = json.loads(resp.read(65536))
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    status = doc.get("status") if isinstance(doc, dict) else None
    return None if status == "ok" else f"{url}: status {status!r}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dfsring.cli.healthcheck",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    problem = check(os.environ, args.timeout)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
