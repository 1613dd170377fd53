"""Numbers from simulation runs: SLA attainment, latency percentiles, goodput, GPU-hours.

Definitions (docs/simulation.md):
- attainment: fraction of requests whose own TTFT (ITL) is within the SLA; a request that
  never finished fails both; a single-token request has no inter-token gap and passes ITL.
- windowAttainment: fraction of 1-minute windows (requests grouped by arrival; windows with
  no arrival skipped) whose mean TTFT and token-weighted mean ITL are within the SLA, the
  way the plan states its SLA (means) and a dashboard would show it.
- goodputRps: requests meeting both SLAs per second of trace (first to last arrival).
- gpuHours: GPU-seconds of every replica from request to removal (start-up and drain
  included) / 3600; gpuHoursVsOracle divides it by the oracle's.
- scaleEvents: pool target changes applied.
- peakReplicas: per pool, the most replicas billed at once; peakGpus: the most GPUs billed
  at once, all pools together (replicas times gpusPerReplica, summed at each time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from scaler.core.plan import Sla

from .results import SimResult

WINDOW_SECONDS = 60.0
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Verdicts:
    ttft_ok: np.ndarray
    itl_ok: np.ndarray

    @property
    def both_ok(self) -> np.ndarray:
        return self.ttft_ok & self.itl_ok


def verdicts(result: SimResult, sla: Sla) -> Verdicts:
    finished = np.isfinite(result.finish)
    ttft_ok = finished & (np.nan_to_num(result.ttft_ms, nan=math.inf) <= sla.ttft_ms)
    single = result.workload.osl <= 1
    itl_ok = finished & (single | (np.nan_to_num(result.itl_ms, nan=math.inf) <= sla.itl_ms))
    return Verdicts(ttft_ok=ttft_ok, itl_ok=itl_ok)


def _percentiles(values: np.ndarray) -> dict[str, Optional[float]]:
    v = values[np.isfinite(values)]
    if not len(v):
        return {f"p{p}": None for p in PERCENTILES}
    return {f"p{p}": round(float(x), 3) for p, x in zip(PERCENTILES, np.percentile(v, PERCENTILES))}


def window_means(result: SimResult, window_seconds: float = WINDOW_SECONDS) -> dict[str, np.ndarray]:
    """Per window of arrivals: start time, count, mean TTFT, token-weighted mean ITL (NaN if none)."""
    w = result.workload
    if not len(w):
        empty = np.zeros(0)
        return {"start": empty, "count": empty, "ttft_ms": empty, "itl_ms": empty, "unfinished": empty}
    idx = (w.t // window_seconds).astype(np.int64)
    n = int(idx[-1]) + 1
    count = np.bincount(idx, minlength=n).astype(np.float64)
    finished = np.isfinite(result.finish)
    unfinished = np.bincount(idx, weights=(~finished).astype(np.float64), minlength=n)
    ttft = np.where(finished, result.ttft_ms, 0.0)
    ttft_sum = np.bincount(idx, weights=ttft, minlength=n)
    ttft_n = np.bincount(idx, weights=finished.astype(np.float64), minlength=n)
    gaps = np.where(finished & (w.osl > 1), w.osl - 1, 0).astype(np.float64)
    decode_ms = np.where(gaps > 0, np.nan_to_num(result.itl_ms) * gaps, 0.0)
    itl_sum = np.bincount(idx, weights=decode_ms, minlength=n)
    itl_n = np.bincount(idx, weights=gaps, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "start": np.arange(n) * window_seconds,
            "count": count,
            "ttft_ms": np.where(ttft_n > 0, ttft_sum / np.maximum(ttft_n, 1), np.nan),
            "itl_ms": np.where(itl_n > 0, itl_sum / np.maximum(itl_n, 1), np.nan),
            "unfinished": unfinished,
        }


def window_attainment(result: SimResult, sla: Sla, window_seconds: float = WINDOW_SECONDS) -> dict[str, Optional[float]]:
    wm = window_means(result, window_seconds)
    active = wm["count"] > 0
    if not active.any():
        return {"ttft": None, "itl": None, "both": None}
    clean = wm["unfinished"] == 0
    ttft_ok = clean & (np.nan_to_num(wm["ttft_ms"], nan=math.inf) <= sla.ttft_ms)
    # a window of single-token requests has no gap to average: it meets the ITL SLA
    itl_ok = clean & (np.isnan(wm["itl_ms"]) | (np.nan_to_num(wm["itl_ms"], nan=0.0) <= sla.itl_ms))
    k = float(active.sum())
    return {
        "ttft": round(float((ttft_ok & active).sum()) / k, 6),
        "itl": round(float((itl_ok & active).sum()) / k, 6),
        "both": round(float((ttft_ok & itl_ok & active).sum()) / k, 6),
    }


def policy_summary(result: SimResult, sla: Sla, oracle_gpu_hours: Optional[float]) -> dict[str, Any]:
    """The summary.json entry of one simulated policy."""
    v = verdicts(result, sla)
    n = len(result.workload)
    span = result.workload.span_seconds
    gpu_hours = result.gpu_hours()
    finished = np.isfinite(result.finish)
    by_pool: dict[str, list[int]] = {}
    for s in result.samples:
        by_pool.setdefault(s.pool, []).append(s.billed)
    return {
        "attainment": {
            "ttft": round(float(v.ttft_ok.mean()), 6) if n else None,
            "itl": round(float(v.itl_ok.mean()), 6) if n else None,
            "both": round(float(v.both_ok.mean()), 6) if n else None,
        },
        "windowAttainment": window_attainment(result, sla),
        "goodputRps": round(float(v.both_ok.sum()) / span, 4) if span > 0 else None,
        "ttftMs": _percentiles(result.ttft_ms),
        "itlMs": _percentiles(result.itl_ms),
        "gpuHours": round(gpu_hours, 4),
        "gpuHoursVsOracle": round(gpu_hours / oracle_gpu_hours, 4) if oracle_gpu_hours else None,
        "scaleEvents": result.scale_events,
        "requests": n,
        "unfinished": int((~finished).sum()),
        "meanTtftMs": round(float(np.nanmean(result.ttft_ms)), 3) if finished.any() else None,
        "meanItlMs": round(float(np.nanmean(result.itl_ms)), 3) if np.isfinite(result.itl_ms).any() else None,
        "gpuHoursByPool": {p: round(result.gpu_hours(p), 4) for p in result.gpus_per_replica},
        "peakReplicas": {p: max(vals) for p, vals in by_pool.items()},
        "peakGpus": result.peak_gpus(),
        "endTimeS": round(result.end_time, 3),
    }


def _fmt_pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _fmt(x: Optional[float], spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def table(policies: Mapping[str, Mapping[str, Any]]) -> str:
    """A fixed-width table, one row per policy, for the terminal."""
    cols = [
        ("policy", 18, "<"),
        ("TTFT ok", 8, ">"),
        ("ITL ok", 8, ">"),
        ("both", 8, ">"),
        ("min ok", 8, ">"),
        ("goodput", 9, ">"),
        ("TTFT p50/p99 ms", 17, ">"),
        ("ITL p50/p99 ms", 15, ">"),
        ("GPU-h", 8, ">"),
        ("x oracle", 9, ">"),
        ("scale", 6, ">"),
    ]
    lines = ["".join(f"{h:{a}{w}}" for h, w, a in cols)]
    for name, s in policies.items():
        if "attainment" not in s:  # the oracle: cost only
            row = [name, "", "", "", "", "", "", "", _fmt(s.get("gpuHours"), ".2f"), "1.00", ""]
        else:
            att, win = s["attainment"], s["windowAttainment"]
            row = [
                name,
                _fmt_pct(att["ttft"]),
                _fmt_pct(att["itl"]),
                _fmt_pct(att["both"]),
                _fmt_pct(win["both"]),
                _fmt(s["goodputRps"], ".2f"),
                f"{_fmt(s['ttftMs']['p50'])}/{_fmt(s['ttftMs']['p99'])}",
                f"{_fmt(s['itlMs']['p50'], '.1f')}/{_fmt(s['itlMs']['p99'], '.1f')}",
                _fmt(s["gpuHours"], ".2f"),
                _fmt(s["gpuHoursVsOracle"], ".2f"),
                str(s["scaleEvents"]),
            ]
        lines.append("".join(f"{str(v):{a}{w}}" for v, (_, w, a) in zip(row, cols)).rstrip())
    return "\n".join(lines)
