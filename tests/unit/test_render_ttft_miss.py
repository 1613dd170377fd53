"""The generated promtool test's expectation of the `ttft_miss` record (the fraction of TTFTs
over the plan's SLA bucket): TTFT `_bucket` inputs at the bound, below and above it and
+Inf, whole-second bounds in both exporters' forms, and exact expected fractions from the
per-step events. tests/integration/prometheus/test_render_ttft_miss_promtool.py runs promtool
on them."""

from __future__ import annotations

from typing import Any

from helpers import REPO, plan_dict, with_changes
from scaler.core.plan import Plan
from scaler.render import promtest, rules
from scaler.render.pipeline import load

DISAGG = REPO / "tests" / "fixtures" / "render" / "disagg.yaml"
TTFT = "dynamo_frontend_time_to_first_token_seconds"


def throughput_case(plan: Plan) -> promtest.RuleTestCase:
    (case, *_) = promtest.rule_test(plan, rules.rule_groups(plan), "rules.yaml").cases
    assert case.name.endswith(("synthetic frontend traffic", "synthetic engine pods")), case.name
    return case


def misses(case: promtest.RuleTestCase) -> dict[int, float]:
    out = {}
    for e in case.expectations:
        if ":over_sla_fraction" in e.expr:
            (sample,) = e.samples
            out[e.eval_time] = sample.value
    return out


def buckets(case: promtest.RuleTestCase, metric: str = TTFT) -> dict[str, list[str]]:
    """pod -> the `le` values of its TTFT buckets, in input order."""
    out: dict[str, list[str]] = {}
    for s in case.inputs:
        if s.series.startswith(metric + "_bucket{"):
            labels = dict(part.split("=", 1) for part in s.series[len(metric) + 8:-1].replace('"', "").split(","))
            out.setdefault(labels["pod"], []).append(labels["le"])
    return out


def attainment_plan(changes: dict[str, Any]) -> Plan:
    return Plan.model_validate(with_changes(plan_dict(sizing="attainment", interval_seconds=120), changes))


def test_the_fixture_plans_fraction_per_window_from_the_buckets_at_its_bound() -> None:
    plan = load([str(DISAGG)])[0].plan  # ttftMs 200: le="0.2"; 120-s ranges of 15-s steps
    case = throughput_case(plan)
    # window 1: 27 TTFTs, 11 at or below 0.2 s; window 2: 39, 19; window 3 (arrivals stop): 3, 1
    assert misses(case) == {120: 1 - 11 / 27, 240: 1 - 19 / 39, 360: 1 - 1 / 3}
    assert buckets(case) == {
        "frontend-0": ["0.1", "0.2", "0.4", "+Inf"],
        "frontend-1": ["0.1", "0.2", "0.4", "+Inf"],
        # the decoys (one per selector label): all good, so one let in lowers the fraction
        "frontend-2": ["0.1", "0.2", "0.4", "+Inf"],
        "frontend-3": ["0.1", "0.2", "0.4", "+Inf"],
    }


def test_a_whole_second_bound_is_written_as_go_and_as_python_do() -> None:
    plan = attainment_plan({"spec.rules": {"ttftBucketMs": 1000}})
    case = throughput_case(plan)
    got = buckets(case)
    assert got["frontend-0"] == ["0.5", "1", "2", "+Inf"]
    assert got["frontend-1"] == ["0.5", "1.0", "2.0", "+Inf"]
    values = misses(case)
    assert sorted(values) == [120, 240, 360]
    assert len(set(values.values())) == 3 and all(0 < v < 1 for v in values.values()), values


def test_the_sla_gives_the_bound_without_a_bucket_field() -> None:
    case = throughput_case(attainment_plan({"spec.sla.ttftMs": 800}))
    assert buckets(case)["frontend-0"] == ["0.4", "0.8", "1.6", "+Inf"]
    assert len(misses(case)) == 3


def test_dynamo_sizing_has_no_ttft_miss_record_and_no_buckets() -> None:
    case = throughput_case(Plan.model_validate(plan_dict(sizing="dynamo", interval_seconds=120)))
    assert misses(case) == {} and buckets(case) == {}


def test_engine_plans_expect_the_fraction_of_the_prefill_pools_pods() -> None:
    doc = with_changes(plan_dict(name="vllm-disagg", sizing="attainment", interval_seconds=180), {
        "spec.metrics": {"source": "vllm", "selector": {"namespace": "inference", "model_name": "llama"}},
        "spec.pools.prefill.selector": {"pod": "=~llama-prefill-.*"},
        "spec.pools.decode.selector": {"pod": "=~llama-decode-.*"},
    })
    case = throughput_case(Plan.model_validate(doc))
    got = buckets(case, "vllm:time_to_first_token_seconds")
    # both pools' pods carry buckets (the decode pool's own misses), and so do the decoys
    assert got["llama-prefill-0"] == got["llama-decode-1"] == ["0.1", "0.2", "0.4", "+Inf"]
    assert len(got) > 4
    values = misses(case)
    assert sorted(values) == [180, 360, 540]
    assert len(set(values.values())) == 3 and all(0 < v < 1 for v in values.values()), values
