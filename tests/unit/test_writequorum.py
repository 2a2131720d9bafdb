"""Acks while ownership moves (issue 15 part 4): which acks count toward W, pure.

Each test is named after the failure it pins: a coordinator that counted its own copy
without owning the key, acks from nodes that are no longer owners after a ring change, acks
applied under a ring the coordinator has not seen, and a tracker fed more than N replies
(the coordinator's copy, N owners, fallbacks), which raised and turned a committed write
into an error.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core.quorum import Outcome
from dfsring.core.writequorum import WriteAck, WriteQuorum, counted

pytestmark = pytest.mark.unit

NODES = [f"n{i}" for i in range(7)]


@st.composite
def rings(draw: st.DrawFn) -> tuple[tuple[str, ...], int]:
    """(preference list, epoch): 1..4 distinct owners (fewer than N: a small cluster)."""
    owners = draw(st.lists(st.sampled_from(NODES), min_size=1, max_size=4, unique=True))
    return tuple(owners), draw(st.integers(1, 6))


acks_st = st.builds(WriteAck, st.sampled_from(NODES), st.integers(0, 8),
                    st.none() | st.sampled_from(NODES))
replies_st = st.lists(st.one_of(acks_st.map(lambda a: ("ok", a)),
                                st.sampled_from(NODES).map(lambda n: ("fail", n))),
                      max_size=20)


def _feed(wq: WriteQuorum, replies: list[tuple[str, object]]) -> None:
    for kind, item in replies:
        if kind == "ok":
            assert isinstance(item, WriteAck)
            wq.ok(item)
        else:
            assert isinstance(item, str)
            wq.fail(item, "timeout")


def _countable(ack: WriteAck, owners: tuple[str, ...], epoch: int) -> str | None:
    """The owner an ack stands for under (owners, epoch), by the rule's definition."""
    if ack.epoch > epoch:
        return None
    if ack.for_owner is None:
        return ack.replica if ack.replica in owners else None
    if ack.for_owner in owners and ack.replica not in owners:
        return ack.for_owner
    return None


@given(rings(), st.integers(1, 3), replies_st)
def test_write_quorum_never_sees_more_than_n_replies(
        ring: tuple[tuple[str, ...], int], needed: int,
        replies: list[tuple[str, object]]) -> None:
    """Any replies at all (owners, non-owners, fallbacks, the coordinator itself, repeats):
    nothing raises, at most N acks count, and the outcome follows the count."""
    owners, epoch = ring
    wq = WriteQuorum(owners, needed, epoch)
    _feed(wq, replies)
    assert wq.acked <= len(owners) <= wq.n
    assert wq.hinted <= wq.acked
    if wq.acked >= needed:
        assert wq.outcome is Outcome.OK
    elif wq.outcome is Outcome.OK:
        raise AssertionError("OK without W counted acks")


@given(rings(), st.integers(1, 3), replies_st)
def test_write_quorum_counts_only_owners_of_the_ring_the_write_completes_under(
        ring: tuple[tuple[str, ...], int], needed: int,
        replies: list[tuple[str, object]]) -> None:
    """An ack counts for an owner of the deciding ring: its own copy, or a non-owner
    fallback's hint for it; applied under that ring's epoch or an older one."""
    owners, epoch = ring
    wq = WriteQuorum(owners, needed, epoch)
    _feed(wq, replies)
    latest: dict[tuple[str, str | None], WriteAck] = {}  # a repeat keeps the newer epoch
    for kind, a in replies:
        if kind == "ok" and isinstance(a, WriteAck):
            seen = latest.get((a.replica, a.for_owner))
            if seen is None or a.epoch > seen.epoch:
                latest[(a.replica, a.for_owner)] = a
    expected = {o for a in latest.values() if (o := _countable(a, owners, epoch)) is not None}
    assert set(counted(latest.values(), owners, epoch)) == expected
    assert wq.acked == len(expected)


@given(rings(), st.integers(1, 3), st.integers(0, 8))
def test_coordinator_that_is_not_an_owner_does_not_count_its_own_copy(
        ring: tuple[tuple[str, ...], int], needed: int, at: int) -> None:
    owners, epoch = ring
    me = next(n for n in NODES if n not in owners)
    wq = WriteQuorum(owners, needed, epoch)
    wq.ok(WriteAck(me, min(at, epoch)))
    assert wq.acked == 0 and wq.outcome is not Outcome.OK


@given(rings(), rings(), st.integers(1, 3), replies_st, replies_st)
def test_recount_after_ring_change_drops_acks_of_former_owners(
        old: tuple[tuple[str, ...], int], new: tuple[tuple[str, ...], int], needed: int,
        before: list[tuple[str, object]], after: list[tuple[str, object]]) -> None:
    """A coordinator whose ring changed mid-write recounts: the result is exactly what a
    write started under the new ring would count from the same replies, and the owners it
    must still ask are the new owners nobody has heard from."""
    new_epoch = old[1] + new[1]
    wq = WriteQuorum(old[0], needed, old[1])
    _feed(wq, before)
    missing = wq.rering(new[0], new_epoch)
    fresh = WriteQuorum(new[0], needed, new_epoch)
    _feed(fresh, before)
    assert (wq.acked, wq.hinted, wq.outcome) == (fresh.acked, fresh.hinted, fresh.outcome)
    heard = {a.slot for k, a in before if k == "ok" and isinstance(a, WriteAck)}
    heard |= {n for k, n in before if k == "fail" and isinstance(n, str)}
    assert set(missing) == set(new[0]) - heard
    _feed(wq, after)
    _feed(fresh, after)
    assert (wq.acked, wq.outcome) == (fresh.acked, fresh.outcome)


def test_ack_applied_under_a_newer_ring_is_not_counted_until_the_coordinator_has_it() -> None:
    """A replica that applied the write under epoch 5 may no longer own the key there (it
    acks as an old owner still serving reads); a coordinator on epoch 4 cannot know, so the
    ack waits for the recount under epoch 5."""
    wq = WriteQuorum(("a", "b", "c"), 2, 4)
    assert wq.ok(WriteAck("a", 4)) is Outcome.PENDING
    assert wq.ok(WriteAck("b", 5)) is Outcome.PENDING
    assert wq.newest_epoch == 5 and wq.acked == 1
    assert wq.rering(("a", "c", "d"), 5) == ("c", "d")  # b no longer owns: not counted
    assert wq.acked == 1 and wq.outcome is Outcome.PENDING
    assert wq.ok(WriteAck("d", 5)) is Outcome.OK


def test_hinted_ack_counts_only_for_an_owner_of_the_deciding_ring() -> None:
    wq = WriteQuorum(("a", "b", "c"), 2, 3)
    wq.ok(WriteAck("a", 3))
    wq.ok(WriteAck("f", 3, for_owner="b"))  # fallback f holds a hint for down owner b
    assert (wq.acked, wq.hinted, wq.outcome) == (2, 1, Outcome.OK)
    wq.rering(("a", "c", "d"), 4)  # b lost the key: its hint no longer stands for an owner
    assert (wq.acked, wq.hinted, wq.outcome) == (1, 0, Outcome.PENDING)
    wq.ok(WriteAck("c", 3, for_owner="d"))  # an owner's hint for another owner: one node
    assert wq.acked == 1
