"""The plan's Grafana dashboard as values: what each panel queries, per source and plan."""

from __future__ import annotations

import json

from helpers import make_plan
from scaler.render.dashboard import SIDECAR_LABEL, build_dashboard, dashboard_uid, panel_queries
from scaler.render.rules import rule_groups


def _dash(**kwargs: object) -> tuple[dict, list[tuple[str, str]]]:
    plan = make_plan(**kwargs)
    view = build_dashboard(plan, rule_groups(plan), "keda")
    return json.loads(view.json), panel_queries(view.json)


def test_sidecar_configmap_and_ids() -> None:
    plan = make_plan(name="x" * 40)
    view = build_dashboard(plan, rule_groups(plan), "keda")
    assert dict(view.labels)[SIDECAR_LABEL] == "1"
    assert (view.namespace, view.configmap_name, view.key) == (
        "keda", "dynplan-dashboard-inference." + "x" * 40, f"dynplan-inference.{'x' * 40}.dashboard.json")
    assert dashboard_uid(plan) == view.uid == "dynplan-" + "x" * 19 + "-" + view.uid[-12:] and len(view.uid) == 40
    assert dict(view.labels)["dynplan.io/plan-namespace"] == "inference"
    model = json.loads(view.json)
    ids = [p["id"] for p in model["panels"]]
    assert ids == list(range(1, len(ids) + 1))
    assert [v["name"] for v in model["templating"]["list"]] == ["datasource"]
    # Grafana's panel plugins read their options: none is left null
    assert [p["title"] for p in model["panels"] if p["type"] != "row" and not p.get("options")] == []


def test_panels_follow_the_plan() -> None:
    model, queries = _dash(max_gpus=12, gpus={"prefill": 2, "decode": 4}, load=True, interval_seconds=60)
    titles = [p["title"] for p in model["panels"]]
    assert titles[0] == "Replicas and GPUs" and "Load-scaling verdicts" in titles
    exprs = dict(queries)
    gpu = [q for t, q in queries if t == "GPUs vs budget"]
    assert gpu[0] == (
        'sum((max by (pool) (dynplan_desired_replicas{namespace="inference",plan="llama-8b",pool="prefill"})) * 2 or '
        '(max by (pool) (dynplan_desired_replicas{namespace="inference",plan="llama-8b",pool="decode"})) * 4)'
    )
    assert gpu[-1] == "vector(12)"
    assert 'kube_deployment_status_replicas_ready{deployment="llama-prefill",namespace="inference"}' in gpu[1]
    assert "vector(200)" in [q for t, q in queries if t == "TTFT percentiles vs SLA"]
    assert exprs["Time since the last good decision"].startswith("time() - max(dynplan_last_good_decision_timestamp_seconds{")
    # no budget, no load scaling: no budget line, no load panel
    model, queries = _dash()
    assert "Load-scaling verdicts" not in [p["title"] for p in model["panels"]]
    assert not [q for t, q in queries if t == "GPUs vs budget" and q.startswith("vector(")]


def test_engine_histograms_come_from_the_pool_that_sees_them() -> None:
    plan = make_plan()
    doc = plan.model_dump(by_alias=True)
    doc["spec"]["metrics"]["source"] = "vllm"
    doc["spec"]["pools"]["prefill"]["selector"] = {"pod": "=~llama-prefill-.*"}
    doc["spec"]["pools"]["decode"]["selector"] = {"pod": "=~llama-decode-.*"}
    plan = type(plan).model_validate(doc)
    queries = panel_queries(build_dashboard(plan, rule_groups(plan), "keda").json)
    ttft = [q for t, q in queries if t == "TTFT percentiles vs SLA"][0]
    itl = [q for t, q in queries if t == "ITL percentiles vs SLA"][0]
    assert '{__name__=~"vllm[:_]time_to_first_token_seconds_bucket",dynamo_namespace="inference-llama-8b",pod=~"llama-prefill-.*"}' in ttft
    assert '__name__=~"vllm[:_]inter_token_latency_seconds_bucket"' in itl and 'pod=~"llama-decode-.*"' in itl
