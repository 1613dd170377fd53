"""Safe scale-down (issue 13 item 7): the rendered HPA policies, their per-pool defaults from
`startupSeconds`, and the simulator executing exactly the rendered policies. The fields' validation: test_plan_keda_policies.py."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from helpers import REPO
from scaler.core.plan import Plan, ScalingPolicySpec, scale_down_limit_one_period
from scaler.planfile import LoadedPlan
from scaler.render import checks, objects, pipeline
from scaler.sim.actuation import ActuationPath, config_from_plan, config_from_scaled_object
from scaler.sim.hpa_config import ScalingPolicy, ScalingRules, behavior_from_rendered
from scaler.sim.keda import ScalerReading
from test_plan_keda_policies import errors, plan_doc


def rendered_scaled_objects(plan: Plan) -> dict[str, dict[str, Any]]:
    """The ScaledObjects as `dynplan render manifests` writes them (static checks included), by pool."""
    rendering = pipeline.render(pipeline.build_all([LoadedPlan(REPO / "plan.yaml", plan, None)], "keda"))
    # KEDA's CRD schema and admission rules (the ConfigMap check wants a profile; none here)
    assert [e for e in pipeline.static_checks(rendering) if "ConfigMap" not in e.path] == []
    items, _ = pipeline.parsed_objects(rendering)
    scaled = [i for i in items if i.obj["kind"] == "ScaledObject"]
    assert len(scaled) == len(plan.pool_names) and all(checks.schema_errors(i) == [] for i in scaled)
    out = {}
    for f in rendering.by_role(pipeline.ROLE_OBJECT):
        doc = yaml.safe_load(f.text)
        if doc["kind"] == "ScaledObject":
            out[doc["metadata"]["labels"]["dynplan.io/pool"]] = doc
    return out


# -- defaults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("startup, period", [(120, 120), (0, 15), (7, 15), (600, 600), (3600, 1800)])
def test_default_scale_down_is_half_a_pool_per_start_up(startup: int, period: int) -> None:
    plan = Plan.model_validate(plan_doc(startupSeconds=startup))
    so = rendered_scaled_objects(plan)["decode"]
    behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"] == {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": period}],
    }
    assert behavior["scaleUp"] == {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 16, "periodSeconds": 15}],
    }
    assert errors(plan_doc(startupSeconds=startup)) == []


def test_default_never_takes_a_pool_to_zero_in_one_period() -> None:
    down = objects.behavior(Plan.model_validate(plan_doc()), Plan.model_validate(plan_doc()).pool("decode")).scale_down
    spec = tuple(ScalingPolicySpec.model_validate({"type": p.type, "value": p.value, "periodSeconds": p.period_seconds}) for p in down.policies)
    kept = {k: scale_down_limit_one_period(k, spec, down.select_policy) for k in range(2, 10001)}
    assert min(kept.values()) == 1 and kept[2] == 1 and kept[3] == 1 and kept[16] == 8 and kept[10000] == 5000


# -- the plan fields and their validation ---------------------------------------------------------


def test_plan_policies_are_rendered_for_every_pool_and_pass_the_crd_schema() -> None:
    keda = {
        "scaleDownPolicies": [{"type": "Pods", "value": 1, "periodSeconds": 60}, {"type": "Percent", "value": 25, "periodSeconds": 300}],
        "scaleDownSelectPolicy": "Min",
        "scaleUpPolicies": [{"type": "Percent", "value": 100, "periodSeconds": 30}, {"type": "Pods", "value": 4, "periodSeconds": 30}],
        "scaleUpSelectPolicy": "Max",
    }
    plan = Plan.model_validate(plan_doc(keda))
    assert errors(plan_doc(keda)) == []
    for pool, so in rendered_scaled_objects(plan).items():
        behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["selectPolicy"] == "Min"
        assert behavior["scaleDown"]["policies"] == keda["scaleDownPolicies"]
        assert behavior["scaleUp"]["policies"] == keda["scaleUpPolicies"]
        # the simulator reads the renderer's values: from the view and from the YAML alike
        assert config_from_scaled_object(so) == config_from_plan(plan, pool)
        assert config_from_plan(plan, pool).hpa.behavior == behavior_from_rendered(objects.behavior(plan, plan.pool(pool)))
        assert config_from_plan(plan, pool).hpa.behavior.scale_down == ScalingRules(  # type: ignore[union-attr]
            0, "Min", (ScalingPolicy("Pods", 1, 60), ScalingPolicy("Percent", 25, 300))
        )


# -- the simulator with the rendered policies -----------------------------------------------------


def drain(plan: Plan, pool: str, start: int, answer: float, seconds: float, active_until: float = -1.0) -> list[tuple[float, int]]:
    """The replicas spec after each poll and sync while the scaler answers `answer` (active
    until `active_until`), from `start` replicas."""
    path = ActuationPath(config_from_plan(plan, pool), start)
    changes = [(0.0, start)]

    def reading(t: float) -> ScalerReading:
        return ScalerReading(float(start) if t <= active_until else answer, active=t <= active_until or answer > 0)

    t = 0.0
    while t <= seconds:
        t = path.next_event_time()
        replicas = path.advance(t, reading)
        if replicas != changes[-1][1]:
            changes.append((t, replicas))
    return changes


def test_simulated_pool_loses_at_most_half_per_start_up() -> None:
    plan = Plan.model_validate(plan_doc(startupSeconds=120))
    changes = drain(plan, "decode", 16, 1.0, 900)
    # 16 -> 8 at the first sync, then one halving per start-up
    assert changes == [(0.0, 16), (0.0, 8), (120.0, 4), (240.0, 2), (360.0, 1)]
    for i, (t0, r0) in enumerate(changes):
        for t1, r1 in changes[i:]:
            if t1 - t0 < 120:
                assert r1 >= max(r0 // 2, 1), (t0, r0, t1, r1)


def test_simulated_pool_before_the_change_lost_everything_in_one_sync() -> None:
    # the behaviour rendered before: one Pods policy as large as maxReplicas per 15 s
    old = {"scaleDownPolicies": [{"type": "Pods", "value": 16, "periodSeconds": 15}]}
    plan = Plan.model_validate(plan_doc(old))
    assert errors(plan_doc(old)) != []  # refused now
    assert drain(plan, "decode", 16, 1.0, 900) == [(0.0, 16), (0.0, 1)]


@pytest.mark.parametrize("cooldown, last_step", [(300, (2, 0)), (600, (1, 0))])
def test_keda_scale_to_zero_bypasses_the_policies(cooldown: int, last_step: tuple[int, int]) -> None:
    # minReplicas 0: the HPA drains 16 -> 1 in 360 s; KEDA sets 0 after cooldownPeriodSeconds
    # of inactivity from whatever count is left (docs/plan-spec.md, Safe scale-down)
    doc = plan_doc({"cooldownPeriodSeconds": cooldown}, minReplicas=0)
    plan = Plan.model_validate(doc)
    changes = drain(plan, "decode", 16, 0.0, 1200, active_until=0.0)
    steps = [(a[1], b[1]) for a, b in zip(changes, changes[1:])]
    assert steps[-1] == last_step
    assert changes[-1][1] == 0
