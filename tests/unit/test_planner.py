"""The planner core: `capacity` (the table of docs/decision-logic.md) and `decide` over a sequence of windows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import flat_profile, linear_profile, make_plan
from scaler.core.decision import Reason
from scaler.core.interpolation import perf_model
from scaler.core.observations import Observation, TrafficWindow
from scaler.core.planner import capacity, correction_active, decide, new_state

# The table of docs/decision-logic.md ("The table"). rate in requests/s; flat profiles: prefill 40000 tokens/s/GPU everywhere,
# decode `decode_thpt` everywhere (flat ITL 5 ms, TTFT 50 ms: inside the SLA of 20 / 200 ms).
# Each row: (rate, isl, osl, decode_thpt, plan overrides, expected (prefill, decode), why).
TABLE = [
    (10 / 60, 3000, 150, 10000, {}, (1, 1), "500/40000 -> 1; 25/10000 -> 1"),
    (500 / 60, 3000, 150, 1000, {}, (1, 2), "25000/40000 = 0.625 -> 1; 1250/1000 = 1.25 -> 2"),
    (1 / 60, 100, 10, 10000, {"min_replicas": {"prefill": 2, "decode": 2}}, (2, 2), "both raised to min 2"),
    (20 / 60, 3000, 150, 5000, {"gpus": {"prefill": 2, "decode": 4}}, (1, 1), "1000/40000/2; 50/5000/4"),
    (20, 3000, 150, 10000, {}, (2, 1), "60000/40000 = 1.5 -> 2; 3000/10000 = 0.3 -> 1"),
    # 300000/40000 = 7.5 -> 8; 15000/1000 = 15; budget 12 -> (4, 8) (see test_budget.py)
    (100, 3000, 150, 1000, {"max_gpus": 12}, (4, 8), "budget 12 shrinks (8, 15) to (4, 8)"),
]


def table_ids() -> list[str]:
    return [f"rate={r:.4g}-isl={i}-thpt={t}" for r, i, _, t, _, _, _ in TABLE]


@pytest.mark.parametrize("rate, isl, osl, thpt, overrides, expected, why", TABLE, ids=table_ids())
def test_capacity_table(rate, isl, osl, thpt, overrides, expected, why) -> None:
    plan = make_plan(isl=isl, osl=osl, **overrides)
    decision = capacity(plan, perf_model(flat_profile(40000, thpt)), rate, isl, osl)
    assert (decision.replicas("prefill"), decision.replicas("decode")) == expected, why
    assert decision.reason is Reason.CAPACITY


def test_capacity_budget_case_bounds() -> None:
    plan = make_plan(max_gpus=12)
    d = capacity(plan, perf_model(flat_profile(40000, 1000)), 100, 3000, 150)
    p, q = d.pools["prefill"], d.pools["decode"]
    assert d.total_gpus <= 12
    assert 1 <= p.replicas <= 8 and 1 <= q.replicas <= 15
    assert (p.requested, q.requested) == (8, 15)
    assert Reason.BUDGET in p.reasons and Reason.BUDGET in q.reasons
    assert d.budget_gpus == 12


def test_capacity_records_its_inputs() -> None:
    plan = make_plan()
    d = capacity(plan, perf_model(flat_profile(40000, 1000)), 500 / 60, 3000, 150)
    tp = d.throughput
    assert tp is not None
    assert tp.predicted_rate == pytest.approx(500 / 60)
    assert (tp.predicted_isl, tp.predicted_osl) == (3000, 150)
    assert tp.prefill_thpt_per_gpu == pytest.approx(40000)
    assert tp.decode_thpt_per_gpu == pytest.approx(1000)
    assert tp.decode_itl_target_ms == 20.0
    assert (tp.correction_prefill, tp.correction_decode, tp.correction_enabled) == (1.0, 1.0, False)
    assert d.pools["decode"].capacity_tokens_per_s == pytest.approx(1000)


def test_capacity_caps_at_pool_maximum() -> None:
    # 100 req/s x 150 / 1000 = 15 decode replicas wanted, max 4
    plan = make_plan(max_replicas={"decode": 4})
    d = capacity(plan, perf_model(flat_profile(40000, 1000)), 100, 3000, 150)
    assert d.replicas("decode") == 4 and d.pools["decode"].requested == 15
    assert Reason.AT_MAX in d.pools["decode"].reasons


def test_capacity_flags_an_infeasible_itl_sla() -> None:
    # flat ITL 5 ms everywhere; an ITL SLA of 2 ms cannot be met
    plan = make_plan(itl_ms=2)
    d = capacity(plan, perf_model(flat_profile(40000, 1000)), 1, 3000, 150)
    assert Reason.SLA_INFEASIBLE in d.pools["decode"].reasons
    assert Reason.SLA_INFEASIBLE not in d.pools["prefill"].reasons
    assert any("ITL" in w for w in d.warnings)


def test_capacity_agg_approximation() -> None:
    # agg worker: prefill 10 x 3000 / 40000 = 0.75 GPU + decode 10 x 150 / 1000 = 1.5 GPU
    # = 2.25 -> 3 one-GPU workers; with 2 GPUs per worker 1.125 -> 2.
    plan = make_plan(mode="agg")
    model = perf_model(flat_profile(40000, 1000))
    assert capacity(plan, model, 10, 3000, 150).replicas("worker") == 3
    plan2 = make_plan(mode="agg", gpus={"worker": 2})
    d = capacity(plan2, model, 10, 3000, 150)
    assert d.replicas("worker") == 2 and d.total_gpus == 4


# -- decide() over a sequence of windows (constant predictor) --------------------------------
# linear_profile: prefill 40000 tokens/s/GPU, TTFT(ISL) = 10 + 0.01 ISL ms; decode ITL(kv) =
# 1 + 99 kv ms, thpt(kv) = 100 + 9900 kv, max_kv_tokens 110000, so the best decode throughput
# for a non-integer ITL target t is 100 x floor(t). SLA ITL 23.5 ms (numbers chosen so that no
# replica count lands on an exact integer, where interpolation noise would decide the ceiling).


@pytest.fixture(scope="module")
def model():
    return perf_model(linear_profile())


def plan_for_decide(**kw):
    args = dict(itl_ms=23.5, isl=1000, osl=200, max_replicas={"prefill": 32, "decode": 32}, predictor="constant")
    args.update(kw)
    return make_plan(**args)


def busy(ttft: float, itl: float, requests: float = 6000) -> Observation:
    # 6000 requests in 60 s = 100 req/s, ISL 1000, OSL 200, 5 s mean duration
    w = TrafficWindow(window_seconds=60, requests=requests, isl=1000, osl=200, ttft_ms=ttft, itl_ms=itl, request_duration_s=5)
    return Observation(timestamp=0.0, traffic=w, ready_replicas={"prefill": 3, "decode": 10})


def idle() -> Observation:
    return Observation(traffic=TrafficWindow(window_seconds=60, requests=0), ready_replicas={"prefill": 3, "decode": 10})


def test_decide_follows_the_formula_with_corrections(model) -> None:
    plan = plan_for_decide()
    state = new_state(plan)

    # Window 1: TTFT 30 ms vs profiled 20 -> cf_p 1.5, clamped to 1 in the formula:
    # prefill 100 x 1000 / 40000 = 2.5 -> 3. Decode: 100 req/s x 5 s / 10 workers = 50 per
    # worker, KV 50 x 1100 / 110000 = 0.5, profiled ITL 50.5, observed 101 -> cf_d 2.0;
    # ITL target 23.5 / 2 = 11.75 -> best throughput 1100 -> 100 x 200 / 1100 = 18.2 -> 19.
    d1 = decide(plan, model, busy(ttft=30, itl=101), state)
    assert (d1.replicas("prefill"), d1.replicas("decode")) == (3, 19)
    assert d1.reason is Reason.SCALE
    tp = d1.throughput
    assert tp.correction_enabled
    assert tp.correction_prefill == pytest.approx(1.5, rel=1e-4)
    assert tp.correction_decode == pytest.approx(2.0, rel=1e-4)
    assert tp.decode_itl_target_ms == pytest.approx(11.75, rel=1e-4)
    assert tp.decode_thpt_per_gpu == pytest.approx(1100, rel=1e-4)
    assert tp.predicted_rate == pytest.approx(100)
    assert tp.observed_rate == pytest.approx(100)

    # Window 2: TTFT 10 ms -> cf_p 0.5: prefill 2.5 x 0.5 = 1.25 -> 2. ITL 50.5 = profiled
    # -> cf_d 1: target 23.5 -> throughput 2300 -> 20000 / 2300 = 8.7 -> 9.
    d2 = decide(plan, model, busy(ttft=10, itl=50.5), state)
    assert (d2.replicas("prefill"), d2.replicas("decode")) == (2, 9)
    assert d2.throughput.correction_prefill == pytest.approx(0.5, rel=1e-4)
    assert d2.throughput.correction_decode == pytest.approx(1.0, rel=1e-4)

    # Window 3: no traffic. The constant predictor returns 0 -> every pool at its minimum.
    # Correction factors cannot be computed from an idle window and keep their values.
    d3 = decide(plan, model, idle(), state)
    assert (d3.replicas("prefill"), d3.replicas("decode")) == (1, 1)
    assert d3.reason is Reason.IDLE
    assert d3.throughput.correction_prefill == pytest.approx(0.5, rel=1e-4)
    assert state.last is d3

    # Window 4: traffic is back; the ISL/OSL predictors were not fed the idle window.
    d4 = decide(plan, model, busy(ttft=10, itl=50.5), state)
    assert (d4.replicas("prefill"), d4.replicas("decode")) == (2, 9)
    assert d4.throughput.predicted_isl == pytest.approx(1000)


def test_decide_idle_from_the_start_is_at_minimum(model) -> None:
    plan = plan_for_decide(min_replicas={"prefill": 2, "decode": 3})
    state = new_state(plan)
    d = decide(plan, model, idle(), state)
    assert (d.replicas("prefill"), d.replicas("decode")) == (2, 3)
    assert d.reason is Reason.IDLE
    assert Reason.AT_MIN in d.pools["decode"].reasons


def test_decide_uses_priors_until_shapes_are_observed(model) -> None:
    # Requests arrived but none completed: no mean ISL/OSL yet -> the plan's workload priors
    # (ISL 1000, OSL 200 here) size the pools and the reason says so.
    plan = plan_for_decide(correction=False)
    state = new_state(plan)
    w = TrafficWindow(window_seconds=60, requests=6000)
    d = decide(plan, model, Observation(traffic=w), state)
    assert d.reason is Reason.PRIOR
    # no correction: prefill 2.5 -> 3; decode target 23.5 -> 2300 -> 8.7 -> 9
    assert (d.replicas("prefill"), d.replicas("decode")) == (3, 9)


def test_decide_without_correction_ignores_latency(model) -> None:
    plan = plan_for_decide(correction=False)
    state = new_state(plan)
    d = decide(plan, model, busy(ttft=10, itl=101), state)
    assert (d.replicas("prefill"), d.replicas("decode")) == (3, 9)
    assert d.throughput.correction_enabled is False
    assert (d.throughput.correction_prefill, d.throughput.correction_decode) == (1.0, 1.0)


def test_correction_disabled_when_load_scaling_is_enabled(model) -> None:
    # As in Dynamo: the load path reacts to observed latency itself.
    plan = plan_for_decide(load=True)
    assert plan.spec.scaling.throughput.correction is True
    assert correction_active(plan) is False
    state = new_state(plan)
    d = decide(plan, model, busy(ttft=10, itl=101), state)  # would give cf (0.5, 2.0)
    assert (d.replicas("prefill"), d.replicas("decode")) == (3, 9)
    assert d.throughput.correction_enabled is False
    assert state.corrections.prefill == 1.0 and state.corrections.decode == 1.0
    assert state.throughput_floor == {"prefill": 3, "decode": 9}


def test_decide_needs_a_model_for_throughput_scaling() -> None:
    plan = plan_for_decide()
    with pytest.raises(ValueError):
        decide(plan, None, busy(ttft=10, itl=50.5), new_state(plan))


def test_decide_agg_sequence(model) -> None:
    # agg worker at 100 req/s: prefill 100 x 1000 / 40000 = 2.5 GPUs; decode with cf_d 1
    # (ready worker count 10, same numbers as above) 100 x 200 / 2300 = 8.7 -> 11.2 -> 12.
    plan = plan_for_decide(mode="agg", max_replicas={"worker": 32})
    state = new_state(plan)
    obs = Observation(traffic=busy(ttft=20, itl=50.5).traffic, ready_replicas={"worker": 10})
    d = decide(plan, model, obs, state)
    assert d.replicas("worker") == 12
    assert d.throughput.correction_decode == pytest.approx(1.0, rel=1e-4)


# -- the core's import graph -------------------------------------------------------------
CORE = Path(__file__).resolve().parents[2] / "scaler" / "core"


def _core_imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(core module imported, at module level?) for every import of a scaler.core module."""
    top = {id(n) for n in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1:
                names = [mod.split(".")[0]] if mod else [a.name for a in node.names]
            elif mod.startswith("scaler.core."):
                names = [mod.split(".")[2]]
            elif mod == "scaler.core":
                names = [a.name for a in node.names]
            else:
                continue
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[2] for a in node.names if a.name.startswith("scaler.core.")]
        else:
            continue
        found.extend((n, id(node) in top) for n in names)
    return found


def test_core_imports_form_a_dag_at_module_level() -> None:
    graph: dict[str, set[str]] = {}
    for path in sorted(CORE.glob("*.py")):
        imports = _core_imports(ast.parse(path.read_text()))
        lazy = sorted(m for m, at_top in imports if not at_top)
        assert not lazy, f"{path.name} imports core modules inside a function or block: {lazy}"
        graph[path.stem] = {m for m, _ in imports}
    done: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, "import cycle: " + " -> ".join((*stack, module))
        if module in done:
            return
        for dep in sorted(graph.get(module, ())):
            visit(dep, (*stack, module))
        done.add(module)

    for module in graph:
        visit(module, ())
