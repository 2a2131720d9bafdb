"""A cluster whose every directed inter-node link runs through its own fault proxy.

Node i reaches node j only through proxy ``n{i}_to_n{j}``, whose upstream is node j's real
peer address (its --peer-port listener): each node is started with ``--dial
ADDR_j=PROXY_ij,...`` (a per-peer dial override fixed at start; gossip never changes it), and
advertises its real peer address. Clients talk to the nodes' client ports directly. With N
nodes there are N*(N-1) proxies, so any partition shape can be made
(:mod:`dfsring.testing.chaos.nemesis` computes which links a fault cuts).

Spare nodes (``spares=k``) are wired the same way from the start (their addresses are in
every node's dial overrides, their links have proxies) but started only by :meth:`join`, with
the starting members as seeds, as an operator adds nodes to a running cluster; a member that
left is retired (:meth:`retire`), so healing does not bring it back.

A cut link is a *disabled* proxy (``enabled=false``): new connections are refused and live
ones closed, exactly what the failure detector must notice. A slow node gets latency toxics on
both directions of every link to and from it.

The proxies live in a Toxiproxy-compatible server driven through the unmodified
``toxiproxy`` client, picked by :func:`proxy_server`:

1. ``TOXIPROXY_URL`` set: that server (shared: we only touch proxies with our prefix, never
   ``/reset``);
2. ``toxiproxy-server`` on PATH: a real one, started as a child process;
3. otherwise ``python -m dfsring.testing.faultproxy`` as a child process (the stand-in), so
   the proxying does not compete with the test's own event loop for the GIL;
   ``kind="thread"`` runs it in this process instead (ThreadedFaultProxy).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

import requests
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.proxy import Proxy

from dfsring.cli.launcher import (
    LocalCluster,
    NodeProcess,
    NodeSpec,
    free_port,
    free_port_block,
    root_env,
    spawn,
)
from dfsring.testing.chaos import nemesis
from dfsring.testing.chaos.nemesis import Group, Link, Partition
from dfsring.testing.faultproxy import ThreadedFaultProxy
from dfsring.testing.wait import wait_until

log = logging.getLogger("dfsring.chaos")

PROXY_START_TIMEOUT = 15.0
PROXY_STOP_TIMEOUT = 5.0


# --- the proxy server --------------------------------------------------------------------


class ProxyServer(Protocol):
    host: str
    port: int
    shared: bool  # someone else's server: touch only our proxies, never /reset

    def close(self) -> None: ...


@dataclass
class ExternalServer:
    host: str
    port: int
    shared: bool = True

    def close(self) -> None:
        pass


class ThreadServer:
    """The stand-in on a thread of this process."""

    shared = False

    def __init__(self, host: str) -> None:
        self._server = ThreadedFaultProxy(host, 0)
        self._server.start()
        self.host, self.port = host, self._server.port

    def close(self) -> None:
        self._server.stop()


class ChildServer:
    """A proxy server process we started (and only we stop, by its PID), logging to a file.

    Spawned through dfsring.cli.launcher.spawn, so it dies with this process.
    """

    shared = False

    def __init__(self, argv_for_port: Sequence[str], host: str, port: int, log_path: Path) -> None:
        self.host, self.port = host, port
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            self._proc = spawn(list(argv_for_port), output=out)
        try:
            wait_until(self._answers, timeout=PROXY_START_TIMEOUT, interval=0.1,
                       message=f"proxy server {argv_for_port[0]} answering on {host}:{port}")
        except BaseException:
            self.close()
            raise

    def _answers(self) -> bool:
        if self._proc.poll() is not None:
            raise RuntimeError(f"proxy server exited with {self._proc.returncode}")
        return requests.get(f"http://{self.host}:{self.port}/version", timeout=1).ok

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(PROXY_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(PROXY_STOP_TIMEOUT)


def proxy_server(log_dir: Path, kind: str | None = None, host: str = "127.0.0.1") -> ProxyServer:
    """The server the proxies run in: `kind` is "url", "toxiproxy", "child" or "thread";
    None picks the first available of TOXIPROXY_URL, toxiproxy-server on PATH, the stand-in
    as a child process."""
    url = os.environ.get("TOXIPROXY_URL")
    binary = shutil.which("toxiproxy-server")
    kind = kind or ("url" if url else "toxiproxy" if binary else "child")
    if kind == "url":
        if not url:
            raise ValueError("proxy kind 'url' needs TOXIPROXY_URL")
        parts = urlsplit(url if "//" in url else f"http://{url}")
        return ExternalServer(parts.hostname or host, parts.port or 8474)
    if kind == "thread":
        return ThreadServer(host)
    port = free_port(host)
    if kind == "toxiproxy":
        argv = [binary or "toxiproxy-server", "-host", host, "-port", str(port)]
    elif kind == "child":
        argv = [sys.executable, "-m", "dfsring.testing.faultproxy", "--host", host,
                "--port", str(port), "--log-level", "warning"]
    else:
        raise ValueError(f"unknown proxy server kind {kind!r}")
    return ChildServer(argv, host, port, log_dir / "faultproxy.log")


# --- the cluster -------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultEvent:
    at: float  # wall clock (time.time()), to line up with node logs
    what: str


@dataclass
class _LinkState:
    proxy: Proxy
    enabled: bool = True
    toxics: list[str] = field(default_factory=list)


class ChaosCluster:
    """``size`` real nodes (a LocalCluster) wired through one proxy per directed link, plus
    ``spares`` nodes wired but not started (see :meth:`join`).

    Use as a context manager, or start() / stop(). Nodes are numbered 1..size+spares; every
    fault operation is recorded in :attr:`events` with its wall-clock time.
    """

    def __init__(self, size: int, base_dir: Path | str, *, n: int = 3, r: int = 2, w: int = 2,
                 extra_args: Sequence[str] = (), proxy_kind: str | None = None,
                 host: str = "127.0.0.1", spares: int = 0) -> None:
        if size < 2:
            raise ValueError("a chaos cluster needs at least two nodes")
        if spares < 0:
            raise ValueError(f"spares must be >= 0, not {spares}")
        self.size = size
        self.total = size + spares
        self.base_dir = Path(base_dir).resolve()
        self.host = host
        self.events: list[FaultEvent] = []
        self._proxy_kind = proxy_kind
        self._prefix = f"chaos{secrets.token_hex(3)}_"
        first = free_port_block(self.total, host)
        peer_first = free_port_block(self.total, host)
        self._addr = {i: f"{host}:{peer_first + i - 1}" for i in range(1, self.total + 1)}
        proxy_first = free_port_block(self.total * (self.total - 1), host)
        self._listen = {link: f"{host}:{proxy_first + k}"
                        for k, link in enumerate(nemesis.all_links(self.total))}
        # Every starting node gets the same seed list, itself included, the first node first
        # (as a StatefulSet or a config tool hands it out): the disk-replaced scenario relies
        # on it. Spares join through that same list.
        self.cluster = LocalCluster(size, self.base_dir, host=host, base_port=first,
                                    peer_base_port=peer_first, n=n, r=r,
                                    w=w, extra_args=extra_args, seed_all=True,
                                    node_args={i: self._node_flags(i)
                                               for i in range(1, size + 1)})
        quorum = ("--n", str(n), "--r", str(r), "--w", str(w), *extra_args)
        self._spares = {i: self._spare(i, first + i - 1, peer_first + i - 1, quorum)
                        for i in range(size + 1, self.total + 1)}
        self.members: set[int] = set(range(1, size + 1))
        self._server: ProxyServer | None = None
        self._links: dict[Link, _LinkState] = {}
        self.cut: frozenset[Link] = frozenset()
        self.slowed: dict[int, tuple[int, int]] = {}

    def _node_flags(self, i: int) -> tuple[str, ...]:
        dials = ",".join(f"{self._addr[j]}={self._listen[(i, j)]}"
                         for j in self._addr if j != i)
        return ("--advertise", self._addr[i], "--dial", dials)

    def _spare(self, i: int, port: int, peer_port: int, quorum: Sequence[str]) -> NodeProcess:
        """Node i, joining through the starting members (the seed list they were given)."""
        seeds = ",".join(self._addr[j] for j in range(1, self.size + 1))
        return NodeProcess(NodeSpec(
            index=i, node_id=f"node{i}", host=self.host, port=port, peer_port=peer_port,
            data_dir=self.base_dir / f"node{i}", log_path=self.base_dir / f"node{i}.log",
            args=("--seeds", seeds, *quorum, *self._node_flags(i)),
            env=root_env(self.cluster.secret, self.cluster.credentials)),
            self.cluster.credentials)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Proxies first (nodes gossip through them from their first second), then nodes."""
        try:
            self._server = proxy_server(self.base_dir, self._proxy_kind, self.host)
            with self._client() as client:
                for (i, j), listen in self._listen.items():
                    proxy = client.create(upstream=self._addr[j], name=self._proxy_name(i, j),
                                          listen=listen)
                    self._links[(i, j)] = _LinkState(proxy)
            self.cluster.start(timeout)
        except BaseException:
            self.stop()
            raise
        self.record(f"started {self.size} nodes, {len(self._links)} link proxies "
                    f"({type(self._server).__name__})")

    def stop(self) -> None:
        """Stop every node, then our proxies and the proxy server (if we started it)."""
        try:
            self.cluster.stop()
        finally:
            server, self._server = self._server, None
            if server is not None:
                if server.shared:
                    with contextlib.suppress(requests.RequestException), self._client(server):
                        for state in self._links.values():
                            state.proxy.destroy()
                server.close()
            self._links.clear()

    def __enter__(self) -> ChaosCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- nodes -------------------------------------------------------------------------

    @property
    def nodes(self) -> list[NodeProcess]:
        """Every node ever started (the starting ones, joined spares, retired members)."""
        return self.cluster.nodes

    @property
    def member_nodes(self) -> list[NodeProcess]:
        """The nodes meant to be in the cluster now (not spares, not retired)."""
        return [self.node(i) for i in sorted(self.members)]

    def node(self, i: int) -> NodeProcess:
        if i in self._spares:
            return self._spares[i]
        return self.cluster.nodes[i - 1]

    def index_of(self, node_id: str) -> int:
        return next(i for i in range(1, self.total + 1) if self.node(i).node_id == node_id)

    @property
    def auth_headers(self) -> dict[str, str]:
        """The cluster's root credentials as a header, for the clients of a run."""
        return self.cluster.auth_headers

    @property
    def client_urls(self) -> dict[str, str]:
        """Node id -> the URL clients use (direct, never through a proxy), for the members."""
        return {n.node_id: n.url for n in self.member_nodes}

    def join(self, i: int) -> NodeProcess:
        """Start spare node i (it joins through the starting members); does not wait. Call
        from the main thread (see dfsring.cli.launcher.spawn)."""
        if i not in self._spares or i in self.members:
            raise ValueError(f"n{i} is not a spare that has not joined yet")
        node = self._spares[i]
        self.cluster.nodes.append(node)  # stopped with the others from now on
        self.members.add(i)
        node.start()
        self.record(f"n{i} ({node.node_id}) started, joining")
        return node

    def retire(self, i: int) -> None:
        """Node i left the cluster: no longer a member (healing leaves it stopped)."""
        self.members.discard(i)

    def address(self, i: int) -> str:
        """Node i's peer address (what it advertises; its proxies' upstream)."""
        return self._addr[i]

    def proxy_listen(self, i: int, j: int) -> str:
        return self._listen[(i, j)]

    # --- faults ------------------------------------------------------------------------

    def partition(self, part: Partition) -> None:
        """Cut exactly `part.cut` (re-enabling every other link)."""
        self._set_cut(part.cut)
        self.record(f"partition: {part}")

    def isolate(self, i: int) -> None:
        self.partition(nemesis.isolate(self.size, i))

    def split(self, a: Group, b: Group) -> None:
        self.partition(nemesis.split(self.size, a, b))

    def one_way(self, src: int, dst: int) -> None:
        self.partition(nemesis.one_way(self.size, src, dst))

    def bridge(self, a: Group, b: Group, via: int) -> None:
        self.partition(nemesis.bridge(self.size, a, b, via))

    def slow(self, i: int, latency_ms: int, jitter_ms: int = 0) -> None:
        """Delay both directions of every link to and from node i by latency +- jitter."""
        self._toxic_on(i, "latency", f"slow_n{i}", {"latency": latency_ms, "jitter": jitter_ms})
        self.slowed[i] = (latency_ms, jitter_ms)
        self.record(f"slow: n{i} +{latency_ms}+-{jitter_ms} ms on its links")

    def slow_links(self, links: Iterable[Link], latency_ms: int, jitter_ms: int = 0,
                   label: str = "links") -> None:
        """Delay both directions of each given link by latency +- jitter (healed by heal);
        calls with different labels stack on a link (their delays add up)."""
        chosen = frozenset(links)
        self._toxic_on_links(chosen, "latency", f"slow_{label.replace(' ', '_')}",
                             {"latency": latency_ms, "jitter": jitter_ms})
        self.record(f"slow: {label} ({len(chosen)} links) +{latency_ms}+-{jitter_ms} ms")

    def black_hole(self, i: int) -> None:
        """Swallow every byte on every link to and from node i, keeping the connections open
        (a ``timeout`` toxic with timeout 0): unlike a cut link, nothing is refused or closed,
        so only timeouts tell the others that node i is gone."""
        self._toxic_on(i, "timeout", f"hole_n{i}", {"timeout": 0})
        self.record(f"black hole: n{i}'s links swallow everything")

    def _toxic_on(self, i: int, kind: str, name: str, attributes: dict[str, int]) -> None:
        self._toxic_on_links(nemesis.touching(self.total, [i]), kind, name, attributes)

    def _toxic_on_links(self, links: frozenset[Link], kind: str, name: str,
                        attributes: dict[str, int]) -> None:
        unknown = links - self._links.keys()
        if unknown:
            raise ValueError(f"no such link(s): {sorted(unknown)}")
        with self._client():
            for link, state in self._links.items():
                if link not in links:
                    continue
                for stream in ("upstream", "downstream"):
                    toxic = f"{name}_{stream}"
                    if toxic not in state.toxics:
                        state.proxy.add_toxic(type=kind, stream=stream, name=toxic,
                                              attributes=attributes)
                        state.toxics.append(toxic)

    def heal(self) -> None:
        """Every link enabled, every toxic removed."""
        self._set_cut(frozenset())
        with self._client():
            for state in self._links.values():
                for name in state.toxics:
                    state.proxy.destroy_toxic(name)
                state.toxics.clear()
        self.slowed.clear()
        self.record("heal")

    def _set_cut(self, cut: Iterable[Link]) -> None:
        want = frozenset(cut)
        unknown = want - self._links.keys()
        if unknown:
            raise ValueError(f"no such link(s): {sorted(unknown)}")
        with self._client():
            for link, state in sorted(self._links.items()):
                enabled = link not in want
                if state.enabled != enabled:
                    (state.proxy.enable if enabled else state.proxy.disable)()
                    state.enabled = enabled
        self.cut = want

    # --- helpers -----------------------------------------------------------------------

    def _proxy_name(self, i: int, j: int) -> str:
        return f"{self._prefix}n{i}_to_n{j}"

    @contextlib.contextmanager
    def _client(self, server: ProxyServer | None = None) -> Iterator[Toxiproxy]:
        """The toxiproxy client pointed at our server; its class-level address restored
        afterwards (other tests may use the client too)."""
        server = server or self._server
        if server is None:
            raise RuntimeError("the chaos cluster is not started")
        saved = (APIConsumer.host, APIConsumer.port)
        client = Toxiproxy()
        client.update_api_consumer(server.host, server.port)
        try:
            yield client
        finally:
            APIConsumer.host, APIConsumer.port = saved

    def record(self, what: str) -> None:
        """Add an event to the timeline (the nemeses record kills and restarts here too)."""
        self.events.append(FaultEvent(time.time(), what))
        log.info("chaos: %s", what)

    def timeline(self, since: float | None = None) -> str:
        """The fault events as lines of ``+seconds what`` from `since` (default: the first)."""
        if not self.events:
            return ""
        t0 = self.events[0].at if since is None else since
        return "\n".join(f"+{e.at - t0:7.2f}s  {e.what}" for e in self.events)
