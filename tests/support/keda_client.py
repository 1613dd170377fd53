"""A KEDA-conformance client: calls an external scaler the way KEDA does.

Built from what KEDA's operator and metrics adapter do (see docs/operations.md):
- every trigger `metadata` entry is forwarded in `scalerMetadata`, KEDA's own
  `scalerAddress` / `enableTLS` included;
- per poll: GetMetricSpec, then per returned spec GetMetrics with the metric name KEDA
  strips of its `sN-` HPA prefix, then IsActive;
- the HPA path shares a 3 s deadline across those calls;
- values: the float field wins when > 0, else the int field; the value goes through a
  milli-precision ("%.3f") conversion; NaN/Inf/negative become 0;
- the HPA with the default AverageValue target: desired = ceil(usage / target) unless
  |1 - usage / (target x current)| <= 0.1 (then current is kept).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import grpc

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc

HPA_DEADLINE_SECONDS = 3.0
TOLERANCE = 0.1


@dataclass(frozen=True)
class Trigger:
    """One `external` trigger of a ScaledObject."""

    scaled_object: str
    namespace: str
    metadata: dict[str, str]
    index: int = 0

    def ref(self, scaler_address: str, enable_tls: bool = False) -> pb.ScaledObjectRef:
        meta = {"scalerAddress": scaler_address, "enableTLS": "true" if enable_tls else "false", **self.metadata}
        return pb.ScaledObjectRef(name=self.scaled_object, namespace=self.namespace, scalerMetadata=meta)


@dataclass(frozen=True)
class PollResult:
    hpa_metric: str        # s{index}-{name}, as the HPA knows it
    metric: str            # the name sent to GetMetrics (prefix stripped)
    target: float
    value: float
    raw_int: int
    raw_float: float
    active: bool
    elapsed_s: float
    calls: tuple[str, ...] = field(default=())


def keda_quantity(float_value: float, int_value: int) -> float:
    """What KEDA makes of a MetricValue / MetricSpec pair of fields."""
    value = float_value if float_value > 0 else float(int_value)
    if not math.isfinite(value) or value < 0:
        return 0.0
    return float("%.3f" % value)


def hpa_metric_name(index: int, metric: str) -> str:
    return f"s{index}-{metric}"


def strip_hpa_prefix(hpa_metric: str) -> str:
    """KEDA splits at the first '-': names that contain dashes survive intact."""
    return hpa_metric.split("-", 1)[1]


def average_value_replicas(usage: float, target: float, current: int, tolerance: float = TOLERANCE) -> int:
    """The HPA's replica count for an External AverageValue metric."""
    if target <= 0:
        raise ValueError("a target of 0 makes an unusable HPA")
    if current > 0 and abs(1.0 - usage / (target * current)) <= tolerance:
        return current
    return int(math.ceil(usage / target))


class KedaClient:
    def __init__(self, channel: grpc.aio.Channel, scaler_address: str, *, enable_tls: bool = False) -> None:
        self.stub = pb_grpc.ExternalScalerStub(channel)
        self.address = scaler_address
        self.enable_tls = enable_tls

    def ref(self, trigger: Trigger) -> pb.ScaledObjectRef:
        return trigger.ref(self.address, self.enable_tls)

    async def metric_spec(self, trigger: Trigger, timeout: float = HPA_DEADLINE_SECONDS) -> pb.GetMetricSpecResponse:
        return await self.stub.GetMetricSpec(self.ref(trigger), timeout=timeout)

    async def poll(self, trigger: Trigger) -> list[PollResult]:
        """One KEDA poll of one trigger, under the HPA path's shared 3 s budget."""
        start = time.monotonic()

        def left() -> float:
            remaining = HPA_DEADLINE_SECONDS - (time.monotonic() - start)
            if remaining <= 0:
                raise TimeoutError("KEDA's 3 s budget for GetMetricSpec + GetMetrics + IsActive is spent")
            return remaining

        ref = self.ref(trigger)
        spec = await self.stub.GetMetricSpec(ref, timeout=left())
        if not spec.metricSpecs:
            raise AssertionError("empty metric spec: KEDA treats this as an error")
        results = []
        for ms in spec.metricSpecs:
            target = keda_quantity(ms.targetSizeFloat, ms.targetSize)
            hpa_name = hpa_metric_name(trigger.index, ms.metricName)
            name = strip_hpa_prefix(hpa_name)
            metrics = await self.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=name), timeout=left())
            # KEDA ignores MetricValue.metricName and the HPA sums every value returned.
            usage = sum(keda_quantity(v.metricValueFloat, v.metricValue) for v in metrics.metricValues)
            active = await self.stub.IsActive(ref, timeout=left())
            first = metrics.metricValues[0] if metrics.metricValues else pb.MetricValue()
            results.append(
                PollResult(
                    hpa_metric=hpa_name,
                    metric=name,
                    target=target,
                    value=usage,
                    raw_int=first.metricValue,
                    raw_float=first.metricValueFloat,
                    active=active.result,
                    elapsed_s=time.monotonic() - start,
                    calls=("GetMetricSpec", "GetMetrics", "IsActive"),
                )
            )
        return results

    async def hpa_replicas(self, trigger: Trigger, current: int, minimum: int = 1, maximum: int = 100) -> int:
        """Where the HPA would land given the scaler's answer (clamped to [min, max])."""
        best: Optional[int] = None
        for r in await self.poll(trigger):
            want = average_value_replicas(r.value, r.target, current)
            best = want if best is None else max(best, want)
        assert best is not None
        return max(max(minimum, 1), min(maximum, best))
