"""`spec.keda`'s HPA scale policies (issue 13 item 7): the fields, and the validation that
refuses settings under which one HPA period can take a pool's last replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from helpers import flat_profile, plan_dict, write_plan
from scaler.cli import main
from scaler.core.plan import (
    Plan,
    ScalingPolicySpec,
    largest_emptied_start,
    scale_down_limit_one_period,
    semantic_errors,
)
from scaler.sim.hpa import scale_down_limit
from scaler.sim.hpa_config import ScalingPolicy, ScalingRules


def plan_doc(keda: Optional[dict[str, Any]] = None, **pool_fields: Any) -> dict[str, Any]:
    doc = plan_dict()
    if keda is not None:
        doc["spec"]["keda"] = keda
    for name in ("prefill", "decode"):
        doc["spec"]["pools"][name].update(pool_fields)
    return doc


def errors(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [e for e in semantic_errors(Plan.model_validate(doc)) if e[0].startswith("spec.keda")]


@pytest.mark.parametrize(
    "keda, start",
    [
        ({"scaleDownPolicies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}, 4),
        ({"scaleDownPolicies": [{"type": "Pods", "value": 2, "periodSeconds": 1800}]}, 2),
        ({"scaleDownPolicies": [{"type": "Percent", "value": 51, "periodSeconds": 600}]}, 2),
        ({"scaleDownPolicies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}, 16),
        # Max takes the policy allowing the largest change: one bad policy is enough
        ({"scaleDownPolicies": [{"type": "Pods", "value": 1, "periodSeconds": 60}, {"type": "Pods", "value": 3, "periodSeconds": 60}]}, 3),
        # Min needs one policy that keeps a replica at every count
        ({"scaleDownPolicies": [{"type": "Pods", "value": 4, "periodSeconds": 60}, {"type": "Percent", "value": 60, "periodSeconds": 60}],
          "scaleDownSelectPolicy": "Min"}, 2),
    ],
)
def test_policies_that_can_empty_a_pool_in_one_period_are_refused(keda: dict[str, Any], start: int) -> None:
    found = errors(plan_doc(keda))
    assert [path for path, _ in found] == ["spec.keda.scaleDownPolicies"] * 2  # prefill and decode
    select = keda.get("scaleDownSelectPolicy", "Max")
    assert found[0][1] == (
        f"let the HPA take pool prefill from {start} replicas to 0 in one period; with selectPolicy {select} "
        f"{'every policy' if select == 'Max' else 'one policy'} must keep a replica (Pods 1, or Percent at most 50)"
    )


@pytest.mark.parametrize(
    "keda",
    [
        {"scaleDownPolicies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]},
        {"scaleDownPolicies": [{"type": "Percent", "value": 50, "periodSeconds": 15}]},
        {"scaleDownPolicies": [{"type": "Pods", "value": 8, "periodSeconds": 60}, {"type": "Percent", "value": 10, "periodSeconds": 60}],
         "scaleDownSelectPolicy": "Min"},
        {"scaleDownSelectPolicy": "Disabled"},  # minReplicas 1: the HPA never scales down, KEDA does nothing
    ],
)
def test_policies_that_keep_a_replica_are_accepted(keda: dict[str, Any]) -> None:
    assert errors(plan_doc(keda)) == []


def test_a_pods_policy_larger_than_every_pool_is_refused_and_max_replicas_bounds_the_check() -> None:
    # Pods 4 in a pool of at most 3: from 3 replicas, 3 - 4 < 1
    assert [p for p, _ in errors(plan_doc({"scaleDownPolicies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}, maxReplicas=3))] == [
        "spec.keda.scaleDownPolicies"
    ] * 2
    # a pool of at most one replica is never scaled down by the HPA
    assert errors(plan_doc({"scaleDownPolicies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}, maxReplicas=1)) == []


def test_disabled_scale_down_with_min_replicas_zero_is_refused() -> None:
    found = errors(plan_doc({"scaleDownSelectPolicy": "Disabled"}, minReplicas=0))
    assert found[0] == (
        "spec.keda.scaleDownSelectPolicy",
        "Disabled with spec.pools.prefill.minReplicas 0 lets KEDA take the pool from any count to 0 at once after "
        "cooldownPeriodSeconds; keep HPA scale-down on (Max or Min)",
    )
    assert len(found) == 2


@pytest.mark.parametrize(
    "keda, where",
    [
        ({"scaleUpSelectPolicy": "Disabled"}, "scaleUpSelectPolicy"),
        ({"scaleDownSelectPolicy": "Sometimes"}, "scaleDownSelectPolicy"),
        ({"scaleDownPolicies": []}, "scaleDownPolicies"),
        ({"scaleDownPolicies": [{"type": "Pods", "value": 1, "periodSeconds": 60}] * 11}, "scaleDownPolicies"),
        ({"scaleDownPolicies": [{"type": "Pods", "value": 0, "periodSeconds": 60}]}, "scaleDownPolicies.0.value"),
        ({"scaleUpPolicies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}, "scaleUpPolicies.0.periodSeconds"),
        ({"scaleUpPolicies": [{"type": "Pods", "value": 1, "periodSeconds": 0}]}, "scaleUpPolicies.0.periodSeconds"),
        ({"scaleUpPolicies": [{"type": "Replicas", "value": 1, "periodSeconds": 60}]}, "scaleUpPolicies.0.type"),
        ({"scaleUpPolicies": [{"type": "Pods", "value": True, "periodSeconds": 60}]}, "scaleUpPolicies.0.value"),
        ({"scaleUpPolicies": [{"type": "Pods", "value": 1, "periodSeconds": 60, "extra": 1}]}, "scaleUpPolicies.0.extra"),
    ],
)
def test_field_errors_name_the_field(keda: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        Plan.model_validate(plan_doc(keda))
    locs = [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert any(loc.startswith(f"spec.keda.{where}") for loc in locs), locs


def test_validate_exits_2_with_one_line_naming_file_and_field(tmp_path: Path) -> None:
    doc = plan_doc({"scaleDownPolicies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]})
    path = write_plan(tmp_path, doc, profile=flat_profile())
    res = CliRunner().invoke(main, ["validate", str(path)])
    assert res.exit_code == 2
    assert res.stdout == "" and "Traceback" not in res.stderr
    assert f"error: {path}: spec.keda.scaleDownPolicies: let the HPA take pool prefill from 4 replicas to 0" in res.stderr


def test_one_period_arithmetic_is_the_simulated_hpa_s() -> None:
    # core's check and sim.hpa's scale_down_limit (the controller's code) agree on every count
    sets = [
        ([("Percent", 50, 120)], "Max"),
        ([("Pods", 3, 60), ("Percent", 30, 60)], "Max"),
        ([("Pods", 3, 60), ("Percent", 30, 60)], "Min"),
        ([("Percent", 99, 15)], "Max"),
        ([("Pods", 1, 15)], "Disabled"),
    ]
    for policies, select in sets:
        spec = tuple(ScalingPolicySpec(type=t, value=v, period_seconds=p) for t, v, p in policies)  # type: ignore[arg-type]
        rules = ScalingRules(0, select, tuple(ScalingPolicy(t, v, p) for t, v, p in policies))  # type: ignore[arg-type]
        for k in range(1, 200):
            assert scale_down_limit_one_period(k, spec, select) == scale_down_limit(0.0, k, [], [], rules), (policies, select, k)


@pytest.mark.parametrize("select", ["Max", "Min", "Disabled"])
def test_largest_emptied_start_is_the_brute_force_count(select: str) -> None:
    # the O(policies) check against every count, the HPA's arithmetic
    singles = [("Pods", v) for v in (1, 2, 3, 7, 40)] + [("Percent", v) for v in (1, 10, 33, 34, 49, 50, 51, 66, 67, 90, 99, 100, 150)]
    sets = [[a] for a in singles] + [[a, b] for a in singles[::3] for b in singles[1::4]]
    for pairs in sets:
        spec = tuple(ScalingPolicySpec(type=t, value=v, period_seconds=60) for t, v in pairs)  # type: ignore[arg-type]
        for m in (1, 2, 3, 5, 16, 101, 400):
            brute = [s for s in range(2, m + 1) if scale_down_limit_one_period(s, spec, select) < 1]
            assert largest_emptied_start(spec, select, m) == (max(brute) if brute else None), (pairs, select, m)


def test_validation_is_fast_at_the_largest_pools() -> None:
    import time

    doc = plan_doc({"scaleDownPolicies": [{"type": "Percent", "value": 50, "periodSeconds": 60}] * 10}, maxReplicas=10000)
    plan = Plan.model_validate(doc)
    t0 = time.perf_counter()
    assert errors(doc) == [] and semantic_errors(plan) == []
    assert time.perf_counter() - t0 < 0.05
