"""The comparison as one PNG: traffic, replicas per pool, and latency against the SLA.

matplotlib is an optional extra (`pip install 'dynplan[plot]'`), imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from scaler.errors import OptionalDependencyMissing
from scaler.sim.report import WINDOW_SECONDS, window_means
from scaler.sim.results import PoolSample
from scaler.sim.run import Comparison

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def require_matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise OptionalDependencyMissing("the simulation plot", "plot", "matplotlib") from None
    return plt


def _steps(samples: Iterable[PoolSample], pool: str, end: float) -> tuple[np.ndarray, np.ndarray]:
    ts, ys = [], []
    for s in samples:
        if s.pool == pool:
            ts.append(s.t)
            ys.append(s.billed)
    ts.append(end)
    ys.append(ys[-1] if ys else 0)
    return np.asarray(ts) / 60.0, np.asarray(ys)


def _distinct(cmp: Comparison) -> list[tuple[list[str], Any]]:
    """Policies grouped by identical runs (say throughput-only on a plan without load
    scaling), so that one line does not hide another under it."""
    groups: list[tuple[list[str], Any]] = []
    for name, res in cmp.results.items():
        for names, first in groups:
            if first.samples == res.samples and np.array_equal(first.finish, res.finish, equal_nan=True):
                names.append(name)
                break
        else:
            groups.append(([name], res))
    return groups


def plot_comparison(cmp: Comparison, path: Path, title: str) -> None:
    """Write the figure to `path` (PNG)."""
    plt = require_matplotlib()
    sla = cmp.plan.spec.sla
    w = cmp.workload
    pools = cmp.plan.pool_names
    fig, axes = plt.subplots(3 + len(pools), 1, figsize=(12, 3.0 * (3 + len(pools))), sharex=True)
    ax_rate, pool_axes, ax_ttft, ax_itl = axes[0], axes[1 : 1 + len(pools)], axes[-2], axes[-1]

    # traffic: arrivals per second, averaged per minute
    if len(w):
        idx = (w.t // WINDOW_SECONDS).astype(int)
        counts = np.bincount(idx)
        x = np.arange(len(counts) + 1)
        ax_rate.stairs(counts / WINDOW_SECONDS, x * WINDOW_SECONDS / 60.0, fill=True, color="#999999", alpha=0.6)
    ax_rate.set_ylabel("arrivals (req/s)")
    ax_rate.set_title(title, fontsize=11, loc="left")
    ax_rate.grid(alpha=0.3)

    for k, (names, res) in enumerate(_distinct(cmp)):
        s = cmp.summaries[names[0]]
        shown = names[0] + (f" (= {', '.join(names[1:])})" if len(names) > 1 else "")
        label = f"{shown}: both SLAs {100 * s['attainment']['both']:.1f}% of requests, {s['gpuHours']:.1f} GPU-h"
        color = _COLORS[k % len(_COLORS)]
        for ax, pool in zip(pool_axes, pools):
            tx, ty = _steps(res.samples, pool, res.end_time)
            # fixed counts dotted: a planner line at the same count stays visible under them
            style = ":" if names[0].startswith("static") else "-"
            ax.step(tx, ty, where="post", color=color, lw=1.6, ls=style, label=label)
        wm = window_means(res)
        mid = (wm["start"] + WINDOW_SECONDS / 2) / 60.0
        ax_ttft.plot(mid, wm["ttft_ms"], color=color, lw=1.4, marker=".", ms=3)
        ax_itl.plot(mid, wm["itl_ms"], color=color, lw=1.4, marker=".", ms=3)

    from matplotlib.ticker import MaxNLocator

    # the oracle's replicas (cost only: it is not simulated)
    ivs = cmp.oracle.intervals
    for ax, pool in zip(pool_axes, pools):
        if ivs:
            ox = [iv.start / 60.0 for iv in ivs] + [ivs[-1].end / 60.0]
            oy = [iv.replicas[pool] for iv in ivs] + [ivs[-1].replicas[pool]]
            bad = cmp.oracle.infeasible_intervals
            note = f"; {bad} of {len(ivs)} intervals not holdable at max" if bad else ""
            ax.step(ox, oy, where="post", color="black", ls="--", lw=1.2,
                    label=f"oracle: {cmp.summaries['oracle']['gpuHours']:.1f} GPU-h (lower bound{note})")
        ax.set_ylabel(f"{pool} replicas")
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    # one legend under the figure: inside a panel it hides the lines it names
    handles, names = pool_axes[0].get_legend_handles_labels()
    legend_rows = (len(handles) + 1) // 2

    from matplotlib.ticker import FuncFormatter

    for ax, target, what in ((ax_ttft, sla.ttft_ms, "TTFT"), (ax_itl, sla.itl_ms, "ITL")):
        ax.axhline(target, color="red", ls="--", lw=1.2, label=f"SLA {what} {target:g} ms")
        ax.set_ylabel(f"mean {what} per min (ms)")
        ax.legend(loc="upper right", fontsize=8)
    # TTFT spans milliseconds to minutes when queues build: log scale, plain tick labels
    ax_ttft.set_yscale("log")
    ax_ttft.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_ttft.grid(alpha=0.3, which="major")
    ax_itl.set_ylim(bottom=0)
    ax_itl.grid(alpha=0.3)
    ax_itl.set_xlabel("time since trace start (min)")
    legend_h = (0.3 + 0.22 * legend_rows) / fig.get_figheight()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, legend_h, 1, 1))
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
