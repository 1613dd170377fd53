"""Numbers from simulation runs: SLA attainment, latency percentiles, goodput, GPU-hours.

Definitions (docs/simulation.md):
- attainment: fraction of requests whose own TTFT (ITL) is within the SLA; a request that
  never finished fails both; a single-token request has no inter-token gap and passes ITL.
- windowAttainment: fraction of 1-minute windows (requests grouped by arrival; windows with
  no arrival skipped) whose mean TTFT and token-weighted mean ITL are within the SLA, the
  way the plan states its SLA (means) and a dashboard would show it.
- goodputRps: requests meeting both SLAs per second of trace (first to last arrival).
- gpuHours: GPU-seconds of every replica from request to removal (start-up and drain
  included) / 3600; gpuHoursVsStatic divides it by the cheapest static fleet's that reaches
  the attainment target (static-sweep), gpuHoursVsOracle by the oracle's.
- meetsTarget: attainment.both reaches the plan's attainment target (spec.sla.attainment).
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
from scaler.sim.results import SimResult

WINDOW_SECONDS = 60.0
PERCENTILES = (50, 90, 99)


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


def policy_summary(
    result: SimResult,
    sla: Sla,
    oracle_gpu_hours: Optional[float],
    static_gpu_hours: Optional[float] = None,
    target: Optional[float] = None,
) -> dict[str, Any]:
    """The summary.json entry of one simulated policy. `static_gpu_hours`: the cheapest static
    fleet reaching the target (static-sweep), when it ran and found one; `target`: the plan's
    attainment target."""
    v = verdicts(result, sla)
    n = len(result.workload)
    span = result.workload.span_seconds
    gpu_hours = result.gpu_hours()
    finished = np.isfinite(result.finish)
    by_pool: dict[str, list[int]] = {}
    for s in result.samples:
        by_pool.setdefault(s.pool, []).append(s.billed)
    both = round(float(v.both_ok.mean()), 6) if n else None
    return {
        "attainment": {
            "both": both,
            "ttft": round(float(v.ttft_ok.mean()), 6) if n else None,
            "itl": round(float(v.itl_ok.mean()), 6) if n else None,
        },
        "meetsTarget": None if target is None or both is None else both >= target - 1e-12,
        "ttftMs": _percentiles(result.ttft_ms),
        "itlMs": _percentiles(result.itl_ms),
        "gpuHours": round(gpu_hours, 4),
        "gpuHoursVsStatic": _ratio(gpu_hours, static_gpu_hours),
        "gpuHoursVsOracle": _ratio(gpu_hours, oracle_gpu_hours),
        "windowAttainment": window_attainment(result, sla),
        "goodputRps": round(float(v.both_ok.sum()) / span, 4) if span > 0 else None,
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


def _ratio(x: float, base: Optional[float]) -> Optional[float]:
    return round(x / base, 4) if base else None


def _fmt_pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _fmt(x: Optional[float], spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def _fmt_ms(x: Optional[float]) -> str:
    """Latencies from milliseconds to minutes in a few characters: 3 significant digits."""
    if x is None:
        return "-"
    if x >= 100_000:
        return f"{x / 1000:.0f}s"
    if x >= 10_000:
        return f"{x / 1000:.1f}s"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def row_name(name: str, entry: Mapping[str, Any]) -> str:
    """A row's label: static-sweep shows the fleet it found (P,D or N)."""
    fleet = entry.get("fleet")
    if name == "static-sweep" and fleet:
        return f"{name} {','.join(str(v) for v in fleet.values())}"
    return name


def table(policies: Mapping[str, Mapping[str, Any]]) -> str:
    """A fixed-width table, one row per policy, for the terminal."""
    cols = [
        ("policy", 20, "<"),
        ("both", 7, ">"),
        ("TTFT ok", 8, ">"),
        ("ITL ok", 8, ">"),
        ("TTFT p50/90/99 ms", 20, ">"),
        ("ITL p50/90/99 ms", 19, ">"),
        ("GPU-h", 8, ">"),
        ("x static", 9, ">"),
        ("x oracle", 9, ">"),
        ("scale", 6, ">"),
    ]
    lines = ["".join(f"{h:{a}{w}}" for h, w, a in cols)]
    for name, s in policies.items():
        att = s.get("attainment") or {}
        ttft, itl = s.get("ttftMs"), s.get("itlMs")
        row = [
            row_name(name, s),
            _fmt_pct(att.get("both")),
            _fmt_pct(att.get("ttft")),
            _fmt_pct(att.get("itl")),
            "/".join(_fmt_ms(ttft[k]) for k in ("p50", "p90", "p99")) if ttft else "",
            "/".join(_fmt_ms(itl[k]) for k in ("p50", "p90", "p99")) if itl else "",
            _fmt(s.get("gpuHours"), ".2f"),
            _fmt(s.get("gpuHoursVsStatic"), ".2f"),
            _fmt(s.get("gpuHoursVsOracle"), ".2f"),
            str(s["scaleEvents"]) if "scaleEvents" in s else "",
        ]
        lines.append("".join(f"{str(v):{a}{w}}" for v, (_, w, a) in zip(row, cols)).rstrip())
    return "\n".join(lines)
