"""Performance model from a profile: TTFT/throughput of prefill by ISL, ITL/throughput of decode
by (KV usage, context length).

Follows Dynamo's interpolators (cubic where there is enough data, clamped to the profiled
range; decode on a dense precomputed grid filled like `griddata(method="cubic")`, holes filled
by "nearest") with a few safety changes: interpolated values are clipped into the profiled
range and kept positive (cubic overshoot must never yield a zero or negative capacity), the
decode triangulation runs on normalised axes, and decode lookups are bilinear on the grid
rather than nearest-cell. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy.interpolate import (
    CloughTocher2DInterpolator,
    CubicSpline,
    LinearNDInterpolator,
    NearestNDInterpolator,
)

from scaler.core.profile import Profile

GRID_SIZE = 100
# Floor for any interpolated latency/throughput: keeps divisions by capacity finite.
POSITIVE_FLOOR = 1e-6
_MODEL_CACHE_SIZE = 16


def _check_finite(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _unique_mean(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort by x and average the ys of repeated x (splines need strictly increasing x)."""
    ux, inverse = np.unique(x, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(ux)).astype(np.float64)
    out = [ux]
    for y in ys:
        out.append(np.bincount(inverse, weights=y, minlength=len(ux)) / counts)
    return tuple(out)


class _Curve1D:
    """One y(x) curve: cubic spline with >= 4 points, linear otherwise; x clamped, y clipped."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.lo, self.hi = float(x[0]), float(x[-1])
        self.y_lo = max(float(np.min(y)), POSITIVE_FLOOR)
        self.y_hi = max(float(np.max(y)), self.y_lo)
        self._x, self._y = x, y
        self._spline = CubicSpline(x, y) if len(x) >= 4 else None

    def __call__(self, x: float) -> float:
        x = min(max(x, self.lo), self.hi)  # no extrapolation: flat beyond the profiled range
        if self._spline is not None:
            v = float(self._spline(x))
        else:
            v = float(np.interp(x, self._x, self._y))
        return min(max(v, self.y_lo), self.y_hi)


class PrefillCurve:
    """TTFT (ms) and input tokens/s/GPU of one prefill engine as functions of ISL."""

    def __init__(self, profile: Profile) -> None:
        isl, ttft, thpt = _unique_mean(
            np.asarray(profile.prefill_isl, dtype=np.float64),
            np.asarray(profile.prefill_ttft_ms, dtype=np.float64),
            np.asarray(profile.prefill_thpt_per_gpu, dtype=np.float64),
        )
        if len(isl) == 0:
            raise ValueError("profile has no prefill points")
        self._ttft = _Curve1D(isl, ttft)
        self._thpt = _Curve1D(isl, thpt)

    @property
    def isl_range(self) -> tuple[float, float]:
        return self._ttft.lo, self._ttft.hi

    def ttft_ms(self, isl: float) -> float:
        return self._ttft(_check_finite("isl", isl))

    def thpt_per_gpu(self, isl: float) -> float:
        return self._thpt(_check_finite("isl", isl))


@dataclass(frozen=True)
class DecodeOperatingPoint:
    """A point on one context row of the decode grid."""

    thpt_per_gpu: float
    itl_ms: float
    kv_usage: float
    feasible: bool


def _fill_grid(
    px: np.ndarray, py: np.ndarray, values: np.ndarray, gx: np.ndarray, gy: np.ndarray
) -> np.ndarray:
    """Values on the grid (rows = gy, columns = gx) from scattered points, no NaN left.

    All coordinates are already normalised to [0, 1], so Delaunay triangles are not slivers
    stretched along the context axis (whose raw scale is ~10^4 times the KV axis).
    """
    n_y, n_x = len(gy), len(gx)
    if len(np.unique(py)) == 1:
        # One context row (or a flat sweep): triangulation is impossible; interpolate along KV.
        xs, vs = _unique_mean(px, values)
        return np.tile(np.interp(gx, xs, vs), (n_y, 1))
    if len(np.unique(px)) == 1:
        ys, vs = _unique_mean(py, values)
        return np.tile(np.interp(gy, ys, vs)[:, None], (1, n_x))
    points = np.column_stack([px, py])
    mesh_x, mesh_y = np.meshgrid(gx, gy)
    grid: np.ndarray | None = None
    # What griddata(method="cubic") builds, with a tighter tolerance on its iterative gradient
    # estimate (default 1e-6 leaves ~1e-4 errors even on exactly linear data).
    builders = (
        lambda: CloughTocher2DInterpolator(points, values, tol=1e-12, maxiter=1000),
        lambda: LinearNDInterpolator(points, values),
    )
    for build in builders:
        try:
            grid = build()(mesh_x, mesh_y)
            break
        except (ValueError, RuntimeError):  # QhullError is a RuntimeError: collinear points
            continue
    nearest = NearestNDInterpolator(points, values)(mesh_x, mesh_y)
    if grid is None:
        return nearest
    holes = ~np.isfinite(grid)  # outside the convex hull
    grid[holes] = nearest[holes]
    return grid


def _round_significant(grid: np.ndarray, digits: int = 10) -> np.ndarray:
    """Round off the solver's last-digit residue, so flat or linear data comes back exact.

    Downstream, replica counts are ceil(load / capacity): 999.99999999998 instead of 1000
    would turn 20 replicas into 21. Profiles carry at most ~7 significant digits.
    """
    flat = [float(f"{v:.{digits}g}") for v in grid.ravel().tolist()]
    return np.array(flat, dtype=np.float64).reshape(grid.shape)


class DecodeSurface:
    """ITL (ms) and output tokens/s/GPU of one decode engine over (KV usage, context length)."""

    def __init__(self, profile: Profile, grid_size: int = GRID_SIZE) -> None:
        if grid_size < 2:
            raise ValueError("grid_size must be >= 2")
        kv = np.asarray(profile.decode_kv_usage, dtype=np.float64)
        ctx = np.asarray(profile.decode_context, dtype=np.float64)
        itl = np.asarray(profile.decode_itl_ms, dtype=np.float64)
        thpt = np.asarray(profile.decode_thpt_per_gpu, dtype=np.float64)
        if len(kv) == 0:
            raise ValueError("profile has no decode points")
        self.max_kv_tokens = float(profile.max_kv_tokens)
        if not self.max_kv_tokens > 0:
            raise ValueError("max_kv_tokens must be positive")
        self._n = grid_size
        self._bests: tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self.ctx_lo, self.ctx_hi = float(ctx.min()), float(ctx.max())
        span = self.ctx_hi - self.ctx_lo
        self._ctx_step = span / (grid_size - 1)  # 0 for a single-context profile
        self._kv_step = 1.0 / (grid_size - 1)
        self.kv_axis = np.linspace(0.0, 1.0, grid_size)
        self.ctx_axis = np.linspace(self.ctx_lo, self.ctx_hi, grid_size)
        gnorm = np.linspace(0.0, 1.0, grid_size)
        ctx_norm = (ctx - self.ctx_lo) / span if span > 0 else np.zeros_like(ctx)

        def build(values: np.ndarray) -> np.ndarray:
            g = _fill_grid(kv, ctx_norm, values, gnorm, gnorm)
            # Cubic overshoot can leave the data range, even go negative: clip it back.
            lo = max(float(values.min()), POSITIVE_FLOOR)
            hi = max(float(values.max()), lo)
            g = _round_significant(np.clip(g, lo, hi))
            g.setflags(write=False)
            return g

        self.itl_grid = build(itl)  # [context row, KV column]
        self.thpt_grid = build(thpt)

    # -- grid coordinates -------------------------------------------------------------------
    def _row(self, context: float) -> tuple[int, int, float]:
        """Two neighbouring context rows and the blend weight; context clamped to the grid."""
        if self._ctx_step == 0:
            return 0, 0, 0.0
        pos = (min(max(context, self.ctx_lo), self.ctx_hi) - self.ctx_lo) / self._ctx_step
        i0 = min(int(pos), self._n - 2)
        return i0, i0 + 1, pos - i0

    def _col(self, kv_usage: float) -> tuple[int, int, float]:
        pos = min(max(kv_usage, 0.0), 1.0) / self._kv_step
        j0 = min(int(pos), self._n - 2)
        return j0, j0 + 1, pos - j0

    def _bilinear(self, grid: np.ndarray, kv_usage: float, context: float) -> float:
        i0, i1, wy = self._row(_check_finite("context", context))
        j0, j1, wx = self._col(_check_finite("kv_usage", kv_usage))
        top = grid[i0, j0] * (1 - wx) + grid[i0, j1] * wx
        bottom = grid[i1, j0] * (1 - wx) + grid[i1, j1] * wx
        return float(top * (1 - wy) + bottom * wy)

    def kv_usage_at(self, concurrency: float, context: float) -> float:
        """Fraction of the KV cache `concurrency` requests of `context` tokens occupy, in [0, 1]."""
        return min(max(concurrency * context / self.max_kv_tokens, 0.0), 1.0)

    # -- lookups ------------------------------------------------------------------------------
    def itl_ms(self, kv_usage: float, context: float) -> float:
        return self._bilinear(self.itl_grid, kv_usage, context)

    def thpt_per_gpu(self, kv_usage: float, context: float) -> float:
        return self._bilinear(self.thpt_grid, kv_usage, context)

    def itl_at_concurrency(self, concurrency: float, context: float) -> float:
        concurrency = _check_finite("concurrency", concurrency)
        context = _check_finite("context", context)
        return self.itl_ms(self.kv_usage_at(concurrency, context), context)

    def _row_bests(self, target: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best point of every context row for one ITL target: (thpt, itl, kv) per row.

        Per row: the highest-throughput KV column whose ITL meets the target (every column is
        scanned: interpolated ITL need not be monotone in KV usage), else the lowest-ITL column.
        Then each row's throughput is capped by every shorter-context row's (running minimum),
        and the point reported is the capping row's. Why: on real profiles the per-row best
        zig-zags along context (grid quantisation, measurement noise, cubic wiggles), so a
        longer prompt could look cheaper to decode and get fewer replicas. The cap keeps
        "more load never gives fewer replicas" true and errs on the side of the SLA.
        """
        cached = self._bests
        if cached is not None and cached[0] == target:
            return cached[1]
        ok = self.itl_grid <= target
        feasible = ok.any(axis=1)
        best_ok = np.argmax(np.where(ok, self.thpt_grid, -np.inf), axis=1)
        cols = np.where(feasible, best_ok, np.argmin(self.itl_grid, axis=1))
        rows = np.arange(self._n)
        thpt = self.thpt_grid[rows, cols]
        capped = np.minimum.accumulate(thpt)
        # the row that sets each cap: the latest row at or before k whose own best is the cap
        lim = np.maximum.accumulate(np.where(thpt <= capped, rows, 0))
        out = (capped, self.itl_grid[lim, cols[lim]], self.kv_axis[cols[lim]])
        self._bests = (target, out)  # one-entry cache: callers repeat the same target
        return out

    def most_loaded_within(self, itl_target_ms: float, context: float) -> DecodeOperatingPoint:
        """The highest KV usage at this context up to which every load meets the ITL target.

        What one engine can hold while its ITL stays within the target: the attainment
        sizing's capacity per replica (KV usage x max_kv_tokens / context sequences). Unlike
        `best_throughput` it reads the ITL axis only (a profile's throughput column need not
        agree with concurrency / ITL), and it stops at the first load that misses the target,
        so a noisy dip further out never counts. When even the lightest profiled load misses,
        the lightest non-zero load is returned, flagged infeasible.
        """
        target = _check_finite("itl_target_ms", itl_target_ms)
        i0, i1, w = self._row(_check_finite("context", context))
        itl_row = self.itl_grid[i0] * (1 - w) + self.itl_grid[i1] * w
        thpt_row = self.thpt_grid[i0] * (1 - w) + self.thpt_grid[i1] * w
        misses = np.flatnonzero(itl_row > target)
        last = (int(misses[0]) - 1) if misses.size else self._n - 1
        feasible = last >= 1
        j = last if feasible else 1
        return DecodeOperatingPoint(
            thpt_per_gpu=float(thpt_row[j]), itl_ms=float(itl_row[j]), kv_usage=float(self.kv_axis[j]), feasible=feasible
        )

    def best_throughput(self, itl_target_ms: float, context: float) -> DecodeOperatingPoint:
        """Highest-throughput operating point whose ITL meets the target at this context.

        The throughput is non-decreasing in the target and non-increasing in the context (see
        `_row_bests`); between grid rows the neighbouring rows' points are blended. When no
        column of this context's row meets the target, the point is marked infeasible and
        reports the row's lowest ITL, so callers still get a positive throughput to size with.
        """
        target = _check_finite("itl_target_ms", itl_target_ms)
        i0, i1, w = self._row(_check_finite("context", context))
        thpt, itl, kv = self._row_bests(target)
        # a - (a - b) w with a >= b: exact at the rows and monotone in w despite rounding
        a, b = float(thpt[i0]), float(thpt[i1])
        best = min(a, max(b, a - (a - b) * w))
        itl_row = self.itl_grid[i0] * (1 - w) + self.itl_grid[i1] * w
        if bool((itl_row <= target).any()):
            return DecodeOperatingPoint(
                thpt_per_gpu=best,
                itl_ms=float(itl[i0] * (1 - w) + itl[i1] * w),
                kv_usage=float(kv[i0] * (1 - w) + kv[i1] * w),
                feasible=True,
            )
        j = int(np.argmin(itl_row))
        return DecodeOperatingPoint(
            thpt_per_gpu=best, itl_ms=float(itl_row[j]), kv_usage=float(self.kv_axis[j]), feasible=False
        )


@dataclass(frozen=True)
class PerfModel:
    """A profile and the interpolators built from it."""

    profile: Profile
    prefill: PrefillCurve
    decode: DecodeSurface


class _ByFingerprint:
    """Hashes a profile by its content fingerprint so the cache never keys on identity."""

    __slots__ = ("profile",)

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def __hash__(self) -> int:
        return hash(self.profile.fingerprint)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByFingerprint) and other.profile.fingerprint == self.profile.fingerprint


@lru_cache(maxsize=_MODEL_CACHE_SIZE)
def _build(key: _ByFingerprint) -> PerfModel:
    p = key.profile
    return PerfModel(profile=p, prefill=PrefillCurve(p), decode=DecodeSurface(p))


def perf_model(profile: Profile) -> PerfModel:
    """The (cached) performance model of a profile; building takes tens of ms, lookups microseconds."""
    model = _build(_ByFingerprint(profile))
    # Same numbers, maybe another source path: hand back the caller's own profile object.
    return model if model.profile is profile else replace(model, profile=profile)
