"""Poisoned and absurd windows (issue 11 item 4, red-team L2/L3), pure: the core is total on
any TrafficWindow, the edges' screen (`window_problem`) rejects values outside the physical
limits, `decide_window` skips a window without touching the state, and a restart's replay
skips the same windows as the live loop did."""

from __future__ import annotations

import math
from typing import Any

import pytest

from helpers import flat_profile, plan_dict, with_changes
from scaler.core.interpolation import perf_model
from scaler.core.observations import MAX_RATE, Observation, TrafficWindow, WorkerLoad, window_problem, within_limits
from scaler.core.plan import Plan
from scaler.core.planner import decide, new_state
from scaler.core.replay import Skipped, decide_window, replay_windows, throughput_observation
from scaler.core.throughput import MAX_CORRECTION, MAX_REPLICAS, MIN_CORRECTION, ceil_replicas

T = 60.0
MODEL = perf_model(flat_profile(ttft_ms=50.0, itl_ms=5.0))
WORKERS = (WorkerLoad("p0", "prefill"), WorkerLoad("p1", "prefill"), WorkerLoad("d0", "decode"))
GOOD: dict[str, float] = dict(
    window_seconds=T, requests=3000.0, isl=3000.0, osl=150.0, ttft_ms=60.0, itl_ms=6.0,
    request_duration_s=3.0, peak_rate=60.0, arrival_dispersion=1.5, backlog=2.0,
)
EXTREMES = (1e308, 1e-300, math.inf, -math.inf, math.nan, -1.0, -1e308, 0.0)
FIELDS = tuple(k for k in GOOD if k != "window_seconds")


def _plan(sizing: str, predictor: str = "kalman", queueing: bool = False) -> Plan:
    doc = plan_dict(predictor=predictor, correction=True, interval_seconds=int(T), sizing=sizing)
    if queueing:
        doc = with_changes(doc, {"spec.scaling.throughput.queueing": {"enabled": True, "minRequests": 1}})
    return Plan.model_validate(doc)


PLANS = {
    "dynamo-kalman": lambda: _plan("dynamo"),
    "dynamo-queueing": lambda: _plan("dynamo", queueing=True),
    "attainment-kalman": lambda: _plan("attainment"),
    "attainment-constant": lambda: _plan("attainment", predictor="constant"),
}


def _window(**changes: float) -> TrafficWindow:
    return TrafficWindow(**{**GOOD, **changes})


def _obs(k: int, window: TrafficWindow) -> Observation:
    return Observation(timestamp=k * T, traffic=window, ready_replicas={"prefill": 2, "decode": 1})


# -- the core is total ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(PLANS))
def test_decide_never_raises_and_stays_in_bounds_on_extreme_values(kind: str) -> None:
    """Every field at every extreme, between good windows, straight through `decide` (no
    screen): an int within the pool's bounds for every pool, correction factors within
    their documented range. Before: OverflowError in ceil_replicas for requests, ISL or OSL
    1e308 (and OSL 1e300 with the attainment sizing), ValueError for a duration of 1e308,
    correction factors of -0.02."""
    plan = PLANS[kind]()
    cases = 0
    for name in FIELDS:
        for value in EXTREMES:
            try:
                bad = _window(**{name: value})
            except ValueError:
                assert name == "requests" and not (math.isfinite(value) and value >= 0)
                continue
            state = new_state(plan)
            for k, window in enumerate((_window(), bad, _window(), _window(requests=1500.0))):
                d = decide(plan, MODEL, _obs(k, window), state)
                for pool, pd in d.pools.items():
                    lo, hi = plan.pools[pool].min_replicas, plan.pools[pool].max_replicas
                    assert isinstance(pd.replicas, int) and lo <= pd.replicas <= hi, (name, value, k, pool)
                tp = d.throughput
                assert tp is not None
                for cf in (tp.correction_prefill, tp.correction_decode):
                    assert MIN_CORRECTION <= cf <= MAX_CORRECTION, (name, value, k, cf)
                assert math.isfinite(tp.predicted_rate) and 0 <= tp.predicted_rate <= MAX_RATE
            cases += 1
    assert cases == len(FIELDS) * len(EXTREMES) - 5  # requests: inf, -inf, nan, -1, -1e308 refused


@pytest.mark.parametrize(
    ("x", "want"),
    [(math.inf, MAX_REPLICAS), (1e308, MAX_REPLICAS), (math.nan, 0), (-math.inf, 0), (-3.0, 0), (1e-300, 0),
     (2.0 + 1e-12, 2), (2.5, 3), (0.0, 0)],  # 1e-300: float noise, no replica,
)
def test_ceil_replicas_is_total(x: float, want: int) -> None:
    assert ceil_replicas(x) == want


# -- the screen -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "want"),
    [
        ({}, None),
        ({"requests": 1e308}, "absurd_requests"),
        ({"requests": MAX_RATE * T * 1.001}, "absurd_requests"),
        ({"requests": MAX_RATE * T}, None),
        ({"isl": -3000.0}, "negative_isl"),
        ({"osl": -600.0}, "negative_osl"),
        ({"ttft_ms": -50.0}, "negative_ttft_ms"),
        ({"itl_ms": -5.0}, "negative_itl_ms"),
        ({"isl": 1e300}, "absurd_isl"),
        ({"ttft_ms": 1e303}, "absurd_ttft_ms"),           # 1e300 s
        ({"request_duration_s": 1e308}, "absurd_request_duration_s"),
        ({"backlog": -1.0}, "negative_backlog"),
        ({"backlog": 1e308}, "absurd_backlog"),
        ({"peak_rate": 1e308}, "absurd_peak_rate"),
        ({"isl": math.nan, "ttft_ms": math.inf}, None),   # non-finite means are "no value"
        ({"ttft_ms": 1e-297}, None),                      # tiny but physical: bounded downstream
    ],
)
def test_window_problem_names_the_field(changes: dict[str, float], want: Any) -> None:
    assert window_problem(_window(**changes)) == want


def test_within_limits_caps_the_rate_and_drops_bad_means() -> None:
    w = within_limits(_window(requests=1e308, isl=-3.0, ttft_ms=1e300))
    assert w.requests == MAX_RATE * T and w.isl is None and w.ttft_ms is None and w.osl == GOOD["osl"]
    good = _window()
    assert within_limits(good) is good


def test_correction_factors_ignore_negative_means_and_are_bounded() -> None:
    """L3: -3000/-600/-0.05 s/-0.005 s once gave correctionPrefill -8.25; 1e-300 s and 1e300 s
    drove the factor without bound."""
    plan = _plan("dynamo")
    cases = {
        "negative": (dict(isl=-3000.0, osl=-600.0, ttft_ms=-50.0, itl_ms=-5.0), (1.2, 1.2)),
        "tiny": (dict(ttft_ms=1e-297, itl_ms=1e-297), (MIN_CORRECTION, MIN_CORRECTION)),
        "huge": (dict(ttft_ms=1e5, itl_ms=1e5), (MAX_CORRECTION, MAX_CORRECTION)),
    }
    for name, (changes, want) in cases.items():
        state = new_state(plan)
        decide(plan, MODEL, _obs(0, _window()), state)  # cf 60/50 = 1.2 and 6/5 = 1.2
        d = decide(plan, MODEL, _obs(1, _window(**changes)), state)
        assert d.throughput is not None
        assert (d.throughput.correction_prefill, d.throughput.correction_decode) == pytest.approx(want), name


# -- one window skipped, the plan goes on -----------------------------------------------------
def test_a_poisoned_window_is_skipped_and_leaves_the_state_untouched() -> None:
    plan = PLANS["dynamo-kalman"]()
    windows = [_window(requests=3000.0 + 300 * k) for k in range(6)]
    clean = new_state(plan)
    want = [decide(plan, MODEL, _obs(k, w), clean).to_dict() for k, w in enumerate(windows)]
    state = new_state(plan)
    got, skipped = [], []
    for k, w in enumerate(windows[:3] + [_window(requests=1e308)] + windows[3:]):
        state, result = decide_window(plan, MODEL, _obs(k if k < 3 else k - 1, w), state)
        (skipped if isinstance(result, Skipped) else got).append(result)
    assert [s.reason for s in skipped] == ["absurd_requests"]
    assert [d.to_dict() for d in got] == want


def test_a_window_that_makes_decide_raise_is_skipped_not_retried() -> None:
    """Any other failure of decide on one window's data (here: a plan without a profile)
    costs that window: the state stays as it was and the error is the skip's detail."""
    plan = PLANS["dynamo-kalman"]()
    state = new_state(plan)
    after, result = decide_window(plan, None, _obs(0, _window()), state)
    assert isinstance(result, Skipped) and result.reason == "decide_error"
    assert "performance model" in result.detail and after is state and state.last is None
    assert state.rate.count == 0  # the predictor did not see the window either


@pytest.mark.parametrize("kind", ["dynamo-kalman", "attainment-kalman"])
def test_a_restart_skips_the_same_windows_as_the_live_loop(kind: str) -> None:
    """Live: decide_window per window, poisoned ones skipped. Restart after window k:
    replay_windows over the same history skips them too, so the state and the next
    decisions are the live ones (all fields of Decision.to_dict). No per-worker series
    (history has none either: the attainment sizing learns from the replicas asked for)."""
    plan = PLANS[kind]()
    workers: tuple[WorkerLoad, ...] = ()
    rates = [50, 55, 61, 58, 66, 70, 64, 72, 75, 71]
    windows = [_window(requests=r * T) for r in rates]
    windows[3] = _window(requests=1e308)
    windows[6] = _window(isl=-3000.0, ttft_ms=-50.0)
    state = new_state(plan)
    live: list[Any] = []
    for k, w in enumerate(windows):
        state, result = decide_window(plan, MODEL, throughput_observation(plan, k * T, w, workers), state)
        live.append(result)
    assert [k for k, r in enumerate(live) if isinstance(r, Skipped)] == [3, 6]
    for restart in (2, 5, 8):
        done = replay_windows(plan, MODEL, windows[:restart], workers, (restart - 1) * T)
        assert [s.end for s in done.skipped] == [k * T for k in (3, 6) if k < restart]
        assert done.decision is not None
        assert done.decision.to_dict() == live[restart - 1].to_dict(), restart
        st = done.state
        for k in range(restart, len(windows)):
            st, result = decide_window(plan, MODEL, throughput_observation(plan, k * T, windows[k], workers), st)
            assert isinstance(result, Skipped) == isinstance(live[k], Skipped)
            if not isinstance(result, Skipped):
                assert result.to_dict() == live[k].to_dict(), (restart, k)


def test_a_poisoned_newest_window_leaves_the_decision_on_the_one_before() -> None:
    plan = PLANS["dynamo-kalman"]()
    windows = [_window(), _window(requests=2400.0), _window(requests=1e308)]
    done = replay_windows(plan, MODEL, windows, WORKERS, 2 * T)
    assert done.decision is not None and done.decision.timestamp == T
    assert [s.reason for s in done.skipped] == ["absurd_requests"]
    assert done.decision.throughput is not None and done.decision.throughput.observed_rate == 40.0


def test_replay_skips_a_window_decide_raises_on_as_the_live_loop_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """replay_windows decides in place (no copy per window) and starts over without a window
    that made decide raise: the same state, decisions and skips as decide_window per window."""
    import scaler.core.replay as replay_module

    def flaky(plan: Plan, model: Any, obs: Observation, state: Any) -> Any:
        if obs.timestamp in (2 * T, 5 * T):
            state.rate.observe(1e9)  # a failure half-way through must leave no trace
            raise ArithmeticError("boom")
        return decide(plan, model, obs, state)

    monkeypatch.setattr(replay_module, "decide", flaky)
    plan = PLANS["dynamo-kalman"]()
    windows = [_window(requests=(50 + 3 * k) * T) for k in range(8)]
    windows[3] = _window(requests=1e308)
    state = new_state(plan)
    live: list[Any] = []
    for k, w in enumerate(windows):
        state, result = decide_window(plan, MODEL, throughput_observation(plan, k * T, w, ()), state)
        live.append(result)
    done = replay_windows(plan, MODEL, windows, (), 7 * T)
    assert [(s.end, s.reason) for s in done.skipped] == [(2 * T, "decide_error"), (3 * T, "absurd_requests"),
                                                         (5 * T, "decide_error")]
    assert "ArithmeticError: boom" in done.skipped[0].detail
    assert done.decision is not None and done.decision.to_dict() == live[-1].to_dict()
    assert done.state.rate.predict_next() == state.rate.predict_next()
