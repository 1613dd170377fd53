"""`scaler.profiling.fit`: known curves plus noise and outliers are recovered, queued steps
are left out, coverage is reported, and thin histories are refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.core.interpolation import perf_model
from scaler.errors import InsufficientHistory, exit_code_for
from scaler.profiling.fit import FitOptions, WorkerSample, fit_profile, isotonic

MAX_KV = 200_000.0
# Recovered points lie within these relative errors of the true curve, with 5% lognormal
# noise per step and 5% of steps 3x outliers: prefill bins hold ~60 samples (measured worst
# over seeds 1-3: 1.1%), decode cells 9 (worst 5.5%).
TOLERANCE_PREFILL = 0.03
TOLERANCE_DECODE = 0.07


def true_ttft(isl: float) -> float:
    return 20.0 + 0.04 * isl + 2e-6 * isl * isl


def true_itl(kv: float, ctx: float) -> float:
    return 5.0 + 20.0 * kv + 0.0005 * ctx


def history(seed: int = 1, kv_max: float = 0.85, queued_every: int = 7) -> tuple[list[WorkerSample], list[WorkerSample]]:
    """Steps of three workers: each step one ISL (context = ISL + 200) and one KV level."""
    rng = np.random.default_rng(seed)
    pre, dec = [], []
    isls = (500.0, 1000.0, 2000.0, 4000.0, 8000.0)
    kvs = np.linspace(0.1, kv_max, 8)
    t = 0.0
    for rep in range(3):
        for isl in isls:
            for kv in kvs:
                for w in ("a", "b", "c"):
                    t += 1
                    ctx = isl + 200.0
                    noise = lambda: float(rng.lognormal(0.0, 0.05)) * (3.0 if rng.random() < 0.05 else 1.0)  # noqa: E731
                    queued = int(t) % queued_every == 0
                    ttft = true_ttft(isl) * noise() + (500.0 if queued else 0.0)
                    running = kv * MAX_KV / ctx
                    pre.append(WorkerSample(t, w, isl=isl, ttft_ms=ttft, waiting=2.0 if queued else 0.0))
                    dec.append(WorkerSample(t, w, context=ctx, itl_ms=true_itl(kv, ctx) * noise(), kv_usage=kv, running=running))
    return pre, dec


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_known_curves_are_recovered_within_tolerance(seed: int) -> None:
    pre, dec = history(seed)
    fit = fit_profile(pre, dec, FitOptions(max_kv_tokens=MAX_KV, gpus_prefill=1, gpus_decode=2))
    assert len(fit.prefill) == 5
    for p in fit.prefill:
        assert p.ttft_ms == pytest.approx(true_ttft(p.isl), rel=TOLERANCE_PREFILL)
        assert p.thpt_per_gpu == pytest.approx(p.isl / (p.ttft_ms / 1000.0), rel=1e-12)
    assert fit.prefill_quality.excluded["queued"] == sum(1 for s in pre if s.waiting)
    # the 3x outliers weigh on R^2 (squares), not on the medians' relative error
    assert 0.6 < fit.prefill_quality.r2 < 0.9
    assert fit.prefill_quality.median_rel_error < 0.05
    assert len(fit.decode) == 40  # 5 contexts x 8 KV levels
    assert fit.decode_quality.median_rel_error < 0.05
    for d in fit.decode:
        assert d.itl_ms == pytest.approx(true_itl(d.kv_usage, d.context), rel=TOLERANCE_DECODE)
        # running = kv x max_kv / context; two GPUs per decode engine
        assert d.thpt_per_gpu == pytest.approx(d.kv_usage * MAX_KV / d.context / (d.itl_ms / 1000.0) / 2, rel=TOLERANCE_DECODE)
    cov = fit.coverage
    assert cov.isl_samples == (500.0, 8000.0)
    assert cov.isl_points[0] == pytest.approx(500.0) and cov.isl_points[1] == pytest.approx(8000.0)
    assert cov.kv_points[1] == pytest.approx(0.85)
    assert cov.context_samples == (700.0, 8200.0)
    # what the planner reads from it: within tolerance of the truth inside the covered ranges
    model = perf_model(fit.profile)
    for isl in (700.0, 1500.0, 3000.0, 6000.0):
        assert model.prefill.ttft_ms(isl) == pytest.approx(true_ttft(isl), rel=0.06)
    for kv, ctx in ((0.3, 1200.0), (0.6, 4200.0), (0.8, 8200.0)):
        assert model.decode.itl_ms(kv, ctx) == pytest.approx(true_itl(kv, ctx), rel=0.06)
    assert fit.profile.max_kv_tokens == MAX_KV


def test_profile_spans_only_the_covered_ranges() -> None:
    pre, dec = history(kv_max=0.5)
    fit = fit_profile(pre, dec, FitOptions(max_kv_tokens=MAX_KV))
    assert float(fit.profile.decode_kv_usage.max()) <= 0.5
    assert float(fit.profile.prefill_isl.min()) >= 500.0 and float(fit.profile.prefill_isl.max()) <= 8000.0
    assert any("holds ITL flat" in w for w in fit.warnings)


def test_low_kv_history_is_refused_by_name() -> None:
    pre, dec = history(kv_max=0.25)
    with pytest.raises(InsufficientHistory, match=r"no samples with KV usage above 0.3 \(the highest point: 0.2\d\)") as exc:
        fit_profile(pre, dec, FitOptions(max_kv_tokens=MAX_KV))
    assert exit_code_for(exc.value) == 3
    # lowering the bar accepts it
    fit_profile(pre, dec, FitOptions(max_kv_tokens=MAX_KV, min_kv_coverage=0.2))


def test_too_few_isls_is_refused() -> None:
    pre, dec = history()
    narrow = [s for s in pre if s.isl in (500.0, 1000.0)]
    with pytest.raises(InsufficientHistory, match=r"prefill: the steps without a queue cover ISL 500-1000 in 2 bin\(s\)"):
        fit_profile(narrow, dec, FitOptions(max_kv_tokens=MAX_KV))


def test_all_queued_is_refused_naming_the_queue() -> None:
    pre, dec = history()
    queued = [WorkerSample(s.t, s.worker, isl=s.isl, ttft_ms=s.ttft_ms, waiting=1.0) for s in pre]
    with pytest.raises(InsufficientHistory, match=r"prefill: 0 steps with a TTFT and no request waiting \(\d+ more had requests waiting"):
        fit_profile(queued, dec, FitOptions(max_kv_tokens=MAX_KV))


def test_no_decode_samples_is_refused() -> None:
    pre, _ = history()
    with pytest.raises(InsufficientHistory, match=r"decode: 0 steps with an ITL, KV usage and running requests"):
        fit_profile(pre, [WorkerSample(1.0, "a", itl_ms=10.0)], FitOptions(max_kv_tokens=MAX_KV))


def test_noise_that_breaks_monotonicity_is_pooled() -> None:
    assert isotonic([1.0, 3.0, 2.0, 4.0], [1, 1, 1, 1]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert isotonic([5.0, 1.0], [3, 1]).tolist() == [4.0, 4.0]
