"""The attainment sizing math (scaler.core.attainment): hand-computed cases and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.core.attainment import (
    concurrency_quantile,
    decode_replicas,
    dispersion_from_misses,
    dispersion_from_wait,
    erlang_c,
    mean_wait_seconds,
    prefill_replicas,
    service_from_ttft,
    wait_exceeds,
)


def test_erlang_c_matches_closed_forms() -> None:
    # M/M/1: P(wait) = rho
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    # M/M/2 at a = 1: C = a^2/2 / (1 - a/2) / (1 + a + a^2/2/(1-a/2)) = 0.5/0.5/(2+1) = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # a standard table value: c = 10, a = 8 -> 0.4092
    assert erlang_c(10, 8.0) == pytest.approx(0.40918, abs=1e-5)
    assert erlang_c(3, 3.0) == 1.0 and erlang_c(3, 0.0) == 0.0


def test_wait_tail_is_mm1_exponential_at_poisson_dispersion() -> None:
    # M/M/1 (V = 2): P(W > t) = rho exp(-(mu - lambda) t); lambda 5/s, S 0.1 s, t 0.2 s
    assert wait_exceeds(1, 5.0, 0.1, 2.0, 0.2) == pytest.approx(0.5 * math.exp(-5.0 * 0.2))
    # twice the dispersion halves the decay rate
    assert wait_exceeds(1, 5.0, 0.1, 4.0, 0.2) == pytest.approx(0.5 * math.exp(-2.5 * 0.2))
    # saturated: every request waits past any bound
    assert wait_exceeds(2, 20.0, 0.1, 2.0, 10.0) == 1.0


def test_mean_wait_is_mm1_at_poisson_dispersion() -> None:
    # M/M/1 mean wait rho/(mu - lambda) = 0.5 / 5 = 0.1 s
    assert mean_wait_seconds(1, 5.0, 0.1, 2.0) == pytest.approx(0.1)
    assert dispersion_from_wait(1, 5.0, 0.1, 0.1) == pytest.approx(2.0)
    assert dispersion_from_wait(1, 20.0, 0.1, 1.0) is None  # saturated window
    assert dispersion_from_wait(0, 5.0, 0.1, 0.1) is None


def test_dispersion_from_misses_inverts_the_tail() -> None:
    # M/M/1 at 5 req/s, S = 0.1 s: C = 0.5, and at V = 2 P(W > 0.2 s) = 0.5 e^-1: the
    # measured fraction gives V = 2 back
    assert dispersion_from_misses(1, 5.0, 0.1, 0.2, 0.5 * math.exp(-1.0), 1000) == pytest.approx(2.0)
    # none of 1000 missed: half a miss, V = 2 x 5 x 0.2 / ln(0.5 / 0.0005) = 0.2895 at most
    assert dispersion_from_misses(1, 5.0, 0.1, 0.2, 0.0, 1000) == pytest.approx(2.0 / math.log(1000.0))
    # more misses than Erlang C's waiting (0.5): no V explains them; saturated; no servers
    assert dispersion_from_misses(1, 5.0, 0.1, 0.2, 0.6, 1000) is None
    assert dispersion_from_misses(1, 20.0, 0.1, 0.2, 0.1, 1000) is None
    assert dispersion_from_misses(0, 5.0, 0.1, 0.2, 0.1, 1000) is None


def test_prefill_replicas_hand_computed() -> None:
    # 66 req/s, S = 35 ms (2.31 Erlangs), slack 765 ms, 0.5% misses:
    # c = 3: Erlang B 0.6979, 0.4463, 0.2558 -> C = 0.2558 / (1 - 0.77 x 0.7442) = 0.5991
    c3 = erlang_c(3, 66 * 0.035)
    assert c3 == pytest.approx(0.5991, abs=1e-4)
    # decay 2 (3/0.035 - 66)/V; V = 2: 19.71/s over 0.765 s -> P = 0.5991 e^-15.08 ~ 1.7e-7 <= 0.005 -> 3 replicas
    assert prefill_replicas(66, 0.035, 0.765, 0.005, 2.0) == 3
    # V = 100: decay 0.394/s -> P(3) = 0.5991 e^-0.3016 = 0.443;
    assert wait_exceeds(3, 66, 0.035, 100.0, 0.765) == pytest.approx(0.5991 * math.exp(-0.30163), abs=1e-3)
    # c = 7 is the first below 0.005
    assert prefill_replicas(66, 0.035, 0.765, 0.005, 100.0) == 7
    assert wait_exceeds(6, 66, 0.035, 100.0, 0.765) > 0.005 >= wait_exceeds(7, 66, 0.035, 100.0, 0.765)


def test_prefill_backlog_drains_by_the_deadline() -> None:
    # 600 waiting requests x 35 ms = 21 replica-seconds; by 10 s: 3 more replicas
    base = prefill_replicas(66, 0.035, 0.765, 0.005, 2.0)
    assert prefill_replicas(66, 0.035, 0.765, 0.005, 2.0, backlog=600, drain_seconds=10) == base + 3
    # idle with a backlog still drains it; idle without one needs nothing
    assert prefill_replicas(0, 0.035, 0.765, 0.005, 2.0, backlog=600, drain_seconds=10) == 3
    assert prefill_replicas(0, 0.035, 0.765, 0.005, 2.0) == 0


def test_infeasible_slack_keeps_half_a_service_time() -> None:
    # SLA below the service time: sized as if the slack were S/2, not unbounded
    assert prefill_replicas(10, 0.5, -0.1, 0.01, 2.0) == prefill_replicas(10, 0.5, 0.25, 0.01, 2.0)


def test_decode_replicas_hand_computed() -> None:
    # 8.33 req/s x OSL 150 x ITL 20 ms = 25 sequences on average; 20 per replica
    d = decode_replicas(500 / 60, 150, 20.0, 20.0, miss_fraction=0.5)
    assert d.mean_sequences == pytest.approx(25.0)
    assert d.replicas == pytest.approx(1.25)  # the median: the mean load, Dynamo's answer
    # at 1% misses: z = 2.3263, sqrt(25) = 5 -> 36.63 sequences / 20 per replica
    d = decode_replicas(500 / 60, 150, 20.0, 20.0, miss_fraction=0.01)
    assert d.quantile_sequences == pytest.approx(25 + 2.326348 * 5, abs=1e-4)
    assert d.replicas == pytest.approx((25 + 2.326348 * 5) / 20, abs=1e-5)


def test_concurrency_quantile_zero_when_idle() -> None:
    assert concurrency_quantile(0.0, 1.0, 0.01) == 0.0


rates = st.floats(min_value=0.1, max_value=500)
services = st.floats(min_value=0.005, max_value=2.0)
misses = st.floats(min_value=0.0001, max_value=0.5)
dispersions = st.floats(min_value=0.5, max_value=200)


@settings(max_examples=150, deadline=None)
@given(rates, rates, services, misses, dispersions)
def test_more_load_never_fewer_prefill_replicas(r1: float, r2: float, s: float, miss: float, v: float) -> None:
    lo, hi = sorted((r1, r2))
    assert prefill_replicas(lo, s, 1.0, miss, v) <= prefill_replicas(hi, s, 1.0, miss, v)


@settings(max_examples=150, deadline=None)
@given(rates, services, misses, misses, dispersions)
def test_fewer_misses_allowed_never_fewer_prefill_replicas(r: float, s: float, m1: float, m2: float, v: float) -> None:
    tight, loose = sorted((m1, m2))
    assert prefill_replicas(r, s, 1.0, tight, v) >= prefill_replicas(r, s, 1.0, loose, v)


@settings(max_examples=150, deadline=None)
@given(rates, services, misses, st.floats(min_value=0, max_value=5000), st.floats(min_value=0, max_value=5000))
def test_more_backlog_never_fewer_prefill_replicas(r: float, s: float, miss: float, b1: float, b2: float) -> None:
    lo, hi = sorted((b1, b2))
    assert prefill_replicas(r, s, 1.0, miss, 2.0, backlog=lo) <= prefill_replicas(r, s, 1.0, miss, 2.0, backlog=hi)


@settings(max_examples=150, deadline=None)
@given(rates, misses, misses)
def test_fewer_misses_never_fewer_decode_replicas(r: float, m1: float, m2: float) -> None:
    tight, loose = sorted((m1, m2))
    assert decode_replicas(r, 200, 20, 100, tight).replicas >= decode_replicas(r, 200, 20, 100, loose).replicas


def test_service_from_ttft_takes_the_modelled_wait_out() -> None:
    # c = 2, 10 req/s, S = 0.1 s: a = 1, Erlang B = 0.5 / 2.5 = 0.2, C = 0.2 / (1 - 0.5 x 0.8) = 1/3;
    # at V = 12 the mean wait is 1/3 x 12/2 / (2/0.1 - 10) = 0.2 s, so a mean TTFT of 0.3 s is S = 0.1 s
    assert mean_wait_seconds(2, 10.0, 0.1, 12.0) == pytest.approx(0.2)
    assert service_from_ttft(2, 10.0, 0.3, 12.0, 0.01) == pytest.approx(0.1, rel=1e-9)
    # no load: the TTFT is the service time
    assert service_from_ttft(2, 0.0, 0.3, 12.0, 0.01) == pytest.approx(0.3, rel=1e-9)
    # even the floor's wait exceeds the TTFT observed: the model cannot say
    assert service_from_ttft(1, 50.0, 0.02, 1000.0, 0.019) is None
    assert service_from_ttft(0, 10.0, 0.3, 12.0, 0.01) is None


def test_the_pace_of_a_loaded_window_comes_from_its_mean_and_its_misses_together() -> None:
    from scaler.core.attainment import service_from_outcome

    # 4 replicas of S = 75 ms at 30 req/s (2.25 Erlangs): C(4, 2.25) = 0.2412, far from a
    # quiet queue. With V = 40 against a 200-ms bound (slack 125 ms): 2 (53.33 - 30) 0.125 /
    # 40 = 0.1458, so 0.2412 x e^-0.1458 = 20.8% of 2000 requests miss, and the mean TTFT is
    # S + C (V/2) / (c/S - rate) = 75 + 0.2412 x 20 / 23.33 s = 281.7 ms
    c = erlang_c(4, 2.25)
    assert c == pytest.approx(0.2412, abs=1e-4)
    miss = c * math.exp(-2 * (4 / 0.075 - 30) * 0.125 / 40)
    ttft = 0.075 + mean_wait_seconds(4, 30.0, 0.075, 40.0)
    assert (miss, ttft) == (pytest.approx(0.2085, abs=1e-4), pytest.approx(0.2817, abs=1e-4))
    assert dispersion_from_misses(4, 30.0, 0.075, 0.125, miss, 2000) == pytest.approx(40.0)
    # from those two outcomes alone (a 50-ms profile: an engine 1.5x slower) the pace comes
    # back; the mean alone, read without clumping (V = 2), would have put it at 116 ms
    assert service_from_outcome(4, 30.0, 30.0, ttft, 0.2, miss, 2000, 0.025, 0.15, 0.05) == pytest.approx(0.075, rel=0.01)
    assert service_from_ttft(4, 30.0, ttft, 2.0, 0.025) == pytest.approx(0.1162, abs=1e-4)
    # at V = 10 two S explain the window (75 ms, and ~84 ms with V = 6.3): the one nearer the
    # pace learned so far is taken
    miss10 = c * math.exp(-2 * (4 / 0.075 - 30) * 0.125 / 10)
    ttft10 = 0.075 + mean_wait_seconds(4, 30.0, 0.075, 10.0)
    s10 = service_from_outcome(4, 30.0, 30.0, ttft10, 0.2, miss10, 2000, 0.025, 0.15, 0.1)
    assert s10 is not None and 0.082 < s10 < 0.086
    v10 = dispersion_from_misses(4, 30.0, s10, 0.2 - s10, miss10, 2000)
    assert v10 is not None and s10 + mean_wait_seconds(4, 30.0, s10, v10) == pytest.approx(ttft10, rel=0.01)
    assert service_from_outcome(4, 30.0, 30.0, ttft10, 0.2, miss10, 2000, 0.025, 0.15, 0.05) == pytest.approx(0.075, rel=0.01)
    # nothing to solve: no load, or a saturated window (no V explains it)
    assert service_from_outcome(4, 0.0, 0.0, ttft, 0.2, miss, 2000, 0.025, 0.15, 0.05) is None
    assert service_from_outcome(4, 60.0, 60.0, ttft, 0.2, miss, 2000, 0.07, 0.15, 0.05) is None
