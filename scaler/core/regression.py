"""Online sliding-window linear regression of latency against load (load-based scaling).

One `SlidingRegression` holds the newest `window` (x, y) points of one signal of one pool
(prefill: TTFT ms against active prefill tokens + ISL; decode: ITL ms against active KV
blocks). It is pure and deterministic: the same points in the same order always give the
same fit, so a restarted scaler that replays its history gets the same answers.

The fit is robust to outliers, in three steps:

1. Theil-Sen line (median of pairwise slopes, median intercept): a few wild points cannot
   drag it, unlike least squares.
2. Points whose residual from that line is more than `outlier_k` robust standard
   deviations (1.4826 x MAD of the residuals) away from the median residual are rejected.
   At least half the window always survives: the MAD is a median.
3. Ordinary least squares on the surviving points gives the reported slope and intercept
   (efficient on clean data, and exactly the classic fit when nothing is rejected).

Cases with a defined answer, never an exception or a wild number:

- non-finite or negative x, non-finite or non-positive y: the point is ignored by `add`;
- fewer than `min_observations` points: `fit()` and `capacity_at()` return None;
- all x equal (no spread to fit a slope): slope 0, i.e. a bad fit (below);
- slope <= 0 (latency does not grow with load in the data): `capacity_at` falls back to
  the smallest x among surviving points whose y meets the SLA, else the smallest x
  overall (as Dynamo's later load planner does), and flags `fallback=True`;
- slope > 0: capacity is (SLA - intercept) / slope, clamped to >= 0.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

# Consistency constant: 1.4826 x MAD estimates the standard deviation of normal noise.
_MAD_TO_SIGMA = 1.4826
# Theil-Sen over all pairs is O(n^2); above this many points a fixed, evenly spaced subset
# (deterministic) gives the initial line, and least squares still uses every inlier.
_THEIL_SEN_MAX_POINTS = 256


@dataclass(frozen=True)
class Fit:
    """A fitted line y = slope * x + intercept over the current window."""

    slope: float
    intercept: float
    observations: int  # points in the window
    used: int          # points kept after outlier rejection
    rejected: int      # points rejected as outliers

    @property
    def bad(self) -> bool:
        """Latency does not rise with load: the line cannot be solved for a capacity."""
        return not (self.slope > 0)


@dataclass(frozen=True)
class Capacity:
    """The load one worker can carry at an SLA, solved from a fit."""

    x_sla: float
    fit: Fit
    fallback: bool  # True when the slope was <= 0 and the observed-points rule was used


class SlidingRegression:
    """The newest `window` points of one signal, with a robust linear fit on demand."""

    def __init__(self, window: int, min_observations: int, outlier_k: float = 3.5) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if min_observations < 2:
            raise ValueError(f"min_observations must be >= 2, got {min_observations}")
        if not (outlier_k > 0):
            raise ValueError(f"outlier_k must be > 0, got {outlier_k}")
        self.window = window
        self.min_observations = min_observations
        self.outlier_k = outlier_k
        self._points: deque[tuple[float, float]] = deque(maxlen=window)

    def __len__(self) -> int:
        return len(self._points)

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        return tuple(self._points)

    def add(self, x: Optional[float], y: Optional[float]) -> bool:
        """Append one point (dropping the oldest when full). False if the point was ignored."""
        if x is None or y is None:
            return False
        x, y = float(x), float(y)
        if not (math.isfinite(x) and math.isfinite(y)) or x < 0 or y <= 0:
            return False
        self._points.append((x, y))
        return True

    def extend(self, points: Iterable[tuple[float, float]]) -> None:
        for x, y in points:
            self.add(x, y)

    def resized(self, window: int, min_observations: int) -> "SlidingRegression":
        """A copy with new settings keeping the newest points (a plan reload)."""
        out = SlidingRegression(window, min_observations, self.outlier_k)
        out.extend(self._points)
        return out

    # -- fitting ---------------------------------------------------------------------
    def _inliers(self) -> tuple[np.ndarray, np.ndarray]:
        xs = np.fromiter((p[0] for p in self._points), dtype=np.float64, count=len(self._points))
        ys = np.fromiter((p[1] for p in self._points), dtype=np.float64, count=len(self._points))
        slope0, intercept0 = _theil_sen(xs, ys)
        resid = ys - (intercept0 + slope0 * xs)
        centre = float(np.median(resid))
        spread = np.abs(resid - centre)
        sigma = _MAD_TO_SIGMA * float(np.median(spread))
        # A floor keeps exactly linear data (MAD 0 up to rounding) from rejecting points
        # that differ from the line only in the last bits.
        sigma = max(sigma, 1e-9 * max(1.0, float(np.median(np.abs(ys)))))
        keep = spread <= self.outlier_k * sigma
        return xs[keep], ys[keep]

    def fit(self) -> Optional[Fit]:
        """The robust fit, or None with fewer than `min_observations` points."""
        n = len(self._points)
        if n < self.min_observations:
            return None
        xs, ys = self._inliers()
        slope, intercept = _least_squares(xs, ys)
        return Fit(slope=slope, intercept=intercept, observations=n, used=int(xs.size), rejected=n - int(xs.size))

    def capacity_at(self, sla: float) -> Optional[Capacity]:
        """The x at which the fitted latency reaches `sla` (>= 0); None without enough data."""
        fit = self.fit()
        if fit is None:
            return None
        if not fit.bad:
            return Capacity(x_sla=max(0.0, (sla - fit.intercept) / fit.slope), fit=fit, fallback=False)
        xs, ys = self._inliers()
        meeting = xs[ys < sla]
        x = float(meeting.min()) if meeting.size else float(xs.min())
        return Capacity(x_sla=x, fit=fit, fallback=True)


def _theil_sen(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    n = xs.size
    if n > _THEIL_SEN_MAX_POINTS:
        idx = np.unique(np.linspace(0, n - 1, _THEIL_SEN_MAX_POINTS).round().astype(int))
        xs_s, ys_s = xs[idx], ys[idx]
    else:
        xs_s, ys_s = xs, ys
    i, j = np.triu_indices(xs_s.size, k=1)
    dx = xs_s[j] - xs_s[i]
    ok = dx != 0
    if not ok.any():
        return 0.0, float(np.median(ys))
    slope = float(np.median((ys_s[j][ok] - ys_s[i][ok]) / dx[ok]))
    return slope, float(np.median(ys - slope * xs))


def _least_squares(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    """Closed-form simple linear regression; slope 0 when x has no spread."""
    x_mean, y_mean = float(xs.mean()), float(ys.mean())
    dx = xs - x_mean
    sxx = float(np.dot(dx, dx))
    # Relative test: x values equal up to rounding have no usable spread.
    if sxx <= 1e-12 * max(1.0, x_mean * x_mean) * xs.size:
        return 0.0, y_mean
    slope = float(np.dot(dx, ys - y_mean)) / sxx
    return slope, y_mean - slope * x_mean
