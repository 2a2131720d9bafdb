"""Quorum bookkeeping: the decision matches its definition, is made exactly when inevitable
and never changes afterwards; level parsing accepts only the documented values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.core.quorum import Outcome, QuorumGroups, QuorumTracker, resolve_level
from dfsring.foundation.errors import BadRequest, QuorumNotMet

pytestmark = pytest.mark.unit


@st.composite
def reply_sequences(draw: st.DrawFn) -> tuple[int, int, list[tuple[str, bool]]]:
    """n, needed, and replies (replica, succeeded) that may repeat a replica."""
    n = draw(st.integers(1, 7))
    needed = draw(st.integers(1, n))
    replica = st.integers(0, n - 1).map(lambda i: f"r{i}")
    replies = draw(st.lists(st.tuples(replica, st.booleans()), max_size=3 * n))
    return n, needed, replies


def send(tracker: QuorumTracker, replica: str, succeeded: bool) -> Outcome:
    if succeeded:
        return tracker.ok(replica, value=f"v-{replica}")
    return tracker.fail(replica, "timeout")


@given(reply_sequences())
def test_decision_is_made_exactly_when_inevitable_and_never_flips(
    case: tuple[int, int, list[tuple[str, bool]]],
):
    n, needed, replies = case
    tracker = QuorumTracker(n, needed)
    first: dict[str, bool] = {}
    decided: Outcome | None = None
    for replica, succeeded in replies:
        outcome = send(tracker, replica, succeeded)
        first.setdefault(replica, succeeded)
        acked = sum(first.values())
        failed = len(first) - acked
        unheard = n - len(first)
        assert (tracker.acked, tracker.failed) == (acked, failed)
        assert outcome is tracker.outcome
        sure_ok = acked >= needed  # even if every unheard replica fails
        sure_fail = acked + unheard < needed  # even if every unheard replica succeeds
        assert sure_fail == (failed >= n - needed + 1)
        if decided is not None:
            assert outcome is decided
        elif sure_ok:
            assert outcome is Outcome.OK
        elif sure_fail:
            assert outcome is Outcome.FAILED
        else:
            assert outcome is Outcome.PENDING
        if outcome is not Outcome.PENDING:
            decided = outcome
        assert tracker.done == (decided is not None)
    if len(first) == n:
        assert tracker.done
    assert tracker.outcomes() == {r: "ok" if s else "timeout" for r, s in first.items()}
    assert tracker.values() == {r: f"v-{r}" for r, s in first.items() if s}


def test_a_replica_answering_twice_counts_once():
    tracker = QuorumTracker(3, 2)
    assert tracker.ok("a", 1) is Outcome.PENDING
    assert tracker.ok("a", 2) is Outcome.PENDING
    assert tracker.fail("a", "late error") is Outcome.PENDING
    assert (tracker.acked, tracker.failed) == (1, 0)
    assert tracker.values() == {"a": 1}
    assert tracker.ok("b") is Outcome.OK


def test_fails_once_n_minus_needed_plus_one_failed():
    tracker = QuorumTracker(5, 3)
    assert tracker.fail("a", "refused") is Outcome.PENDING
    assert tracker.fail("b", "timeout") is Outcome.PENDING
    assert tracker.fail("c", "timeout") is Outcome.FAILED
    assert tracker.ok("d") is Outcome.FAILED  # late replies are recorded, never flip it
    assert tracker.outcomes() == {"a": "refused", "b": "timeout", "c": "timeout", "d": "ok"}
    error = tracker.error()
    assert isinstance(error, QuorumNotMet)
    assert (error.needed, error.acked) == (3, 1)
    assert error.outcomes == tracker.outcomes()


def test_replies_after_success_are_kept_for_read_repair():
    tracker = QuorumTracker(3, 1)
    assert tracker.ok("a", "old") is Outcome.OK
    assert tracker.ok("b", "new") is Outcome.OK
    assert tracker.fail("c", "corrupt") is Outcome.OK
    assert tracker.values() == {"a": "old", "b": "new"}


def test_more_replicas_than_n_is_a_programming_error():
    tracker = QuorumTracker(2, 1)
    tracker.ok("a")
    tracker.fail("b", "x")
    with pytest.raises(ValueError, match="all 2 replicas"):
        tracker.ok("c")


@pytest.mark.parametrize(("n", "needed"), [(0, 1), (3, 0), (3, 4), (1, -1)])
def test_tracker_rejects_impossible_quorums(n: int, needed: int):
    with pytest.raises(ValueError):
        QuorumTracker(n, needed)


# -- resolve_level --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "n", "default", "expected"),
    [
        (None, 3, 2, 2),
        (None, 1, 2, 1),  # the default is clamped to n
        ("one", 3, 2, 1),
        ("ONE", 3, 2, 1),
        ("quorum", 3, 1, 2),
        ("quorum", 4, 1, 3),
        ("quorum", 5, 1, 3),
        ("quorum", 1, 1, 1),
        ("all", 5, 2, 5),
        (" all ", 5, 2, 5),
        ("1", 3, 2, 1),
        ("3", 3, 2, 3),
        ("02", 3, 1, 2),
    ],
)
def test_resolve_level_accepts_documented_values(raw: str | None, n: int, default: int, expected):
    assert resolve_level(raw, n, default) == expected


@pytest.mark.parametrize("raw", ["", "0", "4", "-1", "two", "1.5", "+2", "٣", "quorum!", "1e0"])
def test_resolve_level_rejects_everything_else(raw: str):
    with pytest.raises(BadRequest, match="'one', 'quorum', 'all' or an integer from 1 to 3"):
        resolve_level(raw, 3, 2)


@given(st.integers(1, 9), st.integers(1, 12), st.text(max_size=12))
def test_resolve_level_is_always_within_1_to_n_or_bad_request(n: int, default: int, raw: str):
    try:
        level = resolve_level(raw, n, default)
    except BadRequest:
        return
    assert 1 <= level <= n


def test_resolve_level_rejects_nonsense_configuration():
    with pytest.raises(ValueError):
        resolve_level(None, 0, 1)
    with pytest.raises(ValueError):
        resolve_level(None, 3, 0)


def test_long_input_is_truncated_in_the_message():
    with pytest.raises(BadRequest) as info:
        resolve_level("x" * 500, 3, 2)
    assert len(str(info.value)) < 160


# --- QuorumGroups: reads during an ownership transfer ----------------------------------------


def test_groups_need_the_quorum_in_every_group() -> None:
    g = QuorumGroups([("a", "b", "c"), ("a", "d", "e")], 2)
    assert g.ok("a") is Outcome.PENDING  # a counts in both groups
    assert g.ok("b") is Outcome.PENDING  # first group done, second still at 1
    assert g.ok("d") is Outcome.OK
    assert g.acked == 2 and set(g.values()) == {"a", "b", "d"}


def test_groups_fail_as_soon_as_one_group_cannot_make_it() -> None:
    g = QuorumGroups([("a", "b", "c"), ("d", "e", "f")], 2)
    g.ok("a")
    g.ok("b")
    g.fail("d", "down")
    assert g.fail("e", "timeout") is Outcome.FAILED
    assert g.outcomes()["e"] == "timeout"
    assert g.needed == 2


def test_groups_smaller_than_needed_are_padded_with_failures() -> None:
    g = QuorumGroups([("a",)], 2)
    assert g.ok("a") is Outcome.FAILED


@given(st.lists(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=4, unique=True),
                min_size=1, max_size=3),
       st.integers(1, 3), st.permutations("abcdefg"), st.sets(st.sampled_from("abcdefg")))
def test_groups_decide_like_a_tracker_per_group(groups: list[list[str]], needed: int,
                                                order: list[str], failing: set[str]) -> None:
    g = QuorumGroups([tuple(x) for x in groups], needed)
    for node in order:
        if node in failing:
            g.fail(node, "x")
        else:
            g.ok(node)
    per_group = [len([n for n in grp if n not in failing]) >= needed for grp in groups]
    assert (g.outcome is Outcome.OK) == all(per_group)
    assert (g.outcome is Outcome.FAILED) == (not all(per_group))
