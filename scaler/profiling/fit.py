"""Fit a profile's curves from per-worker history samples (pure: no I/O, no clock).

Input: one `WorkerSample` per worker and time step, the per-step means an engine's series
give (`scaler.profiling.learn` reads them). Output: a `Profile` in the Dynamo layout, with
each point's quality and the ranges the history covered (`FitResult`).

How (the reasons are in docs/profiles.md, "Learning from Prometheus history"):
- Prefill: TTFT against ISL from the steps where the worker had no request waiting at any
  scrape (a queued request's TTFT is its wait plus its prefill; only the second is in a
  profile). Samples are grouped into log-spaced ISL bins holding at least `min_samples`
  each; a point is the bin's median ISL and median TTFT, then TTFT is made non-decreasing
  in ISL (weighted isotonic regression, pool-adjacent-violators). Throughput per GPU is
  ISL / TTFT / GPUs per engine, as Dynamo's profiler computes it.
- Decode: ITL against KV usage x context from the steps with requests running. Samples
  are grouped into log-spaced context rows and, per row, KV-usage bins of width
  1 / kv_bins, each holding at least `min_samples`; a point is the cell's medians, ITL made
  non-decreasing in KV usage per row. Throughput per GPU is the cell's median of running
  requests / ITL per step, over GPUs per engine.
- Medians make a point robust to a minority of outliers (a step that straddles a load
  change, a burst); the isotonic step removes noise that would make more load look cheaper.
- Extrapolation refused: points lie only where the history has samples. Too little data
  raises `InsufficientHistory` naming what is missing (exit 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from scaler.core.profile import MIN_DECODE_POINTS, MIN_PREFILL_POINTS, Profile, profile_from_raw, profile_problems
from scaler.errors import InsufficientHistory


@dataclass(frozen=True)
class WorkerSample:
    """One worker over one step: means of the requests it finished in the step (ISL, OSL's
    context, TTFT, ITL) and of its gauges (KV usage 0-1, running requests); `waiting`: the
    most requests waiting at any scrape of the step. None: no value (no request finished,
    gauge absent)."""

    t: float
    worker: str
    isl: Optional[float] = None
    ttft_ms: Optional[float] = None
    waiting: Optional[float] = None
    context: Optional[float] = None
    itl_ms: Optional[float] = None
    kv_usage: Optional[float] = None
    running: Optional[float] = None


@dataclass(frozen=True)
class FitOptions:
    max_kv_tokens: float
    gpus_prefill: int = 1
    gpus_decode: int = 1
    isl_bins: int = 8
    context_bins: int = 6
    kv_bins: int = 10
    min_samples: int = 3
    # refuse a decode fit whose highest KV-usage point lies below this: the planner holds ITL
    # flat beyond the last point, so a fit from a lightly loaded history would promise a full cache
    min_kv_coverage: float = 0.3


@dataclass(frozen=True)
class PrefillPoint:
    isl: float
    ttft_ms: float           # after the isotonic step
    median_ttft_ms: float    # the bin's own median
    thpt_per_gpu: float
    samples: int
    isl_lo: float
    isl_hi: float
    rel_error: float         # median |sample - point| / point over the bin's samples


@dataclass(frozen=True)
class DecodePoint:
    kv_usage: float
    context: float
    itl_ms: float
    median_itl_ms: float
    thpt_per_gpu: float
    samples: int
    row: int
    rel_error: float


@dataclass(frozen=True)
class Coverage:
    """What the history covered: the used samples' ranges (sample) and the written points' (points)."""

    isl_samples: tuple[float, float]
    isl_points: tuple[float, float]
    context_samples: tuple[float, float]
    context_points: tuple[float, float]
    kv_samples: tuple[float, float]
    kv_points: tuple[float, float]
    # per context row: (row's context lo, hi, highest KV-usage point)
    kv_per_row: tuple[tuple[float, float, float], ...]


@dataclass(frozen=True)
class Quality:
    samples: int
    # samples left out, by reason (queued, no_ttft, no_decode, sparse_cells)
    excluded: dict[str, int] = field(default_factory=dict)
    r2: float = float("nan")
    median_rel_error: float = float("nan")
    adjusted_points: int = 0  # points the isotonic step moved


@dataclass(frozen=True)
class FitResult:
    profile: Profile
    prefill: tuple[PrefillPoint, ...]
    decode: tuple[DecodePoint, ...]
    coverage: Coverage
    prefill_quality: Quality
    decode_quality: Quality
    warnings: tuple[str, ...] = ()


def _ok(v: Optional[float]) -> bool:
    return v is not None and math.isfinite(v)


def isotonic(y: "Sequence[float] | np.ndarray", w: "Sequence[float] | np.ndarray") -> np.ndarray:
    """Weighted non-decreasing least-squares fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for yi, wi in zip(y, w):
        blocks.append([float(yi), float(wi), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    out: list[float] = []
    for m, _, c in blocks:
        out += [m] * int(c)
    return np.array(out, dtype=np.float64)


def _groups(values: np.ndarray, edges: np.ndarray, min_samples: int) -> list[np.ndarray]:
    """Indices of `values` (sorted ascending) grouped by bin, adjacent bins merged until each
    group holds `min_samples`; a short last group joins the one before."""
    which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    groups: list[np.ndarray] = []
    current: list[int] = []
    for b in range(len(edges) - 1):
        current += list(np.flatnonzero(which == b))
        if len(current) >= min_samples:
            groups.append(np.array(current, dtype=np.int64))
            current = []
    if current:
        if groups:
            groups[-1] = np.concatenate([groups[-1], np.array(current, dtype=np.int64)])
        else:
            groups.append(np.array(current, dtype=np.int64))
    return [g for g in groups if len(g) >= min_samples]


def _log_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    if hi <= lo:
        return np.array([lo, lo + 1.0])
    return np.exp(np.linspace(math.log(lo), math.log(hi), bins + 1))


def _rel_error(samples: np.ndarray, point: float) -> float:
    return float(np.median(np.abs(samples - point) / point))


def _r2(y: np.ndarray, fitted: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        return float("nan")
    return 1.0 - float(np.sum((y - fitted) ** 2)) / ss_tot


def fit_prefill(samples: Sequence[WorkerSample], opts: FitOptions) -> tuple[tuple[PrefillPoint, ...], Quality, tuple[float, float]]:
    """Prefill points from the samples without a queue; InsufficientHistory when fewer than
    MIN_PREFILL_POINTS bins of `min_samples` each are covered."""
    with_ttft = [s for s in samples if _ok(s.isl) and _ok(s.ttft_ms) and s.isl > 0 and s.ttft_ms > 0]  # type: ignore[operator]
    no_queue = [s for s in with_ttft if _ok(s.waiting) and s.waiting <= 0]  # type: ignore[operator]
    excluded = {"queued": len(with_ttft) - len(no_queue), "no_ttft": len(samples) - len(with_ttft)}
    need = MIN_PREFILL_POINTS * opts.min_samples
    if len(no_queue) < need:
        raise InsufficientHistory(
            f"prefill: {len(no_queue)} steps with a TTFT and no request waiting ({excluded['queued']} more had requests "
            f"waiting, which TTFT includes); at least {need} are needed ({MIN_PREFILL_POINTS} ISL bins of "
            f"{opts.min_samples}): a longer --since, or a shorter --step"
        )
    order = sorted(no_queue, key=lambda s: s.isl)  # type: ignore[arg-type, return-value]
    isl = np.array([s.isl for s in order], dtype=np.float64)
    ttft = np.array([s.ttft_ms for s in order], dtype=np.float64)
    groups = _groups(isl, _log_edges(float(isl[0]), float(isl[-1]), opts.isl_bins), opts.min_samples)
    if len(groups) < MIN_PREFILL_POINTS:
        raise InsufficientHistory(
            f"prefill: the steps without a queue cover ISL {isl[0]:.0f}-{isl[-1]:.0f} in {len(groups)} bin(s) of at "
            f"least {opts.min_samples} samples; at least {MIN_PREFILL_POINTS} are needed: the history must hold more "
            f"distinct input lengths (a longer --since)"
        )
    med_isl = np.array([float(np.median(isl[g])) for g in groups])
    med_ttft = np.array([float(np.median(ttft[g])) for g in groups])
    fitted = isotonic(med_ttft, [len(g) for g in groups])
    points = []
    for k, g in enumerate(groups):
        points.append(PrefillPoint(
            isl=float(med_isl[k]), ttft_ms=float(fitted[k]), median_ttft_ms=float(med_ttft[k]),
            thpt_per_gpu=float(med_isl[k] / (fitted[k] / 1000.0) / opts.gpus_prefill), samples=len(g),
            isl_lo=float(isl[g].min()), isl_hi=float(isl[g].max()), rel_error=_rel_error(ttft[g], float(fitted[k])),
        ))
    curve = np.interp(isl, med_isl, fitted)
    quality = Quality(
        samples=len(isl), excluded=excluded, r2=_r2(ttft, curve),
        median_rel_error=float(np.median(np.abs(ttft - curve) / curve)),
        adjusted_points=int(np.sum(np.abs(fitted - med_ttft) > 1e-9 * np.abs(med_ttft))),
    )
    return tuple(points), quality, (float(isl[0]), float(isl[-1]))


def fit_decode(
    samples: Sequence[WorkerSample], opts: FitOptions
) -> tuple[tuple[DecodePoint, ...], Quality, tuple[float, float], tuple[float, float], tuple[tuple[float, float, float], ...]]:
    """Decode points per context row and KV-usage bin; InsufficientHistory when fewer than
    MIN_DECODE_POINTS cells, or none above `min_kv_coverage`."""
    used = [
        s for s in samples
        if _ok(s.itl_ms) and _ok(s.kv_usage) and _ok(s.context) and _ok(s.running)
        and s.itl_ms > 0 and 0 < s.kv_usage <= 1 and s.context > 0 and s.running > 0  # type: ignore[operator]
    ]
    excluded = {"no_decode": len(samples) - len(used)}
    need = MIN_DECODE_POINTS * opts.min_samples
    if len(used) < need:
        raise InsufficientHistory(
            f"decode: {len(used)} steps with an ITL, KV usage and running requests; at least {need} are needed "
            f"({MIN_DECODE_POINTS} cells of {opts.min_samples}): a longer --since, or a shorter --step"
        )
    used.sort(key=lambda s: s.context)  # type: ignore[arg-type, return-value]
    ctx = np.array([s.context for s in used], dtype=np.float64)
    kv = np.array([s.kv_usage for s in used], dtype=np.float64)
    itl = np.array([s.itl_ms for s in used], dtype=np.float64)
    running = np.array([s.running for s in used], dtype=np.float64)
    rows = _groups(ctx, _log_edges(float(ctx[0]), float(ctx[-1]), opts.context_bins), opts.min_samples)
    kv_edges = np.linspace(0.0, 1.0, opts.kv_bins + 1)
    points: list[DecodePoint] = []
    per_row: list[tuple[float, float, float]] = []
    fitted_of = np.full(len(used), np.nan)
    adjusted = 0
    for r, row in enumerate(rows):
        row = row[np.argsort(kv[row], kind="stable")]
        cells = [row[c] for c in _groups(kv[row], kv_edges, opts.min_samples)]
        if not cells:
            continue
        med_itl = np.array([float(np.median(itl[c])) for c in cells])
        fitted = isotonic(med_itl, [len(c) for c in cells])
        adjusted += int(np.sum(np.abs(fitted - med_itl) > 1e-9 * med_itl))
        for c, f, m in zip(cells, fitted, med_itl):
            fitted_of[c] = f
            # output tokens/s: running requests / ITL per step; scaled as the isotonic step moved ITL
            thpt = float(np.median(running[c] / (itl[c] / 1000.0))) * float(m / f)
            points.append(DecodePoint(
                kv_usage=float(np.median(kv[c])), context=float(np.median(ctx[c])), itl_ms=float(f),
                median_itl_ms=float(m), thpt_per_gpu=thpt / opts.gpus_decode,
                samples=len(c), row=r, rel_error=_rel_error(itl[c], float(f)),
            ))
        per_row.append((float(ctx[row].min()), float(ctx[row].max()), max(p.kv_usage for p in points if p.row == r)))
    if len(points) < MIN_DECODE_POINTS:
        raise InsufficientHistory(
            f"decode: the history fills {len(points)} (context, KV usage) cell(s) of at least {opts.min_samples} "
            f"samples; at least {MIN_DECODE_POINTS} are needed: it must hold more distinct loads (a longer --since)"
        )
    top = max(p.kv_usage for p in points)
    if top < opts.min_kv_coverage:
        raise InsufficientHistory(
            f"decode: no samples with KV usage above {opts.min_kv_coverage:g} (the highest point: {top:.2f}): the "
            f"planner would hold ITL flat up to a full cache; learn from a busier period, or lower --min-kv-coverage"
        )
    mask = np.isfinite(fitted_of)
    quality = Quality(
        samples=int(mask.sum()), excluded={**excluded, "sparse_cells": int((~mask).sum())},
        r2=_r2(itl[mask], fitted_of[mask]),
        median_rel_error=float(np.median(np.abs(itl[mask] - fitted_of[mask]) / fitted_of[mask])),
        adjusted_points=adjusted,
    )
    return (tuple(points), quality, (float(ctx[mask].min()), float(ctx[mask].max())),
            (float(kv[mask].min()), float(kv[mask].max())), tuple(per_row))


def fit_profile(
    prefill_samples: Sequence[WorkerSample], decode_samples: Sequence[WorkerSample], opts: FitOptions, source: str = "<learned>"
) -> FitResult:
    """Both parts and the profile they make; InsufficientHistory names the first thing missing."""
    if not (math.isfinite(opts.max_kv_tokens) and opts.max_kv_tokens > 0):
        raise ValueError("max_kv_tokens must be a positive number")
    pre, pq, isl_cov = fit_prefill(prefill_samples, opts)
    dec, dq, ctx_cov, kv_cov, per_row = fit_decode(decode_samples, opts)
    raw_prefill = {
        "prefill_isl": [p.isl for p in pre],
        "prefill_ttft": [p.ttft_ms for p in pre],
        "prefill_thpt_per_gpu": [p.thpt_per_gpu for p in pre],
    }
    raw_decode = {
        "x_kv_usage": [p.kv_usage for p in dec],
        "y_context_length": [p.context for p in dec],
        "z_itl": [p.itl_ms for p in dec],
        "z_thpt_per_gpu": [p.thpt_per_gpu for p in dec],
        "max_kv_tokens": float(opts.max_kv_tokens),
    }
    problems = profile_problems(raw_prefill, raw_decode)
    if problems:  # the fit only makes positive, distinct points: this is a bug, not bad data
        raise ValueError(f"fitted profile is invalid: {problems}")
    profile = profile_from_raw(raw_prefill, raw_decode, source=source)
    coverage = Coverage(
        isl_samples=isl_cov, isl_points=(pre[0].isl, pre[-1].isl),
        context_samples=ctx_cov, context_points=(min(p.context for p in dec), max(p.context for p in dec)),
        kv_samples=kv_cov, kv_points=(min(p.kv_usage for p in dec), max(p.kv_usage for p in dec)),
        kv_per_row=per_row,
    )
    warnings = []
    if coverage.kv_points[1] < 0.9:
        warnings.append(
            f"decode: the highest KV-usage point is {coverage.kv_points[1]:.2f}; beyond it the planner holds ITL "
            f"flat (optimistic if the engine is ever loaded further)"
        )
    for lo, hi, top in per_row:
        if top < opts.min_kv_coverage:
            warnings.append(f"decode: context {lo:.0f}-{hi:.0f} reaches KV usage {top:.2f} only")
    if pq.adjusted_points:
        warnings.append(f"prefill: {pq.adjusted_points} bin median(s) lowered or raised to keep TTFT non-decreasing in ISL")
    if dq.adjusted_points:
        warnings.append(f"decode: {dq.adjusted_points} cell median(s) adjusted to keep ITL non-decreasing in KV usage")
    return FitResult(profile, pre, dec, coverage, pq, dq, tuple(warnings))
