"""The oracle: per interval, the fewest replicas that would have reached the plan's attainment
target, had the load been known in advance, and their GPU-hours (a lower bound on cost).

For each interval (the plan's throughput interval, else 60 s) the interval's own requests are
replayed alone through the real engine (scaler.sim.engine) with fixed replicas, starting with
empty queues and no start-up delay, and the counts are the cheapest whose replay has at least
`spec.sla.attainment` (default 0.99) of those requests within both SLAs: TTFT <= ttftMs and
mean ITL <= itlMs, per request (scaler.sim.fleet.cheapest_fleet: prefill searched on TTFT alone,
then decode with prefill fixed). A pool that cannot reach the target even at its maximum takes
the best seen (its maximum) and the interval is counted infeasible. The plan's GPU budget is
then applied as the planner applies it; intervals it cuts are counted (and replayed again at
the cut counts for their attainment). An aggregated plan has one pool, `worker`.

What it is not: a policy. It sees the future, pays no start-up delay, carries no queue from one
interval into the next (requests still in flight at an interval's end are not billed to the
next one), and bills each interval's replicas for the interval only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from scaler.core.budget import apply_budget
from scaler.core.interpolation import PerfModel
from scaler.core.plan import Plan
from scaler.sim.engine import EngineConfig, simulate
from scaler.sim.fleet import Attainment, FixedFleet, attainment_of, cheapest_fleet, fleet_hint, smallest_passing
from scaler.sim.workload import Arrivals

__all__ = ["OracleInterval", "OracleResult", "oracle", "smallest_passing", "target_attainment"]

DEFAULT_ATTAINMENT = 0.99


def target_attainment(plan: Plan) -> float:
    """`spec.sla.attainment`: the fraction of requests that must meet both SLAs."""
    return float(getattr(plan.spec.sla, "attainment", DEFAULT_ATTAINMENT))


@dataclass(frozen=True)
class OracleInterval:
    start: float
    end: float
    replicas: dict[str, int]
    gpus: int
    requests: int = 0
    # pools whose maximum could not reach the target in this interval
    infeasible_pools: tuple[str, ...] = ()
    # the GPU budget cut the counts that reached it
    budget_limited: bool = False
    # the replay's attainment at `replicas` (None without requests)
    attainment: Optional[Attainment] = None

    @property
    def feasible(self) -> bool:
        return not self.infeasible_pools and not self.budget_limited


@dataclass(frozen=True)
class OracleResult:
    interval_seconds: float
    intervals: tuple[OracleInterval, ...]
    target: float = DEFAULT_ATTAINMENT
    engine_runs: int = 0

    @property
    def gpu_hours(self) -> float:
        return sum(iv.gpus * (iv.end - iv.start) for iv in self.intervals) / 3600.0

    @property
    def infeasible_intervals(self) -> int:
        """Intervals where some pool's maximum could not reach the target."""
        return sum(1 for iv in self.intervals if iv.infeasible_pools)

    @property
    def budget_limited_intervals(self) -> int:
        return sum(1 for iv in self.intervals if iv.budget_limited)

    @property
    def attainment(self) -> Optional[Attainment]:
        """Over every request, of the interval replays at the oracle's counts."""
        total = sum(iv.requests for iv in self.intervals if iv.attainment is not None)
        if not total:
            return None

        def pooled(field: str) -> float:
            return sum(getattr(iv.attainment, field) * iv.requests for iv in self.intervals
                       if iv.attainment is not None) / total

        return Attainment(pooled("ttft"), pooled("itl"), pooled("both"))


def oracle(
    plan: Plan, model: PerfModel, workload: Arrivals, interval_seconds: float, target: Optional[float] = None
) -> OracleResult:
    """The oracle's replicas per interval over [0, last arrival], on the hardware `model`.
    `target`: the attainment to reach (default the plan's `spec.sla.attainment`)."""
    if interval_seconds <= 0:
        raise ValueError("interval_seconds must be positive")
    goal = target_attainment(plan) if target is None else target
    pools = plan.pools
    gpus = {n: p.gpus_per_replica for n, p in pools.items()}
    sla = plan.spec.sla
    span = float(workload.t[-1]) if len(workload) else 0.0
    n_int = max(1, int(np.ceil(span / interval_seconds)) if span > 0 else 1)
    idx = np.minimum((workload.t // interval_seconds).astype(np.int64), n_int - 1)
    bounds = np.searchsorted(idx, np.arange(n_int + 1))
    mins = {n: p.min_replicas for n, p in pools.items()}
    cfg = EngineConfig(gpus_per_replica=gpus, startup_delay_seconds=0.0, initial_ready=True, mode=plan.spec.mode)
    runs = 0
    out = []
    for k in range(n_int):
        start = k * interval_seconds
        end = min((k + 1) * interval_seconds, span) if k == n_int - 1 else (k + 1) * interval_seconds
        length = max(end - start, 1e-9)
        lo_i, hi_i = int(bounds[k]), int(bounds[k + 1])
        count = hi_i - lo_i
        if count == 0:
            # nothing to serve: each pool's minimum
            out.append(OracleInterval(start, start + length, mins, sum(mins[n] * gpus[n] for n in mins)))
            continue
        sub = Arrivals(t=workload.t[lo_i:hi_i] - start, isl=workload.isl[lo_i:hi_i], osl=workload.osl[lo_i:hi_i])
        found = cheapest_fleet(sub, model, plan, goal, fleet_hint(plan, model, sub))
        runs += found.runs
        wanted = found.replicas
        final = apply_budget(wanted, mins, gpus, plan.spec.budget.max_gpus)
        att = found.attainment
        if final != wanted:
            runs += 1
            att = attainment_of(simulate(sub, model, FixedFleet(final), cfg), sla.ttft_ms, sla.itl_ms)
        out.append(
            OracleInterval(
                start,
                start + length,
                final,
                sum(final[n] * gpus[n] for n in final),
                requests=count,
                infeasible_pools=found.infeasible_pools,
                budget_limited=final != wanted,
                attainment=att,
            )
        )
    return OracleResult(interval_seconds=interval_seconds, intervals=tuple(out), target=goal, engine_runs=runs)
