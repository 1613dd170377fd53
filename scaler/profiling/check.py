"""`dynplan profile check`: a profile's curves as the planner's interpolation reads them
(`scaler.core.interpolation.perf_model`), and what a user should know before trusting them.

Tables: TTFT and prefill throughput at log-spaced ISLs across the profiled range; ITL and
decode throughput at KV usage 0.1 ... 1.0 for a few context lengths (the profile's own
when it has at most MAX_CONTEXT_ROWS, else evenly spaced). Every value is the planner's own
lookup, so the table is what sizing will believe, clamping and holding flat included.

Warnings: TTFT falling with ISL, ITL falling with KV usage (a longer prompt or more load
looking cheaper), few points, one context only, and the ranges outside which values are
held flat (above the highest profiled KV usage this is optimistic). `plot_png` draws the
same lookups (matplotlib, the optional `plot` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaler.core.interpolation import perf_model
from scaler.core.profile import Profile
from scaler.errors import OptionalDependencyMissing

ISL_ROWS = 9
MAX_CONTEXT_ROWS = 6
KV_COLUMNS = tuple(round(0.1 * k, 1) for k in range(1, 11))
# a fall smaller than this (relative) is rounding, not a trend
MONOTONE_TOLERANCE = 0.01
FEW_PREFILL_POINTS = 6
FEW_POINTS_PER_CONTEXT = 4
# above this highest profiled KV usage, holding ITL flat is not worth a warning
KV_COVERED = 0.9
_DENSE = 200


@dataclass(frozen=True)
class CheckReport:
    """A profile's curves as the planner reads them, and the warnings about them."""

    prefill_points: int
    decode_points: int
    isl_range: tuple[float, float]
    context_range: tuple[float, float]
    kv_range: tuple[float, float]
    max_kv_tokens: float
    fingerprint: str
    prefill: tuple[tuple[float, float, float], ...]  # (ISL, TTFT ms, tokens/s/GPU)
    contexts: tuple[float, ...]
    kv: tuple[float, ...]
    itl_ms: tuple[tuple[float, ...], ...]  # [context row][KV column]
    decode_thpt: tuple[tuple[float, ...], ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...] = ()  # the ranges outside which values are held

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefillPoints": self.prefill_points, "decodePoints": self.decode_points,
            "islRange": list(self.isl_range), "contextRange": list(self.context_range), "kvUsageRange": list(self.kv_range),
            "maxKvTokens": self.max_kv_tokens, "fingerprint": self.fingerprint,
            "prefill": [{"isl": i, "ttftMs": t, "thptPerGpu": p} for i, t, p in self.prefill],
            "decode": [
                {"context": c, "kvUsage": list(self.kv), "itlMs": list(itl), "thptPerGpu": list(thpt)}
                for c, itl, thpt in zip(self.contexts, self.itl_ms, self.decode_thpt)
            ],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def _contexts(profile: Profile) -> tuple[float, ...]:
    own = np.unique(np.asarray(profile.decode_context, dtype=np.float64))
    if len(own) <= MAX_CONTEXT_ROWS:
        return tuple(float(c) for c in own)
    return tuple(float(c) for c in np.linspace(own[0], own[-1], 5))


def _first_fall(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float, float] | None:
    """The first (x0, y0, x1, y1) where y drops by more than MONOTONE_TOLERANCE below its running maximum."""
    peak_i = 0
    for i in range(1, len(ys)):
        if ys[i] > ys[peak_i]:
            peak_i = i
        elif ys[i] < ys[peak_i] * (1 - MONOTONE_TOLERANCE):
            return float(xs[peak_i]), float(ys[peak_i]), float(xs[i]), float(ys[i])
    return None


def check_profile(profile: Profile) -> CheckReport:
    """The planner's view of `profile` as tables, and its warnings."""
    model = perf_model(profile)
    lo, hi = profile.isl_range
    isls = np.unique(np.geomspace(lo, hi, ISL_ROWS)) if hi > lo else np.array([lo])
    prefill = tuple((float(i), model.prefill.ttft_ms(float(i)), model.prefill.thpt_per_gpu(float(i))) for i in isls)
    contexts = _contexts(profile)
    itl = tuple(tuple(model.decode.itl_ms(kv, c) for kv in KV_COLUMNS) for c in contexts)
    thpt = tuple(tuple(model.decode.thpt_per_gpu(kv, c) for kv in KV_COLUMNS) for c in contexts)
    kv_points = np.asarray(profile.decode_kv_usage, dtype=np.float64)
    kv_lo, kv_hi = float(kv_points.min()), float(kv_points.max())
    ctx_lo, ctx_hi = profile.context_range

    warnings: list[str] = []
    dense = np.geomspace(lo, hi, _DENSE) if hi > lo else np.array([lo])
    fall = _first_fall(dense, np.array([model.prefill.ttft_ms(float(x)) for x in dense]))
    if fall:
        warnings.append(f"prefill: TTFT falls with ISL, {fall[1]:.1f} ms at ISL {fall[0]:.0f} to {fall[3]:.1f} ms at ISL "
                        f"{fall[2]:.0f}: a longer prompt looks faster to prefill")
    dense_kv = np.linspace(kv_lo, kv_hi, _DENSE)
    for c in contexts:
        fall = _first_fall(dense_kv, np.array([model.decode.itl_ms(float(k), c) for k in dense_kv]))
        if fall:
            warnings.append(f"decode: ITL falls with load at context {c:.0f}, {fall[1]:.2f} ms at KV usage {fall[0]:.2f} to "
                            f"{fall[3]:.2f} ms at {fall[2]:.2f}: more load looks cheaper")
    n_pre, n_dec = len(profile.prefill_isl), len(kv_points)
    if n_pre < FEW_PREFILL_POINTS:
        warnings.append(f"prefill: {n_pre} points only; between them TTFT is a spline through few measurements")
    own_ctx = np.unique(np.asarray(profile.decode_context, dtype=np.float64))
    if len(own_ctx) == 1:
        warnings.append(f"decode: one context length ({own_ctx[0]:.0f}) only: every context reads the same ITL")
    elif n_dec / len(own_ctx) < FEW_POINTS_PER_CONTEXT:
        warnings.append(f"decode: {n_dec} points over {len(own_ctx)} context lengths: few KV-usage points per context")
    notes = (
        f"prefill: ISL profiled {lo:.0f}-{hi:.0f}; outside it TTFT and throughput are held at the nearest end",
        f"decode: context profiled {ctx_lo:.0f}-{ctx_hi:.0f}; outside it the nearest context row is read",
    )
    ctx_of = np.asarray(profile.decode_context, dtype=np.float64)
    for c in own_ctx if len(own_ctx) <= MAX_CONTEXT_ROWS else ():
        top = float(kv_points[ctx_of == c].max())
        if top < KV_COVERED and top < kv_hi:
            warnings.append(f"decode: context {c:.0f} profiled up to KV usage {top:.2f} only; above it its ITL comes "
                            f"from the nearest points")
    if kv_hi < KV_COVERED:
        warnings.append(f"decode: KV usage profiled up to {kv_hi:.2f}; above it ITL is held flat, which is optimistic "
                        f"(columns marked *)")
    return CheckReport(
        prefill_points=n_pre, decode_points=n_dec, isl_range=(lo, hi), context_range=(ctx_lo, ctx_hi),
        kv_range=(kv_lo, kv_hi), max_kv_tokens=float(profile.max_kv_tokens), fingerprint=profile.fingerprint,
        prefill=prefill, contexts=contexts, kv=KV_COLUMNS, itl_ms=itl, decode_thpt=thpt, warnings=tuple(warnings),
        notes=notes,
    )


def table_lines(report: CheckReport) -> list[str]:
    """The report as text tables."""
    r = report
    lines = [
        f"{r.prefill_points} prefill points (ISL {r.isl_range[0]:.0f}-{r.isl_range[1]:.0f}), {r.decode_points} decode points "
        f"(context {r.context_range[0]:.0f}-{r.context_range[1]:.0f}, KV usage {r.kv_range[0]:.2f}-{r.kv_range[1]:.2f}), "
        f"max_kv_tokens {r.max_kv_tokens:.0f}, fingerprint {r.fingerprint}",
        "prefill, as the planner reads it:",
        f"{'ISL':>8} {'TTFT ms':>10} {'tok/s/GPU':>10}",
    ]
    lines += [f"{i:>8.0f} {t:>10.2f} {p:>10.0f}" for i, t, p in r.prefill]
    mark = ["*" if kv > r.kv_range[1] + 1e-9 else " " for kv in r.kv]
    header = f"{'context':>8} " + " ".join(f"{kv:>7.1f}{m}" for kv, m in zip(r.kv, mark))
    for title, grid, fmt in (("decode ITL ms", r.itl_ms, "{:>8.2f}"), ("decode tok/s/GPU", r.decode_thpt, "{:>8.0f}")):
        lines.append(f"{title} by KV usage (rows: context), as the planner reads it:")
        lines.append(header)
        for c, row in zip(r.contexts, grid):
            lines.append(f"{c:>8.0f} " + " ".join(fmt.format(v) for v in row))
    return lines


def plot_png(profile: Profile, report: CheckReport, path: Path, title: str = "") -> None:
    """TTFT vs ISL and ITL vs KV usage per context, as the planner reads them, with the
    profile's own points; OptionalDependencyMissing without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise OptionalDependencyMissing("profile check --plot", "plot", "matplotlib") from None
    model = perf_model(profile)
    fig, (ax_p, ax_d) = plt.subplots(1, 2, figsize=(11, 4.2))
    lo, hi = report.isl_range
    xs = np.geomspace(lo, hi, _DENSE) if hi > lo else np.array([lo])
    ax_p.plot(xs, [model.prefill.ttft_ms(float(x)) for x in xs], color="#1f77b4", label="interpolated")
    ax_p.scatter(profile.prefill_isl, profile.prefill_ttft_ms, color="#1f77b4", s=14, zorder=3, label="profile points")
    ax_p.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax_p.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_p.xaxis.set_minor_formatter(NullFormatter())  # the minor labels overlap on a short range
    ax_p.set_xlabel("ISL (tokens)")
    ax_p.set_ylabel("TTFT (ms)")
    ax_p.set_title("prefill")
    ax_p.grid(alpha=0.3)
    ax_p.legend(fontsize=8)
    kvs = np.linspace(0.0, 1.0, _DENSE)
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
    for k, c in enumerate(report.contexts):
        color = colors[k % len(colors)]
        ax_d.plot(kvs, [model.decode.itl_ms(float(u), c) for u in kvs], color=color, label=f"context {c:.0f}")
        near = np.isclose(np.asarray(profile.decode_context), c)
        ax_d.scatter(np.asarray(profile.decode_kv_usage)[near], np.asarray(profile.decode_itl_ms)[near], color=color, s=12, zorder=3)
    ax_d.axvspan(report.kv_range[1], 1.0, color="grey", alpha=0.12, label="not profiled (held flat)")
    ax_d.set_xlabel("KV usage")
    ax_d.set_ylabel("ITL (ms)")
    ax_d.set_title("decode")
    ax_d.grid(alpha=0.3)
    ax_d.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
