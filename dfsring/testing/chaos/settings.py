"""Run-wide knobs from the environment: the seed (reproducibility) and the scale (length).

- ``DFSRING_CHAOS_SEED``: any string; the same seed gives the same fault schedule, keys,
  values and client choices (the interleaving still depends on timing). Unset: a fresh random
  seed, which the summary prints so a failing run can be repeated.
- ``CHAOS_SCALE``: a positive number multiplying every scenario's fault phase (default 1).
- ``DFSRING_CHAOS_REPLICAS``: ``after-convergence`` | ``after-read-repair`` | ``off``, overriding
  when each scenario checks "every acknowledged key is stored on all its owners" (e.g. to see
  what a relaxed scenario would need from anti-entropy).
"""

from __future__ import annotations

import os
import random

from dfsring.testing.chaos.collect import ReplicaCheck

SEED_ENV = "DFSRING_CHAOS_SEED"
SCALE_ENV = "CHAOS_SCALE"
REPLICAS_ENV = "DFSRING_CHAOS_REPLICAS"


def seed_from_env() -> str:
    return os.environ.get(SEED_ENV) or str(random.SystemRandom().randrange(1, 10**6))


def scale_from_env() -> float:
    raw = os.environ.get(SCALE_ENV, "1")
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_ENV} must be a number, not {raw!r}") from None
    if not scale > 0:
        raise ValueError(f"{SCALE_ENV} must be > 0, not {raw!r}")
    return scale


def rng_for(seed: str, scenario: str) -> random.Random:
    """The scenario's own RNG: scenarios do not shift each other's choices."""
    return random.Random(f"{seed}/{scenario}")


def replicas_from_env(default: ReplicaCheck) -> ReplicaCheck:
    raw = os.environ.get(REPLICAS_ENV)
    if not raw:
        return default
    try:
        return ReplicaCheck(raw)
    except ValueError:
        known = ", ".join(str(r) for r in ReplicaCheck)
        raise ValueError(f"{REPLICAS_ENV} must be one of {known}, not {raw!r}") from None
