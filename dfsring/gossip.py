"""Membership: who is in the cluster, and the ring computed from it.

This first version is the static membership the replication issue allows: every node is
started with the same --seeds list naming all members. A node learns each seed's node id and
zone with a Hello exchange (the seed learns ours in the same call), keeps the member list in
its data dir so a restart does not depend on peers being up, and builds the ring from it.
Push-pull gossip, failure detection and ring epochs replace the discovery loop in the
membership issue; the `ring`/`address_of`/`members` surface stays.

The node is `complete` once every seed is known: before that its ring may lack members, so
the node reports "joining" and refuses key/value traffic rather than placing data on a ring
the others do not share.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from dfsring.messages import Hello
from dfsring.ring import Ring, RingMember
from dfsring.rpc import RpcClient, RpcError

log = logging.getLogger("dfsring.membership")
DISCOVERY_INTERVAL_S = 0.2
DISCOVERY_MAX_INTERVAL_S = 5.0
HELLO_DEADLINE_S = 1.0


@dataclass(frozen=True, slots=True)
class Member:
    node_id: str
    address: str
    zone: str = ""


class Membership:
    def __init__(self, me: Member, seeds: Iterable[str], *, replicas: int, partition_bits: int,
                 rpc: RpcClient, state_file: Path) -> None:
        self.me = me
        self.seeds = tuple(s for s in dict.fromkeys(seeds) if s != me.address)
        self.replicas = replicas
        self.partition_bits = partition_bits
        self.rpc = rpc
        self.state_file = state_file
        self._members: dict[str, Member] = {me.node_id: me}
        self._load()
        self.ring = self._build_ring()
        self._task: asyncio.Task[None] | None = None

    # --- queries ---------------------------------------------------------------------------

    @property
    def members(self) -> list[Member]:
        return sorted(self._members.values(), key=lambda m: m.node_id)

    @property
    def missing_seeds(self) -> list[str]:
        known = {m.address for m in self._members.values()}
        return [s for s in self.seeds if s not in known]

    @property
    def complete(self) -> bool:
        return not self.missing_seeds

    def address_of(self, node_id: str) -> str:
        return self._members[node_id].address

    # --- changes ---------------------------------------------------------------------------

    def learn(self, member: Member) -> bool:
        """Add or update a member; rebuild the ring and persist when anything changed."""
        if member.node_id == self.me.node_id or self._members.get(member.node_id) == member:
            return False
        for other in list(self._members.values()):
            if other.address == member.address and other.node_id != member.node_id:
                log.warning("address now belongs to another node id", extra={"fields": {
                    "address": member.address, "old": other.node_id, "new": member.node_id}})
        self._members[member.node_id] = member
        self.ring = self._build_ring()
        self._save()
        log.info("member learned", extra={"fields": {"node_id": member.node_id,
                                                      "address": member.address,
                                                      "ring": self.ring.hash[:12]}})
        return True

    def _build_ring(self) -> Ring:
        members = [RingMember(m.node_id, m.zone) for m in self._members.values()]
        return Ring.build(members, replicas=self.replicas, partition_bits=self.partition_bits)

    def _load(self) -> None:
        try:
            doc = orjson.loads(self.state_file.read_bytes())
            for item in doc["members"]:
                m = Member(str(item["node_id"]), str(item["address"]), str(item.get("zone", "")))
                if m.node_id != self.me.node_id:
                    self._members[m.node_id] = m
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable member list", extra={"fields": {
                "file": str(self.state_file), "error": str(exc)}})

    def _save(self) -> None:
        doc = {"members": [{"node_id": m.node_id, "address": m.address, "zone": m.zone}
                           for m in self.members]}
        tmp = self.state_file.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(doc))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_file)

    # --- discovery loop --------------------------------------------------------------------

    async def run_once(self) -> int:
        """Say hello to every seed whose id we do not know yet; returns how many are left."""
        hello = Hello(self.me.node_id, self.me.address, self.me.zone)
        for seed in self.missing_seeds:
            try:
                reply = await self.rpc.call(seed, hello, Hello, HELLO_DEADLINE_S)
            except RpcError as exc:
                log.debug("seed not reachable yet", extra={"fields": {"seed": seed,
                                                                       "error": exc.detail}})
                continue
            self.learn(Member(reply.node_id, seed, reply.zone))
        return len(self.missing_seeds)

    async def run_forever(self) -> None:
        interval = DISCOVERY_INTERVAL_S
        while True:
            left = await self.run_once()
            cap = DISCOVERY_MAX_INTERVAL_S if left == 0 else 1.0
            interval = min(interval * 1.5, cap)
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name="membership")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
