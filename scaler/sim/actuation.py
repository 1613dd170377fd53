"""The actuation path of one pool: the scaler's desired replicas -> KEDA -> HPA -> the replicas spec.

Pure: no I/O, no clock. Time is a float in seconds passed in by the caller; every class keeps
only the state the real controllers keep in memory.

What happens, and what is cached where (verified against the sources named in brackets):

* **The scaler** (dynplan) answers `GetMetrics` with its latest decision for the pool,
  `metricValueFloat = metricValue = desired replicas`, and `GetMetricSpec` with
  `targetSizeFloat = 1` [scaler/service/servicer.py]. It decides on its own interval; this
  module takes "the scaler's answer at time t" as input (`ScalerReading`, `reading_at(t)`).
* **KEDA converts** the value to a quantity through `fmt.Sprintf("%.3f", v)`; NaN, +-Inf and
  negative values become 0 (`quantityFromFloat64`) [kedacore/keda pkg/scalers/scaler.go,
  pkg/scalers/external_scaler.go: the float is used when > 0, else the int]. The HPA reads
  `Quantity.MilliValue()` [kubernetes pkg/controller/podautoscaler/metrics/client.go]. So the
  HPA works in integer milli-units: `keda_metric_milli`.
* **KEDA's polling loop** runs every `spec.pollingInterval` (default 30 s, start to start:
  the timer is armed before the check) [keda pkg/scaling/scale_handler.go startScaleLoop]. Each
  poll calls GetMetricSpec, GetMetrics and IsActive, applies the fallback, and decides only the
  0 <-> 1 step (and "below minReplicaCount while inactive"): activation when IsActive is true
  and replicas are 0 (to max(minReplicaCount, 1)); scale to minReplicaCount (0) when inactive
  and `lastActiveTime + cooldownPeriod` is strictly past [keda pkg/scaling/executor/
  scale_scaledobjects.go RequestScale, scaleToZeroOrIdle, scaleFromZeroOrIdle]. With trigger
  `useCachedMetrics: true` the poll stores its (post-fallback) metric, activity and error in the
  operator's in-memory metrics cache [scale_handler.go checkScalers -> StoreRecords].
* **The HPA** syncs every `--horizontal-pod-autoscaler-sync-period` (default 15 s)
  [kubernetes pkg/controller/podautoscaler/config/v1alpha1/defaults.go]. Each sync asks the
  external metrics API -> keda-operator-metrics-apiserver, which caches nothing and forwards
  to the operator over gRPC [keda pkg/provider/provider.go GetExternalMetric] ->
  `GetScaledObjectMetrics` [scale_handler.go]: **without** `useCachedMetrics` the operator calls
  the scaler's GetMetrics live, so the HPA sees the scaler's decision *at the sync*; **with** it,
  the operator answers from the last poll's record (up to one pollingInterval old; live when no
  record exists yet). GetMetricSpec is called on every request either way (the target is
  constant here, so it is not modelled). The HPA does not query metrics at all while the
  target has 0 replicas ("ScalingDisabled", HPAScaleToZero is alpha) or while it is outside
  [minReplicas, maxReplicas] (it then just clamps) [kubernetes horizontal.go
  reconcileAutoscaler].
* **AverageValue, External** [kubernetes replica_calculator.go GetExternalPerPodMetricReplicas]:
  `usage` = sum of the milli-values, `ratio = usage / (targetMilli * status.replicas)`; if the
  ratio is inside the tolerance band the proposal is status.replicas, else
  `ceil(usage / targetMilli)` - the current count is used only for the tolerance test. The band
  is `1 - tolerance.scaleDown <= ratio <= 1 + tolerance.scaleUp` (`Tolerances.isWithin`); both
  default to `--horizontal-pod-autoscaler-tolerance` 0.1; `behavior.scaleUp/scaleDown.tolerance`
  override them when the `HPAConfigurableTolerance` gate is on [horizontal.go tolerancesForHpa].
  KEDA's HPA has `minReplicas = max(minReplicaCount, 1)`, `maxReplicas = maxReplicaCount`
  (default 100) and the ScaledObject's `advanced.horizontalPodAutoscalerConfig.behavior` as is
  (nil when absent) [keda apis/keda/v1alpha1/scaledobject_types.go, controllers/keda/hpa.go].
* **Behaviour** (`spec.behavior` set) [horizontal.go normalizeDesiredReplicasWithBehaviors]:
  the API server first fills unset fields per direction: scaleUp window 0, selectPolicy Max,
  policies `Pods 4 / 15 s` and `Percent 100 / 15 s`; scaleDown selectPolicy Max, policy
  `Percent 100 / 15 s`, window unset -> the controller's
  `--horizontal-pod-autoscaler-downscale-stabilization` (default 300 s)
  [kubernetes pkg/apis/autoscaling/v2/defaults.go, horizontal.go
  maybeInitScaleDownStabilizationWindow]. Then:
  1. stabilisation: over the unstabilised proposals recorded in the last window,
     `up = min(proposal, recent within scaleUp window)`, `down = max(proposal, recent within
     scaleDown window)`, result `= clamp(current, up, down)`; the new proposal is recorded
     (before the min/max clamp). The first sync of an HPA records `current` as a proposal
     (recordInitialRecommendation), so a fresh HPA cannot scale down inside its first window.
  2. rate: going up, limit = policy proposals from `periodStart = current - added + deleted`
     within each policy's periodSeconds (`Pods: start + value`, `Percent: ceil(start * (1 +
     value/100))`), combined with max (`Max`) or min (`Min`); `Disabled` = current. Going down,
     `Pods: start - value`, `Percent: int(start * (1 - value/100))` (truncated), combined with
     min (`Max`) or max (`Min`). Then clamp to [minReplicas, maxReplicas]
     [calculateScaleUpLimitWithScalingRules, calculateScaleDownLimitWithBehaviors,
     convertDesiredReplicasWithBehaviorRate]. Scale events are stored only on a real rescale.
* **No behaviour** (`spec.behavior` nil, i.e. a ScaledObject without
  `horizontalPodAutoscalerConfig.behavior`) takes the legacy path, which is *not* the same as the
  defaulted behaviour: stabilisation = max over the downscale window (300 s) only, and the
  scale-up limit is `max(2 * current, 4)` per sync with no event history [horizontal.go
  normalizeDesiredReplicas, convertDesiredReplicasWithRules, calculateScaleUpLimit].
* **Fallback** [keda pkg/fallback/fallback.go GetMetricsWithFallback, doFallback]: with
  `spec.fallback`, every GetMetrics result on *either* path (poll or HPA request) updates one
  failure counter per metric: a success resets it, an error increments it; once it is
  `> failureThreshold` KEDA answers `int64(target * 1000 * replicas)` milli instead of the error,
  with replicas = `fallback.replicas` (static), the target's spec replicas (currentReplicas),
  or their max / min (currentReplicasIfHigher / IfLower), and the trigger counts as active.
  Before that, or without a fallback section, the HPA gets an error and keeps the current count.

Timing convention: a recommendation or scale event exactly one window/period old is *outside*
it. In the controller each resync is queued a full period after the previous reconcile
*finished*, so on a 15 s cadence the sample from "15 s ago" is always a little older than 15 s;
the grid times used here would otherwise sit exactly on the Go `After(cutoff)` boundary.

Not modelled: several triggers or metrics (the HPA takes the max proposal), `Value` metric
type, `scalingModifiers`, `idleReplicaCount`, pause annotations, external-push activation
(StreamIsActive true triggers an immediate poll; it only speeds up 0 -> 1), KEDA's
refresh-and-retry inside one call (an error here is an error that persisted through it), the
HPAScaleToZero gate, and kube-controller-manager restarts (which drop the HPA's in-memory
recommendations and events).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

from scaler.core.plan import Plan
from scaler.render import objects

SelectPolicy = Literal["Max", "Min", "Disabled"]
PolicyType = Literal["Pods", "Percent"]
FallbackBehavior = Literal["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"]
EventSource = Literal["keda-poll", "hpa-sync"]

# kube-controller-manager defaults (pkg/controller/podautoscaler/config/v1alpha1/defaults.go).
HPA_SYNC_PERIOD_SECONDS = 15.0
HPA_DOWNSCALE_STABILIZATION_SECONDS = 300
HPA_TOLERANCE = 0.1
# KEDA ScaledObject defaults (apis/keda/v1alpha1).
KEDA_POLLING_INTERVAL_SECONDS = 30
KEDA_COOLDOWN_PERIOD_SECONDS = 300
KEDA_MAX_REPLICA_COUNT = 100
# dynplan's GetMetricSpec target (scaler/service/servicer.py TARGET): one unit = one replica.
SCALER_TARGET = 1.0

_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)
# A sample this close to a window's cutoff counts as outside the window (see the docstring).
_EDGE_SECONDS = 1e-6
_FALLBACK_BEHAVIORS = ("static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower")


# -- configuration --------------------------------------------------------------------------


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


@dataclass(frozen=True)
class FallbackConfig:
    """ScaledObject `spec.fallback`."""

    failure_threshold: int
    replicas: int
    behavior: FallbackBehavior = "static"

    def __post_init__(self) -> None:
        if self.failure_threshold < 0 or self.replicas < 0:
            raise ValueError("fallback failureThreshold and replicas must be >= 0")
        if self.behavior not in _FALLBACK_BEHAVIORS:
            raise ValueError(f"unsupported fallback behavior {self.behavior!r}")


@dataclass(frozen=True)
class KedaConfig:
    """The ScaledObject fields that decide when the scaler is asked and what KEDA does itself."""

    polling_interval_seconds: float = KEDA_POLLING_INTERVAL_SECONDS
    use_cached_metrics: bool = False
    min_replica_count: int = 0
    max_replica_count: int = KEDA_MAX_REPLICA_COUNT
    cooldown_period_seconds: float = KEDA_COOLDOWN_PERIOD_SECONDS
    initial_cooldown_period_seconds: float = 0.0
    fallback: Optional[FallbackConfig] = None
    target_value: float = SCALER_TARGET

    def __post_init__(self) -> None:
        if not self.polling_interval_seconds > 0:
            raise ValueError(f"pollingInterval must be > 0, got {self.polling_interval_seconds}")
        if self.min_replica_count < 0 or self.max_replica_count < max(self.min_replica_count, 1):
            raise ValueError(
                f"need 0 <= minReplicaCount <= maxReplicaCount, got {self.min_replica_count}, {self.max_replica_count}"
            )


@dataclass(frozen=True)
class ActuationConfig:
    keda: KedaConfig
    hpa: HpaConfig


# -- arithmetic -------------------------------------------------------------------------------


def keda_metric_milli(value: float) -> int:
    """KEDA's quantityFromFloat64 then Quantity.MilliValue(): `"%.3f"` (round to nearest), bad values 0."""
    if math.isnan(value) or math.isinf(value) or value < 0:
        return 0
    return int(Decimal(format(value, ".3f")) * 1000)


@dataclass(frozen=True)
class Tolerances:
    scale_down: float
    scale_up: float

    def is_within(self, ratio: float) -> bool:
        """`(1 - scaleDown) <= ratio <= (1 + scaleUp)`; NaN is never within (as in Go)."""
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


def tolerances_for(config: HpaConfig) -> Tolerances:
    """tolerancesForHpa: the cluster tolerance, overridden per direction by behavior.*.tolerance."""
    t = config.controller.tolerance
    down, up = t, t
    b = config.behavior
    if b is not None and config.controller.configurable_tolerance:
        if b.scale_down is not None and b.scale_down.tolerance is not None:
            down = b.scale_down.tolerance
        if b.scale_up is not None and b.scale_up.tolerance is not None:
            up = b.scale_up.tolerance
    return Tolerances(scale_down=down, scale_up=up)


def average_value_replicas(usage_milli: int, target_milli: int, status_replicas: int, tolerances: Tolerances) -> int:
    """GetExternalPerPodMetricReplicas: the proposal for an External metric with an AverageValue target."""
    denominator = float(target_milli) * float(status_replicas)
    if denominator == 0.0:
        ratio = math.inf if usage_milli > 0 else math.nan  # Go float division by zero
    else:
        ratio = float(usage_milli) / denominator
    if tolerances.is_within(ratio):
        return status_replicas
    proposal = math.ceil(float(usage_milli) / float(target_milli))
    return min(proposal, _INT32_MAX)


@dataclass
class _ScaleEvent:
    replica_change: int  # absolute value
    timestamp: float
    outdated: bool = False


@dataclass
class _Recommendation:
    recommendation: int
    timestamp: float


def _inside(timestamp: float, cutoff: float) -> bool:
    """Go `timestamp.After(cutoff)`, with a sample on the cutoff counted as outside."""
    return timestamp > cutoff + _EDGE_SECONDS


def _change_in_period(now: float, period_seconds: int, events: Sequence[_ScaleEvent]) -> int:
    """getReplicasChangePerPeriod (counts outdated-but-not-replaced events too, as Go does)."""
    cutoff = now - period_seconds
    return sum(e.replica_change for e in events if _inside(e.timestamp, cutoff))


def scale_up_limit(
    now: float, current: int, up_events: Sequence[_ScaleEvent], down_events: Sequence[_ScaleEvent], rules: ScalingRules
) -> int:
    """calculateScaleUpLimitWithScalingRules."""
    assert rules.select_policy is not None and rules.policies is not None
    if rules.select_policy == "Disabled":
        return current
    pick: Callable[[int, int], int]
    if rules.select_policy == "Min":
        result, pick = _INT32_MAX, min
    else:
        result, pick = _INT32_MIN, max
    for policy in rules.policies:
        start = current - _change_in_period(now, policy.period_seconds, up_events) + _change_in_period(
            now, policy.period_seconds, down_events
        )
        if policy.type == "Pods":
            proposed = start + policy.value
        else:
            proposed = math.ceil(float(start) * (1 + float(policy.value) / 100))
        result = pick(result, proposed)
    return result


def scale_down_limit(
    now: float, current: int, up_events: Sequence[_ScaleEvent], down_events: Sequence[_ScaleEvent], rules: ScalingRules
) -> int:
    """calculateScaleDownLimitWithBehaviors."""
    assert rules.select_policy is not None and rules.policies is not None
    if rules.select_policy == "Disabled":
        return current
    pick: Callable[[int, int], int]
    if rules.select_policy == "Min":
        result, pick = _INT32_MIN, max
    else:
        result, pick = _INT32_MAX, min
    for policy in rules.policies:
        start = current - _change_in_period(now, policy.period_seconds, up_events) + _change_in_period(
            now, policy.period_seconds, down_events
        )
        if policy.type == "Pods":
            proposed = start - policy.value
        else:
            proposed = int(float(start) * (1 - float(policy.value) / 100))  # Go int32(): truncation
        result = pick(result, proposed)
    return result


def legacy_scale_up_limit(current: int) -> int:
    """calculateScaleUpLimit, the no-behaviour path: max(2 * current, 4)."""
    return int(max(2.0 * current, 4.0))


# -- the HPA ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HpaSync:
    """What one sync saw and did."""

    time: float
    current_replicas: int
    metric_value: Optional[float]
    proposal: Optional[int]  # the metric's proposal (None: no metric computed)
    stabilized: Optional[int]  # after the stabilisation window (None: no metric computed)
    desired: int  # the replicas spec after this sync
    reason: str


class HpaController:
    """One HPA's sync loop state: recommendations (stabilisation) and scale events (policies)."""

    def __init__(self, config: HpaConfig) -> None:
        self.config = config
        self._behavior = config.effective_behavior
        self._tolerances = tolerances_for(config)
        self._recommendations: Optional[list[_Recommendation]] = None
        self._up_events: list[_ScaleEvent] = []
        self._down_events: list[_ScaleEvent] = []
        self.last: Optional[HpaSync] = None

    def computes_metrics(self, current_replicas: int) -> bool:
        """Whether a sync at this replica count asks the metrics API at all."""
        return 0 < current_replicas and self.config.min_replicas <= current_replicas <= self.config.max_replicas

    def step(
        self, now: float, metric_value: Optional[float], current_replicas: int, status_replicas: Optional[int] = None
    ) -> int:
        """One sync: the replicas spec after it. `metric_value` None = the metrics API returned an error."""
        return self.sync(now, metric_value, current_replicas, status_replicas).desired

    def sync(
        self, now: float, metric_value: Optional[float], current_replicas: int, status_replicas: Optional[int] = None
    ) -> HpaSync:
        """reconcileAutoscaler for one HPA with one External AverageValue metric.

        `current_replicas` is the target's spec replicas; `status_replicas` its status.replicas
        (the pods that exist), used only in the tolerance ratio; default: equal to the spec.
        """
        cfg = self.config
        if current_replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {current_replicas}")
        if self._recommendations is None:  # recordInitialRecommendation
            self._recommendations = [_Recommendation(current_replicas, now)]
        proposal: Optional[int] = None
        stabilized: Optional[int] = None
        if current_replicas == 0:
            result = HpaSync(now, 0, metric_value, None, None, 0, "ScalingDisabled")
            self.last = result
            return result
        if current_replicas > cfg.max_replicas:
            desired, reason = cfg.max_replicas, "AboveMaxReplicas"
        elif current_replicas < cfg.min_replicas:
            desired, reason = cfg.min_replicas, "BelowMinReplicas"
        elif metric_value is None:
            result = HpaSync(now, current_replicas, None, None, None, current_replicas, "FailedGetExternalMetric")
            self.last = result
            return result
        else:
            status = current_replicas if status_replicas is None else status_replicas
            proposal = average_value_replicas(keda_metric_milli(metric_value), cfg.target_milli, status, self._tolerances)
            if self._behavior is None:
                stabilized = self._stabilize_legacy(now, proposal)
                desired = _convert_with_rules(current_replicas, stabilized, cfg.min_replicas, cfg.max_replicas)
            else:
                stabilized = self._stabilize_with_behaviors(now, current_replicas, proposal)
                desired = self._convert_with_behavior_rate(now, current_replicas, stabilized)
            reason = "Computed"
        if desired != current_replicas:
            self._store_scale_event(now, current_replicas, desired)
        result = HpaSync(now, current_replicas, metric_value, proposal, stabilized, desired, reason)
        self.last = result
        return result

    # -- stabilisation ---------------------------------------------------------------------
    def _record(self, index: Optional[int], proposal: int, now: float) -> None:
        assert self._recommendations is not None
        rec = _Recommendation(proposal, now)
        if index is None:
            self._recommendations.append(rec)
        else:
            self._recommendations[index] = rec

    def _stabilize_legacy(self, now: float, proposal: int) -> int:
        """stabilizeRecommendation: max over the controller's downscale window."""
        assert self._recommendations is not None
        cutoff = now - self.config.controller.downscale_stabilization_seconds
        best, old = proposal, None
        for i, rec in enumerate(self._recommendations):
            if not _inside(rec.timestamp, cutoff):
                old = i
            elif rec.recommendation > best:
                best = rec.recommendation
        self._record(old, proposal, now)
        return best

    def _stabilize_with_behaviors(self, now: float, current: int, proposal: int) -> int:
        """stabilizeRecommendationWithBehaviors."""
        assert self._behavior is not None and self._recommendations is not None
        up_rules, down_rules = self._behavior.scale_up, self._behavior.scale_down
        assert up_rules is not None and down_rules is not None
        assert up_rules.stabilization_window_seconds is not None and down_rules.stabilization_window_seconds is not None
        up_cutoff = now - up_rules.stabilization_window_seconds
        down_cutoff = now - down_rules.stabilization_window_seconds
        up, down, old = proposal, proposal, None
        for i, rec in enumerate(self._recommendations):
            in_up, in_down = _inside(rec.timestamp, up_cutoff), _inside(rec.timestamp, down_cutoff)
            if in_up:
                up = min(rec.recommendation, up)
            if in_down:
                down = max(rec.recommendation, down)
            if not in_up and not in_down:
                old = i
        recommendation = current
        if recommendation < up:
            recommendation = up
        if recommendation > down:
            recommendation = down
        self._record(old, proposal, now)
        return recommendation

    # -- rate limits -----------------------------------------------------------------------
    def _convert_with_behavior_rate(self, now: float, current: int, desired: int) -> int:
        """convertDesiredReplicasWithBehaviorRate: policies, then [min, max]."""
        assert self._behavior is not None
        cfg = self.config
        if desired > current:
            assert self._behavior.scale_up is not None
            limit = max(scale_up_limit(now, current, self._up_events, self._down_events, self._behavior.scale_up), current)
            return min(desired, min(cfg.max_replicas, limit))
        if desired < current:
            assert self._behavior.scale_down is not None
            limit = min(scale_down_limit(now, current, self._up_events, self._down_events, self._behavior.scale_down), current)
            return max(desired, max(cfg.min_replicas, limit))
        return desired

    def _store_scale_event(self, now: float, previous: int, new: int) -> None:
        """storeScaleEvent: only with a behaviour; reuses the last event older than the longest period."""
        if self._behavior is None:
            return
        if new > previous:
            events, rules, change = self._up_events, self._behavior.scale_up, new - previous
        else:
            events, rules, change = self._down_events, self._behavior.scale_down, previous - new
        assert rules is not None and rules.policies is not None
        longest = max((p.period_seconds for p in rules.policies), default=0)
        cutoff = now - longest
        old = None
        for i, event in enumerate(events):
            if not _inside(event.timestamp, cutoff):  # markScaleEventsOutdated
                event.outdated = True
            if event.outdated:
                old = i
        new_event = _ScaleEvent(change, now)
        if old is None:
            events.append(new_event)
        else:
            events[old] = new_event


def _convert_with_rules(current: int, desired: int, min_replicas: int, max_replicas: int) -> int:
    """convertDesiredReplicasWithRules (no behaviour)."""
    limit = legacy_scale_up_limit(current)
    maximum = limit if max_replicas > limit else max_replicas
    if desired < min_replicas:
        return min_replicas
    if desired > maximum:
        return maximum
    return desired


# -- KEDA -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalerReading:
    """The scaler's answer at one instant: GetMetrics value and IsActive, or an error."""

    value: Optional[float]  # None: GetMetrics (and so IsActive) failed
    active: bool = False

    @classmethod
    def error(cls) -> "ScalerReading":
        return cls(None, False)


@dataclass(frozen=True)
class _MetricsRecord:
    value: Optional[float]
    active: bool
    error: bool


class KedaScaledObject:
    """KEDA's operator state for one ScaledObject: fallback health, metric cache, lastActiveTime."""

    def __init__(self, config: KedaConfig, created_at: float = 0.0) -> None:
        self.config = config
        self.created_at = created_at
        self.failures = 0
        self.last_active_time: Optional[float] = None
        self._record: Optional[_MetricsRecord] = None

    def _with_fallback(self, value: Optional[float], current_replicas: int) -> tuple[Optional[float], bool]:
        """GetMetricsWithFallback: (served value or None for an error, fallback active)."""
        fb = self.config.fallback
        if value is not None:
            if fb is not None:
                self.failures = 0
            return keda_metric_milli(value) / 1000, False
        if fb is None:
            return None, False
        self.failures += 1
        if self.failures <= fb.failure_threshold:
            return None, False
        if fb.behavior == "static":
            replicas = fb.replicas
        elif fb.behavior == "currentReplicas":
            replicas = current_replicas
        elif fb.behavior == "currentReplicasIfHigher":
            replicas = max(current_replicas, fb.replicas)
        else:
            replicas = min(current_replicas, fb.replicas)
        return int(self.config.target_value * 1000 * replicas) / 1000, True

    def hpa_metric(self, now: float, reading: ScalerReading, current_replicas: int) -> Optional[float]:
        """What the external metrics API answers the HPA (None = error). `reading` is used unless cached."""
        if self.config.use_cached_metrics and self._record is not None:
            raw = None if self._record.error else self._record.value
        else:
            raw = reading.value
        value, _ = self._with_fallback(raw, current_replicas)
        return value

    def poll(self, now: float, reading: ScalerReading, current_replicas: int) -> Optional[int]:
        """One polling-loop check (RequestScale); the new replicas spec when KEDA itself scales, else None."""
        cfg = self.config
        value, fallback_active = self._with_fallback(reading.value, current_replicas)
        is_error = value is None
        is_active = not is_error and (fallback_active or reading.active)
        new: Optional[int] = None
        if is_active:  # scaleFromZeroOrIdle at 0 replicas; either way lastActiveTime = now
            if current_replicas == 0:
                new = cfg.min_replica_count if cfg.min_replica_count > 0 else 1
            self.last_active_time = now
        elif is_error and cfg.fallback is not None and cfg.fallback.replicas != 0:
            pass  # waits for the fallback
        elif is_error and cfg.fallback is None:
            pass  # Ready=False, TriggerError: no scaling
        elif current_replicas > 0 and cfg.min_replica_count == 0:
            if self._cooled_down(now):
                new = cfg.min_replica_count
        elif current_replicas < cfg.min_replica_count:
            new = cfg.min_replica_count
        if cfg.use_cached_metrics:
            self._record = _MetricsRecord(value, is_active, is_error)
        return None if new == current_replicas else new

    def _cooled_down(self, now: float) -> bool:
        if self.last_active_time is None:
            return self.created_at + self.config.initial_cooldown_period_seconds < now
        return self.last_active_time + self.config.cooldown_period_seconds < now


def last_poll_at_or_before(t: float, polling_interval_seconds: float, first_poll: float = 0.0) -> Optional[float]:
    """The KEDA poll whose record a cached HPA request at `t` reads (None: before the first poll)."""
    if t < first_poll:
        return None
    return first_poll + math.floor((t - first_poll) / polling_interval_seconds + 1e-9) * polling_interval_seconds


def observed_at(t: float, keda: KedaConfig, first_poll: float = 0.0) -> float:
    """When the scaler value an HPA sync at `t` acts on was read: `t` live, the last poll when cached."""
    if not keda.use_cached_metrics:
        return t
    polled = last_poll_at_or_before(t, keda.polling_interval_seconds, first_poll)
    return t if polled is None else polled


# -- the whole path ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ActuationEvent:
    time: float
    source: EventSource
    replicas_before: int
    replicas_after: int
    metric_value: Optional[float] = None  # what the HPA read (hpa-sync only)


class ActuationPath:
    """KEDA's polling loop and the HPA's sync loop on one pool; owns the replicas spec.

    Polls at `keda_start + k * pollingInterval`, syncs at `hpa_start + k * syncPeriod`; at equal
    times the poll runs first (so an activation is visible to the sync at the same instant).
    """

    def __init__(
        self,
        config: ActuationConfig,
        replicas: int,
        *,
        keda_start: float = 0.0,
        hpa_start: float = 0.0,
    ) -> None:
        self.config = config
        self.replicas = replicas
        self.keda = KedaScaledObject(config.keda, created_at=min(keda_start, hpa_start))
        self.hpa = HpaController(config.hpa)
        self._keda_start, self._hpa_start = keda_start, hpa_start
        self._polls, self._syncs = 0, 0
        self.events: list[ActuationEvent] = []

    def _next_poll(self) -> float:
        return self._keda_start + self._polls * self.config.keda.polling_interval_seconds

    def _next_sync(self) -> float:
        return self._hpa_start + self._syncs * self.config.hpa.controller.sync_period_seconds

    def next_event_time(self) -> float:
        return min(self._next_poll(), self._next_sync())

    def advance(
        self,
        now: float,
        reading_at: Callable[[float], ScalerReading],
        status_replicas_at: Optional[Callable[[float, int], int]] = None,
    ) -> int:
        """Run every poll and sync due at or before `now`, in time order; the replicas spec after them.

        `reading_at(t)`: the scaler's answer at t. `status_replicas_at(t, spec)`: the target's
        status.replicas (default: the spec).
        """
        while True:
            poll_t, sync_t = self._next_poll(), self._next_sync()
            t = min(poll_t, sync_t)
            if t > now:
                return self.replicas
            before = self.replicas
            if poll_t <= sync_t:
                self._polls += 1
                new = self.keda.poll(t, reading_at(t), before)
                if new is not None:
                    self.replicas = new
                self.events.append(ActuationEvent(t, "keda-poll", before, self.replicas))
            else:
                self._syncs += 1
                metric: Optional[float] = None
                if self.hpa.computes_metrics(before):
                    metric = self.keda.hpa_metric(t, reading_at(t), before)
                status = before if status_replicas_at is None else status_replicas_at(t, before)
                self.replicas = self.hpa.step(t, metric, before, status)
                self.events.append(ActuationEvent(t, "hpa-sync", before, self.replicas, metric))


# -- from a dynplan plan / a rendered ScaledObject --------------------------------------------


def config_from_view(so: objects.ScaledObjectView, controller: Optional[ControllerSettings] = None) -> ActuationConfig:
    """The actuation config of a ScaledObject as `templates/scaledobject.yaml.j2` lays it out:
    both directions `selectPolicy: Max`, one Pods policy, the view's windows and tolerance."""
    b = so.behavior

    def rules(window: int) -> ScalingRules:
        return ScalingRules(
            stabilization_window_seconds=window,
            select_policy="Max",
            policies=(ScalingPolicy("Pods", b.pods_per_period, b.period_seconds),),
            tolerance=b.tolerance,
        )

    if so.metric_type != "AverageValue":
        raise ValueError(f"only AverageValue triggers are modelled, got {so.metric_type!r}")
    fb = so.fallback
    keda = KedaConfig(
        polling_interval_seconds=so.polling_interval,
        use_cached_metrics=so.use_cached_metrics,
        min_replica_count=so.min_replicas,
        max_replica_count=so.max_replicas,
        cooldown_period_seconds=so.cooldown_period,
        fallback=FallbackConfig(fb.failure_threshold, fb.replicas, _fallback_behavior(fb.behavior)),
        target_value=SCALER_TARGET,
    )
    hpa = HpaConfig(
        min_replicas=max(so.min_replicas, 1),
        max_replicas=so.max_replicas,
        behavior=Behavior(scale_up=rules(b.scale_up_window), scale_down=rules(b.scale_down_window)),
        target_average_value=SCALER_TARGET,
        controller=controller if controller is not None else ControllerSettings(),
    )
    return ActuationConfig(keda=keda, hpa=hpa)


def config_from_plan(plan: Plan, pool: str, controller: Optional[ControllerSettings] = None) -> ActuationConfig:
    """The actuation config of a plan's pool, from the same `render.objects.scaled_object` the generator renders."""
    return config_from_view(objects.scaled_object(plan, pool), controller)


def _fallback_behavior(value: str) -> FallbackBehavior:
    if value == "static":
        return "static"
    if value == "currentReplicas":
        return "currentReplicas"
    if value == "currentReplicasIfHigher":
        return "currentReplicasIfHigher"
    if value == "currentReplicasIfLower":
        return "currentReplicasIfLower"
    raise ValueError(f"unsupported fallback behavior {value!r}")


def _quantity(value: Any) -> float:
    """A Kubernetes quantity as a float (AsApproximateFloat64): plain decimals and the `m` suffix."""
    text = str(value).strip()
    scale = Decimal(1)
    if text.endswith("m"):
        text, scale = text[:-1], Decimal("0.001")
    try:
        return float(Decimal(text) * scale)
    except InvalidOperation as exc:
        raise ValueError(f"unsupported quantity {value!r}") from exc


def _rules_from_manifest(doc: Optional[Mapping[str, Any]]) -> Optional[ScalingRules]:
    if doc is None:
        return None
    policies = doc.get("policies")
    select = doc.get("selectPolicy")
    if select is not None and select not in ("Max", "Min", "Disabled"):
        raise ValueError(f"selectPolicy must be Max, Min or Disabled, got {select!r}")
    parsed: Optional[tuple[ScalingPolicy, ...]] = None
    if policies is not None:
        items = []
        for p in policies:
            kind = p["type"]
            if kind not in ("Pods", "Percent"):
                raise ValueError(f"policy type must be Pods or Percent, got {kind!r}")
            items.append(ScalingPolicy("Pods" if kind == "Pods" else "Percent", int(p["value"]), int(p["periodSeconds"])))
        parsed = tuple(items)
    window = doc.get("stabilizationWindowSeconds")
    tolerance = doc.get("tolerance")
    return ScalingRules(
        stabilization_window_seconds=None if window is None else int(window),
        select_policy="Max" if select == "Max" else "Min" if select == "Min" else "Disabled" if select == "Disabled" else None,
        policies=parsed,
        tolerance=None if tolerance is None else _quantity(tolerance),
    )


def config_from_scaled_object(
    manifest: Mapping[str, Any],
    controller: Optional[ControllerSettings] = None,
    target_value: float = SCALER_TARGET,
) -> ActuationConfig:
    """The actuation config of a parsed ScaledObject manifest (KEDA's defaults for absent fields).

    `target_value` is the scaler's GetMetricSpec target (not in the manifest).
    """
    spec = manifest["spec"]
    triggers = spec["triggers"]
    if len(triggers) != 1:
        raise ValueError(f"exactly one trigger is modelled, got {len(triggers)}")
    trigger = triggers[0]
    if trigger.get("metricType", "AverageValue") != "AverageValue":
        raise ValueError(f"only AverageValue triggers are modelled, got {trigger.get('metricType')!r}")
    min_count = int(spec.get("minReplicaCount", 0))
    max_count = int(spec.get("maxReplicaCount", KEDA_MAX_REPLICA_COUNT))
    fb_doc = spec.get("fallback")
    fallback = (
        None
        if fb_doc is None
        else FallbackConfig(
            int(fb_doc["failureThreshold"]), int(fb_doc["replicas"]), _fallback_behavior(str(fb_doc.get("behavior", "static")))
        )
    )
    keda = KedaConfig(
        polling_interval_seconds=spec.get("pollingInterval", KEDA_POLLING_INTERVAL_SECONDS),
        use_cached_metrics=bool(trigger.get("useCachedMetrics", False)),
        min_replica_count=min_count,
        max_replica_count=max_count,
        cooldown_period_seconds=spec.get("cooldownPeriod", KEDA_COOLDOWN_PERIOD_SECONDS),
        initial_cooldown_period_seconds=spec.get("initialCooldownPeriod", 0),
        fallback=fallback,
        target_value=target_value,
    )
    hpa_config = (spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}
    behavior_doc = hpa_config.get("behavior")
    behavior = (
        None
        if behavior_doc is None
        else Behavior(
            scale_up=_rules_from_manifest(behavior_doc.get("scaleUp")),
            scale_down=_rules_from_manifest(behavior_doc.get("scaleDown")),
        )
    )
    hpa = HpaConfig(
        min_replicas=max(min_count, 1),
        max_replicas=max_count,
        behavior=behavior,
        target_average_value=target_value,
        controller=controller if controller is not None else ControllerSettings(),
    )
    return ActuationConfig(keda=keda, hpa=hpa)
