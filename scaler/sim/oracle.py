"""The oracle: the smallest replica counts that would have held the SLA in each interval,
had the load been known in advance, and their GPU-hours (a lower bound on cost).

For each interval (the plan's throughput interval, else 60 s) the interval's own requests are
replayed alone through the real engine (scaler.sim.engine) with fixed replicas, starting with
empty queues and no start-up delay, and the SLA is checked the way the plan states it: the
mean TTFT of those requests within `sla.ttftMs` and their token-weighted mean ITL within
`sla.itlMs`. Prefill is searched first (TTFT depends only on prefill replicas, so decode is
left out of those runs), then decode with prefill fixed at its answer. Each search starts
from core `capacity()` on the interval's mean load (without queueing headroom), steps up (or
down, if the hint already holds) by doubling, then bisects; it assumes more replicas never
make the mean worse. A pool that cannot hold the SLA even at its maximum takes its maximum
and the interval is counted infeasible. The plan's GPU budget is then applied as the planner
applies it; intervals it cuts are counted. An aggregated plan has one pool, `worker`: its
count is the smallest that holds both means (same search, one pool).

What it is not: a policy. It sees the future, pays no start-up delay, carries no queue from one
interval into the next (requests still in flight at an interval's end are not billed to the
next one), and bills each interval's replicas for the interval only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import numpy as np

from scaler.core.budget import apply_budget
from scaler.core.interpolation import PerfModel
from scaler.core.plan import Plan
from scaler.core.planner import capacity

from .engine import EngineConfig, simulate
from .workload import Arrivals


@dataclass(frozen=True)
class OracleInterval:
    start: float
    end: float
    replicas: dict[str, int]
    gpus: int
    requests: int = 0
    # pools whose maximum could not hold their SLA in this interval
    infeasible_pools: tuple[str, ...] = ()
    # the GPU budget cut the counts that held the SLA
    budget_limited: bool = False
    # means at the chosen replicas (before any budget cut); None without requests
    ttft_ms: Optional[float] = None
    itl_ms: Optional[float] = None

    @property
    def feasible(self) -> bool:
        return not self.infeasible_pools and not self.budget_limited


@dataclass(frozen=True)
class OracleResult:
    interval_seconds: float
    intervals: tuple[OracleInterval, ...]
    engine_runs: int = 0

    @property
    def gpu_hours(self) -> float:
        return sum(iv.gpus * (iv.end - iv.start) for iv in self.intervals) / 3600.0

    @property
    def infeasible_intervals(self) -> int:
        """Intervals where some pool's maximum could not hold the SLA."""
        return sum(1 for iv in self.intervals if iv.infeasible_pools)

    @property
    def budget_limited_intervals(self) -> int:
        return sum(1 for iv in self.intervals if iv.budget_limited)


class _Fixed:
    """A controller that holds fixed replicas, ready from the start, and never decides."""

    name = "oracle-probe"
    throughput_interval_seconds: Optional[float] = None
    load_interval_seconds: Optional[float] = None

    def __init__(self, replicas: Mapping[str, int]) -> None:
        self._replicas = dict(replicas)

    def initial_replicas(self) -> Mapping[str, int]:
        return self._replicas

    def on_traffic(self, t: float, window: object, ready: Mapping[str, int]) -> None:
        return None

    def on_load(self, t: float, workers: object, ready: Mapping[str, int]) -> None:
        return None


def smallest_passing(passes: Callable[[int], bool], lo: int, hi: int, hint: int) -> tuple[int, bool]:
    """The smallest n in [lo, hi] with passes(n), assuming passes is monotone in n.

    Gallops from `hint` (up while failing, down while passing, doubling the step), then
    bisects the bracket. Returns (hi, False) when even hi fails.
    """
    hint = max(lo, min(hi, hint))
    if passes(hint):
        good, bad, step = hint, lo - 1, 1
        while good > lo:
            probe = max(lo, good - step)
            if passes(probe):
                good, step = probe, step * 2
            else:
                bad = probe
                break
    else:
        bad, step = hint, 1
        found: Optional[int] = None
        while bad < hi:
            probe = min(hi, bad + step)
            if passes(probe):
                found = probe
                break
            bad, step = probe, step * 2
        if found is None:
            return hi, False
        good = found
    while good - bad > 1:
        mid = (good + bad) // 2
        if passes(mid):
            good = mid
        else:
            bad = mid
    return good, True


def _means(
    sub: Arrivals, model: PerfModel, replicas: Mapping[str, int], gpus: Mapping[str, int], mode: str = "disagg"
) -> tuple[float, float]:
    """Mean TTFT and token-weighted mean ITL (ms) of `sub` served alone by fixed replicas;
    inf for a mean some request never reached (a pool at zero replicas); ITL 0 when no
    request makes a second token."""
    cfg = EngineConfig(gpus_per_replica=gpus, startup_delay_seconds=0.0, initial_ready=True, mode=mode)
    res = simulate(sub, model, _Fixed(replicas), cfg)
    ttft = res.ttft_ms
    ttft_mean = float(ttft.mean()) if np.all(np.isfinite(ttft)) else float("inf")
    gaps = (sub.osl - 1).astype(np.float64)
    if not gaps.sum():
        return ttft_mean, 0.0
    if replicas.get("worker" if mode == "agg" else "decode", 0) <= 0:
        return ttft_mean, float("inf")
    multi = gaps > 0
    itl = res.itl_ms[multi]
    if not np.all(np.isfinite(itl)):
        return ttft_mean, float("inf")
    return ttft_mean, float((itl * gaps[multi]).sum() / gaps[multi].sum())


def _hint_plan(plan: Plan) -> Plan:
    """The plan without queueing headroom or budget: capacity() then gives a per-pool
    starting point for the search (utilisation at the mean rate), not a budget share."""
    tp = plan.spec.scaling.throughput
    scaling = plan.spec.scaling.model_copy(
        update={"throughput": tp.model_copy(update={"queueing": tp.queueing.model_copy(update={"enabled": False})})}
    )
    spec = plan.spec.model_copy(
        update={"scaling": scaling, "budget": plan.spec.budget.model_copy(update={"max_gpus": None})}
    )
    return plan.model_copy(update={"spec": spec})


def oracle(plan: Plan, model: PerfModel, workload: Arrivals, interval_seconds: float) -> OracleResult:
    """The oracle's replicas per interval over [0, last arrival], on the hardware `model`."""
    if interval_seconds <= 0:
        raise ValueError("interval_seconds must be positive")
    pools = plan.pools
    gpus = {n: p.gpus_per_replica for n, p in pools.items()}
    sla = plan.spec.sla
    hint_plan = _hint_plan(plan)
    span = float(workload.t[-1]) if len(workload) else 0.0
    n_int = max(1, int(np.ceil(span / interval_seconds)) if span > 0 else 1)
    idx = np.minimum((workload.t // interval_seconds).astype(np.int64), n_int - 1)
    bounds = np.searchsorted(idx, np.arange(n_int + 1))
    runs = 0
    out = []
    for k in range(n_int):
        start = k * interval_seconds
        end = min((k + 1) * interval_seconds, span) if k == n_int - 1 else (k + 1) * interval_seconds
        length = max(end - start, 1e-9)
        lo_i, hi_i = int(bounds[k]), int(bounds[k + 1])
        count = hi_i - lo_i
        mins = {n: p.min_replicas for n, p in pools.items()}
        if count == 0:
            # nothing to serve: each pool's minimum
            out.append(OracleInterval(start, start + length, mins, sum(mins[n] * gpus[n] for n in mins)))
            continue
        sub = Arrivals(
            t=workload.t[lo_i:hi_i] - start, isl=workload.isl[lo_i:hi_i], osl=workload.osl[lo_i:hi_i]
        )
        rate = count / (end - start if end > start else interval_seconds)
        hint = capacity(hint_plan, model, rate, float(sub.isl.mean()), float(sub.osl.mean()))
        cache: dict[tuple[tuple[str, int], ...], tuple[float, float]] = {}

        def means(replicas: dict[str, int]) -> tuple[float, float]:
            nonlocal runs
            key = tuple(sorted(replicas.items()))
            if key not in cache:
                runs += 1
                cache[key] = _means(sub, model, replicas, gpus, plan.spec.mode)
            return cache[key]

        wanted: dict[str, int]
        if plan.spec.mode == "agg":
            wp = pools["worker"]

            def holds(n: int) -> bool:
                ttft, itl = means({"worker": n})
                return ttft <= sla.ttft_ms and itl <= sla.itl_ms

            workers, ok_w = smallest_passing(holds, wp.min_replicas, wp.max_replicas, hint.replicas("worker"))
            wanted = {"worker": workers}
            infeasible: tuple[str, ...] = () if ok_w else ("worker",)
        else:
            pp, dp = pools["prefill"], pools["decode"]
            # TTFT does not depend on decode: decode is left out of the prefill runs (faster)
            prefill, ok_p = smallest_passing(
                lambda p: means({"prefill": p, "decode": 0})[0] <= sla.ttft_ms,
                pp.min_replicas, pp.max_replicas, hint.replicas("prefill"),
            )
            decode, ok_d = smallest_passing(
                lambda d: means({"prefill": prefill, "decode": d})[1] <= sla.itl_ms,
                dp.min_replicas, dp.max_replicas, hint.replicas("decode"),
            )
            wanted = {"prefill": prefill, "decode": decode}
            infeasible = tuple(n for n, ok in (("prefill", ok_p), ("decode", ok_d)) if not ok)
        ttft_ms, itl_ms = means(wanted)
        final = apply_budget(wanted, mins, gpus, plan.spec.budget.max_gpus)
        out.append(
            OracleInterval(
                start,
                start + length,
                final,
                sum(final[n] * gpus[n] for n in final),
                requests=count,
                infeasible_pools=infeasible,
                budget_limited=final != wanted,
                ttft_ms=ttft_ms,
                itl_ms=itl_ms,
            )
        )
    return OracleResult(interval_seconds=interval_seconds, intervals=tuple(out), engine_runs=runs)
