"""The floor: the least a Python gRPC external scaler can do per call, to measure dynplan against.

A grpc.aio server implementing KEDA's ExternalScaler service (scaler/proto) that answers
GetMetrics, GetMetricSpec and IsActive from a dict keyed by (namespace, plan, pool): no
Prometheus, no decisions, no metrics, no logging. Run in its own process:

    .venv/bin/python -m bench.floor_scaler REFS.json

REFS.json: [[namespace, plan, pool, replicas], ...]. It prints its port (`{"port": N}`) on
stdout once serving and serves until its stdin closes (or SIGTERM/SIGINT).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Mapping, Optional

import grpc

from scaler.naming import metric_name
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc

Key = tuple[str, str, str]


class FloorServicer(pb_grpc.ExternalScalerServicer):
    """Answers from `replicas`; an unknown pool is NOT_FOUND (as dynplan answers it)."""

    def __init__(self, replicas: Mapping[Key, float]) -> None:
        self.replicas = dict(replicas)

    def _key(self, ref: pb.ScaledObjectRef) -> Key:
        md = ref.scalerMetadata
        return (ref.namespace, md.get("plan", ""), md.get("pool", ""))

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext) -> pb.GetMetricsResponse:
        key = self._key(request.scaledObjectRef)
        value = self.replicas.get(key)
        if value is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such pool")
            raise AssertionError("unreachable: abort raises")
        return pb.GetMetricsResponse(
            metricValues=[pb.MetricValue(metricName=request.metricName, metricValue=int(value), metricValueFloat=value)]
        )

    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> pb.GetMetricSpecResponse:
        _, plan, pool = self._key(request)
        return pb.GetMetricSpecResponse(metricSpecs=[pb.MetricSpec(metricName=metric_name(plan, pool), targetSize=1, targetSizeFloat=1.0)])

    async def IsActive(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> pb.IsActiveResponse:
        return pb.IsActiveResponse(result=self.replicas.get(self._key(request), 0.0) > 0)


async def serve(replicas: Mapping[Key, float], listen: str = "127.0.0.1:0") -> None:
    server = grpc.aio.server()
    pb_grpc.add_ExternalScalerServicer_to_server(FloorServicer(replicas), server)
    port = server.add_insecure_port(listen)
    await server.start()
    print(json.dumps({"port": port}), flush=True)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, finish)

    def on_stdin() -> None:
        # stdin at its end (the parent gone, or done with us) ends it too
        if not os.read(sys.stdin.fileno(), 4096):
            finish()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await done
    loop.remove_reader(sys.stdin.fileno())
    await server.stop(0.5)


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rows = json.loads(Path(args[0]).read_text())
    asyncio.run(serve({(ns, plan, pool): float(v) for ns, plan, pool, v in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
