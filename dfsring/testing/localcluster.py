"""N real nodes in one process and one event loop, talking over a LocalNetwork.

Each node is built by dfsring.node.build_services, the wiring a real node runs, with a
LocalTransport instead of the HTTP client and its PeerService attached to the network
instead of an HTTP listener. Storage is real: the in-memory engine, or LMDB in the test's
temp dir; files go to that temp dir too.

The cluster starts formed: every node's cluster.json is written before it starts, naming the
same epoch-1 ring of all N nodes (settled) and every member as up. That skips founding,
joins and ring changes (the cluster tests cover those over real processes), so a test starts
in milliseconds from a known ring. Gossip does run, over the LocalNetwork, so liveness is
real: a node partitioned away long enough is held down by its peers' failure detectors.
The other background loops (handoff, anti-entropy, transfers, scrub, files) are not started:
a test runs their `run_once()` when it wants a round, so what it asserts does not depend on
timers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dfsring.core.keys import ObjectName
from dfsring.core.membership import MemberState, Status
from dfsring.core.ringstate import RingState
from dfsring.foundation.config import NodeConfig, load_config
from dfsring.node import Services, build_services
from dfsring.replication.ringchange import load_acceptor
from dfsring.ring import RingMember
from dfsring.storage import Engine, LmdbEngine
from dfsring.storage.clusterfile import ClusterFile
from dfsring.storage.clusterfile import save as save_cluster_file
from dfsring.storage.datadir import DataDir, open_data_dir
from dfsring.storage.hintstore import TABLES as HINT_TABLES
from dfsring.storage.localstore import TABLES
from dfsring.storage.memory import MemoryEngine
from dfsring.transport.local import LocalNetwork
from dfsring.transport.messages import Message

CLUSTER = "localcluster"
STOP_GRACE_S = 0.2


@dataclass
class LocalNode:
    node_id: str
    address: str
    cfg: NodeConfig
    data_dir: DataDir
    engine: Engine
    svc: Services


@dataclass
class InProcessCluster:
    network: LocalNetwork
    nodes: list[LocalNode] = field(default_factory=list)

    def node(self, node_id: str) -> LocalNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def owners(self, name: ObjectName) -> tuple[str, ...]:
        """The preference list of `name` under the (shared) ring."""
        svc = self.nodes[0].svc
        return svc.membership.ring.preference_list(svc.store.partition(name))

    def fallbacks(self, name: ObjectName) -> tuple[str, ...]:
        svc = self.nodes[0].svc
        return tuple(svc.membership.ring.fallbacks(svc.store.partition(name)))

    async def deliver(self, node_id: str, msg: Message) -> Message:
        """``msg`` handled by ``node_id``'s peer handler table as if a peer had sent it (its
        wire form, decoded and validated as on the peer listener); the reply message."""
        svc = self.node(node_id).svc
        cls = svc.peer.knows(msg.KIND)
        if cls is None:
            raise LookupError(f"no node handles {msg.KIND!r}")
        return (await svc.peer.answer(cls, msg.encode(), ())).message

    async def stop(self) -> None:
        for node in self.nodes:
            self.network.detach(node.address)
        for node in self.nodes:
            await node.svc.stop()
            await node.svc.coordinator.close(grace_s=STOP_GRACE_S)
            await node.svc.rpc.close()
            await node.engine.close()
            node.data_dir.release()


def config_for(root: Path, index: int, **settings: object) -> NodeConfig:
    """Node `index`'s settings, parsed and validated as a node's command line is: fast
    timers and small partitions, unless `settings` (flag names with underscores) say else."""
    node_id = f"n{index + 1}"
    values: dict[str, object] = {
        "data_dir": root / node_id, "node_id": node_id,
        "advertise": f"127.0.0.{index + 1}:7070", "durability": "none",
        "partitions": 16, "gossip_interval": 0.2, "request_timeout": 1.0,
        "hint_rate": 1 << 30, "ae_rate": 1 << 30, **settings}
    argv = [part for key, value in values.items()
            for part in (f"--{key.replace('_', '-')}", str(value))]
    return load_config(argv, environ={})


async def start_cluster(root: Path, size: int = 5, *, lmdb: bool = False, seed: int = 0,
                        gossip: bool = True, **settings: object) -> InProcessCluster:
    """`size` nodes on one LocalNetwork, formed (see the module docstring) and serving."""
    network = LocalNetwork(seed)
    cluster = InProcessCluster(network)
    configs = [config_for(root, i, **settings) for i in range(size)]
    dirs = [open_data_dir(cfg.data_dir, cfg.node_id) for cfg in configs]
    nonces = [load_acceptor(d.path / "acceptor.json").nonce for d in dirs]
    ring = RingState(CLUSTER, 1, tuple(RingMember(d.node_id, acceptor=nonce)
                                       for d, nonce in zip(dirs, nonces, strict=True)))
    members = tuple(MemberState(d.node_id, cfg.advertise, "", Status.UP, 1, 0, 1, nonce,
                                cfg.advertise_api)
                    for d, cfg, nonce in zip(dirs, configs, nonces, strict=True))
    for cfg, data_dir in zip(configs, dirs, strict=True):
        save_cluster_file(data_dir.path / "cluster.json",
                          ClusterFile(1, Status.UP, 1, 1, ring, peers=members))
        engine: Engine = (LmdbEngine(data_dir.db_path, (*TABLES, *HINT_TABLES), durable=False)
                          if lmdb else MemoryEngine((*TABLES, *HINT_TABLES)))
        svc = build_services(cfg, data_dir, engine, transport=network.transport(cfg.advertise))
        await svc.store.open()
        await svc.files.open()
        network.attach(cfg.advertise, svc.peer)
        cluster.nodes.append(LocalNode(data_dir.node_id, cfg.advertise, cfg, data_dir, engine,
                                       svc))
    if gossip:
        for node in cluster.nodes:  # the one worker these tests leave running
            node.svc.workers["gossip"].start()
    return cluster
