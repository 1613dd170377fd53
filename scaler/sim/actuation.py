"""The actuation path of one pool: the scaler's desired replicas -> KEDA -> HPA -> the replicas spec.

Pure: no I/O, no clock. Time is a float in seconds passed in by the caller. The pieces, each
with its sources in its own docstring:

* **The scaler** (dynplan) answers `GetMetrics` with its latest decision for the pool,
  `metricValueFloat = metricValue = desired replicas`, and `GetMetricSpec` with
  `targetSizeFloat = 1` [scaler/service/servicer.py]. It decides on its own interval; this
  module takes "the scaler's answer at time t" as input (`ScalerReading`, `reading_at(t)`).
* **KEDA** (`scaler.sim.keda`, `KedaScaledObject`) converts the value to a quantity, polls the
  scaler every `pollingInterval` and decides only the 0 <-> 1 step, serves the HPA's metric
  requests live or from the last poll (`useCachedMetrics`), and substitutes the fallback.
* **The HPA** (`scaler.sim.hpa`, `HpaController`) syncs every 15 s: the AverageValue proposal,
  the tolerance, stabilisation, the scale-up/down policies, the [min, max] clamp.

This module runs both loops on one pool (`ActuationPath`, which owns the replicas spec), and
builds their config from a plan (`config_from_plan`, the same `render.objects.scaled_object`
the generator renders) or from a parsed ScaledObject manifest with KEDA's defaults for absent
fields (`config_from_scaled_object`). KEDA's HPA has `minReplicas = max(minReplicaCount, 1)`,
`maxReplicas = maxReplicaCount` (default 100) and the ScaledObject's
`advanced.horizontalPodAutoscalerConfig.behavior` as is (nil when absent) [keda
apis/keda/v1alpha1/scaledobject_types.go, controllers/keda/hpa.go].
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Literal, Mapping, Optional

from scaler.core.plan import Plan
from scaler.render import objects
from scaler.sim.hpa import HpaController
from scaler.sim.hpa_config import (
    Behavior,
    ControllerSettings,
    HpaConfig,
    ScalingPolicy,
    ScalingRules,
    behavior_from_rendered,
)
from scaler.sim.keda import (
    KEDA_COOLDOWN_PERIOD_SECONDS,
    KEDA_MAX_REPLICA_COUNT,
    KEDA_POLLING_INTERVAL_SECONDS,
    SCALER_TARGET,
    FallbackBehavior,
    FallbackConfig,
    KedaConfig,
    KedaScaledObject,
    ScalerReading,
)

EventSource = Literal["keda-poll", "hpa-sync"]


@dataclass(frozen=True)
class ActuationConfig:
    keda: KedaConfig
    hpa: HpaConfig


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
    """The actuation config of a ScaledObject as `templates/scaledobject.yaml.j2` lays it out
    (the view's behaviour as rendered: `hpa_config.behavior_from_rendered`)."""
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
        behavior=behavior_from_rendered(so.behavior),
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
