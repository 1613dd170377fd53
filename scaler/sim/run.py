"""Run several policies over one workload and assemble the comparison (no printing, no files)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from scaler.core.interpolation import PerfModel
from scaler.core.plan import Plan

from .engine import EngineConfig, simulate
from .oracle import OracleResult, oracle
from .policies import ORACLE, PolicySpec, make_controller
from .report import policy_summary
from .results import SimResult
from .workload import Arrivals


@dataclass
class Comparison:
    plan: Plan
    workload: Arrivals
    results: dict[str, SimResult]
    oracle: OracleResult
    summaries: dict[str, dict[str, Any]]
    decision_logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per policy (and the oracle's search)


def oracle_interval_seconds(plan: Plan) -> float:
    """The oracle sizes per planner interval (the throughput interval, else 60 s)."""
    tp = plan.spec.scaling.throughput
    return float(tp.interval_seconds) if tp.enabled else 60.0


def compare(
    plan: Plan,
    planner_model: Optional[PerfModel],
    truth_model: PerfModel,
    workload: Arrivals,
    policies: Sequence[PolicySpec],
    startup_delay_seconds: float = 60.0,
    initial_replicas: Optional[Mapping[str, int]] = None,
) -> Comparison:
    """Simulate each policy on `truth_model` hardware; the planner sizes with `planner_model`.

    The oracle is always computed (every policy's cost is reported against it).
    `initial_replicas`: what scaling policies start with (default: each pool's minimum).
    """
    cfg = EngineConfig(
        gpus_per_replica={n: p.gpus_per_replica for n, p in plan.pools.items()},
        startup_delay_seconds=startup_delay_seconds,
        mode=plan.spec.mode,
    )
    t0 = time.perf_counter()
    orc = oracle(plan, truth_model, workload, oracle_interval_seconds(plan))
    oracle_seconds = time.perf_counter() - t0
    results: dict[str, SimResult] = {}
    logs: dict[str, list[dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    summaries: dict[str, dict[str, Any]] = {}
    for spec in policies:
        if spec.kind == ORACLE or spec.name in results:
            continue
        ctl = make_controller(spec, plan, planner_model, initial_replicas)
        t0 = time.perf_counter()
        results[spec.name] = simulate(workload, truth_model, ctl, cfg)
        seconds[spec.name] = time.perf_counter() - t0
        logs[spec.name] = ctl.decision_log()
        summaries[spec.name] = policy_summary(results[spec.name], plan.spec.sla, orc.gpu_hours)
    summaries[ORACLE] = {
        "gpuHours": round(orc.gpu_hours, 4),
        "intervalSeconds": orc.interval_seconds,
        "peakReplicas": {
            p: max((iv.replicas[p] for iv in orc.intervals), default=0) for p in plan.pool_names
        },
        "intervals": len(orc.intervals),
        # intervals where even a pool's maximum could not hold the mean SLA (it takes its maximum)
        "infeasibleIntervals": orc.infeasible_intervals,
        # intervals where the GPU budget cut the counts that held the SLA
        "budgetLimitedIntervals": orc.budget_limited_intervals,
        "engineRuns": orc.engine_runs,
    }
    seconds[ORACLE] = oracle_seconds  # its search runs the engine too
    return Comparison(
        plan=plan,
        workload=workload,
        results=results,
        oracle=orc,
        summaries=summaries,
        decision_logs=logs,
        seconds=seconds,
    )
