"""The plan model (scaler.core.plan): defaults, aliases, per-field limits, cross-field checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from helpers import plan_dict, with_changes
from scaler.core.plan import API_VERSION, Plan, semantic_errors


def validate(doc: dict) -> Plan:
    return Plan.model_validate(doc)


def error_locs(doc: dict) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        Plan.model_validate(doc)
    return [".".join(str(p) for p in e["loc"]) for e in exc.value.errors()]


def minimal_doc() -> dict:
    return {
        "apiVersion": "dynplan/v1alpha1",
        "kind": "Plan",
        "metadata": {"name": "m"},
        "spec": {
            "sla": {"ttftMs": 200, "itlMs": 20},
            "workload": {"isl": 3000, "osl": 150},
            "profile": "p",
            "pools": {"prefill": {"scaleTargetRef": {"name": "a"}}, "decode": {"scaleTargetRef": {"name": "b"}}},
        },
    }


def test_defaults_of_a_minimal_plan() -> None:
    plan = validate(minimal_doc())
    s = plan.spec
    assert API_VERSION == "dynplan/v1alpha1"
    assert plan.namespace == "default"
    assert s.mode == "disagg" and plan.pool_names == ("prefill", "decode")
    pool = plan.pool("decode")
    assert (pool.gpus_per_replica, pool.min_replicas, pool.max_replicas) == (1, 1, 16)
    assert (pool.scale_target_ref.api_version, pool.scale_target_ref.kind) == ("apps/v1", "Deployment")
    assert s.budget.max_gpus is None
    tp = s.scaling.throughput
    assert (tp.enabled, tp.interval_seconds, tp.correction) == (True, 180, True)
    assert tp.predictor.type == "kalman"
    assert (tp.predictor.kalman.q_level, tp.predictor.kalman.q_trend, tp.predictor.kalman.r) == (1.0, 0.1, 10.0)
    assert (tp.predictor.min_points, tp.predictor.arima.window, tp.predictor.prophet.window) == (5, 100, 50)
    ld = s.scaling.load
    assert (ld.enabled, ld.interval_seconds, ld.window, ld.min_observations, ld.scale_down_sensitivity) == (
        False, 10, 50, 5, 80.0,
    )
    assert ld.scale_down_delay_seconds == 60
    m = s.metrics
    assert (m.source, m.use_recording_rules) == ("dynamo", True)
    assert m.prometheus.url == "http://prometheus-operated.monitoring:9090"
    assert (m.prometheus.timeout_seconds, m.prometheus.retries) == (2.0, 1)
    assert s.scaler.address == "dynplan-scaler.keda:9090"
    k = s.keda
    assert (k.trigger_type, k.cooldown_period_seconds, k.fallback.failure_threshold, k.fallback.behavior) == (
        "external", 300, 3, "currentReplicasIfHigher",
    )
    assert semantic_errors(plan) == []


def test_plan_is_frozen() -> None:
    plan = validate(minimal_doc())
    with pytest.raises(ValidationError):
        plan.spec.sla.itl_ms = 5  # type: ignore[misc]


def test_snake_case_names_are_accepted_too() -> None:
    doc = minimal_doc()
    doc["spec"]["sla"] = {"ttft_ms": 100, "itl_ms": 10}
    assert validate(doc).spec.sla.itl_ms == 10


@pytest.mark.parametrize(
    "path, value, loc",
    [
        ("spec.sla.itlMs", 0, "spec.sla.itlMs"),
        ("spec.sla.ttftMs", float("nan"), "spec.sla.ttftMs"),
        ("spec.workload.osl", -1, "spec.workload.osl"),
        ("spec.pools.decode.gpusPerReplica", 0, "spec.pools.decode.gpusPerReplica"),
        ("spec.pools.decode.minReplicas", -1, "spec.pools.decode.minReplicas"),
        ("spec.pools.decode.maxReplicas", 0, "spec.pools.decode.maxReplicas"),
        ("spec.budget.maxGpus", 0, "spec.budget.maxGpus"),
        ("spec.scaling.throughput.intervalSeconds", 5, "spec.scaling.throughput.intervalSeconds"),
        ("spec.scaling.load.scaleDownSensitivity", 101, "spec.scaling.load.scaleDownSensitivity"),
        ("spec.scaling.throughput.predictor.type", "lstm", "spec.scaling.throughput.predictor.type"),
        ("spec.scaling.throughput.predictor.kalman.r", 0, "spec.scaling.throughput.predictor.kalman.r"),
        ("spec.metrics.prometheus.url", "prometheus:9090", "spec.metrics.prometheus.url"),
        ("spec.metrics.selector", {"bad-label": "x"}, "spec.metrics.selector"),
        ("spec.metrics.source", "tgi", "spec.metrics.source"),
        ("spec.scaler.address", "no-port", "spec.scaler.address"),
        ("spec.keda.tolerance", 1.0, "spec.keda.tolerance"),
        ("spec.keda.fallback.behavior", "always", "spec.keda.fallback.behavior"),
        ("spec.mode", "pd", "spec.mode"),
        ("metadata.name", "a" * 41, "metadata.name"),
        ("metadata.name", "Llama", "metadata.name"),
        ("metadata.name", "-llama", "metadata.name"),
        ("metadata.namespace", "in_ference", "metadata.namespace"),
        ("apiVersion", "dynplan/v1", "apiVersion"),
        ("kind", "ScaledObject", "kind"),
        ("spec.pools.decode.typo", 1, "spec.pools.decode.typo"),
        ("spec.scaling.load.scaleDownDelaySeconds", -1, "spec.scaling.load.scaleDownDelaySeconds"),
        ("spec.scaling.load.scaleDownDelaySeconds", 3601, "spec.scaling.load.scaleDownDelaySeconds"),
        ("spec.pools.decode.scaleTargetRef.apiVersion", "apps", "spec.pools.decode.scaleTargetRef.apiVersion"),
        ("spec.pools.decode.scaleTargetRef.kind", "deployment", "spec.pools.decode.scaleTargetRef.kind"),
        ("spec.pools.decode.scaleTargetRef.name", "Llama_Decode", "spec.pools.decode.scaleTargetRef.name"),
    ],
)
def test_field_limits(path: str, value, loc: str) -> None:
    assert loc in error_locs(with_changes(minimal_doc(), {path: value}))


def test_name_of_40_characters_is_fine() -> None:
    assert validate(with_changes(minimal_doc(), {"metadata.name": "a" * 40})).name == "a" * 40


def test_missing_required_fields() -> None:
    locs = error_locs(with_changes(minimal_doc(), {"spec.sla": ..., "metadata.name": ...}))
    assert "spec.sla" in locs and "metadata.name" in locs


def paths(doc: dict) -> list[str]:
    return [p for p, _ in semantic_errors(validate(doc))]


def test_semantic_min_above_max() -> None:
    doc = plan_dict(min_replicas={"decode": 8}, max_replicas={"decode": 4})
    assert paths(doc) == ["spec.pools.decode.maxReplicas"]


def test_semantic_budget_below_minimums() -> None:
    doc = plan_dict(gpus={"prefill": 2}, min_replicas={"prefill": 2, "decode": 2}, max_gpus=5)
    errs = semantic_errors(validate(doc))
    assert errs == [("spec.budget.maxGpus", "5 GPUs cannot hold every pool's minimum (6 GPUs)")]
    assert paths(plan_dict(gpus={"prefill": 2}, min_replicas={"prefill": 2, "decode": 2}, max_gpus=6)) == []


def test_semantic_pools_must_match_mode() -> None:
    doc = plan_dict(mode="agg")
    doc["spec"]["pools"]["decode"] = doc["spec"]["pools"]["worker"]
    del doc["spec"]["pools"]["worker"]
    assert paths(doc) == ["spec.pools.decode", "spec.pools.worker"]


def test_semantic_no_scaling_enabled() -> None:
    assert "spec.scaling" in paths(plan_dict(throughput=False, load=False))


def test_semantic_throughput_needs_a_profile() -> None:
    assert paths(plan_dict(profile=None)) == ["spec.profile"]
    assert paths(plan_dict(profile=None, throughput=False, load=True)) == []


def test_semantic_profile_and_profile_data_exclusive() -> None:
    doc = plan_dict()
    doc["spec"]["profileData"] = {"prefill": {}, "decode": {}}
    assert "spec.profileData" in paths(doc)


def test_semantic_load_interval_shorter_than_throughput() -> None:
    doc = with_changes(plan_dict(load=True), {"spec.scaling.load.intervalSeconds": 60})
    assert paths(doc) == ["spec.scaling.load.intervalSeconds"]
    assert paths(with_changes(doc, {"spec.scaling.load.intervalSeconds": 59})) == []


def test_semantic_min_observations_within_window() -> None:
    doc = with_changes(plan_dict(load=True), {"spec.scaling.load.window": 4, "spec.scaling.load.minObservations": 5})
    assert paths(doc) == ["spec.scaling.load.minObservations"]


def test_pools_property_follows_mode() -> None:
    assert list(validate(plan_dict(mode="agg")).pools) == ["worker"]
    assert list(validate(plan_dict()).pools) == ["prefill", "decode"]
    with pytest.raises(KeyError):
        validate(plan_dict()).pool("worker")


def test_custom_resource_scale_targets_are_accepted() -> None:
    doc = with_changes(
        minimal_doc(),
        {"spec.pools.decode.scaleTargetRef": {"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeploymentScalingAdapter", "name": "llama.decode"}},
    )
    ref = validate(doc).pool("decode").scale_target_ref
    assert (ref.api_version, ref.kind, ref.name) == ("nvidia.com/v1alpha1", "DynamoGraphDeploymentScalingAdapter", "llama.decode")


def _field_names(model: type, prefix: str = "") -> list[str]:
    """Every field of the plan model as a dotted camelCase path."""
    from pydantic import BaseModel

    out = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        path = f"{prefix}{alias}"
        out.append(path)
        ann = info.annotation
        for candidate in (ann, *getattr(ann, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                out += _field_names(candidate, path + ".")
    return out


def test_every_plan_field_is_documented() -> None:
    # docs/plan-spec.md must name every field (in backticks, alone or as the tail of a
    # dotted name), so a field added to the model without documentation fails here.
    import re

    from helpers import REPO

    text = (REPO / "docs" / "plan-spec.md").read_text()
    missing = [
        path for path in _field_names(Plan)
        if not re.search(r"[`.]" + re.escape(path.rsplit(".", 1)[-1]) + r"[`.]", text)
    ]
    assert missing == []


def test_prometheus_url_length_is_bounded() -> None:
    from scaler.core.plan import MAX_URL_LENGTH, http_url_problem

    assert http_url_problem("http://prom:9090/" + "a" * 100) is None
    problem = http_url_problem("http://prom:9090/" + "a" * MAX_URL_LENGTH)
    assert problem is not None and "at most 2048" in problem
