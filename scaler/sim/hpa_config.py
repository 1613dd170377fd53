"""An HPA's configuration as the controller sees it: the `spec.behavior` rules after the API
server's defaulting, the kube-controller-manager flags, and one External AverageValue target.

Frozen values, validated as the API server validates them; the algorithm that reads them is
`scaler.sim.hpa`. Defaulting [kubernetes pkg/apis/autoscaling/v2/defaults.go]: with
`spec.behavior` set, the API server fills unset fields per direction: scaleUp window 0,
selectPolicy Max, policies `Pods 4 / 15 s` and `Percent 100 / 15 s`; scaleDown selectPolicy Max,
policy `Percent 100 / 15 s`, window unset -> the controller's
`--horizontal-pod-autoscaler-downscale-stabilization` (default 300 s) [horizontal.go
maybeInitScaleDownStabilizationWindow]. Without `spec.behavior` nothing is filled: the
controller takes its legacy path (`HpaConfig.effective_behavior` is None).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Optional

from scaler.render import objects
from scaler.sim.keda import SCALER_TARGET, keda_metric_milli

SelectPolicy = Literal["Max", "Min", "Disabled"]
PolicyType = Literal["Pods", "Percent"]

# kube-controller-manager defaults (pkg/controller/podautoscaler/config/v1alpha1/defaults.go).
HPA_SYNC_PERIOD_SECONDS = 15.0
HPA_DOWNSCALE_STABILIZATION_SECONDS = 300
HPA_TOLERANCE = 0.1


@dataclass(frozen=True)
class ScalingPolicy:
    """One `HPAScalingPolicy`: at most `value` pods (or percent) per `period_seconds`."""

    type: PolicyType
    value: int
    period_seconds: int

    def __post_init__(self) -> None:
        if self.type not in ("Pods", "Percent"):
            raise ValueError(f"policy type must be Pods or Percent, got {self.type!r}")
        if self.value <= 0:
            raise ValueError(f"policy value must be > 0, got {self.value}")
        if not 0 < self.period_seconds <= 1800:
            raise ValueError(f"policy periodSeconds must be in (0, 1800], got {self.period_seconds}")


@dataclass(frozen=True)
class ScalingRules:
    """One direction of `HorizontalPodAutoscalerBehavior`; None = unset (the API fills it)."""

    stabilization_window_seconds: Optional[int] = None
    select_policy: Optional[SelectPolicy] = None
    policies: Optional[tuple[ScalingPolicy, ...]] = None
    tolerance: Optional[float] = None

    def __post_init__(self) -> None:
        if self.stabilization_window_seconds is not None and not 0 <= self.stabilization_window_seconds <= 3600:
            raise ValueError(f"stabilizationWindowSeconds must be in [0, 3600], got {self.stabilization_window_seconds}")
        if self.select_policy is not None and self.select_policy not in ("Max", "Min", "Disabled"):
            raise ValueError(f"selectPolicy must be Max, Min or Disabled, got {self.select_policy!r}")
        if self.tolerance is not None and not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")


@dataclass(frozen=True)
class Behavior:
    """`spec.behavior` of an HPA (KEDA: `advanced.horizontalPodAutoscalerConfig.behavior`)."""

    scale_up: Optional[ScalingRules] = None
    scale_down: Optional[ScalingRules] = None


# pkg/apis/autoscaling/v2/defaults.go: defaultHPAScaleUpRules / defaultHPAScaleDownRules.
DEFAULT_SCALE_UP_RULES = ScalingRules(
    stabilization_window_seconds=0,
    select_policy="Max",
    policies=(ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)),
)
DEFAULT_SCALE_DOWN_RULES = ScalingRules(
    stabilization_window_seconds=None,  # the controller's --horizontal-pod-autoscaler-downscale-stabilization
    select_policy="Max",
    policies=(ScalingPolicy("Percent", 100, 15),),
)


def defaulted_rules(rules: Optional[ScalingRules], defaults: ScalingRules) -> ScalingRules:
    """The API server's defaulting of one direction (copyHPAScalingRules): set fields win."""
    if rules is None:
        return defaults
    return ScalingRules(
        stabilization_window_seconds=(
            rules.stabilization_window_seconds
            if rules.stabilization_window_seconds is not None
            else defaults.stabilization_window_seconds
        ),
        select_policy=rules.select_policy if rules.select_policy is not None else defaults.select_policy,
        policies=rules.policies if rules.policies is not None else defaults.policies,
        tolerance=rules.tolerance if rules.tolerance is not None else defaults.tolerance,
    )


def defaulted_behavior(behavior: Behavior) -> Behavior:
    """SetDefaults_HorizontalPodAutoscalerBehavior: both directions fully set (scale-down window may stay unset)."""
    return Behavior(
        scale_up=defaulted_rules(behavior.scale_up, DEFAULT_SCALE_UP_RULES),
        scale_down=defaulted_rules(behavior.scale_down, DEFAULT_SCALE_DOWN_RULES),
    )


def _policy_type(value: str) -> PolicyType:
    if value == "Pods":
        return "Pods"
    if value == "Percent":
        return "Percent"
    raise ValueError(f"policy type must be Pods or Percent, got {value!r}")


def _select_policy(value: str) -> SelectPolicy:
    if value == "Max":
        return "Max"
    if value == "Min":
        return "Min"
    if value == "Disabled":
        return "Disabled"
    raise ValueError(f"selectPolicy must be Max, Min or Disabled, got {value!r}")


def rules_from_rendered(rules: objects.Rules) -> ScalingRules:
    """One direction exactly as `templates/scaledobject.yaml.j2` renders it (every field set)."""
    return ScalingRules(
        stabilization_window_seconds=rules.stabilization_window,
        select_policy=_select_policy(rules.select_policy),
        policies=tuple(ScalingPolicy(_policy_type(p.type), p.value, p.period_seconds) for p in rules.policies),
        tolerance=rules.tolerance,
    )


def behavior_from_rendered(behavior: objects.Behavior) -> Behavior:
    """The HPA behaviour of a rendered ScaledObject: the renderer's values, the one source of truth."""
    return Behavior(scale_up=rules_from_rendered(behavior.scale_up), scale_down=rules_from_rendered(behavior.scale_down))


@dataclass(frozen=True)
class ControllerSettings:
    """kube-controller-manager flags and feature gates that shape every HPA."""

    sync_period_seconds: float = HPA_SYNC_PERIOD_SECONDS
    downscale_stabilization_seconds: int = HPA_DOWNSCALE_STABILIZATION_SECONDS
    tolerance: float = HPA_TOLERANCE
    # HPAConfigurableTolerance: alpha (off) in 1.33, beta (on by default) afterwards. Off means
    # behavior.*.tolerance is ignored and the cluster tolerance applies in both directions.
    configurable_tolerance: bool = True

    def __post_init__(self) -> None:
        if not self.sync_period_seconds > 0:
            raise ValueError(f"sync period must be > 0, got {self.sync_period_seconds}")
        if self.downscale_stabilization_seconds < 0:
            raise ValueError(f"downscale stabilization must be >= 0, got {self.downscale_stabilization_seconds}")
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")


@dataclass(frozen=True)
class HpaConfig:
    """One HPA: an External metric with an AverageValue target."""

    min_replicas: int
    max_replicas: int
    behavior: Optional[Behavior] = None
    target_average_value: float = SCALER_TARGET
    controller: ControllerSettings = field(default_factory=ControllerSettings)

    def __post_init__(self) -> None:
        if self.min_replicas < 1:
            raise ValueError(f"HPA minReplicas must be >= 1 (KEDA sets max(minReplicaCount, 1)), got {self.min_replicas}")
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas {self.max_replicas} < minReplicas {self.min_replicas}")
        if keda_metric_milli(self.target_average_value) <= 0:
            raise ValueError(f"target must be at least 0.001, got {self.target_average_value}")

    @property
    def target_milli(self) -> int:
        return keda_metric_milli(self.target_average_value)

    @property
    def effective_behavior(self) -> Optional[Behavior]:
        """The behaviour after API defaulting and the controller's scale-down window, or None (legacy path)."""
        if self.behavior is None:
            return None
        b = defaulted_behavior(self.behavior)
        assert b.scale_up is not None and b.scale_down is not None
        if b.scale_down.stabilization_window_seconds is None:
            b = replace(
                b,
                scale_down=replace(
                    b.scale_down, stabilization_window_seconds=self.controller.downscale_stabilization_seconds
                ),
            )
        return b
