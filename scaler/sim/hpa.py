"""The HPA of one pool, as kube-controller-manager runs it for KEDA's External AverageValue metric.

Pure: no I/O, no clock. Time is a float in seconds passed in by the caller; `HpaController`
keeps only the state the real controller keeps in memory (recommendations, scale events).
Its configuration (behaviour, API defaulting, controller flags) is `scaler.sim.hpa_config`;
what KEDA serves it, and when, `scaler.sim.keda`; both on one pool, `scaler.sim.actuation`.

What happens (verified against the sources named in brackets):

* **The HPA** syncs every `--horizontal-pod-autoscaler-sync-period` (default 15 s)
  [kubernetes pkg/controller/podautoscaler/config/v1alpha1/defaults.go]. It reads the metric
  as `Quantity.MilliValue()` [kubernetes pkg/controller/podautoscaler/metrics/client.go], so it
  works in integer milli-units (`scaler.sim.keda.keda_metric_milli`). The HPA does not query
  metrics at all while the target has 0 replicas ("ScalingDisabled", HPAScaleToZero is alpha)
  or while it is outside [minReplicas, maxReplicas] (it then just clamps) [kubernetes
  horizontal.go reconcileAutoscaler].
* **AverageValue, External** [kubernetes replica_calculator.go GetExternalPerPodMetricReplicas]:
  `usage` = sum of the milli-values, `ratio = usage / (targetMilli * status.replicas)`; if the
  ratio is inside the tolerance band the proposal is status.replicas, else
  `ceil(usage / targetMilli)` - the current count is used only for the tolerance test. The band
  is `1 - tolerance.scaleDown <= ratio <= 1 + tolerance.scaleUp` (`Tolerances.isWithin`); both
  default to `--horizontal-pod-autoscaler-tolerance` 0.1; `behavior.scaleUp/scaleDown.tolerance`
  override them when the `HPAConfigurableTolerance` gate is on [horizontal.go tolerancesForHpa].
* **Behaviour** (`spec.behavior` set, after the API server's defaulting: `scaler.sim.hpa_config`)
  [horizontal.go normalizeDesiredReplicasWithBehaviors]:
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

Timing convention: a recommendation or scale event exactly one window/period old is *outside*
it. In the controller each resync is queued a full period after the previous reconcile
*finished*, so on a 15 s cadence the sample from "15 s ago" is always a little older than 15 s;
the grid times used here would otherwise sit exactly on the Go `After(cutoff)` boundary.

Not modelled: several metrics (the HPA takes the max proposal), the `Value` metric type, the
HPAScaleToZero gate, and kube-controller-manager restarts (which drop the HPA's in-memory
recommendations and events).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from scaler.sim.hpa_config import HpaConfig, ScalingRules
from scaler.sim.keda import keda_metric_milli

_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)
# A sample this close to a window's cutoff counts as outside the window (see the docstring).
_EDGE_SECONDS = 1e-6


# -- arithmetic -------------------------------------------------------------------------------


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
