"""The oracle: GPU-hours of the smallest replica counts that hold the SLA, had the load been known.

For each throughput interval of the trace it takes the interval's actual arrival rate, mean
ISL and mean OSL and asks the core's `capacity` (the same formulas the planner sizes with,
with the plan's pool bounds and budget) for the replicas, on the hardware being simulated.
No prediction error, no start-up delay, no queue carried over: a lower bound on cost, not a
policy that would necessarily hold the SLA itself (bursts inside an interval are averaged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaler.core.interpolation import PerfModel
from scaler.core.plan import Plan
from scaler.core.planner import capacity

from .engine import Workload


@dataclass(frozen=True)
class OracleInterval:
    start: float
    end: float
    replicas: dict[str, int]
    gpus: int


@dataclass(frozen=True)
class OracleResult:
    interval_s: float
    intervals: tuple[OracleInterval, ...]

    @property
    def gpu_hours(self) -> float:
        return sum(iv.gpus * (iv.end - iv.start) for iv in self.intervals) / 3600.0


def oracle(plan: Plan, model: PerfModel, workload: Workload, interval_s: float) -> OracleResult:
    """Per-interval capacity on the actual load, over [0, last arrival]."""
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    span = float(workload.t[-1]) if len(workload) else 0.0
    n_int = max(1, int(np.ceil(span / interval_s)) if span > 0 else 1)
    idx = np.minimum((workload.t // interval_s).astype(np.int64), n_int - 1)
    counts = np.bincount(idx, minlength=n_int)
    isl_sum = np.bincount(idx, weights=workload.isl.astype(np.float64), minlength=n_int)
    osl_sum = np.bincount(idx, weights=workload.osl.astype(np.float64), minlength=n_int)
    out = []
    for k in range(n_int):
        start = k * interval_s
        end = min((k + 1) * interval_s, span) if k == n_int - 1 else (k + 1) * interval_s
        length = max(end - start, 1e-9)
        c = int(counts[k])
        # An empty interval needs only the pools' minimums; the shape priors then do not matter.
        isl = isl_sum[k] / c if c else plan.spec.workload.isl
        osl = osl_sum[k] / c if c else plan.spec.workload.osl
        d = capacity(plan, model, c / (end - start if end > start else interval_s), isl, osl)
        out.append(OracleInterval(start, start + length, {n: p.replicas for n, p in d.pools.items()}, d.total_gpus))
    return OracleResult(interval_s=interval_s, intervals=tuple(out))
