"""The chaos toolkit: faults on every link, a recording workload, and a checker of the end state.

Modules, from the pure core outwards::

    history   OpRecord (one per client operation, JSON lines), self-verifying values
    rot       flipped bytes in a stopped node's values and chunk files (bit rot)
    checker   check(history, observed) -> Report: lost writes, phantoms, corruption, lost
              updates, replica placement, ring agreement, empty queues (pure)
    nemesis   which links a partition cuts; seeded rotating schedules (pure)
    latency   percentiles of recorded operations by phase / node (pure)
    summary   one line and one table row per scenario (pure)
    settings  DFSRING_CHAOS_SEED, CHAOS_SCALE, DFSRING_CHAOS_REPLICAS
    workload  bounded asyncio clients recording every operation (aiohttp)
    collect   the observed final state, with deadlines; convergence wait (aiohttp)
    wiring    ChaosCluster: N local nodes, one Toxiproxy-compatible proxy per directed link
    scenario  run_chaos (workload + nemesis + heal + converge + observe + check) and the
              nemeses for a ChaosCluster: partitions, kill_restart, leave_and_rejoin,
              black_hole, kill_and_wipe

Against a deployment of your own (you inject the faults; it records and checks)::

    python -m dfsring.testing.chaos --url http://10.0.0.1:7070 --url ... --duration 120

The pytest scenarios live in tests/chaos (``pytest -m chaos``).

Adding a scenario: a nemesis is ``async def (workload) -> None`` that returns when its faults
are over (it may use any ChaosCluster operation, kill / wipe / restart nodes, or change
``workload.targets``); ``heal`` brings everything back; :class:`~.scenario.Checking` says how
strict the end state must be. A kind of operation (put, rmw, get, file) is an ``OpKind``, its
client code in ``workload`` and its final-state rule in ``checker``.
"""
