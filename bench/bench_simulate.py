"""Wall time of `dynplan simulate` runs on the full code trace (the issue's speed target:
the one-hour trace at --rate-scale 10, one policy, under 60 s on 2 cores).

Run: .venv/bin/python bench/bench_simulate.py   (or python -m bench.bench_simulate)
Not a test: timings depend on the machine; this prints them for a human to read.
Reading the trace and building the performance model are timed separately from simulating.
`oracle` rows time the oracle's search (scaler.sim.oracle: many short engine runs per interval),
which `dynplan simulate` always does on top of the policies asked for.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scaler.core.interpolation import perf_model  # noqa: E402
from scaler.planfile import load_plan  # noqa: E402
from scaler.profile_io import load_profile  # noqa: E402
from scaler.sim.engine import EngineConfig, simulate  # noqa: E402
from scaler.sim.oracle import oracle  # noqa: E402
from scaler.sim.policies import make_controller, parse_policy  # noqa: E402
from scaler.sim.run import oracle_interval_seconds  # noqa: E402
from scaler.sim.workload import build_workload  # noqa: E402
from scaler.traces import read_trace  # noqa: E402

PLAN = ROOT / "examples" / "llama-8b-disagg.yaml"
AGG_PLAN = ROOT / "examples" / "llama-8b-agg.yaml"  # no profile: the engines play AGG_TRUTH
AGG_TRUTH = ROOT / "examples" / "profiles" / "h200-llama3.1-8b-fp8-tp1"
TRACE = ROOT / "examples" / "traces" / "azure-llm-2023-code.csv"
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
    (1.0, 10, "oracle"),
)


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
        cfg = EngineConfig(
            gpus_per_replica={n: p.gpus_per_replica for n, p in plan_file.plan.pools.items()},
            mode=plan_file.plan.spec.mode,
        )
        t0 = time.perf_counter()
        workload = build_workload(read_trace(TRACE, "azure", rate_scale), replicate=replicate, seed=0)
        read_seconds = time.perf_counter() - t0
        if policy == "oracle":
            t0 = time.perf_counter()
            oracle(plan_file.plan, model, workload, oracle_interval_seconds(plan_file.plan))
        else:
            ctl = make_controller(parse_policy(policy, plan_file.plan.pool_names), plan_file.plan, planner_model)
            t0 = time.perf_counter()
            simulate(workload, model, ctl, cfg)
        sim_seconds = time.perf_counter() - t0
        label = f"rate x{rate_scale:g}, {replicate} copies"
        name = policy if plan_file is lp else f"agg {policy}"
        print(f"{label:<28}{name:<16}{len(workload):>10}{read_seconds:>9.2f}{sim_seconds:>12.2f}{len(workload) / sim_seconds:>17.0f}")


if __name__ == "__main__":
    main()
