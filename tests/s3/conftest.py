"""Real-client S3 suite wiring (issue 19): the ``s3`` marker, the clusters, the clients.

The suite needs tools from apt (s3cmd, rclone) and PyPI (awscli, boto3), so it runs only when
asked for, like the chaos suite: ``pytest -m s3`` or ``pytest tests/s3``. A plain ``pytest``
skips it.

``s3_site`` is one 3-node cluster per module and variant (N=3 R=2 W=2, auth on, S3 on every
node): "all-up", then "node3-killed" where node3 is SIGKILLed before the first scenario and
every client talks to node1 and node2 only. Clients upload through one node and read back
through another. ``DFSRING_S3_SUITE_ENDPOINT=http://host:port`` (with
``DFSRING_S3_SUITE_KEYS=access:secret``) points the suite at an existing S3 endpoint instead,
to debug a client invocation against a reference server; the node-killed variant is then
skipped.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dfsring.cli.certs import make_ca, make_node_cert
from dfsring.cli.launcher import LocalCluster, TlsFiles
from dfsring.testing.wait import wait_until
from tests.s3.clientkit import MIB, Clients, Target, make_file

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 50
_HERE = Path(__file__).resolve().parent
_LIVE: list[LocalCluster] = []  # clusters of the running module, for failure reports
ENDPOINT_ENV = "DFSRING_S3_SUITE_ENDPOINT"
BIG_MIB = int(os.environ.get("DFSRING_S3_SUITE_BIG_MIB", "100"))
SIZES = {"0B": 0, "2KiB": 2048, "5MiB": 5 * MIB, f"{BIG_MIB}MiB": BIG_MIB * MIB}
"""The object sizes every client moves; the big one makes every client go multipart."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "s3: real S3 clients against a cluster (run with -m s3)")


def _asked_for(config: pytest.Config) -> bool:
    markexpr = config.getoption("markexpr", "") or ""
    words = markexpr.replace("(", " ").replace(")", " ").split()
    return ("s3" in words and "not s3" not in markexpr) or any(
        _HERE == Path(str(arg).split("::")[0]).resolve() or
        _HERE in Path(str(arg).split("::")[0]).resolve().parents for arg in config.args)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = _asked_for(config)
    skip = pytest.mark.skip(reason="S3 client suite: run it with -m s3 (or pytest tests/s3)")
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.s3)
            if not asked:
                item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    """Attach the node log tails of the module's cluster to a failed setup or call."""
    report: pytest.TestReport = yield
    if report.failed and report.when in ("setup", "call"):
        for cluster in _LIVE:
            for node in cluster:
                title = f"dfsring {node.node_id} log, last {LOG_TAIL_LINES} lines"
                report.sections.append((title, node.log_tail(LOG_TAIL_LINES)))
    return report


def _listening(url: str) -> bool:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def s3_cluster(base: Path, *, tls: TlsFiles | None = None) -> Iterator[LocalCluster]:
    """A started 3-node cluster (N=3 R=2 W=2, auth on) with S3 on every node, stopped on
    exit whatever happened; its logs reported with any failure meanwhile."""
    cluster = LocalCluster(3, base, n=3, r=2, w=2, s3=True, tls=tls)
    _LIVE.append(cluster)
    try:
        cluster.start(START_TIMEOUT_S)
        wait_until(lambda: all(_listening(u) for u in cluster.s3_urls), timeout=30,
                   message="every node's S3 port accepting connections (is the S3 listener "
                   "wired in dfsring/node.py?)")
        yield cluster
    finally:
        _LIVE.remove(cluster)
        cluster.stop()


def tls_files(pki: Path) -> TlsFiles:
    """A CA and one certificate for 127.0.0.1/localhost that every node serves (and peers
    present to each other)."""
    make_ca(pki / "ca")
    paths = make_node_cert(pki / "ca", "node", [HOST], ["localhost"], pki / "certs")
    return TlsFiles(paths.cert, paths.key, paths.ca)


@dataclass
class Site:
    """Where a variant's clients go: `up` uploads, `down` reads back (another node)."""

    variant: str
    up: Clients
    down: Clients
    cluster: LocalCluster | None
    work: Path

    def bucket(self, what: str) -> str:
        """A fresh bucket name for one scenario (unique even on a shared dev endpoint)."""
        return f"{what}-{self.variant}-{secrets.token_hex(3)}"[:63]


def _dev_target() -> Target | None:
    url = os.environ.get(ENDPOINT_ENV)
    if not url:
        return None
    access, _, secret = os.environ.get("DFSRING_S3_SUITE_KEYS", "testing:testing").partition(":")
    return Target(url, access, secret)


@pytest.fixture(scope="module", params=["all-up", "node3-killed"])
def s3_site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Site]:
    variant: str = request.param
    work = tmp_path_factory.mktemp(f"s3-{variant}")
    dev = _dev_target()
    if dev is not None:
        if variant != "all-up":
            pytest.skip(f"{ENDPOINT_ENV} is set: no cluster whose node could be killed")
        yield Site(variant, Clients(dev, work / "up"), Clients(dev, work / "down"), None, work)
        return
    with s3_cluster(work / "cluster") as cluster:
        if variant == "node3-killed":
            code = cluster.node("node3").kill()
            assert code is not None and code < 0, f"node3 was killed by a signal (exit {code})"
        creds = cluster.credentials
        up, down = (Target(cluster.node(n).s3_url or "", creds.access_key, creds.secret_key)
                    for n in ("node1", "node2"))
        yield Site(variant, Clients(up, work / "up"), Clients(down, work / "down"), cluster,
                   work)


@dataclass(frozen=True)
class Payload:
    name: str
    path: Path
    size: int
    sha256: str


@pytest.fixture(scope="session")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Payload]:
    """The files every client uploads, one per size in SIZES, made once per session."""
    base = tmp_path_factory.mktemp("payloads")
    out: dict[str, Payload] = {}
    for seed, (name, size) in enumerate(SIZES.items()):
        path = base / f"payload-{name}"
        out[name] = Payload(name, path, size, make_file(path, size, seed))
    return out
