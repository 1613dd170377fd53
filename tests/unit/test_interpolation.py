"""Interpolators built from profiles: flat, quadratic, degenerate, and the two fixture profiles."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from scaler.core.interpolation import (
    DecodeOperatingPoint,
    DecodeSurface,
    PerfModel,
    PrefillCurve,
    perf_model,
)
from scaler.core.profile import Profile, profile_from_raw, profile_problems

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "profiles"
SYNTHETIC = FIXTURES / "h200-llama3.1-8b-fp8-tp1"
MEASURED = FIXTURES / "h200-llama3.1-8b-bf16-measured"


def _load(directory: Path) -> Profile:
    raw_p = json.loads((directory / "prefill_raw_data.json").read_text())
    raw_d = json.loads((directory / "decode_raw_data.json").read_text())
    assert profile_problems(raw_p, raw_d) == []
    return profile_from_raw(raw_p, raw_d, str(directory))


def _arr(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def make_profile(
    isl=(100, 1000, 4000, 8000, 16000),
    ttft=None,
    prefill_thpt=None,
    kv=None,
    ctx=None,
    itl=None,
    decode_thpt=None,
    max_kv_tokens: float = 1_000_000.0,
) -> Profile:
    isl = _arr(isl)
    if kv is None:
        # A 4 x 3 lattice of (KV usage, context), non-degenerate for triangulation.
        k, c = np.meshgrid([0.05, 0.35, 0.65, 0.95], [500.0, 4000.0, 12000.0])
        kv, ctx = k.ravel(), c.ravel()
    kv, ctx = _arr(kv), _arr(ctx)
    return Profile(
        prefill_isl=isl,
        prefill_ttft_ms=_arr(ttft) if ttft is not None else 5 + isl * 0.02,
        prefill_thpt_per_gpu=_arr(prefill_thpt) if prefill_thpt is not None else np.full(len(isl), 40000.0),
        decode_kv_usage=kv,
        decode_context=ctx,
        decode_itl_ms=_arr(itl) if itl is not None else 4 + 20 * kv,
        decode_thpt_per_gpu=_arr(decode_thpt) if decode_thpt is not None else 1000 + 50000 * kv,
        max_kv_tokens=max_kv_tokens,
    )


@pytest.fixture(scope="module")
def synthetic() -> PerfModel:
    return perf_model(_load(SYNTHETIC))


@pytest.fixture(scope="module")
def measured() -> PerfModel:
    return perf_model(_load(MEASURED))


# -- prefill --------------------------------------------------------------------------------


def test_flat_prefill_throughput_everywhere() -> None:
    curve = PrefillCurve(make_profile())
    for isl in (0, 50, 100, 777, 3000, 9999, 16000, 1e7):
        assert curve.thpt_per_gpu(isl) == pytest.approx(40000.0)


def test_prefill_clamps_outside_profiled_range() -> None:
    curve = PrefillCurve(make_profile())
    assert curve.ttft_ms(1) == curve.ttft_ms(100) == pytest.approx(5 + 100 * 0.02)
    assert curve.ttft_ms(1e6) == curve.ttft_ms(16000) == pytest.approx(5 + 16000 * 0.02)
    assert curve.isl_range == (100.0, 16000.0)


def test_prefill_quadratic_ttft_reproduced_at_profiled_points() -> None:
    isl = np.array([100, 1085, 2070, 3055, 4040, 6010, 7980, 9950, 11920, 15860], dtype=float)
    ttft = 6 + 0.02 * isl + 1.2e-6 * isl**2
    curve = PrefillCurve(make_profile(isl=isl, ttft=ttft))
    for x, y in zip(isl, ttft):
        assert curve.ttft_ms(x) == pytest.approx(y, rel=0.01)
    # and between points it stays monotone and close to the true curve
    mids = (isl[:-1] + isl[1:]) / 2
    values = [curve.ttft_ms(x) for x in mids]
    assert values == sorted(values)
    for x, v in zip(mids, values):
        assert v == pytest.approx(6 + 0.02 * x + 1.2e-6 * x**2, rel=0.01)


def test_prefill_sorts_unsorted_points() -> None:
    isl = np.array([8000, 100, 16000, 1000, 4000], dtype=float)
    curve = PrefillCurve(make_profile(isl=isl, ttft=5 + 0.02 * isl))
    assert curve.ttft_ms(100) == pytest.approx(7.0)
    assert curve.ttft_ms(16000) == pytest.approx(325.0)


def test_prefill_linear_with_fewer_than_four_points() -> None:
    curve = PrefillCurve(make_profile(isl=(100, 1100, 2100), ttft=(10, 20, 40)))
    assert curve.ttft_ms(600) == pytest.approx(15.0)
    assert curve.ttft_ms(1600) == pytest.approx(30.0)


def test_prefill_cubic_overshoot_is_clipped_into_data_range() -> None:
    # A sharp step makes a cubic spline ring; the result must stay inside [min, max] and > 0.
    isl = np.arange(1, 9, dtype=float) * 1000
    thpt = np.array([1, 1, 1, 1, 50000, 50000, 50000, 50000], dtype=float)
    curve = PrefillCurve(make_profile(isl=isl, prefill_thpt=thpt))
    for x in np.linspace(1000, 8000, 701):
        assert 1.0 <= curve.thpt_per_gpu(x) <= 50000.0


def test_prefill_rejects_non_finite_input() -> None:
    with pytest.raises(ValueError):
        PrefillCurve(make_profile()).ttft_ms(math.nan)


# -- decode ---------------------------------------------------------------------------------


def test_flat_decode_throughput_everywhere() -> None:
    x = 12345.0
    profile = make_profile(decode_thpt=np.full(12, x))
    d = DecodeSurface(profile)
    assert np.allclose(d.thpt_grid, x)
    for ctx in (0, 500, 3000, 12000, 1e6):
        for target in (4.5, 10, 100):  # ITL spans 5..23 ms: 4.5 is infeasible, still X
            op = d.best_throughput(target, ctx)
            assert op.thpt_per_gpu == pytest.approx(x)
            assert op.feasible == (target >= 5)
        for kv in (0, 0.5, 1):
            assert d.thpt_per_gpu(kv, ctx) == pytest.approx(x)


def test_flat_decode_itl_everywhere() -> None:
    d = DecodeSurface(make_profile(itl=np.full(12, 7.5)))
    for kv in (0, 0.2, 0.99, 1, 2):
        for ctx in (1, 500, 5000, 20000):
            assert d.itl_ms(kv, ctx) == pytest.approx(7.5)


def test_decode_clamps_outside_profiled_range() -> None:
    d = DecodeSurface(make_profile())
    assert d.itl_ms(0.5, 10) == d.itl_ms(0.5, 500)
    assert d.itl_ms(0.5, 1e9) == d.itl_ms(0.5, 12000)
    assert d.itl_ms(-3, 4000) == d.itl_ms(0, 4000)
    assert d.itl_ms(7, 4000) == d.itl_ms(1, 4000)


def test_decode_values_stay_in_data_range_and_positive() -> None:
    d = DecodeSurface(make_profile())
    itl = 4 + 20 * np.array([0.05, 0.95])
    thpt = 1000 + 50000 * np.array([0.05, 0.95])
    assert d.itl_grid.min() >= itl[0] - 1e-9 and d.itl_grid.max() <= itl[1] + 1e-9
    assert d.thpt_grid.min() >= thpt[0] - 1e-9 and d.thpt_grid.max() <= thpt[1] + 1e-9


def test_decode_single_context_profile_falls_back_to_1d() -> None:
    kv = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    profile = make_profile(kv=kv, ctx=np.full(5, 3000.0))
    d = DecodeSurface(profile)
    assert d.itl_ms(0.5, 3000) == pytest.approx(14.0)
    assert d.itl_ms(0.5, 100) == d.itl_ms(0.5, 1e5) == pytest.approx(14.0)
    assert d.itl_ms(0.0, 3000) == pytest.approx(6.0)  # flat below the first point
    op = d.best_throughput(14.0, 3000)
    assert op.feasible and op.itl_ms <= 14.0
    assert op.thpt_per_gpu == pytest.approx(1000 + 50000 * op.kv_usage, rel=1e-6)


def test_decode_collinear_points_do_not_crash() -> None:
    # Points on one diagonal line: Delaunay fails for cubic and linear; nearest fills the grid.
    kv = np.array([0.1, 0.3, 0.5, 0.7])
    ctx = np.array([1000.0, 3000.0, 5000.0, 7000.0])
    d = DecodeSurface(make_profile(kv=kv, ctx=ctx))
    assert np.all(np.isfinite(d.itl_grid)) and np.all(d.thpt_grid > 0)


def test_itl_at_concurrency_uses_kv_fraction() -> None:
    d = DecodeSurface(make_profile(max_kv_tokens=1_000_000))
    assert d.itl_at_concurrency(100, 4000) == pytest.approx(d.itl_ms(0.4, 4000))
    assert d.itl_at_concurrency(1e9, 4000) == pytest.approx(d.itl_ms(1.0, 4000))
    assert d.itl_at_concurrency(0, 4000) == pytest.approx(d.itl_ms(0.0, 4000))


def test_best_throughput_on_synthetic_profile(synthetic: PerfModel) -> None:
    op = synthetic.decode.best_throughput(10.0, 3075)
    assert isinstance(op, DecodeOperatingPoint)
    assert op.feasible
    assert op.itl_ms <= 10.0
    # The profile is calibrated to ~10k output tokens/s/GPU at 10 ms for context ~3000.
    assert 9_500 <= op.thpt_per_gpu <= 11_000
    assert 0.25 <= op.kv_usage <= 0.45


def test_best_throughput_impossible_target(synthetic: PerfModel) -> None:
    d = synthetic.decode
    op = d.best_throughput(0.001, 3075)
    assert not op.feasible
    i0, i1, w = d._row(3075)
    row = d.itl_grid[i0] * (1 - w) + d.itl_grid[i1] * w
    assert op.itl_ms == pytest.approx(row.min())
    assert op.thpt_per_gpu > 0


def test_best_throughput_grows_with_looser_target(synthetic: PerfModel) -> None:
    values = [synthetic.decode.best_throughput(t, 3075).thpt_per_gpu for t in (5, 8, 10, 15, 20)]
    assert values == sorted(values)


def test_synthetic_prefill_calibration(synthetic: PerfModel) -> None:
    assert synthetic.prefill.ttft_ms(3000) == pytest.approx(76, rel=0.05)
    assert synthetic.prefill.thpt_per_gpu(3000) == pytest.approx(40000, rel=0.05)


def test_measured_profile_gives_sane_numbers(measured: PerfModel) -> None:
    p, d = measured.prefill, measured.decode
    for isl in (1, 100, 3055, 8000, 15860, 50000):
        for v in (p.ttft_ms(isl), p.thpt_per_gpu(isl)):
            assert math.isfinite(v) and v > 0
    assert np.all(np.isfinite(d.itl_grid)) and np.all(d.itl_grid > 0)
    assert np.all(np.isfinite(d.thpt_grid)) and np.all(d.thpt_grid > 0)
    for ctx in (350, 2997, 8000, 13585):
        for target in (1, 10, 20, 50):
            op = d.best_throughput(target, ctx)
            assert math.isfinite(op.thpt_per_gpu) and op.thpt_per_gpu > 0
            assert op.feasible == (op.itl_ms <= target)
    # README headline: 16.6 ms at batch 99, ~6k tokens/s/GPU, for context 2997
    assert d.itl_at_concurrency(99, 2997) == pytest.approx(16.6, rel=0.1)
    assert d.best_throughput(16.6, 2997).thpt_per_gpu == pytest.approx(6000, rel=0.15)


def test_perf_model_cached_by_fingerprint() -> None:
    a = make_profile()
    b = make_profile()  # same numbers, different object
    ma, mb = perf_model(a), perf_model(b)
    assert ma.decode is mb.decode and ma.prefill is mb.prefill
    assert mb.profile is b
    c = make_profile(decode_thpt=np.full(12, 99.0))
    assert perf_model(c).decode is not ma.decode


def test_linear_decode_data_comes_back_exact() -> None:
    # ceil(load / capacity) downstream is sensitive to 999.99999999 vs 1000: the grid must
    # reproduce exactly linear data without solver residue at the grid nodes.
    k, c = np.meshgrid(np.linspace(0, 1, 5), [50.0, 1000.0, 4000.0, 16000.0])
    kv = k.ravel()
    d = DecodeSurface(make_profile(kv=kv, ctx=c.ravel(), itl=1 + 99 * kv, decode_thpt=100 + 9900 * kv))
    j = np.arange(100)
    for row in (0, 37, 99):
        np.testing.assert_array_equal(d.itl_grid[row], 1.0 + j)
        np.testing.assert_array_equal(d.thpt_grid[row], 100.0 + 100.0 * j)
    assert d.best_throughput(10.75, 1100).thpt_per_gpu == 1000.0
