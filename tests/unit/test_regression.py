"""Sliding-window robust regression (scaler.core.regression): reference vectors and bad data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaler.core.regression import SlidingRegression


def _reg(points, window=50, min_obs=5) -> SlidingRegression:
    reg = SlidingRegression(window, min_obs)
    for x, y in points:
        reg.add(x, y)
    return reg


# -- reference vectors (Dynamo's load-based regression tests, translated) ---------------
def test_solves_line_at_sla():
    cap = _reg([(x, 2 * x + 10) for x in range(1, 6)]).capacity_at(100)
    assert cap is not None and not cap.fallback
    assert cap.x_sla == pytest.approx(45.0)


def test_capacity_clamped_at_zero_when_intercept_above_sla():
    cap = _reg([(x, 10 * x + 100) for x in range(1, 6)]).capacity_at(5)
    assert cap is not None and cap.x_sla == 0.0 and not cap.fallback


def test_slope_and_intercept():
    fit = _reg([(x, 3 * x + 5) for x in range(1, 11)]).fit()
    assert fit is not None
    assert fit.slope == pytest.approx(3.0) and fit.intercept == pytest.approx(5.0)
    assert (fit.observations, fit.used, fit.rejected) == (10, 10, 0)


def test_window_keeps_newest_points():
    reg = _reg([(x, 2 * x + 1) for x in range(10)], window=5)
    assert len(reg) == 5
    assert [p[0] for p in reg.points] == [5, 6, 7, 8, 9]
    assert reg.fit().observations == 5


def test_fewer_than_min_observations_gives_none():
    reg = _reg([(1, 3), (2, 5), (3, 7), (4, 9)], min_obs=5)
    assert reg.fit() is None and reg.capacity_at(100) is None
    reg.add(5, 11)
    assert reg.capacity_at(21) is not None


def test_prefill_reference_fit():
    cap = _reg([(x, 0.1 * x + 100) for x in range(2000, 4000, 200)]).capacity_at(500)
    assert cap.x_sla == pytest.approx(4000.0)


def test_decode_reference_fit():
    cap = _reg([(x, 0.5 * x + 10) for x in range(20, 120, 10)]).capacity_at(50)
    assert cap.x_sla == pytest.approx(80.0)


# -- bad data ---------------------------------------------------------------------------
def test_negative_slope_falls_back_to_smallest_x_meeting_sla():
    # y = 50 - x: points with y < 45 are x = 6..10 -> the smallest is 6
    cap = _reg([(x, 50 - x) for x in range(1, 11)]).capacity_at(45)
    assert cap.fallback and cap.fit.bad
    assert cap.x_sla == 6.0


def test_negative_slope_with_every_point_violating_takes_smallest_x():
    cap = _reg([(x, 500 - x) for x in range(10, 20)]).capacity_at(45)
    assert cap.fallback and cap.x_sla == 10.0


def test_all_x_equal_is_a_bad_fit_not_a_crash():
    cap = _reg([(7.0, y) for y in (10, 11, 12, 13, 14)]).capacity_at(12.5)
    assert cap.fit.slope == 0.0 and cap.fallback
    assert cap.x_sla == 7.0


def test_non_finite_and_non_positive_points_are_ignored():
    reg = SlidingRegression(50, 2)
    assert reg.add(float("nan"), 1.0) is False
    assert reg.add(1.0, float("inf")) is False
    assert reg.add(None, 1.0) is False
    assert reg.add(-1.0, 1.0) is False
    assert reg.add(1.0, 0.0) is False
    assert reg.add(1.0, 3.0) is True
    assert len(reg) == 1


def test_outliers_are_rejected():
    pts = [(x, 2 * x + 10) for x in range(1, 21)]
    pts[4] = (5, 5000.0)   # a stalled request
    pts[12] = (13, 0.5)    # a cached one
    fit = _reg(pts).fit()
    assert fit.rejected == 2
    assert fit.slope == pytest.approx(2.0) and fit.intercept == pytest.approx(10.0)


def test_noisy_data_recovers_line():
    rng = np.random.default_rng(7)
    xs = rng.uniform(100, 3000, 50)
    ys = 0.2 * xs + 40 + rng.normal(0, 15, 50)
    fit = _reg(zip(xs, ys)).fit()
    assert fit.slope == pytest.approx(0.2, rel=0.1)
    assert fit.rejected <= 2
    assert math.isfinite(fit.intercept)


def test_deterministic_for_same_points():
    rng = np.random.default_rng(3)
    pts = list(zip(rng.uniform(0, 100, 40), rng.uniform(1, 100, 40)))
    a, b = _reg(pts).fit(), _reg(pts).fit()
    assert a == b


def test_large_window_uses_bounded_initial_line():
    pts = [(x, 0.5 * x + 3) for x in range(1000)]
    fit = _reg(pts, window=1000).fit()
    assert fit.slope == pytest.approx(0.5) and fit.used == 1000


def test_resized_keeps_newest():
    reg = _reg([(x, x + 1.0) for x in range(1, 11)], window=10)
    small = reg.resized(4, 2)
    assert [p[0] for p in small.points] == [7, 8, 9, 10]


def test_invalid_settings_raise():
    with pytest.raises(ValueError):
        SlidingRegression(1, 2)
    with pytest.raises(ValueError):
        SlidingRegression(10, 1)
