"""What gets rendered for one plan, as plain values (no YAML, no templates).

The policies a KEDA operator would ask about live here, each in one function:
polling interval, fallback replicas, HPA behaviour. The templates only lay the values out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional

import yaml

from scaler import naming
from scaler.core.plan import MAX_POLICY_PERIOD_SECONDS, Plan, Pool, ScalingPolicySpec
from scaler.planfile import LoadedPlan
from scaler.render.rules import RuleGroup, rule_groups

# KEDA's own default; the planner decides on its own interval, so KEDA only needs to ask
# often enough to notice a new decision.
DEFAULT_POLLING_SECONDS = 15
# The scale-up period: with a Pods policy as large as maxReplicas the planner's whole jump
# up is allowed in one step (one HPA sync).
POLICY_PERIOD_SECONDS = 15
# The default scale-down: at most this percent of a pool's replicas per start-up time (the
# period: the pool's startupSeconds within the HPA's 15..1800 s). Kubernetes truncates
# `start * (1 - 50/100)`, so from k >= 2 replicas one period keeps floor(k/2) >= 1.
SCALE_DOWN_PERCENT = 50


@dataclass(frozen=True)
class TargetRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Policy:
    """One `HPAScalingPolicy`: `Pods` or `Percent`, its value, its period."""

    type: str
    value: int
    period_seconds: int


@dataclass(frozen=True)
class Rules:
    """One direction of the HPA behaviour, every field rendered (nothing left to API defaulting)."""

    stabilization_window: int
    select_policy: str
    policies: tuple[Policy, ...]
    tolerance: Optional[float]


@dataclass(frozen=True)
class Behavior:
    scale_up: Rules
    scale_down: Rules


@dataclass(frozen=True)
class Fallback:
    failure_threshold: int
    behavior: str
    replicas: int


@dataclass(frozen=True)
class ScaledObjectView:
    plan: str
    pool: str
    name: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    target: TargetRef
    min_replicas: int
    max_replicas: int
    polling_interval: int
    cooldown_period: int
    fallback: Fallback
    behavior: Behavior
    trigger_type: str
    trigger_name: str
    metric_type: str
    use_cached_metrics: bool
    metadata: tuple[tuple[str, str], ...]

    @property
    def hpa_name(self) -> str:
        return naming.hpa_name(self.plan, self.pool)

    @property
    def metric_name(self) -> str:
        """The scaler's metric for this pool (KEDA prefixes s<trigger index>- in the HPA)."""
        return naming.metric_name(self.plan, self.pool)


@dataclass(frozen=True)
class PrometheusRuleView:
    name: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    groups: tuple[RuleGroup, ...]


@dataclass(frozen=True)
class ConfigMapView:
    name: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    key: str
    content: str


@dataclass(frozen=True)
class PlanObjects:
    """Everything rendered for one plan."""

    loaded: LoadedPlan
    scaled_objects: tuple[ScaledObjectView, ...]
    prometheus_rule: PrometheusRuleView
    configmap: ConfigMapView

    @property
    def plan(self) -> Plan:
        return self.loaded.plan


def polling_interval(plan: Plan) -> int:
    """spec.keda.pollingIntervalSeconds, else 15 s, shortened to the shortest enabled decision interval."""
    explicit = plan.spec.keda.polling_interval_seconds
    if explicit is not None:
        return explicit
    candidates = [DEFAULT_POLLING_SECONDS]
    if plan.spec.scaling.throughput.enabled:
        candidates.append(plan.spec.scaling.throughput.interval_seconds)
    if plan.spec.scaling.load.enabled:
        candidates.append(plan.spec.scaling.load.interval_seconds)
    return min(candidates)


def fallback(plan: Plan, pool: Pool) -> Fallback:
    """spec.keda.fallback; replicas default to max(minReplicas, 1), so an outage never scales to zero.

    With the default behaviour `currentReplicasIfHigher` KEDA holds the current count when the
    scaler fails (it never scales down on an error); `static` would jump to `replicas`.
    """
    fb = plan.spec.keda.fallback
    replicas = fb.replicas if fb.replicas is not None else max(pool.min_replicas, 1)
    return Fallback(failure_threshold=fb.failure_threshold, behavior=fb.behavior, replicas=replicas)


def scale_down_period(pool: Pool) -> int:
    """The default scale-down period: the pool's start-up time, within 15 s (one HPA sync)
    and 1800 s (the API's maximum)."""
    return min(max(pool.startup_seconds, POLICY_PERIOD_SECONDS), MAX_POLICY_PERIOD_SECONDS)


def behavior(plan: Plan, pool: Pool) -> Behavior:
    """The HPA behaviour: the planner's jumps up at once, its scale-downs at a safe rate.

    Scale-up: one Pods policy as large as maxReplicas per 15 s, so any jump happens in one
    step. Scale-down: at most half the pool per start-up time (`SCALE_DOWN_PERCENT` per
    `scale_down_period`), so a scale-down the planner gets wrong (a dip, a bad window) costs
    at most half the capacity before replacements could be serving, and a pool of k replicas
    needs ceil(log2 k) start-ups to reach one. `spec.keda.scale{Up,Down}Policies` and
    `...SelectPolicy` replace these (validated by `core.plan.semantic_errors`).
    Stabilisation windows come from the plan (default 0: the planner already smooths, and
    the HPA's default 300 s scale-down window would delay every scale-down by five minutes).
    `tolerance` is set per direction only when the plan asks (Kubernetes >= 1.33 with the
    HPAConfigurableTolerance feature gate); otherwise the cluster default of 10% applies.
    """
    k = plan.spec.keda

    def policies(spec: Optional[tuple[ScalingPolicySpec, ...]], default: Policy) -> tuple[Policy, ...]:
        if spec is None:
            return (default,)
        return tuple(Policy(p.type, p.value, p.period_seconds) for p in spec)

    up = Policy("Pods", max(pool.max_replicas, 1), POLICY_PERIOD_SECONDS)
    down = Policy("Percent", SCALE_DOWN_PERCENT, scale_down_period(pool))
    return Behavior(
        scale_up=Rules(k.scale_up_stabilization_seconds, k.scale_up_select_policy, policies(k.scale_up_policies, up), k.tolerance),
        scale_down=Rules(
            k.scale_down_stabilization_seconds,
            k.scale_down_select_policy,
            policies(k.scale_down_policies, down),
            k.tolerance,
        ),
    )


def _labels(plan: Plan, extra: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    merged = dict(plan.metadata.labels)
    merged.update({naming.MANAGED_BY_LABEL: naming.MANAGED_BY, naming.PLAN_NAME_LABEL: plan.name})
    merged.update(extra)
    return tuple(sorted(merged.items()))


def scaled_object(plan: Plan, pool_name: str) -> ScaledObjectView:
    pool = plan.pool(pool_name)
    ref = pool.scale_target_ref
    k = plan.spec.keda
    metadata = (("plan", plan.name), ("pool", pool_name), ("scalerAddress", plan.spec.scaler.address))
    return ScaledObjectView(
        plan=plan.name,
        pool=pool_name,
        name=naming.scaled_object_name(plan.name, pool_name),
        namespace=plan.namespace,
        labels=_labels(plan, {naming.POOL_LABEL: pool_name}),
        annotations=tuple(sorted(plan.metadata.annotations.items())),
        target=TargetRef(ref.api_version, ref.kind, ref.name),
        min_replicas=pool.min_replicas,
        max_replicas=pool.max_replicas,
        polling_interval=polling_interval(plan),
        cooldown_period=k.cooldown_period_seconds,
        fallback=fallback(plan, pool),
        behavior=behavior(plan, pool),
        trigger_type=k.trigger_type,
        trigger_name=naming.trigger_name(pool_name),
        metric_type="AverageValue",
        use_cached_metrics=k.use_cached_metrics,
        metadata=metadata,
    )


def prometheus_rule(plan: Plan, groups: tuple[RuleGroup, ...]) -> PrometheusRuleView:
    return PrometheusRuleView(
        name=naming.rule_object_name(plan.name),
        namespace=plan.namespace,
        labels=_labels(plan, plan.spec.rules.labels),
        annotations=tuple(sorted(plan.metadata.annotations.items())),
        groups=groups,
    )


def inlined_plan_document(loaded: LoadedPlan) -> dict[str, Any]:
    """The plan as the scaler reads it from its flat plans directory.

    `spec.profile` (a path) is replaced by `spec.profileData` (Dynamo's JSON shape), so one
    file holds everything; fields the user did not set stay unset.
    """
    plan = loaded.plan
    doc = plan.model_dump(mode="json", by_alias=True, exclude_unset=True)
    doc["metadata"]["namespace"] = plan.namespace
    spec = doc["spec"]
    spec.pop("profile", None)
    spec.pop("profileData", None)
    if loaded.profile is not None:
        prefill, decode = loaded.profile.to_json_dicts()
        spec["profileData"] = {"prefill": prefill, "decode": decode}
    return doc


def _tidy(value: Any) -> Any:
    """Whole floats as ints (`200.0` -> `200`), as a user would write them; the plan model
    reads them back as the same floats."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _tidy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def inlined_profile_bytes_floor(loaded: LoadedPlan) -> int:
    """A lower bound on the bytes the profile adds to `plan_file_text`, without dumping YAML.

    Each array is written as a YAML flow sequence with the same numbers (shortest repr,
    whole floats as ints) and the same ", " separators as JSON, never shorter, so the JSON
    of the arrays alone (json is C code: milliseconds where YAML takes a minute) is a floor.
    """
    if loaded.profile is None:
        return 0
    total = 0
    for part in loaded.profile.to_json_dicts():
        for value in part.values():
            total += len(json.dumps(_tidy(value)))
    return total


def plan_file_text(loaded: LoadedPlan) -> str:
    """Deterministic YAML of the inlined plan (other floats in shortest round-trip form)."""
    return yaml.safe_dump(
        _tidy(inlined_plan_document(loaded)), sort_keys=False, default_flow_style=None, width=1 << 20, allow_unicode=True
    )


ConfigMapPlacement = Literal["plan", "scaler"]


def configmap_namespace(plan: Plan, scaler_namespace: str, placement: ConfigMapPlacement = "scaler") -> str:
    """The plan ConfigMap's namespace: spec.scaler.planConfigMapNamespace, else `placement`
    (render's --plan-configmap-namespace); "scaler" is spec.scaler.namespace, else
    `scaler_namespace` (render's --scaler-namespace)."""
    where = plan.spec.scaler.plan_config_map_namespace or placement
    if where == "plan":
        return plan.namespace
    return plan.spec.scaler.namespace or scaler_namespace


def configmap(loaded: LoadedPlan, scaler_namespace: str, placement: ConfigMapPlacement = "scaler") -> ConfigMapView:
    plan = loaded.plan
    namespace = configmap_namespace(plan, scaler_namespace, placement)
    labels = {
        naming.MANAGED_BY_LABEL: naming.MANAGED_BY,
        naming.APP_NAME_LABEL: naming.SCALER_APP_NAME,
        naming.COMPONENT_LABEL: "plan",
        naming.PLAN_CONFIGMAP_LABEL: "true",
        naming.PLAN_NAME_LABEL: plan.name,
        naming.PLAN_NAMESPACE_LABEL: plan.namespace,
    }
    return ConfigMapView(
        name=naming.plan_configmap_name(plan.namespace, plan.name),
        namespace=namespace,
        labels=tuple(sorted(labels.items())),
        key=naming.plan_file_name(plan.namespace, plan.name),
        content=plan_file_text(loaded),
    )


def build(loaded: LoadedPlan, scaler_namespace: str, placement: ConfigMapPlacement = "scaler") -> PlanObjects:
    """All objects for one valid plan."""
    plan = loaded.plan
    groups = rule_groups(plan, str(loaded.path))
    return PlanObjects(
        loaded=loaded,
        scaled_objects=tuple(scaled_object(plan, pool) for pool in plan.pool_names),
        prometheus_rule=prometheus_rule(plan, groups),
        configmap=configmap(loaded, scaler_namespace, placement),
    )
