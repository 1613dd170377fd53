"""The ExternalScaler handlers: thin, answering from the latest decision in memory.

No handler ever waits for Prometheus. Errors are DynplanError subclasses mapped to status
codes by scaler.errors.GRPC_STATUS (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import AsyncIterator, Callable, NoReturn, Optional, TypeVar

import grpc

from scaler.errors import DynplanError, MetadataError, grpc_status_for
from scaler.naming import metric_name
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service.answers import PlanView, ServedPlan
from scaler.service.config import PoolRef, parse_metadata

log = logging.getLogger("dynplan.rpc")
T = TypeVar("T")
TARGET = 1.0  # one unit of the metric = one replica: AverageValue lands on the value


def metric_spec(ref: PoolRef) -> pb.GetMetricSpecResponse:
    """Depends on the metadata only (plus the plan existing): never on Prometheus."""
    name = metric_name(ref.plan, ref.pool)
    return pb.GetMetricSpecResponse(
        metricSpecs=[pb.MetricSpec(metricName=name, targetSize=int(TARGET), targetSizeFloat=TARGET)]
    )


class ExternalScalerServicer(pb_grpc.ExternalScalerServicer):
    def __init__(
        self,
        registry: PlanView,
        *,
        count: Optional[Callable[[str, str], None]] = None,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self.registry = registry  # the PlanRegistry (one process) or the serving process's AnswerBook
        self.count = count  # (method, status code) of every answered call, for /metrics
        self.heartbeat_seconds = heartbeat_seconds
        self._names: dict[tuple[str, str], str] = {}  # (plan, pool) -> metric name

    # -- helpers ------------------------------------------------------------------------
    def _resolve(self, request: pb.ScaledObjectRef) -> tuple[PoolRef, ServedPlan]:
        ref = parse_metadata(request.namespace, request.scalerMetadata)
        return ref, self.registry.lookup(ref)

    def _metric(self, ref: PoolRef) -> str:
        """The pool's metric name, kept per (plan, pool) once the plan exists: the same for
        every call, and two regex passes each time were a tenth of a call's Python time."""
        key = (ref.plan, ref.pool)
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = metric_name(ref.plan, ref.pool)
        return name

    async def _failed(self, method: str, context: grpc.aio.ServicerContext, exc: DynplanError) -> NoReturn:
        code = grpc_status_for(exc)
        self._count(method, code)
        await context.abort(grpc.StatusCode[code], str(exc))
        raise AssertionError("unreachable: abort raises")

    async def _answer(self, method: str, context: grpc.aio.ServicerContext, fn: Callable[[], T]) -> T:
        try:
            result = fn()
        except DynplanError as exc:
            await self._failed(method, context, exc)
        self._count(method, "OK")
        return result

    def _count(self, method: str, code: str) -> None:
        if self.count is not None:
            self.count(method, code)

    # -- unary --------------------------------------------------------------------------
    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> pb.GetMetricSpecResponse:
        return await self._answer("GetMetricSpec", context, lambda: metric_spec(self._resolve(request)[0]))

    def _metrics(self, request: pb.GetMetricsRequest) -> pb.GetMetricsResponse:
        ref, plan_loop = self._resolve(request.scaledObjectRef)
        expected = self._metric(ref)
        if request.metricName != expected:
            raise MetadataError(f"metricName {request.metricName!r} is not this trigger's metric (expected {expected!r})")
        replicas = plan_loop.current().replicas(ref.pool)
        return pb.GetMetricsResponse(
            metricValues=[pb.MetricValue(metricName=expected, metricValue=int(replicas), metricValueFloat=float(replicas))]
        )

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext) -> pb.GetMetricsResponse:
        # the hot path (KEDA and the HPA call it for every pool every 15-30 s): no closure, no
        # awaited helper unless it fails
        try:
            response = self._metrics(request)
        except DynplanError as exc:
            await self._failed("GetMetrics", context, exc)
        self._count("GetMetrics", "OK")
        return response

    async def IsActive(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> pb.IsActiveResponse:
        def answer() -> pb.IsActiveResponse:
            ref, plan_loop = self._resolve(request)
            return pb.IsActiveResponse(result=plan_loop.current().active(ref.pool))

        return await self._answer("IsActive", context, answer)

    # -- streams ------------------------------------------------------------------------
    async def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.IsActiveResponse]:
        """`true` on becoming active and every heartbeat while active; silent otherwise.

        KEDA (>= 2.18) ignores `false`, and deactivation goes through its polling loop, so
        nothing is sent while inactive or while no fresh decision exists.
        """
        ref, _ = await self._answer("StreamIsActive", context, lambda: self._resolve(request))
        was_active = False
        last_sent = -math.inf
        clock = asyncio.get_running_loop().time
        try:
            while not self.registry.closing:
                version = self.registry.version  # any change after this wakes the wait below
                try:
                    plan_loop = self.registry.lookup(ref)
                except DynplanError as exc:  # plan removed or changed under the stream
                    await context.abort(grpc.StatusCode[grpc_status_for(exc)], str(exc))
                    return
                try:
                    active = plan_loop.current().active(ref.pool)
                except DynplanError:
                    active = False
                now = clock()
                if active and (not was_active or now - last_sent >= self.heartbeat_seconds):
                    yield pb.IsActiveResponse(result=True)
                    last_sent = now
                was_active = active
                wait = self.heartbeat_seconds - (now - last_sent) if active else self.heartbeat_seconds
                await self.registry.wait_changed(version, max(0.05, wait))
        except asyncio.CancelledError:
            return

    async def StreamMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GetMetricSpecResponse]:
        """The current spec at once, then again whenever it changes (same as GetMetricSpec)."""
        ref, _ = await self._answer("StreamMetricSpec", context, lambda: self._resolve(request))
        sent: Optional[pb.GetMetricSpecResponse] = None
        version = self.registry.version
        try:
            while not self.registry.closing:
                try:
                    self.registry.lookup(ref)
                    spec = metric_spec(ref)
                except DynplanError as exc:
                    await context.abort(grpc.StatusCode[grpc_status_for(exc)], str(exc))
                    return
                if spec != sent:
                    yield spec
                    sent = spec
                version = await self.registry.wait_changed(version, 60.0)
        except asyncio.CancelledError:
            return
