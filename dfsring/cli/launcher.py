"""Start and stop real node processes: the one place in dfsring that does it.

`dfsring cluster`, the pytest harness (tests/conftest.py), benchmarks and chaos tests all come
through here, so they all get the same guarantees:

- A node never outlives whoever started it. The child asks the kernel for SIGKILL when its
  parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``), so a crashed test run or a ``kill -9`` of
  the launcher leaves no stray node holding a port or a data dir. The kernel ties this to the
  *thread* that forked the child: start nodes from a long-lived thread (the main thread), not
  from a short-lived worker thread.
- We only ever signal processes we started, by the PID Popen gave us, never by name. Popen
  refuses to signal a child it has already reaped, so a recycled PID is never hit.
- A node's stdout and stderr are appended to its own log file (restarts append, with a marker
  line from the launcher), and a node that fails to become ready is reported with its exit code
  and the tail of that log, so a red CI run explains itself.

Errors raised here (launcher-side, not node errors, hence not in dfsring.foundation.errors):

    LauncherError
    ├── NodeNotReady    /health did not answer "ok" before the deadline, or the node died first
    └── NodeRunning     the operation needs a stopped node (start twice, wipe a live node)
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import dfsring
from dfsring.client.credentials import Credentials, auth_headers
from dfsring.transport.tls import client_context_for

NODE_MODULE = "dfsring.node"
LOG_MARKER = "# dfsring.cli.launcher:"
"""Prefix of the lines the launcher itself writes into a node's log (start and exit markers)."""

_PR_SET_PDEATHSIG = 1
_PROBE_TIMEOUT = 1.0  # one /health try; short, so a wedged node cannot eat the whole deadline
_POLL_INTERVAL = 0.05
_REAP_TIMEOUT = 10.0  # after SIGKILL; only a process stuck in the kernel takes longer
_TAIL_LINES = 30
_SOURCE_ROOT = Path(dfsring.__file__).resolve().parent.parent
# Proxies from the environment must never see loopback health probes.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LauncherError(Exception):
    """Base of the errors raised while starting or stopping node processes."""


class NodeNotReady(LauncherError):
    """A node did not become healthy in time; the message carries its exit code and log tail."""


class NodeRunning(LauncherError):
    """The operation needs the node stopped first."""


@dataclass(frozen=True)
class TlsFiles:
    """--tls-cert/--tls-key/--tls-ca for nodes (dfsring certs makes them). The launcher's own
    probes trust `ca` and present the same certificate, since a listener with --tls-ca asks
    every caller for one. `mutual=False`: no --tls-ca for the nodes (HTTPS for clients only),
    the probes still trusting `ca`."""

    cert: Path
    key: Path
    ca: Path | None = None
    mutual: bool = True

    def args(self) -> tuple[str, ...]:
        ca = ("--tls-ca", str(self.ca)) if self.ca is not None and self.mutual else ()
        return ("--tls-cert", str(self.cert), "--tls-key", str(self.key), *ca)

    def context(self) -> ssl.SSLContext:
        return client_context_for(self.ca, cert=self.cert, key=self.key)


def default_program() -> tuple[str, ...]:
    """The node command without its flags: this interpreter running ``dfsring.node``."""
    return (sys.executable, "-m", NODE_MODULE)


@dataclass(frozen=True)
class NodeSpec:
    """Everything needed to (re)start one node; immutable so a restart is the same node.

    ``port`` is the client API, ``peer_port`` the node-to-node listener (default: the node's
    own default, port + 100), ``s3_port`` the S3 listener (None: none, the node's default);
    ``args`` are extra flags appended after the ones derived from
    the fields (seeds, quorum knobs, --log-json...); ``env`` is laid over the launcher's
    environment; ``program`` replaces ``python -m dfsring.node`` (e.g. to run it under
    coverage).
    """

    index: int
    node_id: str
    host: str
    port: int
    data_dir: Path
    log_path: Path
    peer_port: int | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    program: tuple[str, ...] = field(default_factory=default_program)
    tls: TlsFiles | None = None  # https URL, probes verified with it (its args go in `args`)
    s3_port: int | None = None  # --s3-port; the S3 listener shares the client API's TLS

    @property
    def address(self) -> str:
        """``host:port`` of the client API (IPv6 hosts bracketed): what clients dial."""
        return _address(self.host, self.port)

    @property
    def peer_address(self) -> str:
        """``host:peer_port``, as peers, seeds lists and the members list name this node."""
        return _address(self.host, self.port + 100 if self.peer_port is None else self.peer_port)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def s3_url(self) -> str | None:
        """The S3 endpoint (http or https like `url`), None when the node has no S3 port."""
        if self.s3_port is None:
            return None
        return f"{'https' if self.tls else 'http'}://{_address(self.host, self.s3_port)}"

    def argv(self) -> list[str]:
        """The full command line; --node-id is always given so restarts keep the identity."""
        return [
            *self.program,
            *("--data-dir", str(self.data_dir), "--host", self.host, "--port", str(self.port)),
            *(() if self.peer_port is None else ("--peer-port", str(self.peer_port))),
            *(() if self.s3_port is None else ("--s3-port", str(self.s3_port))),
            *("--node-id", self.node_id),
            *self.args,
        ]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Resolved in the parent: the child between fork and exec should do as little as possible.
_PRCTL = _load_prctl()


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn asking for SIGKILL when the parent dies.

    The getppid() check closes the race where the parent died between fork and prctl: then the
    signal would never come, so the child leaves at once instead.
    """

    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The launcher's environment plus ``extra``, able to import dfsring from a source checkout.

    The checkout is put on PYTHONPATH only when it is one (it has a pyproject.toml), never a
    site-packages directory, which would then shadow the standard library.
    """
    env = {**os.environ, **extra}
    if (_SOURCE_ROOT / "pyproject.toml").is_file():
        paths = [str(_SOURCE_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def spawn(
    argv: Sequence[str], *, output: IO[bytes] | int, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a child the way every dfsring process is started: it dies with this process
    (PDEATHSIG), stdout and stderr go to ``output``, stdin is closed, and it runs in its own
    session so a terminal's Ctrl-C reaches only the launcher, which then stops it in order.

    The kernel sends the parent-death signal when the *thread* that forked exits, so spawning
    from a short-lived thread would kill the child with it: that is warned about.
    """
    if threading.current_thread() is not threading.main_thread():
        warnings.warn(
            f"spawning {argv[-1]!r}... from thread {threading.current_thread().name}: the child "
            "is SIGKILLed when that thread exits (PR_SET_PDEATHSIG)",
            RuntimeWarning,
            stacklevel=2,
        )
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=_child_env(env or {}),
        preexec_fn=_die_with_parent(os.getpid()),
        start_new_session=True,
    )


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - 256 * lines, 0))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


class NodeProcess:
    """One node process, started, probed and stopped by PID; restartable with the same spec."""

    def __init__(self, spec: NodeSpec, credentials: Credentials | None = None) -> None:
        """`credentials` authenticate the launcher's own calls (get_json); /health is public."""
        self.spec = spec
        self.credentials = credentials
        self._proc: subprocess.Popen[bytes] | None = None
        self._exit_logged = False
        self._term_sent = False

    def __repr__(self) -> str:
        state = "running" if self.running else f"exit={self.returncode}"
        return f"<NodeProcess {self.node_id} {self.address} pid={self.pid} {state}>"

    @property
    def node_id(self) -> str:
        return self.spec.node_id

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def address(self) -> str:
        """The client API's ``host:port``."""
        return self.spec.address

    @property
    def s3_url(self) -> str | None:
        """The node's S3 endpoint, None when it was started without --s3-port."""
        return self.spec.s3_url

    @property
    def peer_address(self) -> str:
        """The peer listener's ``host:port``: where peer messages (RPC_PATH) go."""
        return self.spec.peer_address

    @property
    def auth_headers(self) -> dict[str, str]:
        """The header that authenticates with this node's credentials (a fresh dict)."""
        return auth_headers(self.credentials)

    @property
    def log_path(self) -> Path:
        return self.spec.log_path

    @property
    def pid(self) -> int | None:
        """PID of the current (or last) process, None if never started."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit code of the last process (negative: killed by that signal); None while running."""
        return None if self._proc is None else self._proc.poll()

    def start(self) -> None:
        """Spawn the node; returns at once (see wait_ready). Refuses if it is already running."""
        if self.running:
            raise NodeRunning(f"{self.node_id} is already running (pid {self.pid})")
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = self.spec.argv()
        with self.spec.log_path.open("ab") as log:
            log.write(f"{LOG_MARKER} starting {self.node_id}: {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = spawn(argv, output=log, env=self.spec.env)
        self._exit_logged = self._term_sent = False

    def health(self, timeout: float = 2.0) -> dict[str, Any]:
        """One GET /health; raises OSError (incl. HTTP errors) or ValueError on a bad answer."""
        body = self.get_json("/health", timeout)
        if not isinstance(body, dict):
            raise ValueError(f"/health answered {body!r}, not a JSON object")
        return body

    def get_json(self, path: str, timeout: float = 2.0) -> Any:
        """One GET of a JSON document, with the node's credentials; raises OSError (incl.
        HTTP errors) or ValueError."""
        tls = self.spec.tls.context() if self.spec.tls else None
        return self.fetch_json(f"{self.url}{path}", timeout, self.credentials, tls)

    @staticmethod
    def fetch_json(url: str, timeout: float = 2.0, credentials: Credentials | None = None,
                   tls: ssl.SSLContext | None = None) -> Any:
        opener = _HTTP if tls is None else urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls))
        request = urllib.request.Request(url, headers=auth_headers(credentials))
        with opener.open(request, timeout=timeout) as resp:
            return json.loads(resp.read())

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """Poll /health until it answers status "ok"; return that answer.

        Fails fast if the process exits meanwhile. NodeNotReady names the node, its exit code
        (if it died) and the last lines of its log.
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            self._raise_if_exited()
            remaining = deadline - time.monotonic()
            health, last = self._probe(min(_PROBE_TIMEOUT, max(remaining, _POLL_INTERVAL)), last)
            if health is not None:
                return health
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NodeNotReady(self.describe_failure(f"not ready after {timeout:g}s: {last}"))
            time.sleep(min(_POLL_INTERVAL, remaining))

    def _probe(self, timeout: float, last: str) -> tuple[dict[str, Any] | None, str]:
        try:
            health = self.health(timeout)
        except (OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if health.get("status") == "ok":
            return health, last
        return None, f"/health says {health!r}"

    def _raise_if_exited(self) -> None:
        if self._proc is None:
            raise NodeNotReady(f"{self.node_id} was never started")
        code = self._proc.poll()
        if code is not None:
            raise NodeNotReady(self.describe_failure(f"exited with code {code} before ready"))

    def describe_failure(self, what: str, lines: int = _TAIL_LINES) -> str:
        """A multi-line report: which node, what happened, and the tail of its log."""
        head = (f"node {self.node_id} ({self.url}, peer {self.peer_address}, pid {self.pid}) "
                f"{what}")
        return f"{head}\n--- last {lines} lines of {self.log_path} ---\n{self.log_tail(lines)}"

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def terminate(self) -> None:
        """Ask for a graceful stop (SIGTERM) without waiting; a no-op if not running.

        Sent at most once per process: a node may restore the default disposition at the very
        end of its shutdown, and a second SIGTERM then would kill it mid-exit (status -15).
        """
        if self._proc is not None and not self._term_sent:
            self._term_sent = True
            self._proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; subprocess.TimeoutExpired if it does not."""
        if self._proc is None:
            raise NodeNotReady(f"{self.node_id} was never started")
        code = self._proc.wait(timeout)
        self._log_exit(code)
        return code

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code (None: never
        started). A node that stopped gracefully returns 0; one that had to be killed -9."""
        if self._proc is None:
            return None
        self.terminate()
        try:
            return self.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL and reap: the crash of a node, as a test wants it. None if never started."""
        if self._proc is None:
            return None
        self._proc.send_signal(signal.SIGKILL)
        return self.wait(_REAP_TIMEOUT)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop (gracefully, see stop) and start again with the same spec; does not wait_ready."""
        self.stop(timeout)
        self.start()

    def wipe(self) -> None:
        """Delete the node's data dir, as a disk replacement would; refused while running."""
        if self.running:
            raise NodeRunning(f"refusing to wipe {self.spec.data_dir}: {self.node_id} is running")
        if self.spec.data_dir.exists():
            shutil.rmtree(self.spec.data_dir)

    def _log_exit(self, code: int) -> None:
        if self._exit_logged:
            return
        self._exit_logged = True
        with contextlib.suppress(OSError), self.spec.log_path.open("ab") as log:
            log.write(f"{LOG_MARKER} {self.node_id} pid {self.pid} exited {code}\n".encode())


# --- ports -----------------------------------------------------------------------------------

_PORT_FLOOR = 10000  # stay clear of well-known and commonly configured service ports
_port_lock = threading.Lock()
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # the Linux default


def _bindable(host: str, port: int) -> bool:
    """Whether a listener could bind host:port now (SO_REUSEADDR, as servers set it, so a
    port in TIME_WAIT counts as free but one with a listener or a live socket does not)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could not listen on host:port right now."""
    return not _bindable(host, port)


def _kernel_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _worker_slice(low: int, high: int) -> tuple[int, int]:
    """This process's share of [low, high) when test workers run side by side (pytest-xdist
    names them gw0, gw1, ...): each draws from its own slice, so a port one worker's stopped
    node is waiting to restart on is never handed to a node of another worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    try:
        index = int(worker.removeprefix("gw"))
        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    except ValueError:
        return low, high
    if not 0 <= index < count or count < 2:
        return low, high
    width = (high - low) // count
    return low + index * width, low + (index + 1) * width


def _candidate_base(count: int, host: str) -> int:
    low, high = _worker_slice(_PORT_FLOOR, _ephemeral_range()[0])
    if high - count > low:
        return random.randrange(low, high - count)
    return _kernel_port(host)


def free_port_block(count: int = 1, host: str = "127.0.0.1") -> int:
    """First of ``count`` consecutive free ports, never handed out before by this process.

    Ports are drawn below the kernel's ephemeral range: an ephemeral port can be taken by any
    outgoing connection while a test has a node down, and the node then cannot restart on it.
    Falls back to a kernel-chosen port (bind to port 0) when no such range exists.
    """
    with _port_lock:
        for _ in range(200):
            base = _candidate_base(count, host)
            block = range(base, base + count)
            if block.stop > 65536:
                continue
            if not _handed_out.intersection(block) and all(_bindable(host, p) for p in block):
                _handed_out.update(block)
                return base
    raise LauncherError(f"no block of {count} free ports found on {host}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now, never handed out before by this process (see
    free_port_block for why it is not simply whatever bind(0) returns)."""
    return free_port_block(1, host)


# --- a local cluster -------------------------------------------------------------------------


def new_root_credentials() -> Credentials:
    """A fresh root key: an access key id that says what it is, and a 256-bit secret."""
    return Credentials(f"root-{secrets.token_hex(6)}", secrets.token_urlsafe(32))


def root_env(secret: str, credentials: Credentials) -> dict[str, str]:
    """How a node gets the cluster secret and root credentials: its environment, which other
    users cannot read (/proc/PID/environ is 0400), unlike its command line."""
    return {"DFSRING_CLUSTER_SECRET": secret,
            "DFSRING_ADMIN_ACCESS_KEY": credentials.access_key,
            "DFSRING_ADMIN_SECRET_KEY": credentials.secret_key}


class LocalCluster:
    """``size`` nodes on one host, each seeded with every node's peer address.

    Node ``i`` (1-based) is ``node{i}``, keeps its data in ``base_dir/node{i}`` and logs to
    ``base_dir/node{i}.log``. Client ports are ``base_port + i - 1`` and peer ports 100 above
    (the node's default) unless ``peer_base_port`` says, or, when ``base_port`` is None, one
    block of 2 x size fresh free ports: the client ports, then the peer ports. With ``s3``
    every node also serves S3 (``--s3-port``): the block is then 3 x size ports, the S3 ports
    last (with an explicit ``base_port``: ``s3_base_port``, default 200 above). Every node gets
    the same cluster secret and root credentials through its environment (never the visible
    command line);
    ``credentials`` and ``auth_headers`` are for the tests' own clients. Use as a context
    manager, or call start() and stop(); stop() never leaves a process behind.
    """

    def __init__(
        self,
        size: int,
        base_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        base_port: int | None = None,
        peer_base_port: int | None = None,
        n: int = 3,
        r: int = 2,
        w: int = 2,
        extra_args: Sequence[str] = (),
        node_env: Mapping[str, str] | None = None,
        program: Sequence[str] | None = None,
        secret: str | None = None,
        credentials: Credentials | None = None,
        seed_all: bool = True,
        node_args: Mapping[int, Sequence[str]] | None = None,
        seeds: Sequence[str] | None = None,
        first_index: int = 1,
        tls: TlsFiles | None = None,
        s3: bool = False,
        s3_base_port: int | None = None,
    ) -> None:
        """`seed_all=False` gives every node only the first node as seed (one seed, the
        others join through it); `node_args` adds flags for single nodes (1-based index).
        `seeds` makes every node join an existing cluster through those addresses instead;
        then number the nodes from `first_index` so their ids are new to that cluster.
        `tls`: every node serves and dials with these files (node_args may override them);
        its S3 listener too (`s3`)."""
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, not {size}")
        first = (free_port_block((3 if s3 else 2) * size, host) if base_port is None
                 else base_port)
        peer_first = (peer_base_port if peer_base_port is not None
                      else first + size if base_port is None else first + 100)
        s3_first = (None if not s3 else s3_base_port if s3_base_port is not None
                    else first + 2 * size if base_port is None else first + 200)
        for what, low in (("ports", first), ("peer ports", peer_first), ("S3 ports", s3_first)):
            if low is not None and not 0 < low <= 65536 - size:
                raise ValueError(f"{what} {low}..{low + size - 1} are not all TCP ports")
        self.base_dir = Path(base_dir).resolve()
        self.external_seeds = tuple(seeds or ())
        seed_list = ",".join(self.external_seeds or
                             [_address(host, peer_first + i)
                              for i in range(size if seed_all else 1)])
        # A fresh secret and root key per cluster (through the environment, not the visible
        # command line): its peer listeners refuse every other caller, and so will its API.
        self.secret = secret if secret is not None else secrets.token_hex(16)
        self.credentials = credentials if credentials is not None else new_root_credentials()
        self._host = host
        self.s3 = s3
        self._quorum_args = ("--n", str(n), "--r", str(r), "--w", str(w),
                             *(tls.args() if tls else ()), *extra_args)
        self._shared: dict[str, Any] = {
            "host": host,
            "tls": tls,
            "env": {**root_env(self.secret, self.credentials), **(node_env or {})},
            "program": tuple(program) if program is not None else default_program(),
        }
        extra = node_args or {}
        self.nodes = [NodeProcess(self._spec(first_index + i, first + i, peer_first + i,
                                             ("--seeds", seed_list, *self._quorum_args,
                                              *extra.get(i + 1, ())),
                                             None if s3_first is None else s3_first + i),
                                  self.credentials)
                      for i in range(size)]

    @property
    def auth_headers(self) -> dict[str, str]:
        """The header that authenticates as the cluster's root key (a fresh dict each time)."""
        return auth_headers(self.credentials)

    def _spec(self, index: int, port: int, peer_port: int, args: Sequence[str],
              s3_port: int | None = None) -> NodeSpec:
        return NodeSpec(
            index=index,
            node_id=f"node{index}",
            port=port,
            peer_port=peer_port,
            s3_port=s3_port,
            data_dir=self.base_dir / f"node{index}",
            log_path=self.base_dir / f"node{index}.log",
            args=tuple(args),
            **self._shared,
        )

    def add_node(self, extra_args: Sequence[str] = (), start: bool = True) -> NodeProcess:
        """One more node, joining through the first node; started (not waited for) unless
        `start` is False; it serves S3 too when the cluster does."""
        index = max(n.spec.index for n in self.nodes) + 1
        seeds = ",".join(self.external_seeds) or self.nodes[0].peer_address
        port = free_port_block(3 if self.s3 else 2, self._host)
        node = NodeProcess(self._spec(index, port, port + 1,
                                      ("--seeds", seeds, *self._quorum_args, *extra_args),
                                      port + 2 if self.s3 else None),
                           self.credentials)
        self.nodes.append(node)
        if start:
            node.start()
        return node

    def __repr__(self) -> str:
        return f"<LocalCluster {self.base_dir} {self.nodes!r}>"

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __iter__(self) -> Iterator[NodeProcess]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def s3_urls(self) -> list[str]:
        """The nodes' S3 endpoints (empty unless the cluster was made with ``s3=True``)."""
        return [url for node in self.nodes if (url := node.s3_url) is not None]

    @property
    def addresses(self) -> list[str]:
        """The nodes' client API addresses."""
        return [node.address for node in self.nodes]

    @property
    def peer_addresses(self) -> list[str]:
        return [node.peer_address for node in self.nodes]

    def node(self, node_id: str) -> NodeProcess:
        """The node with that id; KeyError if there is none."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def start(self, timeout: float = 30.0) -> None:
        """Start every node not running, then wait until all are ready; on failure stop all.

        All nodes are spawned before any is waited for, so they boot (and find each other)
        concurrently and ``timeout`` bounds the whole start, not each node. Nodes already
        running are left alone, so this also brings a partly crashed cluster back up.
        """
        try:
            for node in self.nodes:
                if not node.running:
                    node.start()
            deadline = time.monotonic() + timeout
            for node in self.nodes:
                node.wait_ready(max(deadline - time.monotonic(), _POLL_INTERVAL))
            self.wait_converged(max(deadline - time.monotonic(), _POLL_INTERVAL))
        except BaseException:
            self.stop()
            raise

    def ring_views(self, nodes: Sequence[NodeProcess] | None = None) -> dict[str, Any]:
        """Each running node's GET /v1/cluster/ring (an error string if it did not answer)."""
        views: dict[str, Any] = {}
        for node in nodes if nodes is not None else self.nodes:
            if node.running:
                try:
                    views[node.node_id] = node.get_json("/v1/cluster/ring", _PROBE_TIMEOUT)
                except (OSError, ValueError) as exc:
                    views[node.node_id] = f"{type(exc).__name__}: {exc}"
        return views

    def wait_converged(self, timeout: float = 30.0,
                       members: Sequence[str] | None = None) -> dict[str, Any]:
        """Poll until every running node reports the same ring (epoch and hash), with exactly
        `members` (default: the running nodes) in it, and no transfer in progress. Nodes that
        joined an existing cluster (`seeds`) need only be among the ring's members."""
        want = sorted(members if members is not None
                      else [n.node_id for n in self.nodes if n.running])
        deadline = time.monotonic() + timeout
        while True:
            views = self.ring_views()
            rings = [v for v in views.values() if isinstance(v, dict)]
            have = sorted(m["node_id"] for m in rings[0]["members"]) if rings else []
            if (len(rings) == len(views) and rings
                    and len({(v["epoch"], v["hash"]) for v in rings}) == 1
                    and (have == want or (self.external_seeds and set(want) <= set(have)))
                    and not any(v["in_transition"] for v in rings)):
                return rings[0]
            if time.monotonic() >= deadline:
                summary = {k: v if not isinstance(v, dict) else
                           (v["epoch"], v["hash"][:8], len(v["members"]), v["in_transition"])
                           for k, v in views.items()}
                raise NodeNotReady(f"cluster did not converge in {timeout:g}s: {summary}")
            time.sleep(_POLL_INTERVAL)

    def exited(self) -> list[NodeProcess]:
        """Nodes that were started and are no longer running."""
        return [node for node in self.nodes if node.pid is not None and not node.running]

    def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        """Stop every node: SIGTERM to all at once, one shared deadline, then SIGKILL.

        Returns each node's exit code. Even if stopping one node raises, the others are still
        stopped before the first error propagates.
        """
        for node in self.nodes:
            with contextlib.suppress(OSError):
                node.terminate()
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        errors: list[BaseException] = []
        for node in self.nodes:
            try:
                codes[node.node_id] = node.stop(max(deadline - time.monotonic(), 0.0))
            except BaseException as exc:  # keep going: no node may be left behind
                errors.append(exc)
                with contextlib.suppress(BaseException):
                    node.kill()
        if errors:
            raise errors[0]
        return codes
