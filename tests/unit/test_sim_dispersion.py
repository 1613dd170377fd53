"""The simulator's count of arrival clumping (scaler.sim.window.arrival_dispersion)."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.sim.window import arrival_dispersion


def test_allan_index_of_hand_made_counts() -> None:
    # bins of 30 s holding 10, 20, 10, 20, 10, 20 arrivals: differences +-10, mean 15
    # -> mean squared difference 100 / 2 / 15 = 3.333
    arrivals: list[float] = []
    for k, n in enumerate((10, 20, 10, 20, 10, 20)):
        arrivals += list(np.linspace(30 * k, 30 * k + 29, n))
    assert arrival_dispersion(sorted(arrivals), 180.0, 180.0) == pytest.approx(100 / 2 / 15)


def test_a_steady_trend_is_not_clumping() -> None:
    # 10, 20, ..., 60 per bin: differences all 10, mean 35 -> 100 / 70, far below the
    # plain variance / mean (1750/6*6/5 / 35 = 10)
    arrivals: list[float] = []
    for k, n in enumerate((10, 20, 30, 40, 50, 60)):
        arrivals += list(np.linspace(30 * k, 30 * k + 29, n))
    assert arrival_dispersion(sorted(arrivals), 180.0, 180.0) == pytest.approx(100 / 70)


def test_clumps_of_twelve_count_about_twelve() -> None:
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 1800, 15000)
    clumped = np.sort(np.repeat(base, 12) + rng.uniform(0, 1, base.size * 12))
    assert 8 < arrival_dispersion(list(clumped), 1800.0, 1800.0) < 16
    poisson = np.sort(rng.uniform(0, 1800, base.size * 12))
    assert 0.5 < arrival_dispersion(list(poisson), 1800.0, 1800.0) < 1.6


def test_too_short_or_empty_windows_say_nothing() -> None:
    assert arrival_dispersion([1.0, 2.0], 30.0, 30.0) is None
    assert arrival_dispersion([], 180.0, 180.0) is None
