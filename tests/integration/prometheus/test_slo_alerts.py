"""The SLO alerts of the rendered rules: `promtool check rules` and the generated `promtool
test rules` pass for dynamo, vLLM and SGLang plans, with alerts firing and silent at the
expectations computed from the synthetic events; a changed threshold, window or selector
fails the generated test; `spec.rules.alerts: false` renders none."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import linear_profile, plan_dict, with_changes, write_plan
from scaler.render import checks
from scaler.render.pipeline import ROLE_RULES, ROLE_RULES_TEST, build_all, load, render, render_manifests

ALERTS = {"DynplanSLOErrorBudgetBurn", "DynplanScalerStale", "DynplanScalerAbsent", "DynplanPoolAtMaxReplicas", "DynplanGpuBudgetExhausted"}


def doc_for(source: str, attainment: float = 0.99) -> dict[str, Any]:
    doc = plan_dict(name=f"slo-{source}", mode="disagg", max_gpus=40)
    doc = with_changes(doc, {"spec.sla.attainment": attainment})
    if source != "dynamo":
        doc = with_changes(doc, {"spec.metrics": {"source": source, "selector": {"namespace": "inference", "model_name": "llama"}}})
    if source == "vllm":
        for pool in doc["spec"]["pools"]:
            doc["spec"]["pools"][pool]["selector"] = {"pod": f"=~llama-{pool}-.*"}
    return doc


def fired(test_text: str) -> dict[tuple[str, int], list[dict[str, str]]]:
    """(alert, eval seconds) -> the label sets expected to fire; the burn case's times are
    multiples of 20 minutes, the health case's are not."""
    out = {}
    for case in yaml.safe_load(test_text)["tests"]:
        for a in case.get("alert_rule_test") or []:
            out[(a["alertname"], int(a["eval_time"].rstrip("s")))] = [e["exp_labels"] for e in a["exp_alerts"]]
    return out


@pytest.mark.parametrize("source", ["dynamo", "vllm", "sglang"])
def test_alerts_pass_promtool_and_fire_where_computed(source: str, tmp_path: Path) -> None:
    path = write_plan(tmp_path, doc_for(source), profile=linear_profile())
    r = render_manifests([str(path)], str(tmp_path / "out"), check=True)
    (test,) = [f for f in r.files if f.role == ROLE_RULES_TEST]
    got = fired(test.text)
    assert {name for name, _ in got} == ALERTS
    # burn case (objective 0.99): ITL at 1.5x opens a ticket from the start; TTFT's 40x burst
    # from 20 to 40 minutes pages at 40 minutes and is silent again 35 minutes after it
    assert sorted((a["severity"], a["sli"]) for a in got[("DynplanSLOErrorBudgetBurn", 1200)]) == [("ticket", "itl")]
    assert ("page", "ttft") in {(a["severity"], a["sli"]) for a in got[("DynplanSLOErrorBudgetBurn", 2400)]}
    assert "page" not in {a["severity"] for a in got[("DynplanSLOErrorBudgetBurn", 4500)]}
    # health case: stale first, absent after the series end, at max and GPU budget once held 10m
    stale = [t for (name, t), alerts in got.items() if name == "DynplanScalerStale" and alerts]
    assert stale, got
    assert any(alerts for (name, _), alerts in got.items() if name == "DynplanPoolAtMaxReplicas")
    assert any(alerts for (name, _), alerts in got.items() if name == "DynplanGpuBudgetExhausted")
    assert [a["pool"] for (name, _), alerts in got.items() if name == "DynplanPoolAtMaxReplicas" for a in alerts] == ["prefill"]  # the first pool


def test_the_generated_alert_test_catches_wrong_alerts(tmp_path: Path) -> None:
    path = write_plan(tmp_path, doc_for("dynamo"), profile=linear_profile())
    r = render(build_all(load([str(path)]), "keda"))
    origin = {f.name: f.origin for f in r.files}
    (rules,) = [f.name for f in r.files if f.role == ROLE_RULES]
    (test,) = [f.name for f in r.files if f.role == ROLE_RULES_TEST]
    good = {f.name: f.text for f in r.files}
    stale_prefix = 'dynplan_last_good_decision_timestamp_seconds{namespace=\\"inference\\",plan=\\"slo-dynamo\\"}'
    found = re.search(re.escape(stale_prefix) + r" > (\d+)", good[rules])
    assert found is not None
    stale = int(found.group(1))  # 3 throughput intervals
    mutations = {
        # ITL burns at 1.5x throughout: a page threshold below it pages at 20 minutes
        "page threshold 14.4x -> 1.2x": ("(14.4 * (1 - 0.99))", "(1.2 * (1 - 0.99))"),
        "stale after 30 intervals": (f"{stale_prefix} > {stale}", f"{stale_prefix} > {stale * 10}"),
        # the TTFT SLI read from the +Inf bucket: nothing is ever bad
        "bucket above the SLA": ('le=\\"0.2\\"', 'le=\\"+Inf\\"'),
    }

    def run(what: str) -> list[Any]:
        old, new = mutations[what]
        d = tmp_path / what.replace(" ", "_").replace(">", "").replace("/", "")
        d.mkdir()
        for name, text in good.items():
            (d / name).write_text(text.replace(old, new) if name == rules else text)
        assert checks.promtool_check_rules(d, [rules], origin) == [], what
        return checks.promtool_test_rules(d, [test], origin)

    for what, (old, _) in mutations.items():
        assert old in good[rules], what
    # promtool is a subprocess: two at a time keeps the test near one run's time per core
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(mutations, pool.map(run, mutations)))
    assert [w for w, errs in results.items() if errs == []] == [], "the generated test passed with these"


def test_alerts_off_renders_no_alert_group(tmp_path: Path) -> None:
    doc = with_changes(doc_for("dynamo"), {"spec.rules": {"alerts": False}})
    path = write_plan(tmp_path, doc, profile=linear_profile())
    r = render(build_all(load([str(path)]), "keda"))
    texts = {f.name: f.text for f in r.files}
    assert not any("alert:" in t or "alert_rule_test" in t for t in texts.values())
