"""Wall time of `dynplan simulate` runs: every policy on the code trace, and the attainment
benchmark's heaviest scenario (the conv trace, 12 copies per request, ~232k requests, on
engines 15% slower than profiled) with the peers, static-sweep and the oracle.

Run: .venv/bin/python -m bench.bench_simulate
Not a test: timings depend on the machine; this prints them for a human to read.
Reading the trace and building the performance model are timed separately from simulating.
`oracle` rows time the oracle's search (scaler.sim.oracle: per interval, the cheapest fleet
reaching the attainment target, many short engine runs), which `dynplan simulate` always
does on top of the policies asked for; `static-sweep` rows time its search on the whole trace.
Scaling policies run as `dynplan simulate` runs them: warm start, and the KEDA/HPA actuation
path their manifests configure.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from bench.slowed_profile import slowed_profile
from scaler.core.interpolation import perf_model
from scaler.planfile import load_plan
from scaler.profile_io import load_profile
from scaler.sim.engine import EngineConfig, simulate
from scaler.sim.fleet import cheapest_fleet
from scaler.sim.oracle import oracle, target_attainment
from scaler.sim.policies import actuation_for, make_controller, parse_policy, warm_start
from scaler.sim.run import oracle_interval_seconds, pool_startup_seconds
from scaler.sim.workload import build_workload
from scaler.traces import read_trace

PLAN = ROOT / "examples" / "llama-8b-disagg.yaml"
AGG_PLAN = ROOT / "examples" / "llama-8b-agg.yaml"  # no profile: the engines play AGG_TRUTH
AGG_TRUTH = ROOT / "examples" / "profiles" / "h200-llama3.1-8b-fp8-tp1"
TRACE = ROOT / "examples" / "traces" / "azure-llm-2023-code.csv"
CONV_PLAN = ROOT / "bench" / "scenarios" / "conv.yaml"
CONV_TRACE = ROOT / "examples" / "traces" / "azure-llm-2023-conv.csv"
CONV_PROFILE = ROOT / "examples" / "profiles" / "h200-llama3.1-8b-bf16-measured"
AGG_CASES = (
    # aggregated plan (one worker pool), (rate scale, replicate, policy)
    (1.0, 10, "plan"),
    (1.0, 10, "oracle"),
)
CASES = (
    # (rate scale, replicate, policy)
    (10.0, 1, "plan"),
    (10.0, 1, "static:8"),
    (10.0, 1, "load-only"),
    (10.0, 1, "oracle"),
    (1.0, 10, "plan"),
    (1.0, 10, "load-only"),
    (1.0, 10, "dynamo"),
    (1.0, 10, "llmd-slo"),
    (1.0, 10, "static-sweep"),
    (1.0, 10, "oracle"),
)
# the attainment benchmark's conv scenario: `dynplan simulate -f bench/scenarios/conv.yaml
# --trace examples/traces/azure-llm-2023-conv.csv --replicate 12 --truth-profile <slowed>
# --startup-delay 90 --policy plan --policy dynamo --policy llmd-slo --policy static-sweep`
CONV_POLICIES = ("plan", "dynamo", "llmd-slo", "static-sweep", "oracle")


def _time(plan_file, planner_model, model, workload, policy: str, startup: float = 60.0) -> float:
    plan = plan_file.plan
    cfg = EngineConfig(
        gpus_per_replica={n: p.gpus_per_replica for n, p in plan.pools.items()},
        startup_delay_by_pool=pool_startup_seconds(plan, startup),
        mode=plan.spec.mode,
    )
    t0 = time.perf_counter()
    if policy == "oracle":
        oracle(plan, model, workload, oracle_interval_seconds(plan))
    elif policy == "static-sweep":
        cheapest_fleet(workload, model, plan, target_attainment(plan))
    else:
        spec = parse_policy(policy, plan.pool_names)
        initial = warm_start(spec, plan, planner_model, workload)
        ctl = make_controller(spec, plan, planner_model, initial)
        t0 = time.perf_counter()
        simulate(workload, model, ctl, cfg, actuation_for(spec, plan))
    return time.perf_counter() - t0


def main() -> None:
    t0 = time.perf_counter()
    lp = load_plan(PLAN)
    print(f"load plan + build performance model: {time.perf_counter() - t0:.2f} s")
    agg = load_plan(AGG_PLAN)
    agg_truth = perf_model(load_profile(str(AGG_TRUTH)))
    print(f"cpus available: {len(os.sched_getaffinity(0))}")
    print(f"{'trace transform':<28}{'policy':<16}{'requests':>10}{'read s':>9}{'simulate s':>12}{'req/s simulated':>17}")
    runs = [(lp, lp.model, lp.model, *c) for c in CASES] + [(agg, None, agg_truth, *c) for c in AGG_CASES]
    for plan_file, planner_model, model, rate_scale, replicate, policy in runs:
        t0 = time.perf_counter()
        workload = build_workload(read_trace(TRACE, "azure", rate_scale), replicate=replicate, seed=0)
        read_seconds = time.perf_counter() - t0
        sim_seconds = _time(plan_file, planner_model, model, workload, policy)
        label = f"rate x{rate_scale:g}, {replicate} copies"
        name = policy if plan_file is lp else f"agg {policy}"
        print(f"{label:<28}{name:<16}{len(workload):>10}{read_seconds:>9.2f}{sim_seconds:>12.2f}{len(workload) / sim_seconds:>17.0f}")

    print("\nconv scenario (bench/scenarios/conv.yaml, 12 copies, engines 15% slower, start-up 90 s)")
    conv = load_plan(CONV_PLAN)
    with tempfile.TemporaryDirectory() as tmp:
        truth_dir = Path(tmp) / CONV_PROFILE.name
        slowed_profile(CONV_PROFILE, truth_dir, 1.15)
        truth = perf_model(load_profile(str(truth_dir)))
    t0 = time.perf_counter()
    workload = build_workload(read_trace(CONV_TRACE, "azure", 1.0), replicate=12, seed=0)
    print(f"read trace: {time.perf_counter() - t0:.2f} s, {len(workload)} requests")
    total = 0.0
    for policy in CONV_POLICIES:
        seconds = _time(conv, conv.model, truth, workload, policy, startup=90.0)
        total += seconds
        print(f"{'conv x12':<28}{policy:<16}{len(workload):>10}{'':>9}{seconds:>12.2f}{len(workload) / seconds:>17.0f}")
    print(f"conv scenario, all policies: {total:.1f} s")


if __name__ == "__main__":
    main()
