"""Siblings and contexts bounded (issue 15 part 6), pure: the sibling limit of a write, the
relation between that limit and what a peer accepts in one message, and contexts naming
actors or counters this cluster never issued."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core import actors, vclock
from dfsring.core.vclock import MAX_CONTEXT_ENTRIES, Sibling, Versions, VersionVector
from dfsring.foundation import config
from dfsring.foundation.errors import TooManySiblings
from dfsring.http import internal_api
from dfsring.transport.messages import ReplicaWrite

BASE = "node1.a1b2c3"


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.lists(st.booleans(), min_size=1, max_size=20))
def test_too_many_siblings_a_blind_write_past_the_limit_is_refused_and_a_resolving_one_is_not(
        limit: int, with_context: list[bool]) -> None:
    state = Versions()
    for i, resolve in enumerate(with_context):
        context = state.clock if resolve else VersionVector()
        expected = 1 if resolve else len(state.siblings) + 1
        actor = actors.epoch_actor(BASE, 1)
        if expected > limit:
            with pytest.raises(TooManySiblings) as err:
                vclock.update(state, context, actor, b"v%d" % i, max_siblings=limit)
            assert "Dfs-Context" in str(err.value) and err.value.limit == limit
            continue
        state = vclock.update(state, context, actor, b"v%d" % i, max_siblings=limit)
        assert len(state.siblings) == expected <= limit


def _worst_state(siblings: int, value_size: int) -> Versions:
    """The largest key state ``siblings`` values of ``value_size`` bytes can make: longest
    actors, content types and timestamps, and a clock of MAX_CONTEXT_ENTRIES actors."""
    node = "n" * 64
    actor_of = [actors.epoch_actor(f"{node}.{i:06x}", actors.MAX_EPOCH) for i in range(
        max(siblings, MAX_CONTEXT_ENTRIES))]
    sibs = tuple(sorted((Sibling((actor_of[i], vclock.MAX_COUNTER), b"x" * value_size,
                                 "t" * 255, vclock.MAX_COUNTER) for i in range(siblings)),
                        key=lambda s: s.dot))
    clock = VersionVector.from_dict({a: vclock.MAX_COUNTER for a in actor_of})
    return Versions(clock, sibs)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_too_many_siblings_a_key_at_the_limit_on_every_replica_still_fits_a_peer_message(
        n: int) -> None:
    """The default limit for N replicas, times N (the join of replicas that each took
    writes apart), with values at the inline limit, fits the peer's body limit."""
    cfg = config.load_config(["--data-dir", "d", "--n", str(n), "--r", "1", "--w", "1",
                       "--max-value-size", "4096"], environ={})
    assert cfg.max_siblings * n <= config.PEER_SIBLINGS_CARRIED
    assert config.PEER_SIBLINGS_CARRIED == internal_api.MAX_SIBLINGS_CARRIED
    state = _worst_state(cfg.max_siblings * n, cfg.max_value_size)
    msg = ReplicaWrite(b"b" * 63, b"k" * 1024, vclock.encode_versions(state), 2**63 - 1)
    peer_accepts = cfg.max_value_size * internal_api.MAX_SIBLINGS_CARRIED + (1 << 16)
    assert len(msg.encode()) <= peer_accepts


def test_too_many_siblings_a_limit_a_peer_could_not_carry_is_refused_at_start() -> None:
    with pytest.raises(config.ConfigError, match="max-siblings"):
        config.load_config(["--data-dir", "d", "--max-siblings", "30"], environ={})  # 30 x N=3 > 64
    assert config.load_config(["--data-dir", "d", "--max-siblings", "21"], environ={}
                       ).max_siblings == 21
    assert config.load_config(["--data-dir", "d"], environ={}).max_siblings == 20


_issued = st.builds(lambda node, tag, epoch: actors.epoch_actor(f"{node}.{tag:06x}", epoch),
                    st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
                    st.integers(0, 2**24 - 1), st.integers(0, 1_700_000_000_000 << 10))


@given(st.lists(st.tuples(_issued, st.integers(1, 1_000_000)), max_size=8,
                unique_by=lambda e: e[0]))
def test_invalid_context_actors_this_cluster_issues_are_accepted(
        entries: list[tuple[str, int]]) -> None:
    vv = VersionVector.from_dict(dict(entries))
    assert actors.context_problem(vv, 1_800_000_000_000) is None


@given(st.text(min_size=1, max_size=40).filter(lambda a: "." not in a))
def test_invalid_context_an_actor_not_of_the_cluster_s_form_is_refused(actor: str) -> None:
    assert actors.context_problem(VersionVector(((actor, 1),)), 0) is not None


@pytest.mark.parametrize("entries", [
    {BASE: 2**48 + 1},                                        # a counter no key ever reaches
    {actors.epoch_actor(BASE, (1_900_000_000_000 << 10)): 1},  # an epoch from the future
    {"mallory": 1},                                           # not an actor form we issue
    {"node1.zzzzzz": 1},                                      # base actor tag is not hex
])
def test_invalid_context_absurd_counters_and_foreign_actors_are_refused(
        entries: dict[str, int]) -> None:
    problem = actors.context_problem(VersionVector.from_dict(entries), 1_800_000_000_000)
    assert problem is not None
