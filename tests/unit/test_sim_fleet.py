"""static-sweep (the cheapest static fleet reaching the attainment target) and the warm start
(each policy starts at what its planner decides for the first interval's traffic)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from helpers import flat_profile, make_plan
from scaler.core.interpolation import perf_model
from scaler.core.observations import Observation
from scaler.core.planner import decide, new_state
from scaler.sim.engine import EngineConfig, simulate
from scaler.sim.fleet import FixedFleet, attainment_of, cheapest_fleet
from scaler.sim.policies import parse_policy, policy_plan, warm_start
from scaler.sim.run import compare
from scaler.sim.window import first_window
from scaler.sim.workload import Arrivals

# 2000-token prompts at 50 ms (40k tokens/s per prefill replica); 5 ms ITL at any batch, but
# a decode replica's KV cache holds 10 requests of 2000 + 101 tokens
MODEL = perf_model(flat_profile(40000.0, 10000.0, ttft_ms=50.0, itl_ms=5.0, max_kv_tokens=21010.0))


def _even(seconds: float, rate: float, isl: int = 2000, osl: int = 101) -> Arrivals:
    t = np.arange(int(seconds * rate)) / rate
    return Arrivals(t=t, isl=np.full(len(t), isl), osl=np.full(len(t), osl))


def test_static_sweep_finds_the_known_cheapest_fleet() -> None:
    # 50 req/s evenly: 2.5 prefill replicas of work (3 never queue, 2 always do); each request
    # decodes for 100 x 5 ms = 0.5 s, so 25 are decoding at once: 3 replicas of 10 slots hold
    # them, 2 (20 slots) queue more and more
    plan = make_plan(isl=2000, osl=101)
    workload = _even(60.0, 50.0)
    found = cheapest_fleet(workload, MODEL, plan, 0.99)
    assert found.found and found.replicas == {"prefill": 3, "decode": 3}
    assert found.attainment is not None and found.attainment.both == 1.0
    assert found.result is not None and found.result.gpu_hours() == pytest.approx(6 * found.result.end_time / 3600)
    # every fleet of 1..4 per pool, replayed in full: (3, 3) is the cheapest that reaches 99%
    cfg = EngineConfig(gpus_per_replica={"prefill": 1, "decode": 1}, startup_delay_seconds=0.0)
    passing = []
    for p, d in itertools.product(range(1, 5), range(1, 5)):
        res = simulate(workload, MODEL, FixedFleet({"prefill": p, "decode": d}), cfg)
        if attainment_of(res, 200.0, 20.0).both >= 0.99:
            passing.append((p + d, p, d))
    assert min(passing) == (6, 3, 3)
    # the search ran fewer replays than the grid, and prefill ones without decode
    assert found.runs < 16 and any(p.replicas["decode"] == 0 for p in found.probes)


def test_static_sweep_reports_none_with_the_best_seen() -> None:
    plan = make_plan(isl=2000, osl=101, max_replicas={"decode": 2})
    found = cheapest_fleet(_even(60.0, 50.0), MODEL, plan, 0.99)
    assert not found.found and found.infeasible_pools == ("decode",)
    assert found.replicas == {"prefill": 3, "decode": 2}
    assert found.attainment is not None and found.attainment.itl < 0.99


def test_static_sweep_in_the_comparison_is_the_reference_for_x_static() -> None:
    plan = make_plan(isl=2000, osl=101)
    cmp = compare(plan, MODEL, MODEL, _even(60.0, 50.0), [parse_policy("static-sweep"), parse_policy("static:4")])
    sweep, static4 = cmp.summaries["static-sweep"], cmp.summaries["static:4"]
    assert sweep["fleet"] == {"prefill": 3, "decode": 3} and sweep["found"] and sweep["fleetGpus"] == 6
    assert sweep["gpuHoursVsStatic"] == 1.0
    assert static4["gpuHoursVsStatic"] == pytest.approx(static4["gpuHours"] / sweep["gpuHours"], rel=1e-3)
    assert cmp.summaries["oracle"]["gpuHoursVsStatic"] is not None
    assert "static-sweep" in cmp.seconds and cmp.results["static-sweep"].gpu_hours() == pytest.approx(
        sweep["gpuHours"], rel=1e-3)


# -- warm start ------------------------------------------------------------------------------------
def test_warm_start_is_the_plans_decision_for_the_first_interval() -> None:
    plan = make_plan(isl=1000, osl=50, interval_seconds=60)  # Dynamo's formulas
    workload = _even(120.0, 50.0)  # 2000-token prompts, 101 tokens out
    # 50 req/s x 2000 / 40k = 2.5 -> 3 prefill; 50 x 101 = 5,050 tokens/s on 10k per replica -> 1
    assert warm_start(parse_policy("plan"), plan, MODEL, workload) == {"prefill": 3, "decode": 1}
    assert warm_start(parse_policy("static:2,5"), plan, MODEL, workload) == {"prefill": 2, "decode": 5}
    # no profile: each pool's minimum
    assert warm_start(parse_policy("plan"), plan, None, workload) == {"prefill": 1, "decode": 1}
    cmp = compare(plan, MODEL, MODEL, workload, [parse_policy("plan")])
    first = [s for s in cmp.results["plan"].samples if s.t == 0.0]
    assert {s.pool: (s.desired, s.ready) for s in first} == {"prefill": (3, 3), "decode": (1, 1)}
    assert cmp.summaries["plan"]["initialReplicas"] == {"prefill": 3, "decode": 1}
    # --initial-replicas overrides it
    cmp = compare(plan, MODEL, MODEL, workload, [parse_policy("plan")], initial_replicas={"prefill": 1, "decode": 2})
    assert cmp.summaries["plan"]["initialReplicas"] == {"prefill": 1, "decode": 2}


def test_warm_start_with_attainment_sizing_is_its_first_decision() -> None:
    plan = make_plan(isl=1000, osl=50, interval_seconds=60, sizing="attainment")
    workload = _even(120.0, 50.0)
    tp_plan = policy_plan(parse_policy("throughput-only"), plan)
    window = first_window(workload.t[:3000].tolist(), workload.isl[:3000], workload.osl[:3000], 60.0)
    expected = decide(tp_plan, MODEL, Observation(timestamp=60.0, traffic=window), new_state(tp_plan))
    warm = warm_start(parse_policy("plan"), plan, MODEL, workload)
    assert warm == {n: p.replicas for n, p in expected.pools.items()}
    assert warm["prefill"] >= 3  # at least the mean load


def test_peers_start_where_their_planner_would() -> None:
    plan = make_plan(isl=1000, osl=50, interval_seconds=60, sizing="attainment")
    workload = _even(120.0, 50.0)
    planned = warm_start(parse_policy("plan"), plan, MODEL, workload)
    # llm-d and load-only have no sizing of their own: the plan's fleet; Dynamo its formulas
    assert warm_start(parse_policy("llmd-slo"), plan, MODEL, workload) == planned
    assert warm_start(parse_policy("load-only"), plan, MODEL, workload) == planned
    assert warm_start(parse_policy("dynamo"), plan, MODEL, workload) == {"prefill": 3, "decode": 1}
