"""KEDA's side of one pool's actuation: what it asks the scaler, when, and what it does itself.

Pure: no I/O, no clock. Time is a float in seconds passed in by the caller; `KedaScaledObject`
keeps only the state the operator keeps in memory (fallback health, metric cache,
lastActiveTime). The HPA KEDA creates is `scaler.sim.hpa`; both on one pool, `scaler.sim.actuation`.

What happens, and what is cached where (verified against the sources named in brackets):

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
* **The HPA's metric requests**: each HPA sync asks the external metrics API ->
  keda-operator-metrics-apiserver, which caches nothing and forwards to the operator over gRPC
  [keda pkg/provider/provider.go GetExternalMetric] -> `GetScaledObjectMetrics`
  [scale_handler.go]: **without** `useCachedMetrics` the operator calls the scaler's GetMetrics
  live, so the HPA sees the scaler's decision *at the sync*; **with** it, the operator answers
  from the last poll's record (up to one pollingInterval old; live when no record exists yet).
  GetMetricSpec is called on every request either way (the target is constant here, so it is
  not modelled).
* **Fallback** [keda pkg/fallback/fallback.go GetMetricsWithFallback, doFallback]: with
  `spec.fallback`, every GetMetrics result on *either* path (poll or HPA request) updates one
  failure counter per metric: a success resets it, an error increments it; once it is
  `> failureThreshold` KEDA answers `int64(target * 1000 * replicas)` milli instead of the error,
  with replicas = `fallback.replicas` (static), the target's spec replicas (currentReplicas),
  or their max / min (currentReplicasIfHigher / IfLower), and the trigger counts as active.
  Before that, or without a fallback section, the HPA gets an error and keeps the current count.

Not modelled: several triggers, `scalingModifiers`, `idleReplicaCount`, pause annotations,
external-push activation (StreamIsActive true triggers an immediate poll; it only speeds up
0 -> 1), and KEDA's refresh-and-retry inside one call (an error here is an error that
persisted through it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Optional

FallbackBehavior = Literal["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"]

# KEDA ScaledObject defaults (apis/keda/v1alpha1).
KEDA_POLLING_INTERVAL_SECONDS = 30
KEDA_COOLDOWN_PERIOD_SECONDS = 300
KEDA_MAX_REPLICA_COUNT = 100
# dynplan's GetMetricSpec target (scaler/service/servicer.py TARGET): one unit = one replica.
SCALER_TARGET = 1.0

_FALLBACK_BEHAVIORS = ("static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower")


# -- arithmetic -------------------------------------------------------------------------------


def keda_metric_milli(value: float) -> int:
    """KEDA's quantityFromFloat64 then Quantity.MilliValue(): `"%.3f"` (round to nearest), bad values 0."""
    if math.isnan(value) or math.isinf(value) or value < 0:
        return 0
    return int(Decimal(format(value, ".3f")) * 1000)


# -- configuration --------------------------------------------------------------------------


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



# -- the operator -----------------------------------------------------------------------------


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
