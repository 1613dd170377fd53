"""Throughput formulas (scaler.core.throughput), each against a hand-computed number."""

from __future__ import annotations

import pytest

from helpers import linear_profile
from scaler.core.interpolation import DecodeOperatingPoint, perf_model
from scaler.core.observations import TrafficWindow
from scaler.core.throughput import (
    CorrectionFactors,
    agg_replicas,
    ceil_replicas,
    decode_context,
    decode_itl_target,
    decode_replicas,
    prefill_replicas,
    update_corrections,
)


def point(thpt: float, itl: float = 5.0) -> DecodeOperatingPoint:
    return DecodeOperatingPoint(thpt_per_gpu=thpt, itl_ms=itl, kv_usage=0.5, feasible=True)


# -- rounding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        (0.0, 0),
        (0.0125, 1),
        (1.0, 1),
        (1.0 + 1e-12, 1),  # float noise on an exact integer must not add a replica
        (1.25, 2),
        (3 * 0.1 / 0.1, 3),
        (-0.5, 0),
    ],
)
def test_ceil_replicas(raw: float, expected: int) -> None:
    assert ceil_replicas(raw) == expected


# -- prefill -------------------------------------------------------------------------------


def test_prefill_replicas_is_rate_times_isl_over_throughput() -> None:
    # 10 requests per minute x 3000 tokens = 500 tokens/s; / 40000 tokens/s/GPU = 0.0125
    assert prefill_replicas(10 / 60, 3000, 40000, 1) == pytest.approx(0.0125)
    # 20 req/s x 3000 = 60000 tokens/s -> 1.5 GPUs
    assert prefill_replicas(20, 3000, 40000, 1) == pytest.approx(1.5)


def test_prefill_replicas_divides_by_gpus_per_replica() -> None:
    # 20 req/s x 3000 / 40000 = 1.5 GPUs = 0.75 of a 2-GPU replica
    assert prefill_replicas(20, 3000, 40000, 2) == pytest.approx(0.75)


def test_prefill_correction_below_one_reduces_replicas() -> None:
    # cf_p = 0.5 (TTFT half the profile, e.g. prefix-cache hits): half the work
    assert prefill_replicas(20, 3000, 40000, 1, correction=0.5) == pytest.approx(0.75)


def test_prefill_correction_is_clamped_at_one() -> None:
    # cf_p = 2.5 (queueing): min(1, 2.5) = 1, so no change, as in Dynamo
    assert prefill_replicas(20, 3000, 40000, 1, correction=2.5) == pytest.approx(1.5)


def test_prefill_zero_throughput_gives_zero() -> None:
    assert prefill_replicas(20, 3000, 0.0, 1) == 0.0


# -- decode --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sla, cf, expected",
    [
        (20.0, 1.0, 20.0),
        (20.0, 2.0, 10.0),  # engine twice as slow as profiled: aim for half the ITL
        (20.0, 0.5, 40.0),  # engine twice as fast: a looser operating point is fine
        (20.0, 0.0, 20.0),  # meaningless factors leave the SLA as it is
        (20.0, -1.0, 20.0),
    ],
)
def test_decode_itl_target_divides_sla_by_correction(sla: float, cf: float, expected: float) -> None:
    assert decode_itl_target(sla, cf) == pytest.approx(expected)


def test_decode_context_is_isl_plus_half_osl() -> None:
    assert decode_context(3000, 150) == 3075.0
    assert decode_context(100, 10) == 105.0


def test_decode_replicas_is_rate_times_osl_over_throughput() -> None:
    # 500 req/min x 150 tokens = 1250 tokens/s; / 1000 tokens/s/GPU = 1.25
    assert decode_replicas(500 / 60, 150, point(1000), 1) == pytest.approx(1.25)
    # 20 req/min x 150 = 50 tokens/s; / 5000 / 4 GPUs = 0.0025
    assert decode_replicas(20 / 60, 150, point(5000), 4) == pytest.approx(0.0025)


def test_decode_zero_throughput_gives_zero() -> None:
    assert decode_replicas(10, 150, point(0.0), 1) == 0.0


# -- aggregated approximation ---------------------------------------------------------------


def test_agg_replicas_sums_prefill_and_decode_gpu_fractions() -> None:
    # prefill 2 x 3000 / 40000 = 0.15 GPU; decode 2 x 150 / 1000 = 0.3 GPU -> 0.45
    assert agg_replicas(2, 3000, 150, 40000, point(1000), 1) == pytest.approx(0.45)
    # 10 req/s: 0.75 + 1.5 = 2.25 GPUs = 1.125 two-GPU replicas
    assert agg_replicas(10, 3000, 150, 40000, point(1000), 2) == pytest.approx(1.125)


def test_agg_replicas_ignores_a_zero_capacity_side() -> None:
    assert agg_replicas(2, 3000, 150, 0.0, point(1000), 1) == pytest.approx(0.3)


# -- correction factors --------------------------------------------------------------------
# linear_profile: TTFT(ISL) = 10 + 0.01 ISL ms; ITL(kv) = 1 + 99 kv ms; max_kv_tokens 110000.


@pytest.fixture(scope="module")
def model():
    return perf_model(linear_profile())


def window(**kw) -> TrafficWindow:
    base = dict(window_seconds=60, requests=6000, isl=1000, osl=200, ttft_ms=30, itl_ms=101, request_duration_s=5)
    base.update(kw)
    return TrafficWindow(**base)


def test_correction_factors_observed_over_profiled(model) -> None:
    # cf_p: profiled TTFT at ISL 1000 = 10 + 10 = 20 ms; observed 30 -> 1.5.
    # cf_d: Little's law, rate 100/s x 5 s / 10 decode workers = 50 requests per worker;
    # context 1000 + 200/2 = 1100; KV usage 50 x 1100 / 110000 = 0.5; profiled ITL
    # 1 + 99 x 0.5 = 50.5 ms; observed 101 -> 2.0.
    cf = update_corrections(model, window(), 10, CorrectionFactors())
    assert cf.prefill == pytest.approx(1.5, rel=1e-4)
    assert cf.decode == pytest.approx(2.0, rel=1e-4)


def test_decode_correction_uses_concurrency_per_decode_worker(model) -> None:
    # 20 workers: 25 requests each -> KV 0.25 -> profiled ITL 25.75; 101 / 25.75
    cf = update_corrections(model, window(), 20, CorrectionFactors())
    assert cf.decode == pytest.approx(101 / 25.75, rel=1e-4)


def test_correction_idle_window_keeps_previous(model) -> None:
    prev = CorrectionFactors(prefill=0.7, decode=1.3)
    idle = TrafficWindow(window_seconds=60, requests=0)
    assert update_corrections(model, idle, 10, prev) == prev


def test_correction_without_decode_workers_keeps_previous_decode(model) -> None:
    prev = CorrectionFactors(prefill=0.7, decode=1.3)
    cf = update_corrections(model, window(), 0, prev)
    assert cf.prefill == pytest.approx(1.5, rel=1e-4)
    assert cf.decode == 1.3


def test_correction_without_request_duration_keeps_previous_decode(model) -> None:
    prev = CorrectionFactors(prefill=0.7, decode=1.3)
    cf = update_corrections(model, window(request_duration_s=None), 10, prev)
    assert cf.decode == 1.3
    assert cf.prefill == pytest.approx(1.5, rel=1e-4)


def test_correction_nan_latency_is_no_value(model) -> None:
    # Prometheus returns NaN for 0/0; it must keep the old factor, never become a number.
    prev = CorrectionFactors(prefill=0.7, decode=1.3)
    cf = update_corrections(model, window(ttft_ms=float("nan"), itl_ms=float("nan")), 10, prev)
    assert cf == prev
