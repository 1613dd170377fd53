"""The Decision: each pool's replicas plus every input that produced them and why.

One value type shared by the scaler (GetMetrics, /metrics, logs), `explain`, `capacity`
and the simulator, so that all of them tell the same story.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Mapping, Optional

from scaler.core.attainment_sizing import AttainmentInputs


class Reason(str, Enum):
    """Machine-readable reasons. Values are stable: they appear in metrics and JSON."""

    # throughput path
    SCALE = "scale"                         # replicas follow predicted load / capacity
    PRIOR = "prior"                         # no traffic observed yet: workload priors
    IDLE = "idle"                           # confirmed zero traffic: minimum replicas
    CAPACITY = "capacity"                   # steady-state answer for a given rate
    # bounds and budget
    AT_MIN = "at_min"                       # raised to the pool minimum
    AT_MAX = "at_max"                       # capped at the pool maximum
    BUDGET = "budget"                       # shrunk to fit the GPU budget
    SLA_INFEASIBLE = "sla_infeasible"       # no profiled operating point meets the SLA
    # attainment sizing
    HELD = "scale_down_held"                # kept above its sizing until start-up + interval passed
    BACKLOG = "backlog"                     # raised to drain requests already waiting
    # load path
    LOAD_UP = "load_scale_up"
    LOAD_DOWN = "load_scale_down"
    LOAD_HOLD = "load_no_change"
    LOAD_INSUFFICIENT_DATA = "load_insufficient_data"
    LOAD_NOT_READY = "load_scaling_in_progress"
    LOAD_BAD_FIT = "load_bad_fit"
    LOAD_REFUSED_CONSOLIDATION = "load_scale_down_refused_consolidation"
    LOAD_SLA_VIOLATED = "load_sla_violated"  # every worker has a request queued and misses the TTFT SLA
    LOAD_DOWN_PENDING = "load_scale_down_pending"  # down verdict not yet confirmed on enough ticks
    THROUGHPUT_FLOOR = "throughput_floor"   # load decision raised to the throughput floor


@dataclass(frozen=True)
class PoolDecision:
    """One pool's answer. `requested` is before bounds and budget; `replicas` is final."""

    replicas: int
    requested: int
    gpus_per_replica: int
    reasons: tuple[Reason, ...] = ()
    # tokens/s one replica can serve at the SLA (throughput path), when known
    capacity_tokens_per_s: Optional[float] = None

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica


@dataclass(frozen=True)
class ThroughputInputs:
    """What the throughput path used: observed window, predictions, capacities, corrections."""

    observed_rate: Optional[float]
    observed_isl: Optional[float]
    observed_osl: Optional[float]
    observed_ttft_ms: Optional[float]
    observed_itl_ms: Optional[float]
    predicted_rate: float
    predicted_isl: float
    predicted_osl: float
    prefill_thpt_per_gpu: Optional[float]
    decode_thpt_per_gpu: Optional[float]
    decode_itl_target_ms: Optional[float]
    decode_itl_at_point_ms: Optional[float]
    decode_kv_usage_at_point: Optional[float]
    profiled_ttft_ms: Optional[float]
    correction_prefill: float
    correction_decode: float
    correction_enabled: bool
    # queueing-aware prefill sizing (None when disabled or not applicable)
    queueing_factor: Optional[float] = None
    prefill_queueing_replicas: Optional[float] = None
    # which formulas sized the pools (spec.scaling.throughput.sizing) and, for the
    # attainment sizing, everything it used
    sizing: str = "dynamo"
    attainment: Optional[AttainmentInputs] = None


@dataclass(frozen=True)
class LoadPoolInputs:
    """What the load path used for one pool (filled by the load-based planner)."""

    workers: int
    slope: Optional[float]
    intercept: Optional[float]
    observations: int
    capacity_per_worker: Optional[float]
    max_worker_load: Optional[float]
    reason: Reason
    direction: int  # +1, 0, -1


@dataclass(frozen=True)
class Decision:
    plan: str
    pools: Mapping[str, PoolDecision]
    reason: Reason
    timestamp: float = 0.0
    throughput: Optional[ThroughputInputs] = None
    # what the load path used, by pool then signal: load["prefill"]["ttft"]
    load: Mapping[str, Mapping[str, LoadPoolInputs]] = field(default_factory=dict)
    budget_gpus: Optional[int] = None
    warnings: tuple[str, ...] = ()

    def replicas(self, pool: str) -> int:
        return self.pools[pool].replicas

    @property
    def total_gpus(self) -> int:
        return sum(p.gpus for p in self.pools.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (camelCase keys, enums as strings, NaN as null; load inputs
        keyed "<pool>.<signal>", e.g. "prefill.ttft")."""
        return _jsonable(
            {
                "plan": self.plan,
                "timestamp": self.timestamp,
                "reason": self.reason,
                "pools": {
                    name: {
                        "replicas": p.replicas,
                        "gpus": p.gpus,
                        "requested": p.requested,
                        "gpusPerReplica": p.gpus_per_replica,
                        "reasons": list(p.reasons),
                        "capacityTokensPerS": p.capacity_tokens_per_s,
                    }
                    for name, p in self.pools.items()
                },
                "totalGpus": self.total_gpus,
                "budgetGpus": self.budget_gpus,
                "throughput": None if self.throughput is None else asdict(self.throughput),
                "load": {f"{pool}.{signal}": asdict(v) for pool, by in self.load.items() for signal, v in by.items()},
                "warnings": list(self.warnings),
            }
        )


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {_camel(str(k)) if "_" in str(k) else str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return round(value, 6)
    return value
