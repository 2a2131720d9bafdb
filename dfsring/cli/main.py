"""The ``dfsring`` command: one subcommand per function, registered in SUBCOMMANDS.

Adding a subcommand (put/get/del/ls/status/bench...) means writing ``_add_<name>(subparsers)``,
which declares its arguments and sets ``run=<function(args) -> int>``, and appending it to
SUBCOMMANDS. ``main`` returns the exit status instead of exiting so tests can call it directly.

Exit status: 0 success, 1 failure at run time (a node would not start or died, a node answered
with an error or could not be reached), 2 bad usage (bad arguments, port in use), 3 `get` found
siblings, 4 `get` found nothing; always with one clear line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

import dfsring
from dfsring import __version__
from dfsring.cli import args as cli_args
from dfsring.cli import files as cli_files
from dfsring.cli.access import ACCESS_SUBCOMMANDS
from dfsring.cli.admin import ADMIN_SUBCOMMANDS
from dfsring.cli.args import add_node_options, positive, seconds, tls_context
from dfsring.cli.certs import CertsError, add_certs
from dfsring.cli.clusterpki import PKI_DIR, ClusterPki, ensure_cluster_pki
from dfsring.cli.launcher import (
    LauncherError,
    LocalCluster,
    NodeProcess,
    TlsFiles,
    new_root_credentials,
    port_in_use,
)
from dfsring.cli.tlsreload import TLS_SUBCOMMANDS
from dfsring.client import DEFAULT_URL, DfsClientError, GetResult, SyncDfsClient, credentials
from dfsring.client.credentials import Credentials
from dfsring.transport.tls import client_context_for

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "dfsring"


class UsageError(Exception):
    """Bad arguments; printed as one line and exit status 2 (argparse's own convention)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting from deep inside."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


# --- dfsring cluster ---------------------------------------------------------------------------


class _StopRequested(Exception):
    """Raised from the SIGINT/SIGTERM handler to leave whatever the main thread is blocked in."""


def _add_cluster(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "cluster",
        help="run a local cluster of real node processes in the foreground",
        description="Start NODES node processes on consecutive ports, wait until all are ready, "
        "and keep them running until Ctrl-C or SIGTERM, which stops them all. Data dirs and logs "
        "live under --data-dir and are kept between runs.",
    )
    p.add_argument("--nodes", type=positive, default=3, help="number of nodes (default 3)")
    p.add_argument("--base-port", type=cli_args.port, default=7070, help="first node's port (7070)")
    p.add_argument("--peer-base-port", type=cli_args.port, default=None,
                   help="first node's peer port (node-to-node listener; default --base-port + 100)")
    p.add_argument("--s3-base-port", type=cli_args.port, default=None,
                   help="first node's S3 port (default --base-port + 200; 0: no S3 listener)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("dfsring-data"),
        help="directory holding node{i}/ data and node{i}.log (./dfsring-data)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--n", type=positive, default=3, help="replicas per key (3)")
    p.add_argument("--r", type=positive, default=2, help="replies needed for a read (2)")
    p.add_argument("--w", type=positive, default=2, help="acks needed for a write (2)")
    p.add_argument("--log-json", action="store_true", help="nodes log JSON lines")
    p.add_argument("--tls", action="store_true",
                   help="HTTPS for clients and mutual TLS between nodes, with a dev CA made "
                   "once in DATA_DIR/pki/ca and a certificate per node, reused by later runs "
                   "(docs/TLS.md)")
    p.add_argument("--seeds", default="",
                   help="HOST:PORT,...: client API address of nodes of a running cluster: join "
                   "these nodes to it instead of founding a new one (raise its size); the root "
                   "credentials are found as the CLI finds them, the secret in "
                   "DFSRING_CLUSTER_SECRET")
    p.add_argument(
        "--start-timeout",
        type=seconds,
        default=30.0,
        help="seconds to wait for every node to be ready (30)",
    )
    p.add_argument(
        "--stop-timeout",
        type=seconds,
        default=10.0,
        help="seconds to wait for a graceful stop before SIGKILL (10)",
    )
    p.set_defaults(run=run_cluster)


def _check_cluster_args(args: argparse.Namespace) -> None:
    if args.host in ("0.0.0.0", "::", ""):
        raise UsageError(f"{PROG} cluster: --host must be one address peers can reach")
    last = args.base_port + args.nodes - 1
    if args.peer_base_port is None:
        args.peer_base_port = args.base_port + 100
    peer_last = args.peer_base_port + args.nodes - 1
    if max(last, peer_last) > 65535:
        raise UsageError(f"{PROG} cluster: ports {args.base_port}..{last} or peer ports "
                         f"{args.peer_base_port}..{peer_last} run past 65535")
    for knob in ("r", "w"):
        if getattr(args, knob) > args.n:
            raise UsageError(f"{PROG} cluster: --{knob} {getattr(args, knob)} exceeds --n {args.n}")
    peers = range(args.peer_base_port, peer_last + 1)
    if set(peers) & set(range(args.base_port, last + 1)):
        raise UsageError(f"{PROG} cluster: peer ports {args.peer_base_port}..{peer_last} overlap "
                         f"ports {args.base_port}..{last}")
    s3 = _check_s3_ports(args, set(range(args.base_port, last + 1)) | set(peers))
    for port in (*range(args.base_port, last + 1), *peers, *s3):
        if port_in_use(port, args.host):
            raise UsageError(f"{PROG} cluster: port {port} on {args.host} is already in use")


def _check_s3_ports(args: argparse.Namespace, taken: set[int]) -> range:
    """The nodes' S3 ports (empty with --s3-base-port 0), checked against the others."""
    if args.s3_base_port is None:
        args.s3_base_port = args.base_port + 200
    if args.s3_base_port == 0:
        return range(0)
    ports = range(args.s3_base_port, args.s3_base_port + args.nodes)
    if ports[-1] > 65535 or taken & set(ports):
        raise UsageError(f"{PROG} cluster: S3 ports {ports[0]}..{ports[-1]} run past 65535 or "
                         "overlap the client or peer ports (--s3-base-port)")
    return ports


def _s3_args(args: argparse.Namespace, per_node: Mapping[int, Sequence[str]]
             ) -> dict[int, tuple[str, ...]]:
    """Each node's extra flags (1-based) with its --s3-port added."""
    extra = {i: tuple(per_node.get(i, ())) for i in range(1, args.nodes + 1)}
    if args.s3_base_port:
        for i in extra:
            extra[i] += ("--s3-port", str(args.s3_base_port + i - 1))
    return extra


def s3_hint(args: argparse.Namespace, cluster: LocalCluster, root: Credentials,
            tls: bool) -> list[str]:
    """The S3 endpoints and a command ready to paste (docs/S3.md)."""
    if not args.s3_base_port:
        return []
    scheme = "https" if tls else "http"
    urls = [f"{scheme}://{_host_port(args.host, args.s3_base_port + i)}"
            for i in range(len(cluster))]
    ca = f" --ca-bundle {args.data_dir.resolve() / PKI_DIR / 'ca' / 'ca.pem'}" if tls else ""
    creds = shlex.quote(str(args.data_dir.resolve() / credentials.FILE_NAME))
    read_secret = ("python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))"
                   f"[\"secret_key\"])' {creds}")  # the secret is never printed
    return [f"S3 endpoints (region us-east-1, path style): {' '.join(urls)}; with the root "
            "credentials:",
            f"  export AWS_ACCESS_KEY_ID={root.access_key} "
            f'AWS_SECRET_ACCESS_KEY="$({read_secret})"',
            f"  aws --region us-east-1{ca} --endpoint-url {urls[0]} s3 ls"]


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    _ignore_stop_signals()
    raise _StopRequested(signal.Signals(signum).name)


def _ignore_stop_signals() -> None:
    """Once stopping, further Ctrl-Cs must not interrupt the shutdown they asked for (which is
    bounded by --stop-timeout and ends in SIGKILL anyway)."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """While active, the first SIGINT/SIGTERM raises _StopRequested in the main thread."""
    previous = {sig: signal.signal(sig, _raise_stop) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _wait_for_exit(cluster: LocalCluster) -> NodeProcess:
    """Block until a node exits and return it.

    waitid(WNOWAIT) sleeps in the kernel until a child exits without reaping it, so Popen still
    gets the real exit code; a signal interrupts it (the handler raises). Children that are not
    ours cannot exist here, but would be reaped rather than spun on.
    """
    while True:
        if dead := cluster.exited():
            return dead[0]
        if not hasattr(os, "waitid"):  # not Linux: poll, sleeping in an interruptible wait
            time.sleep(0.5)
            continue
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # every child already reaped: exited() sees it next turn
            continue
        if info is not None and info.si_pid not in {node.pid for node in cluster}:
            os.waitpid(info.si_pid, 0)


def _print_ready(cluster: LocalCluster, args: argparse.Namespace,
                 pki: ClusterPki | None, root: Credentials) -> None:
    for node in cluster:
        print(f"{node.node_id}  {node.url}  peer {node.peer_address}  pid {node.pid}  "
              f"log {node.log_path}")
    if pki is not None:
        for line in ca_hint(args.data_dir, pki):
            print(line)
    tls = " --tls (DIR/pki/ca: a copy of this CA)" if pki is not None else ""
    print(f"cluster secret in {args.data_dir / SECRET_FILE} (add nodes: dfsring cluster "
          f"--data-dir DIR --base-port PORT --seeds {cluster.nodes[0].address}{tls} with "
          "DFSRING_CLUSTER_SECRET set to it)")
    for line in credentials_hint(args.data_dir):
        print(line)
    for line in s3_hint(args, cluster, root, pki is not None):
        print(line)
    print(
        f"{len(cluster)} nodes ready (N={args.n} R={args.r} W={args.w}); Ctrl-C stops them all",
        flush=True,
    )


def _report_death(node: NodeProcess) -> None:
    print(
        f"{PROG} cluster: {node.describe_failure(f'exited unexpectedly ({node.returncode})')}",
        file=sys.stderr,
        flush=True,
    )


def _stop(cluster: LocalCluster, timeout: float) -> None:
    _ignore_stop_signals()
    print("stopping all nodes...", file=sys.stderr, flush=True)
    codes = cluster.stop(timeout)
    summary = ", ".join(f"{node_id}={code}" for node_id, code in codes.items())
    print(f"stopped ({summary})", file=sys.stderr, flush=True)


SECRET_FILE = "cluster-secret"
_OLD_SECRET_FILE = "cluster.secret"  # its name before issue 18; still read, never written


def _cluster_secret(data_dir: Path) -> str:
    """DFSRING_CLUSTER_SECRET if set, else the one kept under the data dir (made once): the
    nodes' internal calls need it, and more nodes joining later need the same one."""
    from_env = os.environ.get("DFSRING_CLUSTER_SECRET", "")
    path = data_dir / SECRET_FILE
    if from_env:
        return from_env
    data_dir.mkdir(parents=True, exist_ok=True)
    for existing in (path, data_dir / _OLD_SECRET_FILE):
        with contextlib.suppress(FileNotFoundError):
            return existing.read_text().strip()
    secret = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return secret


def _root_credentials(data_dir: Path, joining: bool) -> Credentials:
    """The root key of the cluster, the same on every node, kept in <data-dir>/credentials
    (0600) where the CLI finds it. Made once for a new cluster; nodes joining a running one
    (--seeds) take that cluster's, found as the CLI finds them (DFSRING_ACCESS_KEY/
    DFSRING_SECRET_KEY, the data dir, ./dfsring-data, ~/.config/dfsring)."""
    env = os.environ
    if env.get("DFSRING_ADMIN_ACCESS_KEY") and env.get("DFSRING_ADMIN_SECRET_KEY"):
        found: Credentials | None = Credentials(env["DFSRING_ADMIN_ACCESS_KEY"],
                                                env["DFSRING_ADMIN_SECRET_KEY"])
    else:
        found = credentials.discover(data_dir) if joining else _own_credentials(data_dir)
    if found is None:
        if joining:
            raise UsageError(f"{PROG} cluster: joining needs the cluster's root credentials: "
                             "set DFSRING_ACCESS_KEY and DFSRING_SECRET_KEY")
        found = new_root_credentials()
    path = data_dir / credentials.FILE_NAME
    if not path.is_file() or credentials.load_file(path) != found:
        credentials.write_file(path, found)
    return found


def _own_credentials(data_dir: Path) -> Credentials | None:
    path = data_dir / credentials.FILE_NAME
    return credentials.load_file(path) if path.is_file() else None


def credentials_hint(data_dir: Path) -> list[str]:
    """How the CLI finds the root credentials: by itself when the data dir is the default
    (from the directory that holds it), else through --data-dir's file or the environment."""
    path = data_dir.resolve() / credentials.FILE_NAME
    lines = [f"root credentials in {path} (0600; admin on the cluster)"]
    if data_dir.resolve() == credentials.DEFAULT_DATA_DIR.resolve():
        lines.append("the CLI and the Python client find them there when run from this "
                     "directory")
    else:
        lines.append(f"for the CLI from elsewhere: export {credentials.ENV_ACCESS} and "
                     f"{credentials.ENV_SECRET} to the access_key and secret_key in that file "
                     f"(or copy it to ~/.config/dfsring/credentials)")
    return lines


def ca_hint(data_dir: Path, pki: ClusterPki) -> list[str]:
    """Where the CA is and how clients find it (never a key's content)."""
    lines = [*pki.made, f"CA certificate {pki.ca.cert.resolve()} (its key stays beside it, "
             f"0600); node certificates in {pki.ca.cert.parent.parent.resolve() / 'nodes'}"]
    if data_dir.resolve() == credentials.DEFAULT_DATA_DIR.resolve():
        lines.append("the CLI and the Python client trust it for https:// URLs when run from "
                     "this directory")
    else:
        lines.append(f"for the CLI from elsewhere: --ca {pki.ca.cert.resolve()} or "
                     f"export {credentials.ENV_CA}={pki.ca.cert.resolve()}")
    return lines


def _cluster_tls(args: argparse.Namespace, node_ids: list[str]) -> ClusterPki | None:
    """The cluster's certificates with --tls (see dfsring.cli.clusterpki), else None."""
    if not args.tls:
        return None
    try:
        return ensure_cluster_pki(args.data_dir, node_ids, args.host)
    except (CertsError, OSError) as exc:
        raise UsageError(f"{PROG} cluster: certificates: {exc}") from exc


def _tls_files(pki: ClusterPki | None, node_ids: list[str]
               ) -> tuple[TlsFiles | None, dict[int, tuple[str, ...]]]:
    """The launcher's TLS (its probes present the first node's certificate) and each node's
    own --tls-cert/--tls-key (1-based position, as LocalCluster's node_args)."""
    if pki is None:
        return None, {}
    files = [TlsFiles(pki.nodes[n].cert, pki.nodes[n].key, pki.ca.cert) for n in node_ids]
    return files[0], {i + 1: f.args() for i, f in enumerate(files)}


def _join_ca(args: argparse.Namespace) -> Path:
    """Joining a running TLS cluster needs its CA: a new one would make these nodes
    strangers to it."""
    ca = args.data_dir / PKI_DIR / "ca" / "ca.pem"
    if not ca.is_file():
        raise UsageError(f"{PROG} cluster: joining with --tls needs the cluster's CA in "
                         f"{ca.parent} (copy ca.pem and ca.key from the cluster's data dir)")
    return ca


def _join_targets(seeds: list[str], creds: Credentials,
                  ca: Path | None = None) -> tuple[int, list[str]]:
    """The first free nodeN number in the cluster at the seeds (client API addresses), so
    joining ids are new, and its members' peer addresses, which the new nodes seed from.
    With `ca`, the seeds are asked over https:// and verified against it."""
    scheme, ctx = ("https", client_context_for(ca)) if ca is not None else ("http", None)
    for seed in seeds:
        try:
            members = NodeProcess.fetch_json(f"{scheme}://{seed}/v1/cluster/members",
                                             credentials=creds, tls=ctx)
        except (OSError, ValueError):
            continue
        numbers = [int(m["node_id"][4:]) for m in members
                   if m["node_id"].startswith("node") and m["node_id"][4:].isdigit()]
        return max(numbers, default=0) + 1, [str(m["address"]) for m in members]
    raise UsageError(f"{PROG} cluster: no seed answered ({', '.join(seeds)})")


def run_cluster(args: argparse.Namespace) -> int:
    """Run the cluster in the foreground: 0 after a requested stop, 1 if a node failed."""
    _check_cluster_args(args)
    seeds = [s.strip() for s in args.seeds.split(",") if s.strip()]
    try:
        root = _root_credentials(args.data_dir, joining=bool(seeds))
    except credentials.CredentialsError as exc:
        raise UsageError(f"{PROG} cluster: {exc}") from exc
    ca = _join_ca(args) if seeds and args.tls else None
    first_index, peer_seeds = _join_targets(seeds, root, ca) if seeds else (1, [])
    node_ids = [f"node{first_index + i}" for i in range(args.nodes)]
    pki = _cluster_tls(args, node_ids)
    tls, per_node = _tls_files(pki, node_ids)
    cluster = LocalCluster(
        args.nodes,
        args.data_dir,
        host=args.host,
        base_port=args.base_port,
        peer_base_port=args.peer_base_port,
        n=args.n,
        r=args.r,
        w=args.w,
        extra_args=("--log-json",) if args.log_json else (),
        seeds=peer_seeds or None,
        first_index=first_index,
        secret=_cluster_secret(args.data_dir),
        credentials=root,
        tls=tls,
        node_args=_s3_args(args, per_node),
    )
    with _stop_signals():
        try:
            cluster.start(args.start_timeout)
            _print_ready(cluster, args, pki, root)
            _report_death(_wait_for_exit(cluster))
            return 1
        except _StopRequested as stop:
            print(f"{stop} received", file=sys.stderr, flush=True)
            return 0
        except LauncherError as exc:
            print(f"{PROG} cluster: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            _stop(cluster, args.stop_timeout)


# --- dfsring put / get / del / ls ----------------------------------------------------------------
#
# Thin shells over dfsring.client.SyncDfsClient. Exit status: 0 done, 1 the node refused or could
# not be reached (one line: the problem's title, detail and request id), 2 bad usage, 3 `get` found
# siblings (printed to stderr with the context that resolves them), 4 `get`/`del` found no value.

EXIT_SIBLINGS = 3
EXIT_NOT_FOUND = 4
_KvRun = Callable[[argparse.Namespace, SyncDfsClient], int]


def _bucket_key(raw: str) -> tuple[str, str]:
    bucket, _, key = raw.partition("/")
    if not bucket or not key:
        raise argparse.ArgumentTypeError(f"{raw!r} is not BUCKET/KEY")
    return bucket, key


def _bucket_prefix(raw: str) -> tuple[str, str]:
    bucket, _, prefix = raw.partition("/")
    if not bucket:
        raise argparse.ArgumentTypeError(f"{raw!r} is not BUCKET[/PREFIX]")
    return bucket, prefix


def _add_kv_parser(
    subparsers: Subparsers, name: str, run: _KvRun, **kwargs: str
) -> argparse.ArgumentParser:
    """A subcommand with the options every key/value command shares, run through _kv_main."""
    p = subparsers.add_parser(name, **kwargs)
    default = os.environ.get("DFSRING_URL") or DEFAULT_URL
    add_node_options(p)
    p.set_defaults(run=lambda args: _kv_main(args, run, args.url or [default]))
    return p


def _kv_main(args: argparse.Namespace, run: _KvRun, urls: list[str]) -> int:
    """Run one key/value command; every failure becomes one line on stderr, never a trace."""
    try:
        with SyncDfsClient(urls, timeout=args.timeout, ssl=tls_context(args)) as client:
            return run(args, client)
    except DfsClientError as exc:
        return _fail(args, str(exc))
    except BrokenPipeError:  # `dfsring ls b | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except OSError as exc:  # reading -f FILE or writing -o FILE
        return _fail(args, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    except ValueError as exc:  # a URL or name aiohttp/yarl cannot use
        return _fail(args, str(exc))
    except KeyboardInterrupt:
        return _fail(args, "interrupted", 130)


def _fail(args: argparse.Namespace, message: str, status: int = 1) -> int:
    print(f"{PROG} {args.command}: {message}", file=sys.stderr, flush=True)
    return status


def _add_put(subparsers: Subparsers) -> None:
    p = _add_kv_parser(
        subparsers,
        "put",
        _run_put,
        help="store a value",
        description="Store VALUE, a file (-f) or stdin (-) under BUCKET/KEY. Without --context "
        "the write is concurrent with what is stored (it may become a sibling); with the "
        "context of a read it replaces what that read saw. Prints the new context to stderr "
        "(stdout with --show-context).",
    )
    p.add_argument("target", type=_bucket_key, metavar="BUCKET/KEY")
    p.add_argument("value", nargs="?", metavar="VALUE", help="the value, or - to read stdin")
    p.add_argument("-f", "--file", type=Path, help="read the value from FILE")
    p.add_argument("--context", help="context of the read this write replaces")
    p.add_argument("--content-type", default="application/octet-stream", help="stored type")
    p.add_argument("--w", help="acks to wait for: a number, one, quorum or all")
    p.add_argument("--show-context", action="store_true", help="print the context on stdout")


def _put_value(args: argparse.Namespace) -> bytes:
    if (args.value is None) == (args.file is None):
        raise UsageError(f"{PROG} put: give exactly one of VALUE, -f FILE or - (stdin)")
    if args.file is not None:
        return bytes(args.file.read_bytes())
    if args.value == "-":
        return sys.stdin.buffer.read()
    return str(args.value).encode()


def _run_put(args: argparse.Namespace, client: SyncDfsClient) -> int:
    bucket, key = args.target
    result = client.put(
        bucket,
        key,
        _put_value(args),
        context=args.context,
        content_type=args.content_type,
        w=args.w,
    )
    print(result.context, file=sys.stdout if args.show_context else sys.stderr)
    return 0


def _add_get(subparsers: Subparsers) -> None:
    p = _add_kv_parser(
        subparsers,
        "get",
        _run_get,
        help="read a value",
        description="Write the value of BUCKET/KEY to stdout (or -o FILE). Exit 4 if there is "
        "none; exit 3 if there are concurrent values (siblings): they and the context that "
        "resolves them go to stderr.",
    )
    p.add_argument("target", type=_bucket_key, metavar="BUCKET/KEY")
    p.add_argument("-o", "--output", type=Path, help="write the value to FILE")
    p.add_argument("--r", help="replies to wait for: a number, one, quorum or all")
    p.add_argument("--show-context", action="store_true", help="print the context on stderr")


def _run_get(args: argparse.Namespace, client: SyncDfsClient) -> int:
    bucket, key = args.target
    found = client.get(bucket, key, r=args.r)
    if found is None:
        return _fail(args, f"{bucket}/{key}: not found", EXIT_NOT_FOUND)
    if found.has_siblings:
        _print_siblings(args, found)
        return EXIT_SIBLINGS
    if args.output is not None:
        args.output.write_bytes(found.value)
    else:
        sys.stdout.buffer.write(found.value)
        sys.stdout.flush()
    if args.show_context:
        print(f"context: {found.context}", file=sys.stderr)
    return 0


def _print_siblings(args: argparse.Namespace, found: GetResult) -> None:
    bucket, key = args.target
    err = sys.stderr
    print(f"{PROG} get: {bucket}/{key} has {len(found.values)} concurrent values", file=err)
    for number, sibling in enumerate(found.values, 1):
        when = sibling.modified.isoformat() if sibling.modified else "?"
        text = sibling.value.decode("utf-8", "backslashreplace")
        print(f"sibling {number} ({sibling.content_type}, {when}): {text}", file=err)
    print(f"context: {found.context}", file=err)
    print(f"resolve with: {PROG} put {bucket}/{key} VALUE --context {found.context}", file=err)


def _add_del(subparsers: Subparsers) -> None:
    p = _add_kv_parser(
        subparsers,
        "del",
        _run_del,
        help="delete a value",
        description="Delete BUCKET/KEY. Without --context it deletes the value there now (read "
        "first, so that nothing to delete is reported with exit 4); with --context, exactly "
        "the versions that context saw.",
    )
    p.add_argument("target", type=_bucket_key, metavar="BUCKET/KEY")
    p.add_argument("--context", help="context of the read this delete supersedes")
    p.add_argument("--w", help="acks to wait for: a number, one, quorum or all")


def _run_del(args: argparse.Namespace, client: SyncDfsClient) -> int:
    bucket, key = args.target
    context = args.context
    if context is None:
        found = client.get(bucket, key)
        if found is None:
            return _fail(args, f"{bucket}/{key}: not found", EXIT_NOT_FOUND)
        context = found.context
    client.delete(bucket, key, context=context, w=args.w)
    return 0


def _add_ls(subparsers: Subparsers) -> None:
    p = _add_kv_parser(
        subparsers,
        "ls",
        _run_ls,
        help="list keys (or files, with --files)",
        description="Print the live keys of BUCKET starting with PREFIX, one per line, in byte "
        "order; with --files, the files of BUCKET (the files API) instead.",
    )
    p.add_argument("target", type=_bucket_prefix, metavar="BUCKET[/PREFIX]")
    p.add_argument("--limit", type=positive, default=None, help="print at most N keys")
    cli_files.add_ls_options(p)  # --files: the files of BUCKET instead (dfsring.cli.files)
    list_keys = p.get_default("run")
    p.set_defaults(run=lambda args: cli_files.run_ls_files(args) if args.files
                   else list_keys(args))


def _run_ls(args: argparse.Namespace, client: SyncDfsClient) -> int:
    bucket, prefix = args.target
    for key in client.list_keys(bucket, prefix, max_keys=args.limit):
        print(key)
    return 0


# --- dfsring bench -------------------------------------------------------------------------------


def _add_bench(subparsers: Subparsers) -> None:
    """Every argument goes to the suite untouched (prefix_chars no option can start with, so
    even --help reaches it): the suite owns its options, in one place (benchmarks.suite)."""
    p = subparsers.add_parser(
        "bench", add_help=False, prefix_chars="\x00",
        help="run the benchmark suite (from a source checkout; --help for its options)",
        description="The same as python -m benchmarks: see docs/PERFORMANCE.md.")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="OPTIONS")
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """Run benchmarks.suite.main. The suite lives next to the package in a checkout and is not
    installed with it (pyproject packages dfsring only), so it is found through the checkout
    dfsring was imported from (an editable install); from a wheel there is none to find."""
    root = Path(dfsring.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / "benchmarks" / "suite.py").is_file():
        print(f"{PROG} bench: the benchmark suite is not part of the installed package; run it "
              "from a source checkout (git clone, pip install -e ., then dfsring bench or "
              "python -m benchmarks)", file=sys.stderr)
        return 1
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    suite = importlib.import_module("benchmarks.suite")
    status: int = suite.main(args.bench_args, prog=f"{PROG} bench")
    return status


# --- wiring --------------------------------------------------------------------------------------

SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_cluster,
    _add_put,
    _add_get,
    _add_del,
    _add_ls,
    *ADMIN_SUBCOMMANDS,
    *ACCESS_SUBCOMMANDS,
    *TLS_SUBCOMMANDS,
    *cli_files.FILES_SUBCOMMANDS,
    _add_bench,
    add_certs,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="dfsring: a Dynamo-style replicated key/value store.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dfsring`` console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args)
    except UsageError as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit from inside argparse
        return exc.code if isinstance(exc.code, int) else 0
    return status


if __name__ == "__main__":
    sys.exit(main())
