"""The default planner (`sizing: attainment`) through `decide` and `capacity`: its rules on
hand-computed cases and its properties (more load never fewer replicas, bounds hold)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import flat_profile, plan_dict
from scaler.core.attainment import erlang_c, prefill_replicas
from scaler.core.attainment_sizing import MEMORY, AttainmentState, hold, learn, remember, smooth
from scaler.core.decision import Reason
from scaler.core.interpolation import PerfModel, perf_model
from scaler.core.observations import Observation, TrafficWindow
from scaler.core.plan import Plan
from scaler.core.planner import capacity, decide, new_state


def _plan(attainment: float = 0.99, **overrides: object) -> Plan:
    doc = plan_dict(sizing="attainment", **overrides)  # type: ignore[arg-type]
    doc["spec"]["sla"]["attainment"] = attainment
    return Plan.model_validate(doc)


def flat_model(prefill_thpt: float, ttft_ms: float, decode_thpt: float) -> PerfModel:
    """Flat prefill; decode ITL rising linearly from 5 ms (idle) to 25 ms (full KV cache)."""
    from helpers import _decode_grid  # noqa: PLC2701 - the same grid the flat profile uses
    from scaler.core.profile import profile_from_raw

    base = flat_profile(prefill_thpt, decode_thpt, ttft_ms=ttft_ms)
    decode = _decode_grid(lambda u: 5.0 + 20.0 * u, lambda u: decode_thpt)
    decode["max_kv_tokens"] = 1_000_000.0
    prefill = {
        "prefill_isl": list(base.prefill_isl),
        "prefill_ttft": list(base.prefill_ttft_ms),
        "prefill_thpt_per_gpu": list(base.prefill_thpt_per_gpu),
    }
    return perf_model(profile_from_raw(prefill, decode, source="<flat, linear ITL>"))


def _window(requests: float, seconds: float = 60.0, **kw: object) -> TrafficWindow:
    base: dict[str, object] = dict(isl=3000.0, osl=150.0, ttft_ms=76.0, itl_ms=10.0, request_duration_s=2.0)
    base.update(kw)
    return TrafficWindow(window_seconds=seconds, requests=requests, **base)  # type: ignore[arg-type]


def test_capacity_prefill_is_the_erlang_c_tail_count() -> None:
    plan = _plan(ttft_ms=200.0)
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    d = capacity(plan, model, 20.0, 3000.0, 150.0)
    # 20 req/s x 75 ms = 1.5 Erlangs; slack 125 ms; half of 1% missed; V = 2 (Poisson prior)
    expected = prefill_replicas(20.0, 0.075, 0.125, 0.005, 2.0)
    assert d.replicas("prefill") == expected
    # by hand: c = 3 gives C(3,1.5) = 0.2368, decay 2 (40 - 20) / 2 = 20/s -> 0.2368 e^-2.5 = 0.0194
    assert erlang_c(3, 1.5) == pytest.approx(0.2368, abs=1e-4)
    # c = 4: C(4,1.5) = 0.0737, decay 2 (53.33 - 20)/2 = 33.3/s -> 0.0737 e^-4.17 = 0.00114 <= 0.005
    assert expected == 4
    assert d.throughput is not None and d.throughput.sizing == "attainment"


def test_capacity_grows_with_the_attainment_target() -> None:
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    lo = capacity(_plan(attainment=0.9), model, 20.0, 3000.0, 150.0)
    hi = capacity(_plan(attainment=0.9999), model, 20.0, 3000.0, 150.0)
    assert hi.replicas("prefill") > lo.replicas("prefill")
    assert hi.replicas("decode") >= lo.replicas("decode")


def test_a_backlog_adds_the_replicas_that_drain_it() -> None:
    plan = _plan(ttft_ms=200.0, interval_seconds=60)
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    quiet = decide(plan, model, Observation(timestamp=60, traffic=_window(1200, backlog=0.0)), new_state(plan))
    # 1600 waiting x 75 ms = 120 replica-seconds, drained within one 60 s interval: 2 more
    busy = decide(plan, model, Observation(timestamp=60, traffic=_window(1200, backlog=1600.0)), new_state(plan))
    assert busy.replicas("prefill") == quiet.replicas("prefill") + 2
    assert Reason.BACKLOG in busy.pools["prefill"].reasons


def test_scale_down_is_held_for_startup_plus_interval() -> None:
    state = AttainmentState()
    holds = {"prefill": 180.0}
    assert hold(state, 0.0, {"prefill": 8}, holds) == {"prefill": 8}
    assert hold(state, 60.0, {"prefill": 3}, holds) == {"prefill": 8}
    assert hold(state, 179.0, {"prefill": 3}, holds) == {"prefill": 8}
    # the sizing of t=0 is 180 s old at t=180: it no longer holds
    assert hold(state, 180.0, {"prefill": 3}, holds) == {"prefill": 3}
    # up is immediate
    assert hold(state, 181.0, {"prefill": 9}, holds) == {"prefill": 9}
    assert len(state.recent) <= 4


def test_held_pools_say_so() -> None:
    plan = _plan(interval_seconds=60)
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    state = new_state(plan)
    first = decide(plan, model, Observation(timestamp=60, traffic=_window(3000)), state)
    second = decide(plan, model, Observation(timestamp=120, traffic=_window(60)), state)
    assert second.replicas("prefill") == first.replicas("prefill")
    assert Reason.HELD in second.pools["prefill"].reasons


def test_learned_values_attack_fast_and_release_slowly() -> None:
    assert smooth(2.0, 10.0, 1.0, 100.0) == 10.0
    # a calmer window moves 20% of the way in log space
    assert smooth(10.0, 1.0, 1.0, 100.0) == pytest.approx(math.exp(0.8 * math.log(10.0)))
    assert smooth(1.0, 1e9, 1.0, 100.0) == 100.0


def test_learning_reads_burst_dispersion_and_slowdowns() -> None:
    plan = _plan()
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    state = AttainmentState()
    window = _window(600, seconds=60.0, peak_rate=15.0, arrival_dispersion=11.0, ttft_ms=90.0)
    learn(state, plan, model, window, {"prefill": 8, "decode": 2})
    assert state.burst == pytest.approx(15.0 / 10.0)  # fast attack: at once
    assert state.dispersion == pytest.approx(12.0)  # counted 11 + service spread 1
    # 15 req/s (the peak) x 75 ms on 8 replicas: C(8, 1.125) < 5%, so 90 / 75 is the pace
    assert erlang_c(8, 1.125) < 0.05
    # the model's mean wait at V = 12 on 8 replicas at 10 req/s is under a microsecond, so the
    # pace is the mean TTFT itself
    assert state.prefill_slowdown == pytest.approx(1.2, rel=1e-4)
    # a calmer window releases the burst by 20% in log space; the dispersion is the mean of
    # the windows' (12 and 1 + 1)
    learn(state, plan, model, _window(600, seconds=60.0, peak_rate=10.5, arrival_dispersion=1.0), {"prefill": 8})
    assert state.burst == pytest.approx(math.exp(0.8 * math.log(1.5) + 0.2 * math.log(1.05)))
    assert state.dispersion == pytest.approx(7.0)


def test_dispersion_is_the_mean_of_the_last_windows_not_the_worst() -> None:
    # each window's count is a noisy ratio estimate (a variance of six 30-s bins over their
    # mean); the traffic's dispersion is their pooled, plain mean over the last MEMORY
    # windows: down as well as up, clamped to [1, MAX_DISPERSION]
    from scaler.core.attainment_sizing import MAX_DISPERSION

    plan = _plan()
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    state = AttainmentState()
    for counted in (9.0, 29.0, 19.0):
        learn(state, plan, model, _window(600, arrival_dispersion=counted), {"prefill": 8, "decode": 2})
    assert state.dispersion == pytest.approx((10.0 + 30.0 + 20.0) / 3)  # each + 1 for prompt lengths
    # a window without the signal (None: the series is missing) leaves it as it was
    learn(state, plan, model, _window(600), {"prefill": 8, "decode": 2})
    assert state.dispersion == pytest.approx(20.0)
    # a window too small to say anything is not counted either
    learn(state, plan, model, _window(5, arrival_dispersion=500.0), {"prefill": 8, "decode": 2})
    assert state.dispersion == pytest.approx(20.0)
    learn(state, plan, model, _window(600, arrival_dispersion=1e9), {"prefill": 8, "decode": 2})
    assert state.dispersion == pytest.approx((10.0 + 30.0 + 20.0 + MAX_DISPERSION) / 4)
    # MEMORY windows at V = 3 later, the old ones are forgotten
    for _ in range(MEMORY):
        learn(state, plan, model, _window(600, arrival_dispersion=2.0), {"prefill": 8, "decode": 2})
    assert state.dispersion == pytest.approx(3.0)
    assert len(state.dispersions) == MEMORY


def test_missing_signals_are_warnings_not_zeros() -> None:
    plan = _plan()
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    d = decide(plan, model, Observation(timestamp=60, traffic=_window(600)), new_state(plan))
    assert any("no backlog" in w for w in d.warnings)
    assert any("no peak rate" in w for w in d.warnings)
    assert any("no fraction of TTFTs over the SLA" in w for w in d.warnings)
    d = decide(plan, model, Observation(timestamp=60, traffic=_window(600, ttft_miss=0.0)), new_state(plan))
    assert not any("TTFTs over the SLA" in w for w in d.warnings)


def test_dispersion_is_calibrated_on_the_measured_misses() -> None:
    # 10 req/s at the peak on 4 prefill replicas of S = 75 ms (SLA 200 ms: slack 125 ms),
    # 600 requests, 30 counted (29 + 1): C(4, 0.75) = 0.007662 (Erlang B 0.4286, 0.1385,
    # 0.03346, 0.006234; / (1 - 0.1875 x 0.9938)); 2 (4/0.075 - 10) x 0.125 = 10.833
    plan = _plan()
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    c = erlang_c(4, 0.75)
    assert c == pytest.approx(0.007662, abs=1e-6)
    unit = 2 * (4 / 0.075 - 10.0) * 0.125

    def learned(miss: object, counted: float = 29.0, change_sd: Optional[float] = None) -> float:
        state = AttainmentState(rate_changes=[] if change_sd is None else [change_sd**2])
        # no mean TTFT: the pace stays the profile's (S = 75 ms exactly)
        window = _window(600, peak_rate=10.0, arrival_dispersion=counted, ttft_ms=None, ttft_miss=miss)
        learn(state, plan, model, window, {"prefill": 4, "decode": 2})
        return state.dispersion

    # 0.4% missed, within the 0.5% budget: V = 10.833 / ln(0.007662 / 0.004) = 16.7, the
    # margin the 30-s count (30) held above it is shed
    assert learned(0.004) == pytest.approx(unit / math.log(c / 0.004)) == pytest.approx(16.66, abs=0.05)
    # ... unless the rate's usual move between windows would overrun the 4 servers: 0.75
    # Erlangs x e^sd >= 4 from sd = ln(5.33) = 1.674; then the stationary tail does not
    # describe the next window and the count is kept (misses or none)
    assert learned(0.004, change_sd=1.6) == pytest.approx(16.66, abs=0.05)
    assert learned(0.004, change_sd=1.7) == pytest.approx(30.0)
    assert learned(0.0, change_sd=1.7) == pytest.approx(30.0)
    assert learned(0.006, change_sd=1.7) == pytest.approx(44.4, abs=0.1)
    # none missed: half a miss of 600 bounds V at 10.833 / ln(0.007662 x 1200) = 4.88
    assert learned(0.0) == pytest.approx(unit / math.log(c * 1200)) == pytest.approx(4.88, abs=0.01)
    # ... a bound only: a count below it is kept
    assert learned(0.0, counted=2.0) == pytest.approx(3.0)
    # 0.6% missed, over the budget: never below the count, and above it where the misses say
    assert learned(0.006) == pytest.approx(unit / math.log(c / 0.006)) == pytest.approx(44.4, abs=0.1)
    assert learned(0.006, counted=59.0) == pytest.approx(60.0)
    # more misses than Erlang C's waiting, or no measurement: the count, as before
    assert learned(0.01) == pytest.approx(30.0)
    assert learned(None) == pytest.approx(30.0)
    # no count (30-s scrapes leave the 30-s bins empty): the learned V (the prior, 2) stands
    # in for it
    state = AttainmentState()
    learn(state, plan, model, _window(600, peak_rate=10.0, ttft_ms=None, ttft_miss=0.004), {"prefill": 4, "decode": 2})
    assert state.dispersion == pytest.approx(unit / math.log(c / 0.004))
    state = AttainmentState()
    learn(state, plan, model, _window(600, peak_rate=10.0, ttft_ms=None, ttft_miss=0.0), {"prefill": 4, "decode": 2})
    assert state.dispersion == pytest.approx(2.0)


rates = st.floats(min_value=0.0, max_value=200.0)


@settings(max_examples=60, deadline=None)
@given(rates, rates, st.floats(min_value=0, max_value=5000))
def test_more_load_or_backlog_never_fewer_replicas(r1: float, r2: float, backlog: float) -> None:
    plan = _plan(max_replicas={"prefill": 64, "decode": 64})
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    lo, hi = sorted((r1, r2))
    a = decide(plan, model, Observation(timestamp=60, traffic=_window(lo * 60, backlog=0.0)), new_state(plan))
    b = decide(plan, model, Observation(timestamp=60, traffic=_window(hi * 60, backlog=backlog)), new_state(plan))
    for pool in ("prefill", "decode"):
        assert b.replicas(pool) >= a.replicas(pool)


@settings(max_examples=60, deadline=None)
@given(rates, st.integers(min_value=1, max_value=8), st.integers(min_value=2, max_value=30))
def test_bounds_and_budget_always_hold(rate: float, lo: int, budget: int) -> None:
    plan = _plan(min_replicas={"prefill": lo, "decode": 1}, max_replicas={"prefill": 12, "decode": 12}, max_gpus=max(budget, lo + 1))
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    d = decide(plan, model, Observation(timestamp=60, traffic=_window(rate * 60)), new_state(plan))
    assert lo <= d.replicas("prefill") <= 12 and 1 <= d.replicas("decode") <= 12
    assert d.total_gpus <= max(budget, lo + 1)


def test_startup_is_learned_from_readiness_and_lengthens_the_hold() -> None:
    from scaler.core.attainment_sizing import hold_seconds, observe_startup

    plan = _plan(interval_seconds=60)  # startupSeconds 120 by default
    state = AttainmentState()
    # asked for 6 at t=0; ready 3 at 60, 4 at 120, 5 at 300, 6 at 420: start-up in (360, 420]
    observe_startup(state, 60.0, {"prefill": 3}, {"prefill": 6}, 0.0, 60.0)
    assert state.pending == {"prefill": (0.0, 6)}
    for t, ready in ((120.0, 4), (300.0, 5)):
        observe_startup(state, t, {"prefill": ready}, {"prefill": 6}, t - 60.0, 60.0)
    assert "prefill" not in state.startup_seen
    observe_startup(state, 420.0, {"prefill": 6}, {"prefill": 6}, 360.0, 60.0)
    assert state.startup_seen == {"prefill": 360.0}
    assert state.pending == {}
    # the hold is start-up + interval, start-up the longer of configured (120) and seen (360)
    assert hold_seconds(plan, state) == {"prefill": 420.0, "decode": 180.0}
    # a pool that was ready within one window teaches nothing
    observe_startup(state, 480.0, {"decode": 2}, {"decode": 2}, 420.0, 60.0)
    assert "decode" not in state.startup_seen


def test_prefill_slowdown_is_the_ttft_less_the_modelled_wait_on_the_servers_of_the_whole_window() -> None:
    plan = _plan()
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    # 2 req/s on 2 replicas of S = 75 ms: a = 0.15, C(2, 0.15) = B / (1 - rho (1 - B)) with
    # B = 0.01125 / 1.16125 = 0.009688 -> C = 0.01046 (< 5%: a quiet window); at V = 99 + 1 the
    # mean wait is C x 50 / (2 / 0.075 - 2) = 0.01046 x 50 / 24.667 = 21.2 ms
    c = erlang_c(2, 0.15)
    assert c == pytest.approx(0.01046, abs=1e-5)
    wait_ms = 1000.0 * c * 50.0 / (2.0 / 0.075 - 2.0)
    assert wait_ms == pytest.approx(21.2, abs=0.05)
    window = _window(120, seconds=60.0, peak_rate=2.0, arrival_dispersion=99.0, ttft_ms=75.0 + wait_ms)
    # the ask before the last was 2: only 2 replicas served all through the window, so the
    # observed TTFT is the profile's pace plus that wait: no slowdown
    state = AttainmentState(asked_before={"prefill": 2})
    learn(state, plan, model, window, {"prefill": 8, "decode": 2})
    assert state.prefill_slowdown == pytest.approx(1.0, rel=1e-6)
    # on 8 replicas the model's wait is nil, and the whole TTFT reads as a slower engine
    state = AttainmentState()
    learn(state, plan, model, window, {"prefill": 8, "decode": 2})
    assert state.prefill_slowdown == pytest.approx((75.0 + wait_ms) / 75.0, rel=1e-4)


def test_prefill_pace_is_the_mean_of_the_last_windows_or_the_newest_if_slower() -> None:
    # 8 replicas at 10 req/s, profiled TTFT 75 ms: the model's wait is nil (C(8, 1.1) < 5%),
    # so each window's pace is its mean TTFT / 75 ms
    plan = _plan()
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    state = AttainmentState()
    ready = {"prefill": 8, "decode": 2}
    learn(state, plan, model, _window(600, ttft_ms=1.2 * 75.0), ready)
    assert state.prefill_slowdown == pytest.approx(1.2, rel=1e-4)
    # a faster window: the mean of the two in log space, at once (no slow release)
    learn(state, plan, model, _window(600, ttft_ms=75.0), ready)
    assert state.prefill_slowdown == pytest.approx(math.sqrt(1.2), rel=1e-4)
    # a slower one counts in full for the next decision...
    learn(state, plan, model, _window(600, ttft_ms=1.5 * 75.0), ready)
    assert state.prefill_slowdown == pytest.approx(1.5, rel=1e-4)
    # ...and only for that one: a window that measures no pace leaves the mean of the three
    learn(state, plan, model, _window(600, ttft_ms=None), ready)
    assert state.prefill_slowdown == pytest.approx((1.2 * 1.0 * 1.5) ** (1 / 3), rel=1e-4)
    # so does a window too small to measure anything
    learn(state, plan, model, _window(10), ready)
    assert state.prefill_slowdown == pytest.approx((1.2 * 1.0 * 1.5) ** (1 / 3), rel=1e-4)
    # MEMORY windows at 1.1 later, the old ones are forgotten
    for _ in range(MEMORY):
        learn(state, plan, model, _window(600, ttft_ms=1.1 * 75.0), ready)
    assert state.prefill_slowdown == pytest.approx(1.1, rel=1e-4)
    assert len(state.prefill_ratios) == MEMORY


def test_decode_slowdown_is_the_mean_of_the_last_windows() -> None:
    # a constant of the hardware: the mean of the last MEMORY windows' ratios in log space
    # (the first measurement replaces the prior at once), down as well as up
    values: list[float] = []
    for v in range(MEMORY + 3):
        remember(values, float(v))
    assert values == [float(v) for v in range(3, MEMORY + 3)]
    plan = _plan()
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    state = AttainmentState()
    # 10 req/s x 2 s on 2 decode workers: 10 sequences each, at the profile's ITL for them
    profiled = model.decode.itl_at_concurrency(10.0, 3000.0 + 150.0 / 2)
    learn(state, plan, model, _window(600, itl_ms=1.3 * profiled), {"prefill": 8, "decode": 2})
    assert state.decode_slowdown == pytest.approx(1.3)
    learn(state, plan, model, _window(600, itl_ms=1.1 * profiled), {"prefill": 8, "decode": 2})
    assert state.decode_slowdown == pytest.approx(math.sqrt(1.3 * 1.1))  # geometric mean
    # a window far off the profile counts as the clamp (10x), not as itself
    learn(state, plan, model, _window(600, itl_ms=50.0 * profiled), {"prefill": 8, "decode": 2})
    assert state.decode_slowdown == pytest.approx((1.3 * 1.1 * 10.0) ** (1 / 3))
    # MEMORY windows at 1.2 later, the old ones are forgotten
    for _ in range(MEMORY):
        learn(state, plan, model, _window(600, itl_ms=1.2 * profiled), {"prefill": 8, "decode": 2})
    assert state.decode_slowdown == pytest.approx(1.2)


def test_the_hold_keeps_no_more_than_the_rates_upper_quantile_needs() -> None:
    from scipy.stats import norm

    from scaler.core.attainment_sizing import size

    plan = _plan(ttft_ms=200.0, max_replicas={"prefill": 64, "decode": 64})
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)

    def sized_after_a_peak(change_var: object, backlog: float = 0.0) -> tuple[dict[str, int], object]:
        state = AttainmentState(rate_changes=[] if change_var is None else [change_var])  # type: ignore[list-item]
        size(plan, model, state, rate=60.0, isl=3000.0, osl=150.0, timestamp=0.0)
        out = size(plan, model, state, rate=10.0, isl=3000.0, osl=150.0, backlog=backlog, timestamp=60.0)
        return out.replicas, out.inputs

    # 60 req/s x 75 ms at V = 2: the peak sized prefill_replicas(60, ...) = 7 (4.5 Erlangs);
    # 10 req/s needs 3: c = 2 leaves C(2, 0.75) = 0.2045 x e^(-2 (26.67 - 10) 0.125 / 2) = 2.5%
    peak = prefill_replicas(60.0, 0.075, 0.125, 0.005, 2.0)
    low = prefill_replicas(10.0, 0.075, 0.125, 0.005, 2.0)
    assert erlang_c(2, 0.75) * math.exp(-16.667 * 0.125) == pytest.approx(0.0255, abs=2e-4)
    assert (peak, low) == (7, 3)
    # no spread seen yet: the time hold alone keeps the peak's 7
    assert sized_after_a_peak(None)[0]["prefill"] == peak
    # a rate that never moved (log-sd 0): nothing to hold for, down to 10 req/s' count at once
    assert sized_after_a_peak(0.0)[0]["prefill"] == low
    # log-sd 0.3: the 99% upper quantile is 10 x e^(2.326 x 0.3) = 20.1 req/s (1.51 Erlangs):
    # c = 3 leaves C(3, 1.51) = 0.2403 x e^(-2 (40 - 20.1) 0.125 / 2) = 2.0%, c = 4 leaves
    # C(4, 1.51) = 0.0761 x e^(-2 (53.3 - 20.1) 0.125 / 2) = 0.12% <= 0.5%: the hold keeps 4
    upper = 10.0 * math.exp(float(norm.ppf(0.99)) * 0.3)
    assert upper == pytest.approx(20.1, abs=0.05)
    assert erlang_c(3, upper * 0.075) == pytest.approx(0.2403, abs=2e-3)
    assert erlang_c(4, upper * 0.075) == pytest.approx(0.0761, abs=2e-3)
    replicas, inputs = sized_after_a_peak(0.09)
    assert replicas["prefill"] == 4
    assert inputs.hold_ceiling["prefill"] == 4 and inputs.rate_change_sd == pytest.approx(0.3)  # type: ignore[attr-defined]
    # a wide spread (log-sd 1: e^2.33 = 10x) keeps the whole hold
    assert sized_after_a_peak(1.0)[0]["prefill"] == peak
    # with a backlog waiting nothing is given up
    assert sized_after_a_peak(0.0, backlog=1.0)[0]["prefill"] >= peak


def test_learning_tracks_the_rates_spread_from_window_to_window() -> None:
    plan = _plan()
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    state = AttainmentState()
    learn(state, plan, model, _window(600), {"prefill": 8, "decode": 2})
    assert state.rate_change_var is None and state.last_rate == 10.0
    learn(state, plan, model, _window(1200), {"prefill": 8, "decode": 2})  # doubled
    assert state.rate_change_var == pytest.approx(math.log(2.0) ** 2)
    learn(state, plan, model, _window(1200), {"prefill": 8, "decode": 2})  # unchanged: the mean of ln2^2 and 0
    assert state.rate_change_var == pytest.approx(math.log(2.0) ** 2 / 2)
    # a window with too few requests says nothing, and is not the next one's reference
    learn(state, plan, model, _window(10), {"prefill": 8, "decode": 2})
    assert state.last_rate == 20.0


def test_a_scaler_without_history_holds_the_ready_replicas_for_one_hold_span() -> None:
    holds = {"prefill": 270.0, "decode": 270.0}  # start-up 90 + interval 180
    state = AttainmentState()
    # first sizing at 180 s says 4 of the 5 running: nothing seen before 180, so the 5 ready
    # (asked for by whoever ran the deployment) stand in for the sizings of (-90, 180]
    assert hold(state, 180.0, {"prefill": 4, "decode": 2}, holds, {"prefill": 5, "decode": 3}) == {"prefill": 5, "decode": 3}
    # at 360 the span (90, 360] still starts before the first sizing: ready still counts
    assert hold(state, 360.0, {"prefill": 3, "decode": 2}, holds, {"prefill": 5, "decode": 3}) == {"prefill": 5, "decode": 3}
    # at 540 the sizings span (270, 540]: they alone decide (360's 3, 540's 2), ready 5 does not
    assert hold(state, 540.0, {"prefill": 2, "decode": 1}, holds, {"prefill": 5, "decode": 3}) == {"prefill": 3, "decode": 2}
    # a pool whose ready count was not observed has no such floor
    fresh = AttainmentState()
    assert hold(fresh, 180.0, {"prefill": 4, "decode": 2}, holds, {"prefill": 5}) == {"prefill": 5, "decode": 2}
    assert hold(AttainmentState(), 180.0, {"prefill": 4, "decode": 2}, holds) == {"prefill": 4, "decode": 2}


def test_the_first_decision_does_not_shrink_below_the_observed_ready_replicas() -> None:
    plan = _plan(interval_seconds=60)  # hold: startupSeconds 120 + 60
    model = flat_model(prefill_thpt=40000.0, ttft_ms=75.0, decode_thpt=10000.0)
    low = Observation(timestamp=60, traffic=_window(60.0))
    alone = decide(plan, model, low, new_state(plan))
    running = {n: alone.replicas(n) + 2 for n in ("prefill", "decode")}
    held = decide(plan, model, replace(low, ready_replicas=running), new_state(plan))
    assert {n: held.replicas(n) for n in running} == running
    assert Reason.HELD in held.pools["prefill"].reasons
