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
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import uvloop
from aiohttp import web

from dfsring import __version__
from dfsring.antientropy import ExchangeService
from dfsring.core.ratelimit import KeyLimits
from dfsring.core.refill import RefillTracker
from dfsring.files import replica as files_replica
from dfsring.files.wiring import FilesNode, build_files
from dfsring.files.workers import files_workers
from dfsring.foundation import allocator
from dfsring.foundation.config import ConfigError, NodeConfig, load_config
from dfsring.foundation.logs import setup_logging
from dfsring.foundation.metrics import NodeMetrics
from dfsring.foundation.worker import Supervisor
from dfsring.gossip import Gossiper, GossipSettings
from dfsring.http import (
    access_api,
    cluster_api,
    expect,
    files_api,
    internal_api,
    kv_api,
    node_api,
    tls_api,
)
from dfsring.http.appkeys import (
    CONFIG,
    COORDINATOR,
    DISCOVERY,
    EXCHANGE,
    HANDOFF,
    HINTS,
    MEMBERSHIP,
    METRICS,
    REFILL,
    RING_CHANGER,
    STATE,
    STORE,
    TRANSFERS,
    WORKERS,
    NodeState,
)
from dfsring.http.auth import (
    ACCESS,
    AuthMetrics,
    auth_enforced,
    make_auth_middleware,
    root_problem,
)
from dfsring.http.auth import (
    Middleware as AuthMiddleware,
)
from dfsring.http.connlimits import ConnectionGuard, ConnLimits, listener_cap, raise_nofile_limit
from dfsring.http.console import routes as console
from dfsring.http.console.routes import ByteCounter, SessionTable, bytes_middleware
from dfsring.http.cors import add_cors_headers, make_cors_middleware, node_rules
from dfsring.http.keylimits import LimitMetrics, key_limits, make_limits_middleware
from dfsring.http.middleware import make_middleware
from dfsring.http.protocol import protocol_guard
from dfsring.http.server import ProblemAppRunner
from dfsring.replication import replica
from dfsring.replication.access import replica as access_replica
from dfsring.replication.access.secretbox import SecretBox
from dfsring.replication.access.service import AccessService
from dfsring.replication.access.tables import AccessTables
from dfsring.replication.coordinator import ReplicatedCoordinator
from dfsring.replication.discovery import Discovery
from dfsring.replication.handoff import HandoffService
from dfsring.replication.ringchange import RingChanger, load_acceptor
from dfsring.replication.scrub import Scrubber
from dfsring.replication.transfers import TransferService
from dfsring.replication.workers import (
    discovery_worker,
    exchange_worker,
    gossip_worker,
    handoff_worker,
    ringchange_worker,
    scrub_worker,
    transfers_worker,
)
from dfsring.s3.objects import S3Objects, build_object_layer
from dfsring.storage import Engine, LmdbEngine
from dfsring.storage.datadir import DataDir, DataDirError, open_data_dir
from dfsring.storage.hintstore import TABLES as HINT_TABLES
from dfsring.storage.hintstore import HintStore
from dfsring.storage.localstore import TABLES, LocalStore
from dfsring.transport import PeerService, Transport
from dfsring.transport.rpc import RpcClient
from dfsring.transport.tls import (
    TlsFileError,
    TlsReloader,
    client_context_for,
    client_server_context,
    peer_client_context,
    peer_server_context,
)

log = logging.getLogger("dfsring.node")
SHUTDOWN_GRACE_S = 2.5
BACKGROUND_GRACE_S = 1.0
WORKER_STOP_S = 0.5  # a unit of background work in progress may finish this long, then cancelled
MAX_HEADER_FIELD = 8190
MAX_HEADERS = 100


@dataclass
class Services:
    """Everything a running node is made of, in the order it is torn down (reversed)."""

    store: LocalStore
    metrics: NodeMetrics
    state: NodeState
    rpc: Transport
    membership: Gossiper
    ring_changer: RingChanger
    transfers: TransferService
    coordinator: ReplicatedCoordinator
    hints: HintStore
    handoff: HandoffService
    exchange: ExchangeService
    scrubber: Scrubber
    files: FilesNode
    discovery: Discovery
    refill: RefillTracker
    workers: Supervisor  # owns the task of every background loop (dfsring.foundation.worker)
    peer: PeerService
    access: AccessService
    objects: S3Objects  # the S3 object layer (dfsring.s3.objects), served when --s3-port

    def start(self) -> None:
        self.workers.start()

    async def stop(self) -> None:
        await self.workers.stop(WORKER_STOP_S)
        await self.files.stop()
        await self.ring_changer.stop()
        await self.membership.stop()


def build_supervisor(cfg: NodeConfig, *, gossip: Gossiper, discovery: Discovery,
                     changer: RingChanger, transfers: TransferService,
                     handoff: HandoffService, exchange: ExchangeService, scrubber: Scrubber,
                     files: FilesNode) -> Supervisor:
    """The node's one supervisor, holding every background worker (not yet started)."""
    supervisor = Supervisor()
    workers = [gossip_worker(gossip, cfg.gossip_interval),
               discovery_worker(discovery, cfg.gossip_interval),
               ringchange_worker(changer, cfg.gossip_interval),
               transfers_worker(transfers),
               handoff_worker(handoff),
               exchange_worker(exchange, cfg.ae_interval),
               scrub_worker(scrubber, cfg.scrub_interval),
               *files_workers(files, cfg)]
    for worker in workers:
        supervisor.add(worker)
    return supervisor


def build_services(cfg: NodeConfig, data_dir: DataDir, engine: Engine,
                   transport: Transport | None = None,
                   peer_ssl: ssl.SSLContext | None = None) -> Services:
    """Every service of one node, wired. `transport` carries its peer calls: HTTP (an
    RpcClient, over TLS with `peer_ssl`) unless given; dfsring.testing.localcluster passes a
    LocalTransport."""
    store = LocalStore(engine, data_dir.node_id, cfg.partition_bits, cfg.max_siblings,
                       cfg.max_value_size)
    metrics = NodeMetrics()
    metrics.bind_store(lambda: store.stats.keys, lambda: store.stats.bytes)
    rpc = transport if transport is not None else RpcClient(cfg.cluster_secret,
                                                            dial=dict(cfg.dial), ssl=peer_ssl)
    settings = GossipSettings(interval_s=cfg.gossip_interval, fanout=cfg.gossip_fanout,
                              phi_threshold=cfg.phi_threshold, replicas=cfg.n,
                              partition_bits=cfg.partition_bits)
    acceptor = load_acceptor(data_dir.path / "acceptor.json")
    gossip = Gossiper(node_id=data_dir.node_id, address=cfg.advertise, zone=cfg.zone,
                      seeds=cfg.seeds, settings=settings, rpc=rpc,
                      state_file=data_dir.path / "cluster.json",
                      acceptor_nonce=acceptor.nonce, bootstrap_expect=cfg.bootstrap_expect,
                      api=cfg.advertise_api)
    changer = RingChanger(membership=gossip, rpc=rpc, state_file=data_dir.path / "acceptor.json",
                          interval_s=cfg.gossip_interval, deadline_s=settings.call_deadline_s,
                          acceptor=acceptor, count_proof=metrics.count_ring_proof)
    gossip.gate = changer.prover  # a newer ring is adopted once proven chosen (issue 23)
    discovery = Discovery(gossip=gossip, rpc=rpc, seeds=cfg.seeds,
                          bootstrap_expect=cfg.bootstrap_expect, interval_s=cfg.gossip_interval,
                          deadline_s=settings.call_deadline_s)
    refill = RefillTracker(gossip)
    transfers = TransferService(membership=gossip, store=store, rpc=rpc,
                                partition_bits=cfg.partition_bits, rate=cfg.transfer_rate,
                                streams=cfg.transfer_streams, deadline_s=cfg.request_timeout)
    hint_store = HintStore(engine, cfg.hint_max_bytes)
    hint_store.open()
    coordinator = ReplicatedCoordinator(node_id=data_dir.node_id, n=cfg.n, store=store,
                                        hint_store=hint_store, views=gossip, rpc=rpc,
                                        metrics=metrics, deadline_s=cfg.request_timeout)
    handoff = HandoffService(node_id=data_dir.node_id, views=gossip, store=hint_store,
                             rpc=rpc, metrics=metrics, rate=cfg.hint_rate,
                             max_age_s=cfg.hint_max_age, deadline_s=cfg.request_timeout,
                             merge_local=store.merge_raw)
    exchange = ExchangeService(node_id=data_dir.node_id, views=gossip, store=store, rpc=rpc,
                               metrics=metrics, interval_s=cfg.ae_interval, rate=cfg.ae_rate,
                               deadline_s=cfg.request_timeout)
    exchange.on_exchanged = refill.exchanged
    scrubber = Scrubber(node_id=data_dir.node_id, views=gossip, store=store, rpc=rpc,
                        metrics=metrics, interval_s=cfg.scrub_interval, rate=cfg.scrub_rate,
                        tombstone_grace_s=max(cfg.tombstone_grace, cfg.hint_max_age),
                        deadline_s=cfg.request_timeout)
    files = build_files(cfg, data_dir.path, data_dir.node_id, coordinator=coordinator,
                        views=gossip, rpc=rpc, local_list=store.list_live,
                        count_corrupt=metrics.count_corrupt, ready=lambda: gossip.complete,
                        registry=metrics.registry)
    state = NodeState(node_id=data_dir.node_id, started_at=time.monotonic())
    workers = build_supervisor(cfg, gossip=gossip, discovery=discovery, changer=changer,
                               transfers=transfers, handoff=handoff, exchange=exchange,
                               scrubber=scrubber, files=files)
    deps = replica.ReplicaDeps(store=store, hints=hint_store, membership=gossip,
                               acceptor=changer, coordinator=coordinator, metrics=metrics,
                               hint_max_bytes=cfg.hint_max_bytes)
    access = AccessService(tables=AccessTables(coordinator, r=cfg.r, w=cfg.w),
                           box=SecretBox(cfg.cluster_secret),
                           root=(cfg.admin_access_key, cfg.admin_secret_key), views=gossip,
                           rpc=rpc)
    peer = PeerService({**replica.handlers(deps), **files_replica.handlers(files.store),
                        **access_replica.handlers(access.invalidate)},
                       on_corrupt=metrics.count_corrupt)
    # built on every node, S3 port or not: the collector's hooks (multipart parts are chunk
    # references; S3 versioned buckets are exempt from retention) and the abort worker
    objects = build_object_layer(cfg, files, access)
    for worker in objects.workers():
        workers.add(worker)
    return Services(store, metrics, state, rpc, gossip, changer, transfers, coordinator,
                    hint_store, handoff, exchange, scrubber, files, discovery, refill, workers,
                    peer, access, objects)


def _new_app(cfg: NodeConfig, svc: Services, *extra: AuthMiddleware) -> web.Application:
    return web.Application(middlewares=[make_middleware(svc.metrics), protocol_guard, *extra],
                           client_max_size=cfg.max_value_size,
                           handler_args={"max_field_size": MAX_HEADER_FIELD,
                                         "max_headers": MAX_HEADERS})


@dataclass(frozen=True)
class KeyBudget:
    """The per-key request and bandwidth limits of this node and their counters: one budget
    per key for every API the node serves (native and S3), not one per listener."""

    limits: KeyLimits
    metrics: LimitMetrics


def key_budget(cfg: NodeConfig, svc: Services) -> KeyBudget:
    return KeyBudget(key_limits(cfg), LimitMetrics(svc.metrics.registry))


def build_app(cfg: NodeConfig, svc: Services, tls: TlsReloader | None = None,
              budget: KeyBudget | None = None) -> web.Application:
    """The client API (cfg.port): key/value, files, node and cluster routes, never peer
    messages, which only the peer app serves (issue 18: the client port is the one exposed).
    Every request passes the auth middleware (dfsring.http.auth). `tls` reloads the node's
    certificates (POST /v1/admin/tls/reload); without it the route answers that TLS is off.
    `budget`: the per-key limits shared with the S3 app (None: this app's own)."""
    sessions = SessionTable()
    auth = make_auth_middleware(cfg, svc.access, AuthMetrics(svc.metrics.registry),
                                sessions=sessions)
    budget = budget or key_budget(cfg, svc)
    limits = make_limits_middleware(budget.limits, budget.metrics)
    counter = ByteCounter()
    app = _new_app(cfg, svc, make_cors_middleware(cfg, svc.access), auth, limits,
                   bytes_middleware(counter))
    app.on_response_prepare.append(add_cors_headers)
    app[CONFIG] = cfg
    app[STORE] = svc.store
    app[METRICS] = svc.metrics
    app[STATE] = svc.state
    app[MEMBERSHIP] = svc.membership
    app[RING_CHANGER] = svc.ring_changer
    app[TRANSFERS] = svc.transfers
    app[COORDINATOR] = svc.coordinator
    app[HINTS] = svc.hints
    app[HANDOFF] = svc.handoff
    app[EXCHANGE] = svc.exchange
    app[DISCOVERY] = svc.discovery
    app[REFILL] = svc.refill
    app[WORKERS] = svc.workers
    app[ACCESS] = svc.access
    kv_api.setup(app)
    node_api.setup(app)
    cluster_api.setup(app)
    files_api.setup(app, svc.files)
    access_api.setup(app)
    tls_api.setup(app, tls if tls is not None else TlsReloader(cfg, []))
    console.setup(app, counter, sessions)
    expect.install(app)
    return app


def build_peer_app(cfg: NodeConfig, svc: Services) -> web.Application:
    """The node-to-node listener (cfg.peer_port): the peer RPC path and nothing else, so it
    can be firewalled to the cluster's own hosts and given its own (mutual) TLS."""
    app = _new_app(cfg, svc)
    app[CONFIG] = cfg
    app[METRICS] = svc.metrics
    internal_api.setup(app, svc.peer)
    expect.install(app)
    return app


def build_s3(cfg: NodeConfig, svc: Services, budget: KeyBudget) -> web.Application:
    """The S3 app (cfg.s3_port; dfsring.s3.app) over the node's object layer, which every
    node builds (its collector hooks and multipart-abort worker run with or without S3).

    Imported here, only when S3 is on: a node without --s3-port never loads the S3 edge."""
    from dfsring.s3.app import build_s3_app

    return build_s3_app(cfg, svc.objects, svc.access, metrics=svc.metrics,
                        limits=budget.limits, limit_metrics=budget.metrics)


def connection_limits(cfg: NodeConfig, nofile: int) -> ConnLimits:
    limits = ConnLimits(max_total=listener_cap(cfg.max_connections, nofile),
                        max_per_source=cfg.max_connections_per_source,
                        header_timeout=cfg.header_timeout, idle_timeout=cfg.idle_timeout,
                        min_upload_rate=cfg.min_upload_rate)
    log.info("connection limits", extra={"fields": {
        "nofile": nofile, "max_connections": limits.max_total,
        "max_per_source": limits.max_per_source, "header_timeout_s": limits.header_timeout,
        "idle_timeout_s": limits.idle_timeout, "min_upload_rate": limits.min_upload_rate}})
    return limits


def listener_ssl(cfg: NodeConfig) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """TLS of the (client, peer) listeners. Clients get HTTPS with --tls-cert/--tls-key and
    are not asked for a certificate (API keys authenticate them); with --tls-ca every peer
    caller must present a certificate of the cluster CA (mutual TLS), without it the peer
    listener serves the same HTTPS as the client one."""
    client = client_server_context(cfg)
    return client, (peer_server_context(cfg) if cfg.tls_ca else client)


def dial_ssl(cfg: NodeConfig) -> ssl.SSLContext | None:
    """TLS of this node's calls to its peers: mutual TLS with --tls-ca. With only
    --tls-cert/--tls-key, peers are verified by the system store (publicly trusted
    certificates); give --tls-ca for a private CA."""
    if cfg.tls_ca:
        return peer_client_context(cfg)
    return client_context_for(None) if cfg.tls_cert else None


def _runner(app: web.Application, limits: ConnLimits, svc: Services, cfg: NodeConfig, *,
            gauges: bool) -> ProblemAppRunner:
    """A runner with its own ConnectionGuard: a flood on one listener never takes the
    connection slots of the other (peers keep replicating while clients are refused).
    `gauges`: the client listener's counts are the dfsring_connections_* gauges."""
    guard = ConnectionGuard(limits, svc.metrics, gauges=gauges)
    return ProblemAppRunner(app, guard=guard, access_log=None,
                            shutdown_timeout=SHUTDOWN_GRACE_S,
                            keepalive_timeout=cfg.idle_timeout)


async def _listen(runners: Sequence[ProblemAppRunner], cfg: NodeConfig,
                  contexts: Sequence[ssl.SSLContext | None]) -> str | None:
    """Start the client site, then the peer site, then the S3 site when there is one (a
    third runner); the line to print if one cannot bind."""
    sites = zip(runners, (cfg.port, cfg.peer_port, cfg.s3_port), ("", "peer ", "S3 "),
                contexts, strict=False)
    for runner, port, what, ctx in sites:
        try:
            await web.TCPSite(runner, cfg.host, port, reuse_address=True,
                              ssl_context=ctx).start()
        except OSError as exc:
            return f"cannot listen on {cfg.host}:{port} ({what}port): {exc.strerror}"
    return None


async def serve(cfg: NodeConfig, data_dir: DataDir) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if cfg.insecure:
        log.warning("INSECURE: started with --insecure; %s. Development only: never expose "
                    "this node", "peer messages accept any caller" if not cfg.cluster_secret
                    else "clients need no credentials")
    try:
        (client_tls, listen_peer_tls), peer_tls = listener_ssl(cfg), dial_ssl(cfg)
    except TlsFileError as exc:  # changed on disk since the configuration was checked
        print(f"dfsring: {exc}", file=sys.stderr)
        return 2
    contexts = [client_tls, listen_peer_tls if listen_peer_tls is not client_tls else None,
                peer_tls if cfg.tls_ca else None]
    tls = TlsReloader(cfg, contexts)
    loop.add_signal_handler(signal.SIGHUP, tls.reload_and_log)
    engine = LmdbEngine(data_dir.db_path, (*TABLES, *HINT_TABLES), durable=cfg.durable)
    try:
        try:
            svc = build_services(cfg, data_dir, engine, peer_ssl=peer_tls)
        except ValueError as exc:  # a damaged cluster.json / acceptor.json
            print(f"dfsring: {exc}", file=sys.stderr)
            return 3
        await svc.store.open()
        await svc.files.open()
        state = svc.state
        limits = connection_limits(cfg, raise_nofile_limit())
        budget = key_budget(cfg, svc)
        runners = [_runner(build_app(cfg, svc, tls, budget), limits, svc, cfg, gauges=True),
                   _runner(build_peer_app(cfg, svc), limits, svc, cfg, gauges=False)]
        if cfg.s3_port:  # its own connection guard, with the client API's limits
            runners.append(_runner(build_s3(cfg, svc, budget), limits, svc, cfg,
                                   gauges=False))
        for runner in runners:
            await runner.setup()
        refused = await _listen(runners, cfg, (client_tls, listen_peer_tls, client_tls))
        if refused:
            for runner in runners:
                await runner.cleanup()
            await svc.rpc.close()
            print(f"dfsring: {refused}", file=sys.stderr)
            return 2
        svc.start()
        if not auth_enforced(cfg):
            log.warning("client requests are not authenticated (--insecure)")
        log.info("node ready", extra={"fields": {
            "node_id": state.node_id, "listen": f"{cfg.host}:{cfg.port}",
            "tls": "mutual" if cfg.tls_ca else "server" if cfg.tls_cert else "off",
            "peer_listen": f"{cfg.host}:{cfg.peer_port}",
            "s3_listen": f"{cfg.host}:{cfg.s3_port}" if cfg.s3_port else "off",
            "advertise": cfg.advertise,
            "advertise_api": cfg.advertise_api, "durability": cfg.durability,
            "version": __version__}})
        await stop.wait()
        state.stopping = True
        log.info("stopping: draining requests", extra={"fields": {"node_id": state.node_id}})
        await svc.stop()
        await asyncio.gather(*(runner.cleanup() for runner in runners))  # one shared grace
        await svc.coordinator.close(grace_s=BACKGROUND_GRACE_S)
        await svc.rpc.close()
    finally:
        await engine.close()
    log.info("stopped", extra={"fields": {"node_id": data_dir.node_id}})
    return 0


def insecure_start(cfg: NodeConfig) -> str | None:
    """Why this configuration may not start (secure by default, issue 18), or None.

    Without a cluster secret anyone who reaches the peer port could write, delete or
    reconfigure the ring; without root credentials no request could ever authenticate, so
    no key could be created either. --insecure is the explicit development opt-out."""
    if cfg.insecure:
        return None
    if not cfg.cluster_secret:
        return ("no cluster secret: any host reaching the peer port could send peer messages; "
                "set --cluster-secret (or DFSRING_CLUSTER_SECRET), or --insecure for "
                "development only")
    if not (cfg.admin_access_key and cfg.admin_secret_key):
        return ("no root credentials: nobody could ever authenticate to this node; set "
                "--admin-access-key and --admin-secret-key (or DFSRING_ADMIN_ACCESS_KEY and "
                "DFSRING_ADMIN_SECRET_KEY), or --insecure for development only")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = load_config(argv)
    except ConfigError as exc:
        print(f"dfsring: {exc}", file=sys.stderr)
        return 2
    try:
        node_rules(cfg)
    except ConfigError as exc:
        print(f"dfsring: {exc}", file=sys.stderr)
        return 2
    refused = insecure_start(cfg) or root_problem(cfg)
    if refused:
        print(f"dfsring: {refused}", file=sys.stderr)
        return 2
    setup_logging(json_lines=cfg.log_json, level=cfg.log_level)
    allocator.tune()  # file chunks: megabyte buffers (dfsring.foundation.allocator says why)
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
