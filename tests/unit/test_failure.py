"""The phi accrual detector on simulated time: detection delay, tolerance of jitter and added
latency, numerical safety. Time is a float the test advances; nothing sleeps."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.core.failure import (
    MAX_PHI,
    DetectorSettings,
    Liveness,
    PhiAccrualDetector,
    phi_of,
)

pytestmark = pytest.mark.unit

INTERVAL = 0.5
STEP = 0.01  # how finely the simulation samples phi between arrivals


def akka_phi(elapsed: float, mean: float, std: float) -> float:
    """Akka's formula as written, for comparison where it does not overflow."""
    y = (elapsed - mean) / std
    e = math.exp(-y * (1.5976 + 0.070566 * y * y))
    p_later = e / (1 + e) if elapsed > mean else 1 - 1 / (1 + e)
    return -math.log10(p_later)


def feed(detector: PhiAccrualDetector, arrivals: list[float], node: str = "n") -> float:
    """Deliver the arrivals in order, returning the highest phi seen at any STEP in between."""
    highest = 0.0
    for previous, arrival in itertools.pairwise(arrivals):
        detector.heartbeat(node, previous)
        t = previous
        while t < arrival:
            highest = max(highest, detector.phi(node, t))
            t += STEP
    detector.heartbeat(node, arrivals[-1])
    return highest


def first_time_at(detector: PhiAccrualDetector, state: Liveness, since: float) -> float:
    """Seconds after `since` when the node first reaches `state` (or worse), never beating."""
    order = list(Liveness)
    t = since
    while order.index(detector.liveness("n", t)) < order.index(state):
        t += STEP
        assert t - since < 60, "never detected"
    return t - since


def regular(count: int, start: float = 0.0) -> list[float]:
    return [start + INTERVAL * k for k in range(count)]


# -- the formula -------------------------------------------------------------------------------


@pytest.mark.parametrize("elapsed", [0.0, 0.3, 0.9, 1.0, 1.1, 1.5, 2.0, 2.5])
def test_phi_matches_akkas_formula(elapsed: float) -> None:
    assert phi_of(elapsed, 1.0, 0.2) == pytest.approx(akka_phi(elapsed, 1.0, 0.2), rel=1e-9)


def test_phi_is_log10_two_at_the_mean() -> None:
    assert phi_of(1.0, 1.0, 0.1) == pytest.approx(math.log10(2))


@given(st.floats(-1e308, 1e308), st.floats(-1e6, 1e6), st.floats(1e-3, 1e6))
@settings(max_examples=200)
def test_phi_never_overflows_and_stays_in_range(elapsed: float, mean: float, std: float) -> None:
    value = phi_of(elapsed, mean, std)
    assert 0.0 <= value <= MAX_PHI


@given(st.floats(0, 1e4), st.floats(0, 1e4))
@settings(max_examples=100)
def test_phi_grows_with_silence(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert phi_of(lo, 1.5, 0.1) <= phi_of(hi, 1.5, 0.1)


def test_a_very_long_silence_is_capped_not_infinite() -> None:
    detector = PhiAccrualDetector()
    detector.heartbeat("n", 0.0)
    assert detector.phi("n", 1e12) == MAX_PHI
    assert detector.liveness("n", 1e12) is Liveness.DOWN


# -- detection ---------------------------------------------------------------------------------


def test_silent_after_20s_of_half_second_beats_is_down_within_3_5s() -> None:
    detector = PhiAccrualDetector()
    arrivals = regular(41)  # 0 .. 20 s
    assert feed(detector, arrivals) < DetectorSettings().suspect_threshold
    suspect = first_time_at(detector, Liveness.SUSPECT, arrivals[-1])
    down = first_time_at(detector, Liveness.DOWN, arrivals[-1])
    # The figures the module docstring quotes.
    assert suspect == pytest.approx(1.89, abs=0.02)
    assert down == pytest.approx(2.15, abs=0.02)
    assert down < 3.5


def test_once_the_bootstrap_samples_leave_the_window_detection_is_faster() -> None:
    detector = PhiAccrualDetector()
    arrivals = regular(400)
    feed(detector, arrivals)
    assert first_time_at(detector, Liveness.SUSPECT, arrivals[-1]) == pytest.approx(1.81, abs=0.02)
    assert first_time_at(detector, Liveness.DOWN, arrivals[-1]) == pytest.approx(2.02, abs=0.02)


@pytest.mark.parametrize("seed", range(8))
def test_jittered_beats_never_suspect_and_silence_is_down_within_3_5s(seed: int) -> None:
    rng = random.Random(seed)
    arrivals = [0.0] + [INTERVAL * k + rng.uniform(-0.2, 0.2) for k in range(1, 41)]
    detector = PhiAccrualDetector()
    assert feed(detector, arrivals) < 0.01
    assert first_time_at(detector, Liveness.DOWN, arrivals[-1]) < 3.5


@pytest.mark.parametrize("shift_at", [1, 5, 40, 150])
def test_added_latency_never_raises_suspicion(shift_at: int) -> None:
    """From beat `shift_at` on, every arrival is 0.2 s later (a slower path, not a failure)."""
    arrivals = [t + (0.2 if k >= shift_at else 0.0) for k, t in enumerate(regular(200))]
    detector = PhiAccrualDetector()
    assert feed(detector, arrivals) < DetectorSettings().suspect_threshold


def test_the_gap_of_an_outage_is_not_learned() -> None:
    detector = PhiAccrualDetector()
    feed(detector, regular(41))
    detector.heartbeat("n", 120.0)  # back after 100 s down
    feed(detector, regular(5, start=120.5))
    assert first_time_at(detector, Liveness.DOWN, 122.5) < 3.5


# -- bookkeeping -------------------------------------------------------------------------------


def test_unknown_node_is_up_with_phi_zero() -> None:
    detector = PhiAccrualDetector()
    assert detector.phi("ghost", 5.0) == 0.0
    assert detector.liveness("ghost", 5.0) is Liveness.UP
    assert detector.known() == []


def test_first_heartbeat_bootstraps_from_the_first_interval_estimate() -> None:
    detector = PhiAccrualDetector()
    detector.heartbeat("n", 10.0)
    # mean 1.0 + pause 1.0, std 0.25: at 2.0 s phi is log10(2)
    assert detector.phi("n", 12.0) == pytest.approx(math.log10(2))
    assert detector.liveness("n", 10.5) is Liveness.UP


def test_reset_forgets_history_and_counts_now_as_first_arrival() -> None:
    detector = PhiAccrualDetector()
    feed(detector, regular(41))
    detector.reset("n", 100.0)
    assert detector.phi("n", 102.0) == pytest.approx(math.log10(2))


def test_forget_and_known() -> None:
    detector = PhiAccrualDetector()
    for node in ("b", "a", "c"):
        detector.heartbeat(node, 0.0)
    detector.forget("b")
    detector.forget("missing")
    assert detector.known() == ["a", "c"]
    assert detector.phi("b", 100.0) == 0.0


def test_repeated_or_backwards_time_is_ignored() -> None:
    detector = PhiAccrualDetector()
    feed(detector, regular(10))
    before = detector.phi("n", 6.0)
    detector.heartbeat("n", 4.5)  # the last arrival again (news relayed twice)
    detector.heartbeat("n", 1.0)  # older
    assert detector.phi("n", 6.0) == before


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 2.0, "suspect_threshold": 3.0}, {"suspect_threshold": 0.0}, {"window": 1},
     {"min_std_s": 0.0}, {"first_interval_s": 0.0}, {"acceptable_pause_s": -1.0}],
)
def test_settings_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DetectorSettings(**kwargs)  # type: ignore[arg-type]


def test_custom_thresholds_are_used() -> None:
    detector = PhiAccrualDetector(DetectorSettings(threshold=1.0, suspect_threshold=0.5))
    detector.heartbeat("n", 0.0)
    assert detector.liveness("n", 2.0) is Liveness.UP  # phi = log10(2) = 0.30
    assert detector.liveness("n", 2.2) is Liveness.SUSPECT  # 0.67
    assert detector.liveness("n", 2.6) is Liveness.DOWN  # 2.09
