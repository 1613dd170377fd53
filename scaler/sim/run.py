"""Run several policies over one workload and assemble the comparison (no printing, no files)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from scaler.core.interpolation import PerfModel
from scaler.core.plan import Plan
from scaler.sim.engine import EngineConfig, simulate
from scaler.sim.fleet import FleetResult, cheapest_fleet, gpus_of
from scaler.sim.oracle import OracleResult, oracle, target_attainment
from scaler.sim.policies import COMPUTED, DYNAMO, ORACLE, STATIC_SWEEP, PolicySpec, actuation_for, make_controller, warm_start
from scaler.sim.report import policy_summary
from scaler.sim.results import SimResult
from scaler.sim.workload import Arrivals
from scaler.sources import dispersion_bin

# A pool's start-up delay when the plan has no spec.pools.<pool>.startupSeconds
DEFAULT_STARTUP_SECONDS = 60.0
ACTUATION_MODES = ("keda-hpa", "none")


@dataclass
class Comparison:
    plan: Plan
    workload: Arrivals
    results: dict[str, SimResult]
    oracle: OracleResult
    summaries: dict[str, dict[str, Any]]
    decision_logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per policy (and the searches')
    static_sweep: Optional[FleetResult] = None
    startup_seconds: dict[str, float] = field(default_factory=dict)  # per pool


def oracle_interval_seconds(plan: Plan) -> float:
    """The oracle sizes per planner interval (the throughput interval, else 60 s)."""
    tp = plan.spec.scaling.throughput
    return float(tp.interval_seconds) if tp.enabled else 60.0


def pool_startup_seconds(plan: Plan, override: Optional[float] = None) -> dict[str, float]:
    """Each pool's start-up delay: `override` for every pool, else its
    spec.pools.<pool>.startupSeconds (60 s for a plan model without the field)."""
    if override is not None:
        return {n: float(override) for n in plan.pool_names}
    return {n: float(getattr(p, "startup_seconds", DEFAULT_STARTUP_SECONDS)) for n, p in plan.pools.items()}


def _actuation_label(spec: PolicySpec, on: bool) -> Optional[str]:
    if spec.kind == "static":
        return None
    if not on:
        return "none"
    return "direct" if spec.kind == DYNAMO else "keda-hpa"


def compare(
    plan: Plan,
    planner_model: Optional[PerfModel],
    truth_model: PerfModel,
    workload: Arrivals,
    policies: Sequence[PolicySpec],
    startup_delay_seconds: Optional[float] = None,
    initial_replicas: Optional[Mapping[str, int]] = None,
    actuation: str = "keda-hpa",
    progress: Optional[Callable[[int, int, str], None]] = None,
) -> Comparison:
    """Simulate each policy on `truth_model` hardware; the planner sizes with `planner_model`.

    The oracle is always computed (every policy's cost is reported against it); static-sweep
    only when asked. `startup_delay_seconds`: every pool's start-up delay (default: each
    pool's startupSeconds). `initial_replicas`: what scaling policies start with (default:
    `warm_start`, the decision their planner makes for the first interval's traffic).
    `actuation`: "keda-hpa" (each policy's targets go through the KEDA/HPA path its manifests
    configure) or "none" (applied at the tick). `progress` hears (done, total, next step)
    before the oracle, the sweep and each policy, and once at the end.
    """
    if actuation not in ACTUATION_MODES:
        raise ValueError(f"actuation must be one of {ACTUATION_MODES}, not {actuation!r}")
    startup = pool_startup_seconds(plan, startup_delay_seconds)
    cfg = EngineConfig(
        gpus_per_replica={n: p.gpus_per_replica for n, p in plan.pools.items()},
        startup_delay_seconds=DEFAULT_STARTUP_SECONDS,
        startup_delay_by_pool=startup,
        mode=plan.spec.mode,
        ttft_bound_ms=plan.bucket_bound_ms("ttft"),
        dispersion_bin_seconds=float(dispersion_bin(plan.spec.metrics.scrape_interval_seconds)),
    )
    target = target_attainment(plan)
    gpus = {n: p.gpus_per_replica for n, p in plan.pools.items()}
    seconds: dict[str, float] = {}
    steps = [ORACLE] + ([STATIC_SWEEP] if any(s.kind == STATIC_SWEEP for s in policies) else [])
    steps += [s.name for s in policies if s.kind not in COMPUTED and s.name not in steps]

    def step(name: str) -> None:
        if progress is not None:
            progress(steps.index(name) if name in steps else len(steps), len(steps), name)

    step(ORACLE)
    t0 = time.perf_counter()
    orc = oracle(plan, truth_model, workload, oracle_interval_seconds(plan), target)
    seconds[ORACLE] = time.perf_counter() - t0  # its search runs the engine too
    results: dict[str, SimResult] = {}
    logs: dict[str, list[dict[str, Any]]] = {}
    extra: dict[str, dict[str, Any]] = {}
    sweep: Optional[FleetResult] = None
    if any(s.kind == STATIC_SWEEP for s in policies):
        step(STATIC_SWEEP)
        t0 = time.perf_counter()
        sweep = cheapest_fleet(workload, truth_model, plan, target)
        seconds[STATIC_SWEEP] = time.perf_counter() - t0
        assert sweep.result is not None or not len(workload)
        if sweep.result is not None:
            results[STATIC_SWEEP] = sweep.result
        extra[STATIC_SWEEP] = {
            "fleet": dict(sweep.replicas),
            "found": sweep.found,
            "target": target,
            "fleetGpus": gpus_of(sweep.replicas, gpus),
            "infeasiblePools": list(sweep.infeasible_pools),
            "engineRuns": sweep.runs,
            "probes": [p.to_dict() for p in sweep.probes],
        }
    static_gpu_hours = sweep.result.gpu_hours() if sweep is not None and sweep.found and sweep.result else None
    for spec in policies:
        if spec.kind in COMPUTED or spec.name in results:
            continue
        initial = dict(initial_replicas) if initial_replicas is not None and spec.kind != "static" else None
        if initial is None:
            initial = warm_start(spec, plan, planner_model, workload)
        ctl = make_controller(spec, plan, planner_model, initial)
        paths = actuation_for(spec, plan) if actuation == "keda-hpa" else None
        step(spec.name)
        t0 = time.perf_counter()
        results[spec.name] = simulate(workload, truth_model, ctl, cfg, paths)
        seconds[spec.name] = time.perf_counter() - t0
        logs[spec.name] = ctl.decision_log()
        extra[spec.name] = {"initialReplicas": initial, "actuation": _actuation_label(spec, actuation == "keda-hpa")}
    step("")  # done
    summaries: dict[str, dict[str, Any]] = {}
    for name, res in results.items():
        summaries[name] = policy_summary(res, plan.spec.sla, orc.gpu_hours, static_gpu_hours, target)
        summaries[name].update(extra.get(name, {}))
    if sweep is not None and sweep.result is None:  # no requests: nothing was replayed
        summaries[STATIC_SWEEP] = dict(extra[STATIC_SWEEP])
    orc_att = orc.attainment
    summaries[ORACLE] = {
        "attainment": None if orc_att is None else orc_att.to_dict(),
        "target": orc.target,
        "gpuHours": round(orc.gpu_hours, 4),
        "gpuHoursVsStatic": round(orc.gpu_hours / static_gpu_hours, 4) if static_gpu_hours else None,
        "gpuHoursVsOracle": 1.0,
        "intervalSeconds": orc.interval_seconds,
        "peakReplicas": {p: max((iv.replicas[p] for iv in orc.intervals), default=0) for p in plan.pool_names},
        "intervals": len(orc.intervals),
        # intervals where even a pool's maximum could not reach the target (it takes the best seen)
        "infeasibleIntervals": orc.infeasible_intervals,
        # intervals where the GPU budget cut the counts that reached it
        "budgetLimitedIntervals": orc.budget_limited_intervals,
        "engineRuns": orc.engine_runs,
    }
    return Comparison(
        plan=plan,
        workload=workload,
        results=results,
        oracle=orc,
        summaries=summaries,
        decision_logs=logs,
        seconds=seconds,
        static_sweep=sweep,
        startup_seconds=startup,
    )
