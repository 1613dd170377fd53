"""The engine sources' rendered rules (vLLM, SGLang) pass `promtool check rules` and their
generated `promtool test rules`, disaggregated and aggregated, with load scaling; and the
generated test is not a tautology: a rule reading the wrong pool, dropping a selector,
collapsing no ranks or ignoring vLLM's older KV gauge fails it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import linear_profile, plan_dict, with_changes, write_plan
from scaler.render import checks
from scaler.render.pipeline import ROLE_RULES, ROLE_RULES_TEST, build_all, load, render, render_manifests

POOLS = {"prefill": {"pod": "=~llama-prefill-.*"}, "decode": {"pod": "=~llama-decode-.*"}}


def engine_doc(source: str, mode: str) -> dict[str, Any]:
    doc = plan_dict(name=f"{source}-{mode}", mode=mode, load=True, sizing="attainment", interval_seconds=180)
    doc = with_changes(doc, {
        "spec.scaling.load.intervalSeconds": 60,
        "spec.metrics": {"source": source, "selector": {"namespace": "inference", "model_name": "llama"}},
    })
    if source == "vllm":
        for pool in doc["spec"]["pools"]:
            doc["spec"]["pools"][pool]["selector"] = POOLS.get(pool, {"pod": "=~llama-.*"})
    return doc


@pytest.mark.parametrize("source", ["vllm", "sglang"])
@pytest.mark.parametrize("mode", ["disagg", "agg"])
def test_engine_rules_pass_promtool_and_their_generated_tests(source: str, mode: str, tmp_path: Path) -> None:
    path = write_plan(tmp_path, engine_doc(source, mode), profile=linear_profile())
    r = render_manifests([str(path)], str(tmp_path / "out"), check=True)
    (test,) = [f for f in r.files if f.role == ROLE_RULES_TEST]
    cases = [c for c in yaml.safe_load(test.text)["tests"] if "promql_expr_test" in c]  # not the alerts' cases
    checked = sum(len(c["promql_expr_test"]) for c in cases)
    assert len(cases) == 2 and checked >= 20, (len(cases), checked)  # every rule has expectations


def test_the_generated_engine_test_catches_wrong_rules(tmp_path: Path) -> None:
    path = write_plan(tmp_path, engine_doc("vllm", "disagg"), profile=linear_profile())
    r = render(build_all(load([str(path)]), "keda"))
    origin = {f.name: f.origin for f in r.files}
    (rules,) = [f.name for f in r.files if f.role == ROLE_RULES]
    (test,) = [f.name for f in r.files if f.role == ROLE_RULES_TEST]
    good = {f.name: f.text for f in r.files}
    mutations = {
        "TTFT from the decode pool": ('time_to_first_token_seconds_sum\\",model_name=\\"llama\\",namespace=\\"inference\\",pod=~\\"llama-prefill-.*\\"}[180s]',
                                      'time_to_first_token_seconds_sum\\",model_name=\\"llama\\",namespace=\\"inference\\",pod=~\\"llama-decode-.*\\"}[180s]'),
        "no pool selector": (',pod=~\\"llama-decode-.*\\"}[180s]', "}[180s]"),
        "no plan selector": ('model_name=\\"llama\\",', ""),
        "only the new KV gauge": ("vllm[:_]gpu_cache_usage_perc", "vllm[:_]nothing"),
        "no gateway queue": ("llm_d_epp_flow_control_queue_size", "llm_d_epp_nothing"),
    }
    for what, (old, new) in mutations.items():
        assert old in good[rules], what
        d = tmp_path / what.replace(" ", "-")
        d.mkdir()
        for name, text in good.items():
            (d / name).write_text(text.replace(old, new) if name == rules else text)
        assert checks.promtool_check_rules(d, [rules], origin) == [], what
        errs = checks.promtool_test_rules(d, [test], origin)
        assert len(errs) == 1 and "promtool test rules failed" in errs[0].message, what


def test_sglang_rules_collapse_tensor_parallel_ranks(tmp_path: Path) -> None:
    path = write_plan(tmp_path, engine_doc("sglang", "disagg"), profile=linear_profile())
    r = render(build_all(load([str(path)]), "keda"))
    origin = {f.name: f.origin for f in r.files}
    (rules,) = [f.name for f in r.files if f.role == ROLE_RULES]
    (test,) = [f.name for f in r.files if f.role == ROLE_RULES_TEST]
    good = {f.name: f.text for f in r.files}
    old = "max without (tp_rank, pp_rank) ({__name__=~\\\"sglang[:_]num_queue_reqs"
    assert old in good[rules]
    for name, text in good.items():
        (tmp_path / name).write_text(text.replace(old, "({__name__=~\\\"sglang[:_]num_queue_reqs") if name == rules else text)
    errs = checks.promtool_test_rules(tmp_path, [test], origin)
    assert len(errs) == 1 and "promtool test rules failed" in errs[0].message
